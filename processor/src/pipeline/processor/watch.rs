//! Noticing a partition whose records stopped arriving: the decision only,
//! no I/O, so it is tested without a broker.
//!
//! A consumer can own a partition and never fetch it again: librdkafka
//! leaves a partition unstarted for good when the offset fetch of an
//! assignment meets a request-level `NOT_COORDINATOR`
//! (confluentinc/librdkafka#5586), which a broker restart can cause. The
//! process stays up, polls, logs nothing, and the partition's lag grows;
//! a new consumer recovers at once. Two signals together say "stuck
//! fetcher" rather than "slow" or "failing": the group's committed offset
//! has not moved while the partition has lag (the lag sampler's view, from
//! a client of its own), and this consumer has received none of the
//! partition's records in the same time. A partition whose records arrive
//! but fail (and are aborted and redone) is not stalled in this sense; the
//! stalled-partition alert covers it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A partition found stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// The input partition.
    pub partition: i32,
    /// How long none of its records arrived.
    pub quiet: Duration,
}

/// When each owned partition last delivered a record to this consumer.
#[derive(Debug)]
pub struct FetchWatch {
    limit: Option<Duration>,
    last_record: HashMap<i32, Instant>,
    epoch: u64,
}

impl FetchWatch {
    /// `limit`: how long a partition may lag with no record arriving
    /// (`None`: never report).
    pub fn new(limit: Option<Duration>) -> FetchWatch {
        FetchWatch {
            limit,
            last_record: HashMap::new(),
            epoch: 0,
        }
    }

    /// Records of `partition` arrived at `now`.
    pub fn received(&mut self, partition: i32, now: Instant) {
        self.last_record.insert(partition, now);
    }

    /// Whether the engine's assignment epoch moved since the last call (a
    /// revoke or an assignment came in between, each a reason to
    /// [`FetchWatch::excuse`]).
    pub fn assignment_changed(&mut self, epoch: u64) -> bool {
        std::mem::replace(&mut self.epoch, epoch) != epoch
    }

    /// No record could have been expected until `now` (the consumer
    /// reported an error, such as brokers down, or the assignment
    /// changed): every partition's quiet time starts over. A fetcher that
    /// stopped is silent, so this never hides one for long.
    pub fn excuse(&mut self, now: Instant) {
        for last in self.last_record.values_mut() {
            *last = now;
        }
    }

    /// The first owned partition that is stalled at `now`, if any.
    /// `stalled_for(p)` is how long the group's committed offset of `p`
    /// has not moved while `p` had lag. A partition first seen here starts
    /// its quiet time now, so a new assignment gets the whole limit;
    /// partitions no longer owned are forgotten.
    pub fn check(
        &mut self,
        owned: &[i32],
        stalled_for: impl Fn(i32) -> Duration,
        now: Instant,
    ) -> Option<Stall> {
        self.last_record.retain(|p, _| owned.contains(p));
        for p in owned {
            self.last_record.entry(*p).or_insert(now);
        }
        let limit = self.limit?;
        let mut owned = owned.to_vec();
        owned.sort_unstable();
        owned.into_iter().find_map(|partition| {
            let quiet = now.saturating_duration_since(*self.last_record.get(&partition)?);
            (quiet >= limit && stalled_for(partition) >= limit)
                .then_some(Stall { partition, quiet })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(60);

    fn watch() -> FetchWatch {
        FetchWatch::new(Some(LIMIT))
    }

    #[test]
    fn a_lagging_partition_with_no_records_for_the_limit_is_stalled() {
        let t0 = Instant::now();
        let mut w = watch();
        assert_eq!(w.check(&[0, 1], |_| LIMIT, t0), None);
        assert_eq!(
            w.check(
                &[0, 1],
                |p| if p == 1 { LIMIT } else { Duration::ZERO },
                t0 + LIMIT
            ),
            Some(Stall {
                partition: 1,
                quiet: LIMIT
            })
        );
    }

    #[test]
    fn records_arriving_keep_a_partition_from_stalling_even_when_commits_do_not_move() {
        // Records that fail and are redone arrive again and again: that is
        // a failing partition, not a stuck fetcher.
        let t0 = Instant::now();
        let mut w = watch();
        w.check(&[0], |_| LIMIT, t0);
        w.received(0, t0 + LIMIT / 2);
        assert_eq!(w.check(&[0], |_| LIMIT * 2, t0 + LIMIT), None);
        assert!(w.check(&[0], |_| LIMIT * 2, t0 + LIMIT * 3 / 2).is_some());
    }

    #[test]
    fn a_quiet_partition_without_lag_is_not_stalled() {
        let t0 = Instant::now();
        let mut w = watch();
        w.check(&[0], |_| Duration::ZERO, t0);
        assert_eq!(w.check(&[0], |_| Duration::ZERO, t0 + LIMIT * 10), None);
        // Lag, but for less than the limit.
        assert_eq!(w.check(&[0], |_| LIMIT / 2, t0 + LIMIT * 10), None);
    }

    #[test]
    fn a_new_assignment_gets_the_whole_limit() {
        let t0 = Instant::now();
        let mut w = watch();
        w.check(&[0], |_| LIMIT, t0);
        // Partition 1 arrives late and lagging: its quiet time starts now.
        assert_eq!(w.check(&[0, 1], |p| LIMIT * p as u32, t0 + LIMIT / 2), None);
        assert_eq!(
            w.check(&[0, 1], |_| LIMIT, t0 + LIMIT).map(|s| s.partition),
            Some(0)
        );
        // Revoked and assigned again: the limit starts over.
        w.check(&[], |_| LIMIT, t0 + LIMIT);
        assert_eq!(w.check(&[0], |_| LIMIT, t0 + LIMIT * 3 / 2), None);
    }

    #[test]
    fn an_excused_interval_starts_the_quiet_time_over() {
        let t0 = Instant::now();
        let mut w = watch();
        w.check(&[0], |_| LIMIT, t0);
        // Brokers down from t0 on: the consumer reports errors, no records.
        w.excuse(t0 + LIMIT / 2);
        assert_eq!(w.check(&[0], |_| LIMIT * 2, t0 + LIMIT), None);
        assert!(w.check(&[0], |_| LIMIT * 2, t0 + LIMIT * 3 / 2).is_some());
    }

    #[test]
    fn no_limit_never_reports() {
        let t0 = Instant::now();
        let mut w = FetchWatch::new(None);
        w.check(&[0], |_| LIMIT, t0);
        assert_eq!(w.check(&[0], |_| Duration::MAX, t0 + LIMIT * 100), None);
    }
}
