//! The engine: per-partition chain state, the open transaction's segments,
//! and turning routed records into output records and anchors.
//!
//! It is driven from one thread: the processor loop, and the consumer's
//! rebalance callbacks that run inside that loop's `poll`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use opentelemetry::KeyValue;
use rayon::prelude::*;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::chain::{self, Anchor, Hash, TenantHead};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::KeySet;
use crate::metrics::{Metrics, OutcomeLabel, ReasonLabel, ResultLabel};
use crate::records::{AnchorBatch, ChainedRecord, Header, QuarantineRecord};
use crate::route::{self, Decoders, Input, Reason, Verdict, KEY_ID_HEADER, SIG_HEADER};
use crate::sink::Sink;
use crate::state::{self, ChainHead, PartitionState};
use crate::telemetry::{self, Traces, TxnLinks, TxnOutcome, TxnSpan};

/// Schema ids written in the framing of output records.
#[derive(Debug, Clone, Copy)]
pub struct OutputSchemaIds {
    /// `ChainedRecord`.
    pub chained: u32,
    /// `QuarantineRecord`.
    pub quarantine: u32,
    /// `AnchorBatch`.
    pub anchor: u32,
}

/// What one transaction adds for one input partition.
#[derive(Debug, Default)]
struct Segment {
    leaves: Vec<Hash>,
    first_offset: u64,
    last_offset: u64,
    chained: u64,
    quarantined: u64,
    grown: BTreeSet<String>,
    /// Quarantined by reason, counted into the metrics at commit.
    reasons: BTreeMap<Reason, u64>,
    /// Input timestamps, for the end-to-end latency at commit.
    timestamps_ms: Vec<i64>,
    /// New chains of tenants held on another partition, counted at commit.
    tenants_elsewhere: u64,
}

/// What a transaction span reports of the transaction.
#[derive(Debug)]
struct TxnSummary {
    partitions: Vec<i32>,
    chained: u64,
    quarantined: u64,
    records: u64,
}

/// Counters since start, for logs and tests.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Records appended to chains.
    pub chained: u64,
    /// Records quarantined, by reason.
    pub quarantined: BTreeMap<Reason, u64>,
    /// Anchors written.
    pub anchors: u64,
    /// Committed transactions.
    pub commits: u64,
    /// Aborted transactions.
    pub aborts: u64,
    /// Tenants that appeared on a second partition of this instance.
    pub tenants_on_several_partitions: u64,
}

/// A partition this instance owns and has restored.
#[derive(Debug)]
struct Owned {
    state: PartitionState,
    /// Next input offset to process; records below it were processed
    /// already (a refetch after a rebalance) and are skipped.
    next_offset: Option<i64>,
}

/// The engine.
pub struct Engine {
    config: Arc<Config>,
    signing_key: SigningKey,
    schema_ids: OutputSchemaIds,
    sink: Sink,
    owned: HashMap<i32, Owned>,
    segments: BTreeMap<i32, Segment>,
    txn_started: Option<Instant>,
    /// Wall-clock twin of `txn_started`, for the transaction span.
    txn_started_at: Option<SystemTime>,
    txn_records: usize,
    /// The open transaction's links to its records' producer spans.
    txn_links: TxnLinks,
    traces: Traces,
    /// Set when the producer or a restore failed in a way only a fresh start
    /// (new producer, rejoin, restore) repairs.
    pub fatal: Option<Error>,
    /// Counters.
    pub stats: Stats,
    pool: rayon::ThreadPool,
    rt: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("owned", &self.owned.keys().collect::<Vec<_>>())
            .field("txn_records", &self.txn_records)
            .finish()
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Engine {
    /// A new engine with its own transactional producer.
    pub fn new(
        config: Arc<Config>,
        signing_key: SigningKey,
        schema_ids: OutputSchemaIds,
        rt: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
        traces: Traces,
    ) -> Result<Engine> {
        let sink = Sink::new(
            &config,
            rt.block_on(crate::kafka::output_record_limit(&config))?,
        )?;
        metrics.set_producer_ready(true);
        let threads = match config.processing.verify_threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("verify-{i}"))
            .build()
            .map_err(|e| Error::State(format!("starting the verification pool: {e}")))?;
        Ok(Engine {
            config,
            signing_key,
            schema_ids,
            sink,
            owned: HashMap::new(),
            segments: BTreeMap::new(),
            txn_started: None,
            txn_started_at: None,
            txn_records: 0,
            txn_links: traces.links(),
            traces,
            fatal: None,
            stats: Stats::default(),
            pool,
            rt,
            metrics,
        })
    }

    /// Partitions owned and restored.
    pub fn owned_partitions(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.owned.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Restores `partitions` from the state topic and takes ownership.
    /// `committed` gives each partition's committed input offset, if any.
    pub fn assign(&mut self, partitions: &[i32], committed: &HashMap<i32, i64>) -> Result<()> {
        let started = Instant::now();
        let span = self.traces.enter(
            telemetry::RESTORE_SPAN,
            vec![
                KeyValue::new(
                    "messaging.destination.name",
                    self.config.topics.input.clone(),
                ),
                KeyValue::new(
                    "auditchain.partitions",
                    telemetry::partitions_value(partitions),
                ),
            ],
        );
        self.metrics.set_restoring(true);
        let result = self.restore(partitions, committed);
        if let Some(span) = &span {
            match &result {
                Ok(tenants) => {
                    span.set_attributes(vec![KeyValue::new("auditchain.tenants", *tenants as i64)])
                }
                Err(e) => span.fail(e),
            }
        }
        self.metrics.set_restoring(false);
        self.metrics
            .restore_seconds
            .observe(started.elapsed().as_secs_f64());
        self.update_gauges();
        result.map(|_| ())
    }

    /// Returns the number of tenants restored.
    fn restore(&mut self, partitions: &[i32], committed: &HashMap<i32, i64>) -> Result<usize> {
        let started = Instant::now();
        if let Some(max) = partitions.iter().max() {
            let needed = *max as usize + 1;
            let grown = self
                .rt
                .block_on(crate::kafka::ensure_output_partitions(&self.config, needed))?;
            if !grown.is_empty() {
                tracing::info!(topics = ?grown, partitions = needed, "the input topic grew: output topics grown to match");
            }
        }
        let restored = state::restore(&self.config, partitions)?;
        let tenants: usize = restored.values().map(|s| s.tenants.len()).sum();
        for (p, state) in restored {
            self.owned.insert(
                p,
                Owned {
                    state,
                    next_offset: committed.get(&p).copied(),
                },
            );
        }
        tracing::info!(
            partitions = ?partitions,
            tenants,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "partitions restored"
        );
        Ok(tenants)
    }

    /// Forgets `partitions` (after their transaction was committed or aborted).
    pub fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.owned.remove(p);
        }
        self.update_gauges();
    }

    /// Forgets everything.
    pub fn revoke_all(&mut self) {
        self.owned.clear();
        self.update_gauges();
    }

    fn update_gauges(&self) {
        let tenants: usize = self.owned.values().map(|o| o.state.tenants.len()).sum();
        self.metrics.tenants.set(tenants as i64);
        self.metrics
            .assigned_partitions
            .set(self.owned.len() as i64);
    }

    /// Where this engine's spans go.
    pub fn traces(&self) -> &Traces {
        &self.traces
    }

    /// The metrics this engine reports to.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether the open transaction should be committed now.
    pub fn txn_due(&self) -> bool {
        match self.txn_started {
            None => false,
            Some(t) => {
                self.txn_records >= self.config.processing.max_batch_records
                    || t.elapsed()
                        >= Duration::from_millis(self.config.processing.commit_interval_ms)
            }
        }
    }

    /// Time left until the open transaction is due, if one is open.
    pub fn txn_remaining(&self) -> Option<Duration> {
        self.txn_started.map(|t| {
            Duration::from_millis(self.config.processing.commit_interval_ms)
                .saturating_sub(t.elapsed())
        })
    }

    /// Routes and writes one batch of input records in the open transaction
    /// (opening one if needed). Records of partitions not owned, or below the
    /// partition's next offset, are skipped: they were fetched before a
    /// rebalance moved the partition or are refetches of processed records.
    pub fn process(
        &mut self,
        batch: &[BorrowedMessage<'_>],
        decoders: &Decoders,
        keys: &KeySet,
    ) -> Result<()> {
        let mut accepted: Vec<&BorrowedMessage<'_>> = Vec::with_capacity(batch.len());
        let mut next: HashMap<i32, i64> = HashMap::new();
        for m in batch {
            let p = m.partition();
            let Some(owned) = self.owned.get(&p) else {
                continue;
            };
            let floor = next
                .get(&p)
                .copied()
                .or(owned.next_offset)
                .unwrap_or(i64::MIN);
            if m.offset() < floor {
                continue;
            }
            next.insert(p, m.offset() + 1);
            accepted.push(m);
        }
        if accepted.is_empty() {
            return Ok(());
        }

        let max = self.config.processing.max_record_bytes;
        let routed: Vec<(Verdict, RecordHeaders)> = self.pool.install(|| {
            accepted
                .par_iter()
                .map(|m| {
                    let headers = RecordHeaders::read(m);
                    let input = Input {
                        key: m.key(),
                        value: m.payload(),
                        key_id: headers.first(KEY_ID_HEADER),
                        sig: headers.first(SIG_HEADER),
                    };
                    (route::route(&input, decoders, keys, max), headers)
                })
                .collect()
        });

        self.sink.ensure_open()?;
        if self.txn_started.is_none() {
            self.txn_started = Some(Instant::now());
            self.txn_started_at = Some(SystemTime::now());
        }
        for (m, (verdict, headers)) in accepted.iter().zip(routed) {
            self.write_one(m, verdict, headers)?;
        }
        self.txn_records += accepted.len();
        Ok(())
    }

    fn write_one(
        &mut self,
        m: &BorrowedMessage<'_>,
        verdict: Verdict,
        headers: RecordHeaders,
    ) -> Result<()> {
        let topic = self.config.topics.input.as_str();
        let p = m.partition();
        let offset = m.offset();
        let partition = p as u32;
        let source_offset = offset as u64;
        let timestamp = m.timestamp().to_millis().unwrap_or(-1);
        let value = m.payload().unwrap_or_default();
        let others_have = |tenant: &str, owned: &HashMap<i32, Owned>| {
            owned
                .iter()
                .any(|(q, o)| *q != p && o.state.tenants.contains_key(tenant))
        };
        let mut tenant_elsewhere = false;
        self.txn_links.add(&headers.pairs, p, offset);
        let owned = self
            .owned
            .get(&p)
            .ok_or_else(|| Error::State(format!("partition {p} is not owned")))?;
        let anchor_seq = owned.state.anchor.anchor_seq + 1;

        let leaf = match verdict {
            Verdict::Chain { tenant, key_id } => {
                let head = owned.state.tenants.get(&tenant).copied();
                if head.is_none() && others_have(&tenant, &self.owned) {
                    tenant_elsewhere = true;
                }
                let (seq, prev) = head.map_or((1, chain::ZERO), |h| (h.seq + 1, h.entry_hash));
                let digest = chain::event_digest(value);
                let entry = chain::entry_hash(
                    &tenant,
                    seq,
                    &prev,
                    &digest,
                    topic,
                    partition,
                    source_offset,
                );
                let record = ChainedRecord {
                    tenant_id: tenant.clone(),
                    seq,
                    prev_hash: prev,
                    entry_hash: entry,
                    event_digest: digest,
                    source_topic: topic.to_string(),
                    source_partition: partition,
                    source_offset,
                    source_timestamp_ms: timestamp,
                    key_id,
                    producer_sig: headers.first(SIG_HEADER).unwrap_or_default().to_vec(),
                    event: value.to_vec(),
                    anchor_seq,
                };
                let bytes = record.encode(self.schema_ids.chained)?;
                self.sink.send(
                    &self.config.topics.chained,
                    p,
                    Some(tenant.as_bytes()),
                    &bytes,
                    None,
                )?;
                if let Some(owned) = self.owned.get_mut(&p) {
                    owned.state.tenants.insert(
                        tenant.clone(),
                        ChainHead {
                            seq,
                            entry_hash: entry,
                        },
                    );
                }
                if tenant_elsewhere {
                    self.segments.entry(p).or_default().tenants_elsewhere += 1;
                    tracing::warn!(
                        tenant = %tenant,
                        partition = p,
                        "tenant seen on a second input partition: it gets a separate chain there (DESIGN.md §3)"
                    );
                }
                let seg = self.segments.entry(p).or_default();
                seg.chained += 1;
                seg.grown.insert(tenant);
                entry
            }
            Verdict::Quarantine { reason, detail } => {
                let key = m.key();
                let qh = chain::quarantine_hash(
                    topic,
                    partition,
                    source_offset,
                    key.unwrap_or_default(),
                    value,
                    reason.code(),
                );
                let detail = if headers.unreadable {
                    format!("{detail}; the record's header names are not UTF-8, so its headers could not be kept")
                } else {
                    detail
                };
                let record = QuarantineRecord {
                    reason,
                    detail,
                    source_topic: topic.to_string(),
                    source_partition: partition,
                    source_offset,
                    source_timestamp_ms: timestamp,
                    raw_key: key.map(<[u8]>::to_vec),
                    raw_value: m.payload().map(<[u8]>::to_vec),
                    headers: headers.pairs,
                    quarantine_hash: qh,
                    anchor_seq,
                };
                let bytes = record.encode(self.schema_ids.quarantine)?;
                self.sink
                    .send(&self.config.topics.quarantine, p, key, &bytes, None)?;
                let seg = self.segments.entry(p).or_default();
                seg.quarantined += 1;
                *seg.reasons.entry(reason).or_default() += 1;
                qh
            }
        };
        let seg = self.segments.entry(p).or_default();
        if seg.leaves.is_empty() {
            seg.first_offset = source_offset;
        }
        seg.last_offset = source_offset;
        seg.leaves.push(leaf);
        seg.timestamps_ms.push(timestamp);
        if let Some(owned) = self.owned.get_mut(&p) {
            owned.next_offset = Some(offset + 1);
        }
        Ok(())
    }

    /// Closes the open transaction: one signed anchor and the new chain heads
    /// per partition it touched, the consumer offsets, commit. On failure the
    /// caller decides by the error's class (abort and rewind, or start over).
    pub fn commit(&mut self, group: &ConsumerGroupMetadata) -> Result<()> {
        if !self.sink.is_open() {
            return Ok(());
        }
        let summary = self.traces.enabled().then(|| self.txn_summary());
        let result = self.commit_open(group);
        if let Some(summary) = summary {
            match &result {
                Ok(anchors) => self.report_txn(summary, *anchors, TxnOutcome::Committed),
                Err(e) => self.report_txn(summary, 0, TxnOutcome::Failed(e.to_string())),
            }
        }
        if result.is_ok() {
            self.txn_started_at = None;
        }
        result.map(|_| ())
    }

    /// Partitions and counts of the open transaction, before committing
    /// consumes its segments.
    fn txn_summary(&self) -> TxnSummary {
        TxnSummary {
            partitions: self.segments.keys().copied().collect(),
            chained: self.segments.values().map(|s| s.chained).sum(),
            quarantined: self.segments.values().map(|s| s.quarantined).sum(),
            records: self.txn_records as u64,
        }
    }

    /// Emits the transaction span (when tracing) once per transaction.
    fn report_txn(&mut self, summary: TxnSummary, anchors: u64, outcome: TxnOutcome) {
        let Some(started) = self.txn_started_at.take() else {
            return;
        };
        let links = std::mem::replace(&mut self.txn_links, self.traces.links());
        self.traces.transaction(TxnSpan {
            started,
            topic: &self.config.topics.input,
            group: &self.config.kafka.group_id,
            partitions: summary.partitions,
            records: summary.records,
            chained: summary.chained,
            quarantined: summary.quarantined,
            anchors,
            links,
            outcome,
        });
    }

    /// Writes anchors, heads and offsets and commits; returns the anchors written.
    fn commit_open(&mut self, group: &ConsumerGroupMetadata) -> Result<u64> {
        let topic = self.config.topics.input.clone();
        let mut offsets = TopicPartitionList::new();
        let segments = std::mem::take(&mut self.segments);
        let mut anchors = 0u64;
        for (p, seg) in &segments {
            let Some(owned) = self.owned.get_mut(p) else {
                return Err(Error::State(format!(
                    "partition {p} has records in the open transaction but is no longer owned"
                )));
            };
            let Some(root) = chain::merkle_root(&seg.leaves) else {
                continue;
            };
            let tenant_heads: Vec<TenantHead> = seg
                .grown
                .iter()
                .filter_map(|t| {
                    owned.state.tenants.get(t).map(|h| TenantHead {
                        tenant_id: t.clone(),
                        seq: h.seq,
                        entry_hash: h.entry_hash,
                    })
                })
                .collect();
            let anchor = Anchor {
                source_topic: topic.clone(),
                source_partition: *p as u32,
                anchor_seq: owned.state.anchor.anchor_seq + 1,
                prev_anchor_hash: owned.state.anchor.anchor_hash,
                first_offset: seg.first_offset,
                last_offset: seg.last_offset,
                chained_count: seg.chained,
                quarantined_count: seg.quarantined,
                merkle_root: root,
                tenant_heads,
                created_at_us: now_micros(),
                signer_key_id: self.config.signing.key_id.clone(),
            };
            let msg = anchor.message();
            let batch = AnchorBatch {
                anchor_hash: chain::hash::h(&msg),
                signature: chain::sign(&self.signing_key, &msg).to_vec(),
                processor_id: self.config.kafka.instance_id.clone(),
                anchor,
            };
            self.sink.send(
                &self.config.topics.anchors,
                *p,
                Some(batch.key().as_bytes()),
                &batch.encode(self.schema_ids.anchor)?,
                None,
            )?;
            owned.state.anchor = state::AnchorHead {
                anchor_seq: batch.anchor.anchor_seq,
                anchor_hash: batch.anchor_hash,
            };
            for head in &batch.anchor.tenant_heads {
                let (k, v) = state::tenant_record(
                    &topic,
                    &head.tenant_id,
                    &ChainHead {
                        seq: head.seq,
                        entry_hash: head.entry_hash,
                    },
                );
                self.sink
                    .send(&self.config.topics.state, *p, Some(k.as_bytes()), &v, None)?;
            }
            let (k, v) = state::anchor_record(&topic, &owned.state.anchor);
            self.sink
                .send(&self.config.topics.state, *p, Some(k.as_bytes()), &v, None)?;
            if let Some(next) = owned.next_offset {
                offsets
                    .add_partition_offset(&topic, *p, Offset::Offset(next))
                    .map_err(|e| Error::kafka("building the offsets to commit", e))?;
            }
            anchors += 1;
        }
        self.sink.commit(&offsets, group)?;
        self.stats.commits += 1;
        self.stats.anchors += anchors;
        let m = &self.metrics;
        m.transactions
            .get_or_create(&ResultLabel {
                result: "committed",
            })
            .inc();
        if let Some(started) = self.txn_started {
            m.transaction_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        m.anchors.inc_by(anchors);
        for seg in segments.values() {
            self.stats.chained += seg.chained;
            self.stats.tenants_on_several_partitions += seg.tenants_elsewhere;
            m.records
                .get_or_create(&OutcomeLabel { outcome: "chained" })
                .inc_by(seg.chained);
            m.records
                .get_or_create(&OutcomeLabel {
                    outcome: "quarantined",
                })
                .inc_by(seg.quarantined);
            m.tenants_on_several_partitions
                .inc_by(seg.tenants_elsewhere);
            for (reason, n) in &seg.reasons {
                *self.stats.quarantined.entry(*reason).or_default() += n;
                m.quarantined
                    .get_or_create(&ReasonLabel {
                        reason: reason.code(),
                    })
                    .inc_by(*n);
            }
            m.observe_committed(&seg.timestamps_ms);
        }
        self.update_gauges();
        tracing::debug!(
            records = self.txn_records,
            partitions = segments.len(),
            "transaction committed"
        );
        self.txn_started = None;
        self.txn_records = 0;
        Ok(anchors)
    }

    /// Aborts the open transaction and forgets everything it changed: the
    /// caller restores state and rewinds the consumer to the committed
    /// offsets before going on.
    pub fn abort(&mut self) -> Result<()> {
        if self.traces.enabled() {
            let summary = self.txn_summary();
            self.report_txn(summary, 0, TxnOutcome::Aborted);
        }
        self.txn_started_at = None;
        self.txn_links = self.traces.links();
        self.segments.clear();
        self.txn_started = None;
        self.txn_records = 0;
        let was_open = self.sink.is_open();
        self.sink.abort()?;
        if was_open {
            self.stats.aborts += 1;
            self.metrics
                .transactions
                .get_or_create(&ResultLabel { result: "aborted" })
                .inc();
        }
        Ok(())
    }

    /// Commits the consumer's position for owned partitions where it moved
    /// past the last processed record with nothing left to process: the
    /// commit markers (and aborted records) of a transactional upstream are
    /// offsets but not records, and without this the group's lag would stay
    /// at one per partition forever. Only called when no transaction is
    /// open and every polled record has been processed, so the gap holds no
    /// data. The offsets go in a transaction of their own, with no records
    /// and so no anchor.
    pub fn commit_past_markers(
        &mut self,
        positions: &HashMap<i32, i64>,
        group: &ConsumerGroupMetadata,
    ) -> Result<bool> {
        if self.sink.is_open() {
            return Ok(false);
        }
        let topic = self.config.topics.input.clone();
        let mut offsets = TopicPartitionList::new();
        let mut moved = Vec::new();
        for (p, owned) in &self.owned {
            if let (Some(pos), Some(next)) = (positions.get(p), owned.next_offset) {
                if *pos > next {
                    offsets
                        .add_partition_offset(&topic, *p, Offset::Offset(*pos))
                        .map_err(|e| Error::kafka("building the offsets to commit", e))?;
                    moved.push((*p, *pos));
                }
            }
        }
        if moved.is_empty() {
            return Ok(false);
        }
        self.sink.ensure_open()?;
        self.sink.commit(&offsets, group)?;
        for (p, pos) in moved {
            if let Some(owned) = self.owned.get_mut(&p) {
                owned.next_offset = Some(pos);
            }
        }
        Ok(true)
    }

    /// The input topic.
    pub fn owned_topic(&self) -> &str {
        &self.config.topics.input
    }

    /// Whether records are waiting in an open transaction.
    pub fn has_open_transaction(&self) -> bool {
        self.sink.is_open()
    }
}

/// A record's headers, copied out once.
///
/// rust-rdkafka turns header names into `&str` with an `unwrap()`, so a
/// producer sending a header name that is not UTF-8 would panic the
/// processor. The panic is contained here: such a record is treated as
/// having no headers (it is then quarantined as `MISSING_SIGNATURE`, with a
/// detail saying why its headers are not kept).
struct RecordHeaders {
    pairs: Vec<Header>,
    unreadable: bool,
}

impl RecordHeaders {
    fn read(m: &BorrowedMessage<'_>) -> RecordHeaders {
        let copy = || {
            m.headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default()
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(copy)) {
            Ok(pairs) => RecordHeaders {
                pairs,
                unreadable: false,
            },
            Err(_) => RecordHeaders {
                pairs: Vec::new(),
                unreadable: true,
            },
        }
    }

    /// The first header called `name` with a value.
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}
