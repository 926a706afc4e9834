//! The paced producer: signed events at a fixed offered rate.
//!
//! Events are signed before the clock starts (the SDK's `Signer`, as a
//! service would sign them) and sent round-robin from that pool, so signing
//! costs no CPU while the system under test runs; the processor does not
//! deduplicate, and each copy gets its own chain entry. The record's
//! timestamp is set by librdkafka when the record is handed to it, which
//! is the "produce time" the probe measures from. Producer settings are the
//! SDK's (`murmur2_random` so a tenant has one partition, `linger.ms` 5,
//! idempotent, `acks=all`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use auditchain_producer::{AuditEvent, SignedRecord, Signer, SigningKey};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::kafka::client;

/// Counts deliveries.
#[derive(Debug, Default)]
pub struct Deliveries {
    /// Acknowledged by the broker.
    pub ok: AtomicU64,
    /// Failed.
    pub failed: AtomicU64,
}

/// The producer's context: delivery counts.
#[derive(Debug, Clone, Default)]
pub struct Counting(pub Arc<Deliveries>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        match result {
            Ok(_) => self.0.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.0.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// A pool of signed events and a producer to send them.
pub struct Pacer {
    producer: ThreadedProducer<Counting>,
    pool: Vec<SignedRecord>,
    topic: String,
    next: usize,
    /// Deliveries so far.
    pub deliveries: Arc<Deliveries>,
    /// Records handed to the producer so far.
    pub sent: u64,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("topic", &self.topic)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

/// What one paced step did.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Records sent.
    pub sent: u64,
    /// Wall time of the step.
    pub elapsed: Duration,
}

impl Pacer {
    /// Signs `pool` events over `tenants` tenants with `payload` bytes each.
    pub fn new(
        bootstrap: &str,
        topic: &str,
        key: SigningKey,
        tenants: usize,
        payload: usize,
        pool: usize,
    ) -> Result<Pacer> {
        let signer = Signer::new(key, 1);
        let mut records = Vec::with_capacity(pool);
        for i in 0..pool {
            let tenant = format!("lat-{}", i % tenants.max(1));
            let mut event = AuditEvent::new(
                &tenant,
                format!("user-{}", i % 97),
                "document.read",
                "doc/1",
            );
            event.payload = Some(vec![b'x'; payload]);
            records.push(signer.record(&event).context("signing an event")?);
        }
        let deliveries = Arc::new(Deliveries::default());
        let producer: ThreadedProducer<Counting> = client(bootstrap, "auditchain-bench-pacer")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create_with_context(Counting(Arc::clone(&deliveries)))
            .context("creating the paced producer")?;
        Ok(Pacer {
            producer,
            pool: records,
            topic: topic.to_string(),
            next: 0,
            deliveries,
            sent: 0,
        })
    }

    /// Sends at `rate` records/s for `duration`: record i goes at
    /// `start + i / rate`, checked every millisecond.
    pub fn run(&mut self, rate: f64, duration: Duration) -> Result<Step> {
        let started = Instant::now();
        let mut sent = 0u64;
        loop {
            let elapsed = started.elapsed();
            if elapsed >= duration {
                break;
            }
            let due = (elapsed.as_secs_f64() * rate) as u64;
            while sent < due {
                self.send_one()?;
                sent += 1;
            }
            // Pacing, not synchronisation: 1 ms granularity is far below
            // the latencies measured.
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Step {
            sent,
            elapsed: started.elapsed(),
        })
    }

    fn send_one(&mut self) -> Result<()> {
        let r = &self.pool[self.next % self.pool.len()];
        self.next += 1;
        let mut record: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(&self.topic)
            .key(r.key.as_slice())
            .payload(r.value.as_slice())
            .headers(r.headers.clone());
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    // The queue drains on the producer's own thread.
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("producing a paced event: {e}"),
            }
        }
        self.sent += 1;
        Ok(())
    }

    /// Waits until everything sent is delivered.
    pub fn flush(&self) -> Result<()> {
        self.producer
            .flush(Duration::from_secs(60))
            .context("flushing the paced producer")
    }
}
