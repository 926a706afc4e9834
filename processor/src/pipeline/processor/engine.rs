//! The engine: the committed chain state of each owned partition, the
//! open transaction ([`Txn`]), and the Kafka side of turning routed records
//! into output records and anchors.
//!
//! It is driven from one thread: the processor loop, and the consumer's
//! rebalance callbacks that run inside that loop's `poll`. Callbacks only
//! record what happened (partitions to restore, partitions gone); restores
//! run from the loop, never inside a callback and never while a transaction
//! is open (DESIGN.md §3).
//!
//! Every abort goes through [`Engine::abort`]: the open transaction is
//! dropped, and every owned partition is marked to be rewound to its
//! committed next offset before any of its records is processed again.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use opentelemetry::KeyValue;
use rayon::prelude::*;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::txn::{self, Pending, Sealed, Txn};
use crate::chain;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::faults::{CommitCause, Faults};
use crate::keys::KeySet;
use crate::metrics::{Metrics, OutcomeLabel, ReasonLabel, ResultLabel};
use crate::rebuild;
use crate::records::{AnchorBatch, ChainedRecord, Header, QuarantineRecord};
use crate::route::{self, Decoders, Input, Verdict, KEY_ID_HEADER, SIG_HEADER};
use crate::sink::Sink;
use crate::state::{self, AnchorHead, PartitionState};
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

/// What the engine writes to: framing schema ids and the largest record
/// the output topics and the producer accept.
#[derive(Debug, Clone, Copy)]
pub struct Outputs {
    /// Schema ids of the output records.
    pub schema_ids: OutputSchemaIds,
    /// Output records must stay under this many bytes (the producer's
    /// `message.max.bytes`).
    pub max_record_bytes: usize,
    /// Anchors must stay under this many bytes (the anchors topic's limit).
    pub max_anchor_bytes: usize,
    /// State records must stay under this many bytes (the state topic's).
    pub max_state_bytes: usize,
    /// Partitions every output topic had at start-up (at least the input's).
    pub partitions: usize,
}

/// A partition this instance owns and has restored: its committed state.
#[derive(Debug)]
struct Owned {
    state: PartitionState,
    /// Next input offset to process as of the last commit; records below
    /// it were processed already (a refetch) and are skipped.
    next_offset: Option<i64>,
    /// The state topic does not show it holds every head (the state was
    /// rebuilt from the trail, or the partition is new): the partition's
    /// next transaction writes every tenant head after a `w` record.
    rewrite_heads: bool,
}

/// Where the consumer must go before a partition's records count again.
pub type Rewind = (i32, Offset);

/// Longest wait between two attempts at a restore that failed.
const MAX_RESTORE_BACKOFF: Duration = Duration::from_secs(30);

/// A record routed ahead of writing: its index in the batch, its verdict
/// and its headers.
#[allow(missing_debug_implementations)] // holds a record's headers
pub struct Routed {
    index: usize,
    verdict: Verdict,
    headers: RecordHeaders,
}

/// Routes records on the verification pool. It reads no engine state
/// (routing is a pure function of the record, the schemas and the key set),
/// so it runs while the engine commits.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // a thread pool
pub struct Router {
    pool: Arc<rayon::ThreadPool>,
    max_record_bytes: usize,
}

impl Router {
    /// The verification pool.
    pub fn pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }

    /// Decodes and checks the records of `batch` at `indexes` (from
    /// [`Engine::accept`]) in parallel.
    pub fn route(
        &self,
        batch: &[BorrowedMessage<'_>],
        indexes: &[usize],
        decoders: &Decoders,
        keys: &KeySet,
    ) -> Vec<Routed> {
        self.pool.install(|| {
            indexes
                .par_iter()
                .map(|i| {
                    let m = &batch[*i];
                    let headers = RecordHeaders::read(m);
                    let input = Input {
                        key: m.key(),
                        value: m.payload(),
                        key_id: headers.first(KEY_ID_HEADER),
                        sig: headers.first(SIG_HEADER),
                    };
                    Routed {
                        index: *i,
                        verdict: route::route(&input, decoders, keys, self.max_record_bytes),
                        headers,
                    }
                })
                .collect()
        })
    }
}

/// The engine.
pub struct Engine {
    config: Arc<Config>,
    signing_key: SigningKey,
    schema_ids: OutputSchemaIds,
    sink: Sink,
    owned: HashMap<i32, Owned>,
    txn: Option<Txn>,
    /// Owned partitions whose consumer position is ahead of what they
    /// committed (after an abort, or a restore): their records are ignored
    /// until the loop has sought them back.
    rewind: BTreeSet<i32>,
    /// Assigned partitions waiting for their restore.
    unrestored: BTreeSet<i32>,
    restore_backoff: Duration,
    restore_not_before: Option<Instant>,
    /// The span context of the assignment a pending restore belongs to.
    restore_parent: Option<opentelemetry::Context>,
    /// Bytes the tenant heads of one anchor may take.
    anchor_head_budget: usize,
    /// The largest output record the topics and the producer accept.
    output_limit: usize,
    /// The longest tenant id whose head fits a state record and an anchor.
    max_tenant_bytes: usize,
    /// Partitions every output topic is known to have.
    output_partitions: usize,
    /// Aborts since the last successful commit.
    consecutive_aborts: u32,
    /// The open transaction's links to its records' producer spans.
    txn_links: TxnLinks,
    traces: Traces,
    /// Set when the producer or a restore failed in a way only a fresh start
    /// (new producer, rejoin, restore) repairs.
    pub fatal: Option<Error>,
    pool: Arc<rayon::ThreadPool>,
    rt: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    /// A test's fault plan (none in production).
    faults: Option<Arc<Faults>>,
    /// Counts assignments and revokes.
    assignment_epoch: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("owned", &self.owned.keys().collect::<Vec<_>>())
            .field("open", &self.txn.is_some())
            .finish()
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The largest encoded size an anchor may have, given the largest record
/// the anchors topic and the producer accept.
pub fn anchor_head_budget(config: &Config, max_output_record_bytes: usize) -> usize {
    let strings =
        config.topics.input.len() + config.signing.key_id.len() + config.kafka.instance_id.len();
    max_output_record_bytes.saturating_sub(txn::ANCHOR_FIXED_BYTES + 2 * strings)
}

/// The longest tenant id a chain can have here: its head must fit a state
/// record and, alone, an anchor. A longer one could never be committed, so
/// such records are quarantined instead of stalling the instance.
fn max_tenant_bytes(config: &Config, outputs: &Outputs) -> usize {
    const STATE_RECORD_OVERHEAD: usize = 1024;
    let state = outputs
        .max_state_bytes
        .saturating_sub(STATE_RECORD_OVERHEAD + config.topics.input.len());
    let anchor = anchor_head_budget(config, outputs.max_anchor_bytes)
        .saturating_sub(txn::tenant_head_bytes(""));
    state.min(anchor)
}

impl Engine {
    /// A new engine with its own transactional producer.
    pub fn new(
        config: Arc<Config>,
        signing_key: SigningKey,
        outputs: Outputs,
        rt: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
        traces: Traces,
        faults: Option<Arc<Faults>>,
    ) -> Result<Engine> {
        let sink = Sink::new(&config, faults.clone(), outputs.max_record_bytes)?;
        metrics.set_producer_ready(true);
        let threads = match config.processing.verify_threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("verify-{i}"))
            .build()
            .map_err(|e| Error::Thread(format!("starting the verification pool: {e}")))?;
        let pool = Arc::new(pool);
        Ok(Engine {
            anchor_head_budget: anchor_head_budget(&config, outputs.max_anchor_bytes),
            output_limit: outputs.max_record_bytes,
            max_tenant_bytes: max_tenant_bytes(&config, &outputs),
            output_partitions: outputs.partitions,
            config,
            signing_key,
            schema_ids: outputs.schema_ids,
            sink,
            owned: HashMap::new(),
            txn: None,
            rewind: BTreeSet::new(),
            unrestored: BTreeSet::new(),
            restore_backoff: Duration::from_millis(500),
            restore_not_before: None,
            restore_parent: None,
            consecutive_aborts: 0,
            txn_links: traces.links(),
            traces,
            fatal: None,
            pool,
            rt,
            metrics,
            faults,
            assignment_epoch: 0,
        })
    }

    /// The next input offset of owned partition `p` as of the last commit.
    pub fn next_offset(&self, p: i32) -> Option<i64> {
        self.owned.get(&p).and_then(|o| o.next_offset)
    }

    /// Goes up with every assignment and revoke.
    pub fn assignment_epoch(&self) -> u64 {
        self.assignment_epoch
    }

    /// A block of the loop a test planned for this moment
    /// ([`Faults::block_loop`]); never in production.
    pub fn loop_block_planned(&self) -> Option<Duration> {
        self.faults.as_ref().and_then(|f| f.take_loop_block())
    }

    /// Whether a test planned a stopped fetcher for this moment
    /// ([`Faults::stop_fetching`]); never in production.
    pub fn fetcher_stop_planned(&self) -> bool {
        self.faults.as_ref().is_some_and(|f| f.take_fetcher_stop())
    }

    /// Partitions owned and restored.
    pub fn owned_partitions(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.owned.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Takes `partitions` (from an assignment callback): they are restored
    /// from the loop, outside any transaction, before a record of theirs is
    /// processed.
    pub fn assign(&mut self, partitions: &[i32]) {
        self.assignment_epoch += 1;
        for p in partitions {
            self.owned.remove(p);
            self.rewind.remove(p);
            self.unrestored.insert(*p);
        }
        self.restore_not_before = None;
        self.restore_backoff = Duration::from_millis(500);
        self.restore_parent = self.traces.current();
        self.metrics.set_restoring(!self.unrestored.is_empty());
    }

    /// The assigned partitions waiting for their restore.
    pub fn unrestored(&self) -> Vec<i32> {
        self.unrestored.iter().copied().collect()
    }

    /// Whether partitions wait for a restore that may be attempted now.
    pub fn restore_due(&self) -> bool {
        !self.unrestored.is_empty() && self.restore_not_before.is_none_or(|t| Instant::now() >= t)
    }

    /// Restores every partition waiting for it. Call with no transaction
    /// open. A failure that a later attempt may not meet (a broker or the
    /// state topic not answering in time) is logged and retried with
    /// backoff; state that cannot be read is an error. `group_offsets` are
    /// the group's committed offsets of [`Engine::unrestored`], read with no
    /// transaction open.
    pub fn restore_pending(&mut self, group_offsets: &HashMap<i32, i64>) -> Result<()> {
        if self.txn.is_some() || self.sink.is_open() {
            return Err(Error::State(
                "restore attempted inside a transaction".into(),
            ));
        }
        let pending: Vec<(i32, Option<i64>)> = self
            .unrestored
            .iter()
            .map(|p| (*p, group_offsets.get(p).copied()))
            .collect();
        let partitions: Vec<i32> = pending.iter().map(|(p, _)| *p).collect();
        let started = Instant::now();
        let span = self.traces.enter_under(
            self.restore_parent.as_ref(),
            telemetry::RESTORE_SPAN,
            vec![
                KeyValue::new(
                    "messaging.destination.name",
                    self.config.topics.input.clone(),
                ),
                KeyValue::new(
                    "auditchain.partitions",
                    telemetry::partitions_value(&partitions),
                ),
            ],
        );
        let result = self.restore(&pending);
        if let Some(span) = &span {
            match &result {
                Ok(tenants) => {
                    span.set_attributes(vec![KeyValue::new("auditchain.tenants", *tenants as i64)])
                }
                Err(e) => span.fail(e),
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.restore_seconds.observe(seconds);
        match result {
            Ok(tenants) => {
                // After the histogram: whoever sees the line sees the metric.
                tracing::info!(?partitions, tenants, seconds, "partitions restored");
                self.restore_parent = None;
                self.metrics.set_restoring(false);
                self.update_gauges();
                Ok(())
            }
            Err(e @ Error::State(_)) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, ?partitions, retry_in_ms = self.restore_backoff.as_millis() as u64, "restore failed; trying again");
                self.restore_not_before = Some(Instant::now() + self.restore_backoff);
                self.restore_backoff = (self.restore_backoff * 2).min(MAX_RESTORE_BACKOFF);
                Ok(())
            }
        }
    }

    /// Returns the number of tenants restored.
    fn restore(&mut self, pending: &[(i32, Option<i64>)]) -> Result<usize> {
        let partitions: Vec<i32> = pending.iter().map(|(p, _)| *p).collect();
        // Only an input topic grown since the outputs were last checked
        // needs the cluster asked (a round trip on every restore otherwise).
        let needed = partitions.iter().max().map_or(0, |max| *max as usize + 1);
        if needed > self.output_partitions {
            let grown = self
                .rt
                .block_on(crate::kafka::ensure_output_partitions(&self.config, needed))?;
            if !grown.is_empty() {
                tracing::info!(topics = ?grown, partitions = needed, "the input topic grew: output topics grown to match");
            }
            // Whether this instance grew them or another one did: until the
            // producer's metadata has the new partitions, every send to one
            // fails (UNKNOWN_PARTITION: abort, rewind, back off) until
            // librdkafka's own refresh, 5 minutes by default.
            let t = &self.config.topics;
            self.sink
                .refresh_metadata(&[&t.chained, &t.quarantine, &t.anchors, &t.state])?;
            self.output_partitions = needed;
        }
        let restored = state::restore(&self.config, &partitions)?;
        let mut tenants = 0;
        for (p, group_offset) in pending {
            let restored = restored.get(p).cloned().unwrap_or_default();
            let (state, rewrite_heads) = self.check_against_trail(*p, restored)?;
            tenants += state.tenants.len();
            let next_offset = self.reconcile_offsets(*p, &state, *group_offset)?;
            self.owned.insert(
                *p,
                Owned {
                    state,
                    next_offset,
                    rewrite_heads,
                },
            );
            self.unrestored.remove(p);
            // The consumer may already have fetched from the group's offset.
            self.rewind.insert(*p);
        }
        Ok(tenants)
    }

    /// Partition `p`'s `restored` state checked against the trail's last
    /// anchor (see [`rebuild`]); when it is missing, behind or of another
    /// history, the state rebuilt from the trail instead, and whether it
    /// was (its heads are then rewritten). A state ahead of the trail, or a
    /// trail that cannot be read to its tail, is an error: the partition is
    /// not taken with a state that could fork a chain.
    fn check_against_trail(
        &self,
        p: i32,
        restored: PartitionState,
    ) -> Result<(PartitionState, bool)> {
        let tail = rebuild::last_anchor(&self.config, p)?;
        let finding = rebuild::compare(&restored, tail.as_ref());
        match finding {
            // A partition the trail has nothing of yet: its first
            // transaction writes every head, after a `w` record.
            rebuild::Finding::Consistent => {
                let whole = restored.whole_since.is_some();
                return Ok((restored, !whole));
            }
            rebuild::Finding::Ahead { state, trail } => {
                tracing::error!(partition = p, state_anchor = state, trail_anchor = trail, "the chain state is ahead of the trail: the trail lost anchors; not taking the partition (run verify, restore the trail)");
                self.metrics.state_rebuilt(finding.reason());
                return Err(Error::State(format!(
                    "partition {p}: the chain state is at anchor {state} but the trail's last anchor is {trail}: the trail lost anchors"
                )));
            }
            _ => {}
        }
        let started = Instant::now();
        let rebuilt = rebuild::rebuild(&self.config, p)?;
        self.metrics.state_rebuilt(finding.reason());
        tracing::warn!(
            partition = p,
            reason = finding.reason(),
            finding = ?finding,
            state_anchor = restored.anchor.anchor_seq,
            trail_anchor = rebuilt.anchor.anchor_seq,
            state_tenants = restored.tenants.len(),
            tenants = rebuilt.tenants.len(),
            next_offset = rebuilt.next_offset,
            seconds = started.elapsed().as_secs_f64(),
            "the chain state does not match the trail: rebuilt it from the trail's anchors; every chain continues where the trail has it"
        );
        Ok((rebuilt, true))
    }

    /// The next input offset of a restored partition. The state topic holds
    /// the offset written in the same transaction as the heads, so it wins
    /// over the group's: a group offset that expired (the group was empty
    /// longer than `offsets.retention.minutes`) or was reset by hand would
    /// otherwise replay records on top of heads that already contain them,
    /// or skip records no chain contains.
    fn reconcile_offsets(
        &self,
        p: i32,
        state: &PartitionState,
        group: Option<i64>,
    ) -> Result<Option<i64>> {
        Ok(match (state.next_offset, group) {
            (Some(s), Some(g)) if s != g => {
                tracing::warn!(partition = p, state_offset = s, group_offset = g, "the group's committed offset disagrees with the chain state; resuming from the chain state's offset");
                self.metrics.offset_mismatches.inc();
                Some(s)
            }
            (Some(s), None) => {
                tracing::warn!(partition = p, state_offset = s, "the group has no committed offset (expired?); resuming from the chain state's offset");
                self.metrics.offset_mismatches.inc();
                Some(s)
            }
            (None, None) if state.anchor.anchor_seq > 0 => {
                tracing::error!(partition = p, "chain state without a next offset (written before offsets were kept in it) and no committed group offset: replaying from the beginning would chain records twice; set the group's offset for this partition (kafka-consumer-groups --reset-offsets --to-offset) to the offset after the last anchor's last_offset");
                self.metrics.offset_mismatches.inc();
                return Err(Error::State(format!("partition {p}: chain state without a next offset and no committed group offset")));
            }
            (s, g) => s.or(g),
        })
    }

    /// Forgets `partitions` (after their transaction was committed or aborted).
    pub fn revoke(&mut self, partitions: &[i32]) {
        self.assignment_epoch += 1;
        for p in partitions {
            self.owned.remove(p);
            self.rewind.remove(p);
            self.unrestored.remove(p);
        }
        self.metrics.set_restoring(!self.unrestored.is_empty());
        self.update_gauges();
    }

    /// Partitions whose consumer position must be moved back to the
    /// committed next offset, and where to; clears the list.
    pub fn take_rewinds(&mut self) -> Vec<Rewind> {
        let rewind = std::mem::take(&mut self.rewind);
        rewind
            .into_iter()
            .filter_map(|p| {
                let owned = self.owned.get(&p)?;
                Some((
                    p,
                    owned.next_offset.map_or(Offset::Beginning, Offset::Offset),
                ))
            })
            .collect()
    }

    /// Marks every owned partition for a rewind (a fetched batch was
    /// dropped unprocessed).
    pub fn rewind_all(&mut self) {
        self.rewind.extend(self.owned.keys().copied());
    }

    /// Puts partitions back on the rewind list (their seek failed).
    pub fn rewind_again(&mut self, partitions: impl IntoIterator<Item = i32>) {
        self.rewind.extend(partitions);
    }

    fn update_gauges(&self) {
        let tenants: usize = self.owned.values().map(|o| o.state.tenants.len()).sum();
        self.metrics.tenants.set(tenants as i64);
        self.metrics
            .assigned_partitions
            .set((self.owned.len() + self.unrestored.len()) as i64);
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
        match &self.txn {
            None => false,
            Some(t) => {
                t.records >= self.config.processing.max_batch_records
                    || t.started.elapsed()
                        >= Duration::from_millis(self.config.processing.commit_interval_ms)
            }
        }
    }

    /// Time left until the open transaction is due, if one is open.
    pub fn txn_remaining(&self) -> Option<Duration> {
        self.txn.as_ref().map(|t| {
            Duration::from_millis(self.config.processing.commit_interval_ms)
                .saturating_sub(t.started.elapsed())
        })
    }

    /// Whether a transaction is open.
    pub fn has_open_transaction(&self) -> bool {
        self.txn.is_some() || self.sink.is_open()
    }

    /// The input topic.
    pub fn owned_topic(&self) -> &str {
        &self.config.topics.input
    }

    /// What routing needs, detached from the engine so a batch can be
    /// routed on the pool while the loop commits the open transaction.
    pub fn router(&self) -> Router {
        Router {
            pool: Arc::clone(&self.pool),
            max_record_bytes: self.config.processing.max_record_bytes,
        }
    }

    /// Writes routed records of `batch` to the open transaction (opening
    /// one if needed). Records [`Engine::accept`] no longer takes are
    /// skipped: their partition was rewound (an abort) since they were
    /// routed. Returns the records not written because the next one would
    /// make its partition's anchor too large: commit, then call again with
    /// them.
    pub fn write(
        &mut self,
        batch: &[BorrowedMessage<'_>],
        routed: Vec<Routed>,
    ) -> Result<Vec<Routed>> {
        let allowed = self.accept(batch);
        let mut allowed = allowed.iter().peekable();
        let mut routed = routed.into_iter();
        while let Some(r) = routed.next() {
            while allowed.next_if(|i| **i < r.index).is_some() {}
            if allowed.next_if(|i| **i == r.index).is_none() {
                continue;
            }
            let m = &batch[r.index];
            if self.anchor_would_overflow(m.partition(), &r.verdict) {
                self.metrics.early_commits.inc();
                self.report_open_records();
                let mut rest = vec![r];
                rest.extend(routed);
                return Ok(rest);
            }
            self.sink.ensure_open()?;
            if self.txn.is_none() {
                self.txn = Some(Txn::new());
            }
            self.write_one(m, r.verdict, r.headers)?;
        }
        self.report_open_records();
        Ok(Vec::new())
    }

    fn report_open_records(&self) {
        let records = self.txn.as_ref().map_or(0, |t| t.records);
        self.metrics.open_transaction_records.set(records as i64);
    }

    /// Indexes of the records of `batch` to process, ascending. Records of
    /// partitions not owned, waiting for a rewind, or below the partition's
    /// next offset are left out: they were fetched before a rebalance or an
    /// abort, or are refetches of processed records.
    pub fn accept(&self, batch: &[BorrowedMessage<'_>]) -> Vec<usize> {
        let mut accepted = Vec::with_capacity(batch.len());
        let mut next: HashMap<i32, i64> = HashMap::new();
        for (i, m) in batch.iter().enumerate() {
            let p = m.partition();
            let Some(owned) = self.owned.get(&p) else {
                continue;
            };
            if self.rewind.contains(&p) {
                continue;
            }
            let floor = next
                .get(&p)
                .copied()
                .or_else(|| match &self.txn {
                    Some(t) => t.next_offset(p, owned.next_offset),
                    None => owned.next_offset,
                })
                .unwrap_or(i64::MIN);
            if m.offset() < floor {
                continue;
            }
            next.insert(p, m.offset() + 1);
            accepted.push(i);
        }
        accepted
    }

    /// Whether chaining this verdict would push its partition's anchor past
    /// the size limit (a segment's first record always goes in).
    fn anchor_would_overflow(&self, p: i32, verdict: &Verdict) -> bool {
        let Verdict::Chain { tenant, .. } = verdict else {
            return false;
        };
        let Some(pending) = self.txn.as_ref().and_then(|t| t.partitions.get(&p)) else {
            return false;
        };
        !pending.leaves.is_empty()
            && pending.head_bytes + pending.anchor_growth(tenant) > self.anchor_head_budget
    }

    fn write_one(
        &mut self,
        m: &BorrowedMessage<'_>,
        verdict: Verdict,
        headers: RecordHeaders,
    ) -> Result<()> {
        let p = m.partition();
        self.txn_links.add(&headers.pairs, p, m.offset());
        let owned = self
            .owned
            .get(&p)
            .ok_or_else(|| Error::State(format!("partition {p} is not owned")))?;
        let anchor_seq = owned.state.anchor.anchor_seq + 1;
        let (chained, bytes, key) = match self.try_chain(m, verdict, &headers, anchor_seq)? {
            Ok((record, tenant)) => (true, record, Some(tenant.into_bytes())),
            Err((reason, detail)) => {
                let (record, key) = self.quarantine_one(m, reason, detail, headers, anchor_seq)?;
                (false, record, key)
            }
        };
        let topic = if chained {
            &self.config.topics.chained
        } else {
            &self.config.topics.quarantine
        };
        self.sink.send(topic, p, key.as_deref(), &bytes, None)?;
        if let Some(txn) = &mut self.txn {
            txn.records += 1;
        }
        Ok(())
    }

    /// Chains a record that passed every check, unless its chain could
    /// never be committed: a tenant id too long for the state and anchors
    /// topics, or a ChainedRecord over the output limit (possible only for a
    /// compressed input batch). Those are quarantined instead of retried
    /// forever: `Err` carries the reason and detail.
    #[allow(clippy::type_complexity)]
    fn try_chain(
        &mut self,
        m: &BorrowedMessage<'_>,
        verdict: Verdict,
        headers: &RecordHeaders,
        anchor_seq: u64,
    ) -> Result<Result<(Vec<u8>, String), (route::Reason, String)>> {
        let (tenant, key_id) = match verdict {
            Verdict::Quarantine { reason, detail } => return Ok(Err((reason, detail))),
            Verdict::Chain { tenant, key_id } => (tenant, key_id),
        };
        if tenant.len() > self.max_tenant_bytes {
            let detail = format!(
                "tenant_id is {} bytes; at most {} fit the state and anchors topics",
                tenant.len(),
                self.max_tenant_bytes
            );
            return Ok(Err((route::Reason::InvalidField, detail)));
        }
        let elsewhere = self.tenant_elsewhere(m.partition(), &tenant);
        Ok(
            match self.chain_one(m, &tenant, key_id, headers, anchor_seq, elsewhere)? {
                Some(record) => Ok((record, tenant)),
                None => Err((
                    route::Reason::Oversized,
                    format!(
                        "a valid event, but its ChainedRecord would exceed the output limit of {} bytes",
                        self.output_limit
                    ),
                )),
            },
        )
    }

    /// Whether another owned partition already holds a chain of `tenant`
    /// while this one starts a new one (DESIGN.md §3: it gets a second chain).
    fn tenant_elsewhere(&self, p: i32, tenant: &str) -> bool {
        let pending = self.txn.as_ref().map(|t| &t.partitions);
        let here = |q: i32| {
            self.owned
                .get(&q)
                .is_some_and(|o| o.state.tenants.contains_key(tenant))
                || pending
                    .and_then(|ps| ps.get(&q))
                    .is_some_and(|s| s.heads.contains_key(tenant))
        };
        !here(p) && self.owned.keys().any(|q| *q != p && here(*q))
    }

    /// Encodes the record's entry and appends it to the tenant's chain;
    /// `None` (nothing appended) when the record would not fit the output.
    fn chain_one(
        &mut self,
        m: &BorrowedMessage<'_>,
        tenant: &str,
        key_id: String,
        headers: &RecordHeaders,
        anchor_seq: u64,
        elsewhere: bool,
    ) -> Result<Option<Vec<u8>>> {
        let p = m.partition();
        let topic = self.config.topics.input.as_str();
        let value = m.payload().unwrap_or_default();
        let timestamp = m.timestamp().to_millis().unwrap_or(-1);
        let (Some(owned), Some(txn)) = (self.owned.get(&p), self.txn.as_mut()) else {
            return Err(Error::State(format!("partition {p} is not owned")));
        };
        let pending = txn.partitions.entry(p).or_default();
        let entry = pending.next_entry(&owned.state, tenant, value, topic, p, m.offset());
        let bytes = ChainedRecord {
            tenant_id: tenant.to_string(),
            seq: entry.seq,
            prev_hash: entry.prev_hash,
            entry_hash: entry.entry_hash,
            event_digest: entry.event_digest,
            source_topic: topic.to_string(),
            source_partition: p as u32,
            source_offset: m.offset() as u64,
            source_timestamp_ms: timestamp,
            key_id,
            producer_sig: headers.first(SIG_HEADER).unwrap_or_default().to_vec(),
            event: value.to_vec(),
            anchor_seq,
        }
        .encode(self.schema_ids.chained)?;
        if !crate::kafka::output_record_fits(tenant.len(), bytes.len(), self.output_limit) {
            return Ok(None);
        }
        pending.append(tenant, &entry, m.offset(), timestamp);
        if elsewhere {
            pending.tenants_elsewhere += 1;
            tracing::warn!(
                tenant = %tenant,
                partition = p,
                "tenant seen on a second input partition: it gets a separate chain there (DESIGN.md §3)"
            );
        }
        Ok(Some(bytes))
    }

    /// Encodes the quarantine record (left without its raw fields if it
    /// would not fit the output whole; `kafka::TopicReport`) and adds its
    /// leaf. Returns the record and its Kafka key (the raw key, unless it
    /// had to be left out).
    fn quarantine_one(
        &mut self,
        m: &BorrowedMessage<'_>,
        reason: route::Reason,
        detail: String,
        headers: RecordHeaders,
        anchor_seq: u64,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        let p = m.partition();
        let topic = self.config.topics.input.as_str();
        let timestamp = m.timestamp().to_millis().unwrap_or(-1);
        let quarantine_hash = chain::quarantine_hash(
            chain::SourceCoord {
                topic,
                partition: p as u32,
                offset: m.offset() as u64,
            },
            m.key().unwrap_or_default(),
            m.payload().unwrap_or_default(),
            reason.code(),
        );
        let detail = if headers.unreadable {
            format!("{detail}; the record's header names are not UTF-8, so its headers could not be kept")
        } else {
            detail
        };
        let mut record = QuarantineRecord {
            reason,
            detail,
            source_topic: topic.to_string(),
            source_partition: p as u32,
            source_offset: m.offset() as u64,
            source_timestamp_ms: timestamp,
            raw_key: m.key().map(<[u8]>::to_vec),
            raw_value: m.payload().map(<[u8]>::to_vec),
            headers: headers.pairs,
            quarantine_hash,
            anchor_seq,
        };
        let (bytes, keyed) = record.encode_to_fit(self.schema_ids.quarantine, self.output_limit)?;
        let txn = self
            .txn
            .as_mut()
            .ok_or_else(|| Error::State("no open transaction".into()))?;
        // encode_to_fit may have changed the reason and so the leaf.
        txn.partitions.entry(p).or_default().quarantine(
            record.reason,
            record.quarantine_hash,
            m.offset(),
            timestamp,
        );
        let key = if keyed { record.raw_key } else { None };
        Ok((bytes, key))
    }

    /// Closes the open transaction: one signed anchor, the new chain heads
    /// and the next input offset per partition it touched, the consumer
    /// offsets, commit. The committed state changes only if the commit
    /// succeeds; on failure the transaction stays open, sealed, for the
    /// caller to abort (or to commit again: nothing is written twice).
    pub fn commit(&mut self, group: &ConsumerGroupMetadata, cause: CommitCause) -> Result<()> {
        let Some(mut txn) = self.txn.take() else {
            return Ok(());
        };
        let result = self.seal_and_commit(&mut txn, group, cause);
        if self.traces.enabled() {
            let outcome = match &result {
                Ok(_) => TxnOutcome::Committed,
                Err(e) => TxnOutcome::Failed(e.to_string()),
            };
            let anchors = result.as_ref().map_or(0, |a| *a);
            self.report_txn(&txn, anchors, outcome);
        }
        match result {
            Ok(anchors) => {
                self.apply(txn, anchors);
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .transactions
                    .get_or_create(&ResultLabel { result: "failed" })
                    .inc();
                self.txn = Some(txn);
                Err(e)
            }
        }
    }

    fn seal_and_commit(
        &mut self,
        txn: &mut Txn,
        group: &ConsumerGroupMetadata,
        cause: CommitCause,
    ) -> Result<u64> {
        if txn.sealed.is_none() {
            txn.sealed = Some(self.seal(txn)?);
        }
        let sealed = txn
            .sealed
            .as_ref()
            .ok_or_else(|| Error::State("transaction not sealed".into()))?;
        let topic = &self.config.topics.input;
        let mut offsets = TopicPartitionList::new();
        for (p, next) in &sealed.offsets {
            offsets
                .add_partition_offset(topic, *p, Offset::Offset(*next))
                .map_err(|e| Error::kafka("building the offsets to commit", e))?;
        }
        self.sink.commit(&offsets, group, cause)?;
        Ok(sealed.anchors.len() as u64)
    }

    /// Writes each partition's anchor and state records into the open
    /// transaction.
    fn seal(&self, txn: &Txn) -> Result<Sealed> {
        let topic = &self.config.topics.input;
        let mut sealed = Sealed::default();
        for (p, pending) in &txn.partitions {
            let Some(owned) = self.owned.get(p) else {
                return Err(Error::State(format!(
                    "partition {p} has records in the open transaction but is no longer owned"
                )));
            };
            let Some(anchor) = pending.anchor(
                &owned.state.anchor,
                topic,
                *p,
                &self.config.signing.key_id,
                now_micros(),
            ) else {
                continue;
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
            let head = AnchorHead {
                anchor_seq: batch.anchor.anchor_seq,
                anchor_hash: batch.anchor_hash,
            };
            self.write_state(*p, owned, pending, &head)?;
            sealed.anchors.insert(*p, head);
            sealed.offsets.insert(*p, pending.next_offset);
        }
        Ok(sealed)
    }

    /// The state records of one partition's segment: new tenant heads, the
    /// anchor head and the next input offset, all in this transaction.
    /// After a rebuild, the heads of every other tenant of the partition
    /// too, after a `w` record that says so (see [`state::whole_record`]).
    fn write_state(
        &self,
        p: i32,
        owned: &Owned,
        pending: &Pending,
        anchor: &AnchorHead,
    ) -> Result<()> {
        let topic = &self.config.topics.input;
        let state_topic = &self.config.topics.state;
        if owned.rewrite_heads {
            let (k, v) = state::whole_record(topic, anchor.anchor_seq);
            self.sink
                .send(state_topic, p, Some(k.as_bytes()), &v, None)?;
        }
        let untouched = owned
            .state
            .tenants
            .iter()
            .filter(|(tenant, _)| owned.rewrite_heads && !pending.heads.contains_key(*tenant));
        for (tenant, head) in pending.heads.iter().chain(untouched) {
            let (k, v) = state::tenant_record(topic, tenant, head);
            self.sink
                .send(state_topic, p, Some(k.as_bytes()), &v, None)?;
        }
        let (k, v) = state::anchor_record(topic, anchor);
        self.sink
            .send(state_topic, p, Some(k.as_bytes()), &v, None)?;
        let (k, v) = state::offset_record(topic, pending.next_offset);
        self.sink.send(state_topic, p, Some(k.as_bytes()), &v, None)
    }

    /// Makes a committed transaction's changes the committed state.
    fn apply(&mut self, txn: Txn, anchors: u64) {
        let Txn {
            partitions,
            started,
            records,
            sealed,
            ..
        } = txn;
        let anchor_heads = sealed.map(|s| s.anchors).unwrap_or_default();
        self.consecutive_aborts = 0;
        let m = Arc::clone(&self.metrics);
        m.transactions
            .get_or_create(&ResultLabel {
                result: "committed",
            })
            .inc();
        m.transaction_seconds
            .observe(started.elapsed().as_secs_f64());
        m.anchors.inc_by(anchors);
        let touched = partitions.len();
        for (p, pending) in partitions {
            self.count_committed(&m, &pending);
            if let Some(owned) = self.owned.get_mut(&p) {
                if !pending.leaves.is_empty() {
                    owned.next_offset = Some(pending.next_offset);
                }
                let anchored = anchor_heads.get(&p).copied();
                // Every head was written with that anchor head.
                owned.rewrite_heads &= anchored.is_none();
                pending.apply(&mut owned.state, anchored);
            }
        }
        self.update_gauges();
        self.report_open_records();
        tracing::debug!(records, partitions = touched, "transaction committed");
    }

    fn count_committed(&self, m: &Metrics, seg: &Pending) {
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
            m.quarantined
                .get_or_create(&ReasonLabel {
                    reason: reason.code(),
                })
                .inc_by(*n);
        }
        m.observe_committed(&seg.timestamps_ms);
    }

    /// Emits the transaction span (when tracing).
    fn report_txn(&mut self, txn: &Txn, anchors: u64, outcome: TxnOutcome) {
        let links = std::mem::replace(&mut self.txn_links, self.traces.links());
        self.traces.transaction(TxnSpan {
            started: txn.started_at,
            topic: &self.config.topics.input,
            group: &self.config.kafka.group_id,
            partitions: txn.partitions.keys().copied().collect(),
            records: txn.records as u64,
            chained: txn.partitions.values().map(|s| s.chained).sum(),
            quarantined: txn.partitions.values().map(|s| s.quarantined).sum(),
            anchors,
            links,
            outcome,
        });
    }

    /// Aborts the open transaction, if any, and drops everything it would
    /// have changed. Every owned partition is marked for a rewind to its
    /// committed next offset: records the loop fetched past it (in the
    /// aborted transaction, or in a batch dropped with it) are processed
    /// again. The one path every abort takes.
    pub fn abort(&mut self) -> Result<()> {
        let txn = self.txn.take();
        if let Some(txn) = &txn {
            // A failed commit already reported its span.
            if txn.sealed.is_none() && self.traces.enabled() {
                self.report_txn(txn, 0, TxnOutcome::Aborted);
            }
        }
        self.txn_links = self.traces.links();
        self.rewind.extend(self.owned.keys().copied());
        self.report_open_records();
        let was_open = self.sink.is_open();
        self.sink.abort()?;
        if was_open || txn.is_some() {
            self.consecutive_aborts = self.consecutive_aborts.saturating_add(1);
            self.metrics
                .transactions
                .get_or_create(&ResultLabel { result: "aborted" })
                .inc();
        }
        Ok(())
    }

    /// How long to wait before redoing the work of an aborted transaction:
    /// nothing after a first abort, then doubling from 250 ms to 30 s while
    /// aborts repeat, so an input or a broker that fails the same way every
    /// time costs a retry now and then, not a hot loop (the stalled-partition
    /// alert tells an operator).
    pub fn abort_backoff(&self) -> Duration {
        match self.consecutive_aborts {
            0 | 1 => Duration::ZERO,
            n => Duration::from_millis(250)
                .saturating_mul(1 << (n - 2).min(7))
                .min(Duration::from_secs(30)),
        }
    }

    /// Commits the consumer's position for owned partitions where it moved
    /// past the last processed record with nothing left to process: the
    /// commit markers (and aborted records) of a transactional upstream are
    /// offsets but not records, and without this the group's lag would stay
    /// at one per partition forever. Only called when no transaction is
    /// open and every polled record has been processed, so the gap holds no
    /// data. The offsets go in a transaction of their own, with the state's
    /// next offsets and no anchor.
    pub fn commit_past_markers(
        &mut self,
        positions: &HashMap<i32, i64>,
        group: &ConsumerGroupMetadata,
    ) -> Result<bool> {
        if self.has_open_transaction() {
            return Ok(false);
        }
        let topic = self.config.topics.input.clone();
        let mut offsets = TopicPartitionList::new();
        let mut moved = Vec::new();
        for (p, owned) in &self.owned {
            if self.rewind.contains(p) {
                continue;
            }
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
        for (p, pos) in &moved {
            let (k, v) = state::offset_record(&topic, *pos);
            self.sink
                .send(&self.config.topics.state, *p, Some(k.as_bytes()), &v, None)?;
        }
        if let Err(e) = self.sink.commit(&offsets, group, CommitCause::Markers) {
            self.metrics
                .transactions
                .get_or_create(&ResultLabel { result: "failed" })
                .inc();
            return Err(e);
        }
        for (p, pos) in moved {
            if let Some(owned) = self.owned.get_mut(&p) {
                owned.next_offset = Some(pos);
            }
        }
        Ok(true)
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
