//! Fault injection at the transactional sink's boundary.
//!
//! A fault path that no test can reach is a path nobody has proven. The
//! broker can be killed, stalled or cut off from outside (the failure
//! tests do that), but some faults leave the producer *usable* after the
//! transaction fails — a retriable `send_offsets_to_transaction`, an
//! abortable commit during a partial revoke or a pause — and those are the
//! paths where an engine that forgets to rewind loses records. A
//! [`Faults`] plan, handed to [`crate::processor::run_with`], makes the
//! next matching sink call fail with a chosen librdkafka error code before
//! it reaches librdkafka; the error then takes the same classification and
//! handling as a real one. A plan can also stop the consumer's fetching
//! behind the engine's back ([`Faults::stop_fetching`]), the silent stall
//! `processing.fetch_stall_timeout_ms` exists for. The production binary
//! never builds a plan.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The sink call a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// `begin_transaction`.
    Begin,
    /// Queueing an output record.
    Produce,
    /// `send_offsets_to_transaction`.
    SendOffsets,
    /// `commit_transaction`.
    Commit,
}

/// Why the engine is closing a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommitCause {
    /// The commit interval or a batch bound was reached.
    Due,
    /// Partitions are being revoked (cooperative rebalance).
    Revoke,
    /// Partitions were assigned and must be restored outside a transaction.
    Assign,
    /// An operator paused consumption.
    Pause,
    /// The process is shutting down.
    Shutdown,
    /// The schema registry failed; what is done is committed first.
    Outage,
    /// The consumer position moved past transaction markers only.
    Markers,
    /// Output limits would be exceeded by the next record (anchor size).
    Full,
}

/// One planned fault.
#[derive(Debug, Clone, Copy)]
struct Planned {
    point: FaultPoint,
    cause: Option<CommitCause>,
    code: RDKafkaErrorCode,
    remaining: u32,
}

/// A fault that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// Where.
    pub point: FaultPoint,
    /// While closing a transaction for this cause (`None` outside commits).
    pub cause: Option<CommitCause>,
    /// The error code returned.
    pub code: RDKafkaErrorCode,
}

/// A fault plan: which sink calls fail, and with what.
#[derive(Debug, Default)]
pub struct Faults {
    planned: Mutex<Vec<Planned>>,
    fired: Mutex<Vec<Fired>>,
    fetcher_stop: AtomicBool,
    loop_block: Mutex<Option<std::time::Duration>>,
}

impl Faults {
    /// An empty plan.
    pub fn new() -> Faults {
        Faults::default()
    }

    /// The next `times` calls at `point` (made while closing a transaction
    /// for `cause`, when given) fail with `code`.
    pub fn fail(
        &self,
        point: FaultPoint,
        cause: Option<CommitCause>,
        code: RDKafkaErrorCode,
        times: u32,
    ) {
        let mut planned = self.planned.lock().unwrap_or_else(|p| p.into_inner());
        planned.push(Planned {
            point,
            cause,
            code,
            remaining: times,
        });
    }

    /// At its next turn the processing loop pauses every partition it owns
    /// in its consumer without telling the engine: the consumer stays in
    /// the group and owns them, but no record of theirs arrives again, as
    /// when librdkafka leaves a fetcher unstarted (librdkafka#5586).
    pub fn stop_fetching(&self) {
        self.fetcher_stop.store(true, Ordering::SeqCst);
    }

    /// At its next look for a stopped fetcher (within a second) the
    /// processing loop blocks for `time`, as in a call that does not
    /// return: what `http.liveness_timeout_ms` is for.
    pub fn block_loop(&self, time: std::time::Duration) {
        *self.loop_block.lock().unwrap_or_else(|p| p.into_inner()) = Some(time);
    }

    /// Consumes a planned block of the loop, if one is planned.
    pub(crate) fn take_loop_block(&self) -> Option<std::time::Duration> {
        let planned = self
            .loop_block
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(time) = planned {
            tracing::warn!(?time, "injected fault: the processing loop blocks");
        }
        planned
    }

    /// Whether a planned fetcher stop has not been applied yet.
    pub fn fetcher_stop_pending(&self) -> bool {
        self.fetcher_stop.load(Ordering::SeqCst)
    }

    /// Consumes a planned fetcher stop, if one is planned.
    pub(crate) fn take_fetcher_stop(&self) -> bool {
        let planned = self.fetcher_stop.swap(false, Ordering::SeqCst);
        if planned {
            tracing::warn!("injected fault: the consumer stops fetching its partitions");
        }
        planned
    }

    /// The faults that fired so far, in order.
    pub fn fired(&self) -> Vec<Fired> {
        self.fired.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Consumes a planned fault matching this call, if any.
    pub(crate) fn take(&self, point: FaultPoint, cause: Option<CommitCause>) -> Option<KafkaError> {
        let mut planned = self.planned.lock().unwrap_or_else(|p| p.into_inner());
        let hit = planned.iter_mut().find(|f| {
            f.remaining > 0 && f.point == point && (f.cause.is_none() || f.cause == cause)
        })?;
        hit.remaining -= 1;
        let code = hit.code;
        planned.retain(|f| f.remaining > 0);
        drop(planned);
        self.fired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Fired { point, cause, code });
        tracing::warn!(?point, ?cause, %code, "injected fault");
        // A transaction API error cannot be built outside librdkafka, so
        // every injected error is classified by its code (`error::classify`).
        Some(KafkaError::MessageProduction(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_fires_the_planned_number_of_times_and_only_for_its_cause() {
        let f = Faults::new();
        f.fail(
            FaultPoint::Commit,
            Some(CommitCause::Revoke),
            RDKafkaErrorCode::NotEnoughReplicas,
            2,
        );
        assert!(f.take(FaultPoint::Commit, Some(CommitCause::Due)).is_none());
        assert!(f
            .take(FaultPoint::SendOffsets, Some(CommitCause::Revoke))
            .is_none());
        assert!(f
            .take(FaultPoint::Commit, Some(CommitCause::Revoke))
            .is_some());
        assert!(f
            .take(FaultPoint::Commit, Some(CommitCause::Revoke))
            .is_some());
        assert!(f
            .take(FaultPoint::Commit, Some(CommitCause::Revoke))
            .is_none());
        assert_eq!(f.fired().len(), 2);
    }
}
