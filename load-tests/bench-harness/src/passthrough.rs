//! The EOS passthrough baseline: consume → transactional produce →
//! `send_offsets_to_transaction` → commit, copying every record unchanged
//! (key, value, headers) to the same partition of an output topic. No
//! decoding, hashing or signatures: what Kafka itself allows on this
//! machine with auditchain's client settings.
//!
//! It is auditchain's loop with the work taken out: the producer is the
//! processor's own [`Sink`] (same librdkafka settings: `linger.ms`, lz4,
//! idempotence, transaction timeout, queue size), the consumer gets the same
//! settings as the processor's (`processor.rs`, `new_consumer`: that builder
//! is private, so its role-specific properties are repeated here), records
//! are polled in micro-batches of the processor's size, and transactions
//! close on the processor's defaults: `commit_interval_ms` or
//! `max_batch_records`, whichever comes first. One instance only: a
//! rebalance mid-transaction is not handled (the bench never causes one).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use auditchain::config::Config;
use auditchain::faults::CommitCause;
use auditchain::kafka::{max_output_record_bytes, QuietContext};
use auditchain::processor::{consumer_config, MAX_POLL, MICRO_BATCH};
use auditchain::sink::Sink;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

/// The broker's default `max.message.bytes` (1 MiB plus log overhead): the
/// processor derives its producer's `message.max.bytes` from the input
/// topic's, which the bench leaves at the default.
pub const BROKER_DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// What to copy where.
#[derive(Debug, Clone)]
pub struct Args {
    /// Bootstrap servers.
    pub bootstrap: String,
    /// Input topic.
    pub input: String,
    /// Output topic (as many partitions as the input).
    pub output: String,
    /// Consumer group, also the transactional id's prefix.
    pub group: String,
}

/// A processor configuration with the bench's topics and auditchain's
/// defaults for everything else (commit interval, batch size, client
/// settings), with `AUDITCHAIN__*` overrides from the environment applied
/// as the processor would. Key files are named but never read.
pub fn config(args: &Args) -> Result<Config> {
    let text = format!(
        "[kafka]\nbootstrap_servers = {bootstrap:?}\ngroup_id = {group:?}\ninstance_id = \"passthrough-1\"\n\
         [topics]\ninput = {input:?}\nchained = {output:?}\nanchors = \"{output}.unused-anchors\"\n\
         quarantine = \"{output}.unused-quarantine\"\nstate = \"{output}.unused-state\"\n\
         [signing]\nkey_file = \"unused.secret\"\nkey_id = \"unused\"\n\
         [producer_keys]\nfile = \"unused.toml\"\n",
        bootstrap = args.bootstrap,
        group = args.group,
        input = args.input,
        output = args.output,
    );
    Config::from_toml_with_env(&text, std::env::vars()).context("building the passthrough config")
}

fn consumer(config: &Config) -> Result<BaseConsumer<QuietContext>> {
    consumer_config(config)
        .create_with_context(QuietContext)
        .context("creating the passthrough consumer")
}

/// Copies until `stop` is set, then commits what is open and returns the
/// number of records copied.
pub fn run(args: &Args, stop: &Arc<AtomicBool>) -> Result<u64> {
    let config = config(args)?;
    let limit = max_output_record_bytes(BROKER_DEFAULT_MAX_MESSAGE_BYTES);
    let mut sink = Sink::new(&config, None, limit).context("creating the transactional sink")?;
    let consumer = consumer(&config)?;
    consumer
        .subscribe(&[&config.topics.input])
        .with_context(|| format!("subscribing to `{}`", config.topics.input))?;
    let interval = Duration::from_millis(config.processing.commit_interval_ms);
    let max_records = config.processing.max_batch_records;
    let max_bytes = config.processing.max_batch_bytes;
    let mut txn: Option<(Instant, usize)> = None;
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut copied = 0u64;
    let mut batch: Vec<BorrowedMessage<'_>> = Vec::with_capacity(MICRO_BATCH);
    loop {
        batch.clear();
        let stopping = stop.load(Ordering::Relaxed);
        if !stopping {
            let mut timeout = txn.map_or(MAX_POLL, |(t, _)| {
                interval.saturating_sub(t.elapsed()).min(MAX_POLL)
            });
            let mut bytes = 0usize;
            while batch.len() < MICRO_BATCH && bytes < max_bytes {
                match consumer.poll(timeout) {
                    None => break,
                    Some(Ok(m)) => {
                        bytes += m.payload_len() + m.key().map_or(0, <[u8]>::len);
                        batch.push(m);
                    }
                    Some(Err(e)) => {
                        eprintln!("passthrough: consumer error: {e}");
                        break;
                    }
                }
                timeout = Duration::ZERO;
            }
        }
        if !batch.is_empty() {
            sink.ensure_open().context("beginning a transaction")?;
            let (_, records) = txn.get_or_insert_with(|| (Instant::now(), 0));
            for m in &batch {
                let headers = m.headers().map(|h| h.detach());
                sink.send(
                    &config.topics.chained,
                    m.partition(),
                    m.key(),
                    m.payload().unwrap_or_default(),
                    headers,
                )
                .context("producing a copy")?;
                next.insert(m.partition(), m.offset() + 1);
            }
            *records += batch.len();
            copied += batch.len() as u64;
        }
        let due = txn.is_some_and(|(t, n)| n >= max_records || t.elapsed() >= interval);
        if txn.is_some() && (due || stopping) {
            let mut offsets = TopicPartitionList::new();
            for (p, o) in &next {
                offsets
                    .add_partition_offset(&config.topics.input, *p, Offset::Offset(*o))
                    .context("building the offsets to commit")?;
            }
            let group = consumer
                .group_metadata()
                .context("the consumer has no group metadata")?;
            sink.commit(&offsets, &group, CommitCause::Due)
                .context("committing a transaction")?;
            next.clear();
            txn = None;
        }
        if stopping {
            return Ok(copied);
        }
    }
}
