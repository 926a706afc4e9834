//! The probe: a `read_committed` consumer of an output topic, outside the
//! system under test. It sees a record when its transaction committed,
//! which is when a downstream reader could first see it.
//!
//! * [`Mode::First`] notes when the first record became visible, then stops
//!   reading (reading the whole drain would take broker CPU from the run).
//! * [`Mode::Latency`] decodes every `ChainedRecord` (Confluent-framed Avro
//!   against the processor's compiled-in `ChainedRecord.avsc`) and records
//!   `now − source_timestamp_ms`: produce time (the input record's
//!   timestamp, set by the producer when it sent it) to visible. It decodes
//!   with the schema, not with `records::ChainedRecord::decode`, whose
//!   auditchain-specific checks (no negative `anchor_seq`) the Kafka
//!   Streams peer's records (anchor_seq -1: it writes no anchors) fail;
//!   both systems' records cost the probe the same.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use auditchain::kafka::QuietContext;
use auditchain::schema::{schemas, split_frame};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{client, partitions};

/// What the probe keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only the moment the first record was visible.
    First,
    /// Every record's latency.
    Latency,
}

/// One record seen: its produce time and its latency.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// The input record's timestamp, ms since the epoch.
    pub source_ms: i64,
    /// Visible minus produced, ms.
    pub latency_ms: f64,
}

/// What the probe saw, shared with its thread.
#[derive(Debug, Default)]
pub struct Seen {
    /// When the first record became visible.
    pub first: Mutex<Option<Instant>>,
    /// Records seen.
    pub records: AtomicU64,
    /// Records that did not decode as `ChainedRecord`.
    pub undecodable: AtomicU64,
    /// Latency samples (latency mode).
    pub samples: Mutex<Vec<Sample>>,
}

/// A running probe.
#[derive(Debug)]
pub struct Probe {
    stop: Arc<AtomicBool>,
    /// What it saw so far.
    pub seen: Arc<Seen>,
    thread: Option<JoinHandle<Result<()>>>,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

impl Probe {
    /// Starts reading every partition of `topic` from the beginning.
    pub fn start(bootstrap: &str, topic: &str, mode: Mode) -> Result<Probe> {
        let consumer: BaseConsumer<QuietContext> = client(bootstrap, "auditchain-bench-probe")
            // Never committed: the group id only satisfies librdkafka.
            .set("group.id", format!("auditchain-bench-probe-{topic}"))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            // Deliver what arrived at once: the probe measures latency.
            .set("fetch.wait.max.ms", "10")
            .create_with_context(QuietContext)
            .context("creating the probe consumer")?;
        let n = partitions(&consumer, topic)?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .context("assigning the probe")?;
        }
        consumer.assign(&tpl).context("assigning the probe")?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let thread = {
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            std::thread::Builder::new()
                .name("probe".into())
                .spawn(move || read(&consumer, mode, &stop, &seen))
                .context("starting the probe thread")?
        };
        Ok(Probe {
            stop,
            seen,
            thread: Some(thread),
        })
    }

    /// When the first record was visible, if yet.
    pub fn first(&self) -> Option<Instant> {
        self.seen.first.lock().ok().and_then(|g| *g)
    }

    /// Records seen so far.
    pub fn records(&self) -> u64 {
        self.seen.records.load(Ordering::Relaxed)
    }

    /// Stops the probe and returns what it saw.
    pub fn finish(mut self) -> Result<Arc<Seen>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow!("the probe thread panicked"))??;
        }
        Ok(Arc::clone(&self.seen))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The `source_timestamp_ms` of a framed `ChainedRecord`.
fn source_timestamp(reader: &GenericDatumReader<'_>, value: &[u8]) -> Option<i64> {
    let (_, mut body) = split_frame(value)?;
    let Value::Record(fields) = reader.read_value(&mut body).ok()? else {
        return None;
    };
    fields.into_iter().find_map(|(name, v)| match v {
        Value::Long(t) if name == "source_timestamp_ms" => Some(t),
        _ => None,
    })
}

fn read(
    consumer: &BaseConsumer<QuietContext>,
    mode: Mode,
    stop: &AtomicBool,
    seen: &Seen,
) -> Result<()> {
    let mut local: Vec<Sample> = Vec::new();
    let reader = GenericDatumReader::builder(&schemas().chained_record)
        .build()
        .context("building a ChainedRecord reader")?;
    while !stop.load(Ordering::Relaxed) {
        let Some(result) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let Ok(m) = result else {
            // Partition EOF and transient fetch errors: keep reading.
            continue;
        };
        let at = now_ms();
        if let Ok(mut first) = seen.first.lock() {
            first.get_or_insert_with(Instant::now);
        }
        seen.records.fetch_add(1, Ordering::Relaxed);
        match mode {
            Mode::First => return Ok(()),
            Mode::Latency => match m.payload().and_then(|v| source_timestamp(&reader, v)) {
                Some(t) => local.push(Sample {
                    source_ms: t,
                    latency_ms: at - t as f64,
                }),
                None => {
                    seen.undecodable.fetch_add(1, Ordering::Relaxed);
                }
            },
        }
        // Hand samples over in chunks so the lock is rarely taken.
        if local.len() >= 1024 {
            if let Ok(mut s) = seen.samples.lock() {
                s.append(&mut local);
            }
        }
    }
    if let Ok(mut s) = seen.samples.lock() {
        s.append(&mut local);
    }
    Ok(())
}
