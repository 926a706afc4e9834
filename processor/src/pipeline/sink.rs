//! The transactional sink: one idempotent, transactional producer per
//! instance, writing every output record to an explicit partition.
//!
//! librdkafka's transaction calls block (DESIGN.md §3), so the sink is only
//! used from the processor's own thread, never from an async worker.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, NoCustomPartitioner, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, TopicPartitionList};

use crate::config::Config;
use crate::error::{Error, ErrorClass, Result};
use crate::faults::{CommitCause, FaultPoint, Faults};
use crate::kafka::base_client_config;

/// How long a blocking transaction call may take. Longer than the
/// transaction timeout: the broker aborts a transaction that outlives it.
pub const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a retriable `send_offsets_to_transaction` or
/// `commit_transaction` is called again before giving up.
const TXN_CALL_RETRIES: u32 = 5;

/// Longest wait between two looks at the producer's queue while waiting
/// for deliveries: a delivery report wakes the waiter, and the queue
/// shrinks only just after the report has been handled.
const DELIVERY_RECHECK: Duration = Duration::from_millis(1);

/// Wakes a thread waiting for deliveries whenever a delivery report comes
/// in (on the producer's polling thread).
#[derive(Debug, Default)]
pub struct DeliveryWaker {
    reports: Mutex<u64>,
    delivered: Condvar,
}

impl ClientContext for DeliveryWaker {}

impl ProducerContext<NoCustomPartitioner> for DeliveryWaker {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {
        let mut reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
        *reports = reports.wrapping_add(1);
        self.delivered.notify_all();
    }
}

/// The transactional producer.
pub struct Sink {
    producer: ThreadedProducer<DeliveryWaker>,
    open: bool,
    /// Whether this transaction's offsets were accepted by the coordinator:
    /// a commit is never attempted without them.
    offsets_sent: bool,
    faults: Option<Arc<Faults>>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("open", &self.open).finish()
    }
}

impl Sink {
    /// Creates the producer and initialises transactions, which fences any
    /// earlier producer with the same transactional id and aborts its open
    /// transaction. The producer's `message.max.bytes` is
    /// `max_output_record_bytes`, the output limit derived from the input
    /// topic (`kafka::TopicReport`); the raw `[librdkafka]` options are
    /// applied after it and may raise it (start-up refuses a lower one).
    pub fn new(
        config: &Config,
        faults: Option<Arc<Faults>>,
        max_output_record_bytes: usize,
    ) -> Result<Sink> {
        let mut cc =
            base_client_config(config, &format!("auditchain-{}", config.kafka.instance_id));
        cc.set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("message.max.bytes", max_output_record_bytes.to_string())
            .set(
                "queue.buffering.max.kbytes",
                (config.processing.producer_queue_bytes / 1024).to_string(),
            );
        for (k, v) in &config.librdkafka {
            cc.set(k, v);
        }
        cc.set("transactional.id", config.transactional_id())
            .set("enable.idempotence", "true")
            .set(
                "transaction.timeout.ms",
                config.kafka.transaction_timeout_ms.to_string(),
            );
        let producer: ThreadedProducer<DeliveryWaker> = cc
            .create_with_context(DeliveryWaker::default())
            .map_err(|e| Error::kafka("creating the transactional producer", e))?;
        producer.init_transactions(TXN_CALL_TIMEOUT).map_err(|e| {
            Error::kafka(
                format!(
                    "initialising transactions for transactional.id `{}` on {}",
                    config.transactional_id(),
                    config.kafka.bootstrap_servers
                ),
                e,
            )
        })?;
        Ok(Sink {
            producer,
            open: false,
            offsets_sent: false,
            faults,
        })
    }

    /// Whether a transaction is open.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Begins a transaction if none is open.
    pub fn ensure_open(&mut self) -> Result<()> {
        if !self.open {
            self.inject(FaultPoint::Begin, None, "beginning a transaction")?;
            self.producer
                .begin_transaction()
                .map_err(|e| Error::kafka("beginning a transaction", e))?;
            self.open = true;
            self.offsets_sent = false;
        }
        Ok(())
    }

    /// Fails with the planned fault for this call, if there is one.
    fn inject(&self, point: FaultPoint, cause: Option<CommitCause>, context: &str) -> Result<()> {
        match self.faults.as_ref().and_then(|f| f.take(point, cause)) {
            Some(e) => Err(Error::kafka(format!("{context} (injected)"), e)),
            None => Ok(()),
        }
    }

    /// Queues one record for `topic`/`partition` in the open transaction,
    /// waiting for room when librdkafka's queue is full.
    pub fn send(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<()> {
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).partition(partition).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        self.inject(
            FaultPoint::Produce,
            None,
            &format!("producing to `{topic}` partition {partition}"),
        )?;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    // Backpressure: wait for deliveries to make room.
                    let _ = self.producer.flush(Duration::from_millis(100));
                }
                Err((e, _)) => {
                    return Err(Error::kafka(
                        format!("producing to `{topic}` partition {partition}"),
                        e,
                    ))
                }
            }
        }
    }

    /// Adds the consumer offsets to the transaction and commits it, the way
    /// librdkafka's `examples/transactions.c` does: a retriable failure of
    /// either call is retried as it is; the commit is never attempted
    /// before the offsets were accepted, so a transaction can never commit
    /// its outputs without its offsets. Any other failure is returned for
    /// the caller to abort (or, when fatal, to start over). May be called
    /// again after a failure: offsets already accepted are not sent twice.
    pub fn commit(
        &mut self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
        cause: CommitCause,
    ) -> Result<()> {
        if !self.open {
            return Ok(());
        }
        if !self.offsets_sent && offsets.count() > 0 {
            retrying("sending offsets to the transaction", || {
                self.inject(
                    FaultPoint::SendOffsets,
                    Some(cause),
                    "sending offsets to the transaction",
                )?;
                self.producer
                    .send_offsets_to_transaction(offsets, group, TXN_CALL_TIMEOUT)
                    .map_err(|e| Error::kafka("sending offsets to the transaction", e))
            })?;
        }
        self.offsets_sent = true;
        self.wait_for_deliveries(TXN_CALL_TIMEOUT);
        let committed = retrying("committing the transaction", || {
            self.inject(
                FaultPoint::Commit,
                Some(cause),
                "committing the transaction",
            )?;
            self.producer
                .commit_transaction(TXN_CALL_TIMEOUT)
                .map_err(|e| Error::kafka("committing the transaction", e))
        });
        match committed {
            Ok(()) => {
                self.open = false;
                Ok(())
            }
            // Still retriable after every retry: whether the commit happened
            // is unknown, and DESIGN.md §3 says re-initialise, not guess.
            Err(e) if e.class() == Some(ErrorClass::Retriable) => {
                Err(Error::OutcomeUnknown(e.to_string()))
            }
            Err(e) => Err(e),
        }
    }

    /// Waits until every queued record was delivered (or `limit` passed).
    /// rust-rdkafka's `commit_transaction` flushes first, and its flush polls
    /// in steps that each last a full 100 ms whenever anything is still in
    /// flight, which the anchors and state records written just before a
    /// commit always are: 100 ms added to every commit, each one end-to-end
    /// latency and a pause of the writing loop. Waiting here, woken by each
    /// delivery report, leaves that flush nothing to wait for.
    fn wait_for_deliveries(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let waker = self.producer.context();
        let mut reports = waker.reports.lock().unwrap_or_else(PoisonError::into_inner);
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            reports = waker
                .delivered
                .wait_timeout(reports, DELIVERY_RECHECK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Aborts the open transaction, if any.
    pub fn abort(&mut self) -> Result<()> {
        if !self.open {
            return Ok(());
        }
        self.producer
            .abort_transaction(TXN_CALL_TIMEOUT)
            .map_err(|e| Error::kafka("aborting the transaction", e))?;
        self.open = false;
        Ok(())
    }

    /// Asks the cluster for the current metadata of `topics`, so records
    /// can go to partitions added since the producer last refreshed
    /// (librdkafka's own refresh is every five minutes).
    pub fn refresh_metadata(&self, topics: &[&str]) -> Result<()> {
        for topic in topics {
            self.producer
                .client()
                .fetch_metadata(Some(topic), TXN_CALL_TIMEOUT)
                .map_err(|e| Error::kafka(format!("refreshing the metadata of `{topic}`"), e))?;
        }
        Ok(())
    }
}

/// Calls `f` until it succeeds, fails with an error that is not retriable,
/// or has been retried `TXN_CALL_RETRIES` times.
fn retrying(what: &str, mut f: impl FnMut() -> Result<()>) -> Result<()> {
    let mut attempt = 0;
    loop {
        match f() {
            Err(e) if e.class() == Some(ErrorClass::Retriable) && attempt < TXN_CALL_RETRIES => {
                attempt += 1;
                tracing::warn!(error = %e, attempt, "{what}: retriable error, calling it again");
                // Give a moving coordinator a moment; not synchronisation.
                std::thread::sleep(Duration::from_millis(100 * u64::from(attempt)));
            }
            other => return other,
        }
    }
}

/// Builds headers from pairs (used by tools that re-publish records).
pub fn headers_from<'a>(pairs: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>) -> OwnedHeaders {
    pairs.fold(OwnedHeaders::new(), |h, (key, value)| {
        h.insert(Header { key, value })
    })
}
