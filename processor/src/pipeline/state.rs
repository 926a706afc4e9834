//! Chain state: the heads of every tenant chain of a partition, the
//! partition's anchor head and its next input offset, kept in the compacted
//! state topic (same partition number as the input) and restored from it on
//! assignment.
//!
//! Keys are `t/<tenant id>` for a tenant chain, `a` for the anchor head,
//! `o` for the next input offset and `w` for a whole write of the heads. DESIGN.md allows the bare tenant id as key
//! with a reserved key for the anchor; the prefix makes a collision between a
//! tenant named like a reserved key and the anchor or offset record
//! impossible. Values are small JSON documents, readable with any console
//! consumer, all with `v` (1) and `source_topic` (the input topic; one state
//! topic cannot serve two):
//!
//! - `t/<tenant>` and `a`: `{"v":1,"source_topic":"…","seq":N,"hash":"<hex>"}`
//!   (`seq` is the tenant's seq, or the anchor_seq).
//! - `o`: `{"v":1,"source_topic":"…","next_offset":N}`: the input offset the
//!   partition's next transaction starts at, written in the same transaction
//!   as the heads it belongs to. It has a field of its own rather than
//!   reusing `seq`: an offset is an `i64` position in the input, not a chain
//!   sequence number, and a reader that mixes the two should fail loudly.
//!   A state written before this key existed has no `o` record
//!   ([`PartitionState::next_offset`] is `None`).
//! - `w`: `{"v":1,"source_topic":"…","seq":N}`: every tenant head of the
//!   partition is written after this record, in the transaction of anchor
//!   N: the partition's first transaction, or the first after its state
//!   was rebuilt from the trail ([`crate::rebuild`]). It is written first
//!   in that transaction, so a log that has it holds every head: records
//!   deleted from the start of the log took nothing after it, compaction
//!   keeps the newest record of each key, and a topic deleted and made
//!   again has none until its next whole write. A state without one is
//!   rebuilt from the trail.
//!
//! ## Where a restore ends
//!
//! The state is read `read_committed`, so an aborted transaction's heads are
//! never restored. librdkafka raises PartitionEOF at the last stable offset
//! (LSO), and while any transaction that wrote to the partition is open — a
//! dead previous owner's, until the coordinator aborts it after its
//! `transaction.timeout.ms` — the LSO stays at that transaction's first
//! record, even though heads committed after it are already in the log.
//! Stopping there would continue chains from stale heads: a fork. So
//! [`restore`] first takes each partition's high watermark with a
//! `read_uncommitted` client (for it ListOffsets answers with the high
//! watermark, not the LSO) and reads until the consumer's position has
//! reached that high watermark; the LSO moves past it once every transaction
//! open at the start has ended. librdkafka moves the position past
//! transaction markers, so a partition whose last batch is a commit or abort
//! marker finishes too; a partition with nothing in it is done at once.
//! Records at or past a partition's high watermark (committed after the
//! restore started) are not applied: the restore is the state as of its
//! start, however far the reader happens to read before it looks at its
//! positions again.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::chain::{Hash, ZERO};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::kafka::{base_client_config, QuietContext, ADMIN_TIMEOUT};

/// Key of a partition's anchor head.
pub const ANCHOR_KEY: &str = "a";
/// Key of a partition's next input offset.
pub const OFFSET_KEY: &str = "o";
/// Key of the record written before a whole rewrite of the heads.
pub const WHOLE_KEY: &str = "w";
/// Prefix of a tenant chain head's key.
pub const TENANT_PREFIX: &str = "t/";

mod progress;
use progress::Progress;

/// How long a partition's restore reader may stand still before [`restore`]
/// returns [`Error::RestoreIncomplete`] naming it; a restore that keeps
/// moving may take as long as its state needs. A dead owner's open
/// transaction holds the end back for its `transaction.timeout.ms` plus up
/// to the coordinator's abort check interval (10 s each by default); this
/// leaves room for a slow broker.
pub const RESTORE_STALL_LIMIT: Duration = Duration::from_secs(120);

/// How often a restore that waits on an open transaction says so again.
const WAIT_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// One poll of the restore consumer. Short, because the position is looked
/// at between polls and librdkafka handles a transaction marker inside a
/// poll without returning.
const POLL: Duration = Duration::from_millis(100);

/// Records a restore reads between two looks at its positions (it also
/// looks whenever a poll comes back empty or at a partition's end).
const POSITION_CHECK_RECORDS: usize = 1_000;

/// Bound on the LSO look-ups made only for log lines and error messages.
const LSO_LOOKUP: Duration = Duration::from_secs(5);

/// The last entry of a tenant chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Last seq (0: no entry yet).
    pub seq: u64,
    /// Last entry hash (`Z` when empty).
    pub entry_hash: Hash,
}

/// The last anchor of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorHead {
    /// Last anchor seq (0: none yet).
    pub anchor_seq: u64,
    /// Its hash (`Z` when none).
    pub anchor_hash: Hash,
}

impl Default for AnchorHead {
    fn default() -> Self {
        AnchorHead {
            anchor_seq: 0,
            anchor_hash: ZERO,
        }
    }
}

/// Everything the processor holds for one input partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionState {
    /// Tenant chain heads.
    pub tenants: HashMap<String, ChainHead>,
    /// The anchor chain head.
    pub anchor: AnchorHead,
    /// The input offset these heads continue from (the `o` record), or
    /// `None` when the state has none (never written, or written by a
    /// version without it).
    pub next_offset: Option<i64>,
    /// The anchor seq of the last whole write of the heads (the `w`
    /// record), if the log has one: only then does it hold every head (see
    /// [`crate::rebuild::compare`]).
    pub whole_since: Option<u64>,
}

/// A state record's value; which fields are present depends on the key
/// (see the module documentation).
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    v: u32,
    source_topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_offset: Option<i64>,
}

/// The state record for a tenant head.
pub fn tenant_record(source_topic: &str, tenant: &str, head: &ChainHead) -> (String, Vec<u8>) {
    encode_head(
        format!("{TENANT_PREFIX}{tenant}"),
        source_topic,
        head.seq,
        &head.entry_hash,
    )
}

/// The state record for an anchor head.
pub fn anchor_record(source_topic: &str, head: &AnchorHead) -> (String, Vec<u8>) {
    encode_head(
        ANCHOR_KEY.to_string(),
        source_topic,
        head.anchor_seq,
        &head.anchor_hash,
    )
}

/// The state record for a partition's next input offset: write it in the
/// same transaction as the heads of the records below `next_offset`.
pub fn offset_record(source_topic: &str, next_offset: i64) -> (String, Vec<u8>) {
    encode(
        OFFSET_KEY.to_string(),
        Stored {
            v: 1,
            source_topic: source_topic.to_string(),
            seq: None,
            hash: None,
            next_offset: Some(next_offset),
        },
    )
}

/// The record that opens a whole rewrite of the heads in the transaction
/// of anchor `anchor_seq`: send it before the heads.
pub fn whole_record(source_topic: &str, anchor_seq: u64) -> (String, Vec<u8>) {
    encode(
        WHOLE_KEY.to_string(),
        Stored {
            v: 1,
            source_topic: source_topic.to_string(),
            seq: Some(anchor_seq),
            hash: None,
            next_offset: None,
        },
    )
}

fn encode_head(key: String, source_topic: &str, seq: u64, hash: &Hash) -> (String, Vec<u8>) {
    encode(
        key,
        Stored {
            v: 1,
            source_topic: source_topic.to_string(),
            seq: Some(seq),
            hash: Some(hex::encode(hash)),
            next_offset: None,
        },
    )
}

fn encode(key: String, stored: Stored) -> (String, Vec<u8>) {
    // Serialising a struct of strings and integers cannot fail.
    (key, serde_json::to_vec(&stored).unwrap_or_default())
}

impl PartitionState {
    /// Applies one state record; later records replace earlier ones.
    pub fn apply(&mut self, source_topic: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let key = std::str::from_utf8(key)
            .map_err(|_| Error::State("a state record key is not UTF-8".into()))?;
        let stored: Stored = serde_json::from_slice(value)
            .map_err(|e| Error::State(format!("state record `{key}`: {e}")))?;
        if stored.v != 1 {
            return Err(Error::State(format!(
                "state record `{key}`: unknown version {}",
                stored.v
            )));
        }
        if stored.source_topic != source_topic {
            return Err(Error::State(format!(
                "state record `{key}` belongs to input topic `{}`, not `{source_topic}`; \
                 one state topic cannot serve two input topics",
                stored.source_topic
            )));
        }
        if key == OFFSET_KEY {
            self.next_offset = Some(match stored.next_offset {
                Some(o) if o >= 0 => o,
                Some(o) => {
                    return Err(Error::State(format!(
                        "state record `{key}`: negative next_offset {o}"
                    )))
                }
                None => {
                    return Err(Error::State(format!(
                        "state record `{key}`: no next_offset"
                    )))
                }
            });
            return Ok(());
        }
        let seq = stored
            .seq
            .ok_or_else(|| Error::State(format!("state record `{key}`: no seq")))?;
        if key == WHOLE_KEY {
            self.whole_since = Some(seq);
            return Ok(());
        }
        let hash: Hash = stored
            .hash
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
            .ok_or_else(|| Error::State(format!("state record `{key}`: bad hash")))?;
        if key == ANCHOR_KEY {
            self.anchor = AnchorHead {
                anchor_seq: seq,
                anchor_hash: hash,
            };
        } else if let Some(tenant) = key.strip_prefix(TENANT_PREFIX) {
            self.tenants.insert(
                tenant.to_string(),
                ChainHead {
                    seq,
                    entry_hash: hash,
                },
            );
        } else {
            return Err(Error::State(format!("unknown state record key `{key}`")));
        }
        Ok(())
    }
}

/// The partitions that have something to read, with the high watermark to
/// read to. `ends` maps a partition to its (low, high) watermarks; one whose
/// log is empty (high at or below low, e.g. high watermark 0) is done
/// before it starts: it has no record whose position could show the end.
pub(crate) fn to_read(ends: &HashMap<i32, (i64, i64)>) -> BTreeMap<i32, i64> {
    ends.iter()
        .filter(|(_, (low, high))| high > low)
        .map(|(p, (_, high))| (*p, *high))
        .collect()
}

/// Whether a consumer `position` (the next offset it will hand out) has
/// reached `high`.
pub(crate) fn reached(position: Offset, high: i64) -> bool {
    matches!(position, Offset::Offset(o) if o >= high)
}

/// A partition that has read to its LSO while that is below the high
/// watermark: a transaction is open.
struct Wait {
    since: Instant,
    logged: Instant,
}

/// Reads `partitions` of the state topic to their ends and rebuilds each
/// partition's state. A partition with no records starts empty.
///
/// "The end" is the high watermark each partition has when the restore
/// starts (see the module documentation): the restore reads
/// `read_committed` until every partition's position has reached it, which
/// waits for every transaction open on the partition at the start to end.
/// While it waits it logs, at info, the partition, its LSO and its high
/// watermark.
///
/// # Errors
///
/// [`Error::RestoreIncomplete`] when a partition's reader stands still for
/// [`RESTORE_STALL_LIMIT`] before its end, typically because a previous
/// owner's transaction is still open. This is not fatal and says nothing about the producer: the
/// caller must not take the partitions over with a partial state (nothing
/// of this call's result is returned), and should call `restore` again for
/// the same partitions after a backoff, doubling it up to a few seconds,
/// for as long as it is still assigned them. The open transaction ends at
/// the latest when the coordinator aborts it.
///
/// Other errors are as before: [`Error::Kafka`] when the broker cannot be
/// asked or read, [`Error::State`] for a state record this version cannot
/// use.
pub fn restore(config: &Config, partitions: &[i32]) -> Result<HashMap<i32, PartitionState>> {
    let started = Instant::now();
    let mut states: HashMap<i32, PartitionState> = partitions
        .iter()
        .map(|p| (*p, PartitionState::default()))
        .collect();
    if partitions.is_empty() {
        return Ok(states);
    }
    let topic = &config.topics.state;
    let mut pending = to_read(&high_watermarks(config, topic, partitions)?);
    if pending.is_empty() {
        return Ok(states);
    }
    let consumer: BaseConsumer<QuietContext> = base_client_config(
        config,
        &format!("auditchain-restore-{}", config.kafka.instance_id),
    )
    .set("group.id", format!("{}-restore", config.kafka.group_id))
    .set("enable.auto.commit", "false")
    .set("isolation.level", "read_committed")
    // EOF at the LSO is how the restore learns it waits on a transaction.
    .set("enable.partition.eof", "true")
    // A position the log no longer has (records deleted under the reader)
    // fails the restore; librdkafka's default would jump to the end and
    // restore whatever little comes after: every chain before it restarted.
    .set("auto.offset.reset", "error")
    .create_with_context(QuietContext)
    .map_err(|e| Error::kafka("creating the state restore consumer", e))?;
    let mut tpl = TopicPartitionList::new();
    for p in pending.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(|e| Error::kafka("building the restore assignment", e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka(format!("assigning `{topic}` for restore"), e))?;
    // Each partition's end, kept after the partition leaves `pending`:
    // records past it (a later transaction's, read while another partition
    // or the next position check is still due) are not applied.
    let ends = pending.clone();
    let mut progress = Progress::new(pending.keys().copied(), RESTORE_STALL_LIMIT, started);
    let mut waiting: HashMap<i32, Wait> = HashMap::new();
    // Records read since the positions were last looked at: looking after
    // every record (a position list built per record) cost ~50 µs a record,
    // 10 s for the 200,000 state records of a drain over 100,000 tenants.
    let mut unchecked = POSITION_CHECK_RECORDS;
    loop {
        if unchecked >= POSITION_CHECK_RECORDS {
            unchecked = 0;
            if reached_ends(
                &consumer,
                topic,
                &mut pending,
                &mut waiting,
                &mut progress,
                started,
            )? {
                break;
            }
        }
        match consumer.poll(POLL) {
            None => unchecked = POSITION_CHECK_RECORDS,
            Some(Ok(m)) => {
                unchecked += 1;
                let below_end = ends
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() < *end);
                if let (true, Some(key), Some(value), Some(state)) = (
                    below_end,
                    m.key(),
                    m.payload(),
                    states.get_mut(&m.partition()),
                ) {
                    state.apply(&config.topics.input, key, value)?;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                unchecked = POSITION_CHECK_RECORDS;
                // At the LSO. Below the high watermark (the position is
                // looked at first thing in the next round) that means an
                // open transaction: say which, once now and then every
                // WAIT_LOG_INTERVAL.
                if let Some(high) = pending.get(&p) {
                    let reached_end = consumer
                        .position()
                        .ok()
                        .and_then(|tpl| tpl.find_partition(topic, p).map(|e| e.offset()))
                        .is_some_and(|o| reached(o, *high));
                    if !reached_end && !waiting.contains_key(&p) {
                        let now = Instant::now();
                        let w = Wait {
                            since: now,
                            logged: now,
                        };
                        log_wait(&consumer, topic, p, *high, &w);
                        waiting.insert(p, w);
                    }
                }
            }
            // A broker failing over: librdkafka fetches again on its own;
            // the restore stays bounded by its progress.
            Some(Err(e)) if crate::error::is_transient(&e) => {
                unchecked = POSITION_CHECK_RECORDS;
            }
            Some(Err(e)) => return Err(Error::kafka(format!("restoring from `{topic}`"), e)),
        }
    }
    Ok(states)
}

/// Takes every partition whose consumer position has reached its high
/// watermark off `pending`; whether none is left. A partition whose
/// position has stood still for [`RESTORE_STALL_LIMIT`] is
/// [`Error::RestoreIncomplete`]; partitions waiting on an open
/// transaction say so every `WAIT_LOG_INTERVAL`.
fn reached_ends(
    consumer: &BaseConsumer<QuietContext>,
    topic: &str,
    pending: &mut BTreeMap<i32, i64>,
    waiting: &mut HashMap<i32, Wait>,
    progress: &mut Progress,
    started: Instant,
) -> Result<bool> {
    let positions = consumer
        .position()
        .map_err(|e| Error::kafka(format!("reading the restore position in `{topic}`"), e))?;
    let now = Instant::now();
    for e in positions.elements_for_topic(topic) {
        let p = e.partition();
        progress.observe(p, e.offset().to_raw().filter(|o| *o >= 0), now);
        if pending
            .get(&p)
            .is_some_and(|high| reached(e.offset(), *high))
        {
            progress.done(p);
            if let Some(w) = waiting.remove(&p) {
                tracing::info!(
                    topic = %topic,
                    partition = p,
                    high_watermark = pending[&p],
                    waited_s = w.since.elapsed().as_secs_f64(),
                    "state partition restored to its high watermark: the open transaction ended"
                );
            }
            pending.remove(&p);
        }
    }
    if pending.is_empty() {
        return Ok(true);
    }
    let stalled: BTreeMap<i32, i64> = progress
        .stalled(now)
        .into_iter()
        .filter_map(|(p, _)| Some((p, *pending.get(&p)?)))
        .collect();
    if !stalled.is_empty() {
        return Err(incomplete(consumer, topic, &stalled, &positions, started));
    }
    for (p, w) in waiting.iter_mut() {
        if now.duration_since(w.logged) >= WAIT_LOG_INTERVAL {
            log_wait(consumer, topic, *p, pending[p], w);
            w.logged = now;
        }
    }
    Ok(false)
}

/// Each partition's (low, high) watermarks, from a `read_uncommitted`
/// client: for a `read_committed` one the broker answers with the LSO.
pub(crate) fn high_watermarks(
    config: &Config,
    topic: &str,
    partitions: &[i32],
) -> Result<HashMap<i32, (i64, i64)>> {
    watermarks_as(config, topic, partitions, "read_uncommitted")
}

/// Each partition's low watermark and last stable offset (LSO): every
/// transaction with a record before the LSO has ended.
pub(crate) fn stable_offsets(
    config: &Config,
    topic: &str,
    partitions: &[i32],
) -> Result<HashMap<i32, (i64, i64)>> {
    watermarks_as(config, topic, partitions, "read_committed")
}

/// Each partition's low watermark and the end a client of `isolation`
/// sees: the high watermark, or for `read_committed` the LSO.
fn watermarks_as(
    config: &Config,
    topic: &str,
    partitions: &[i32],
    isolation: &str,
) -> Result<HashMap<i32, (i64, i64)>> {
    let client: BaseConsumer<QuietContext> = base_client_config(
        config,
        &format!("auditchain-restore-ends-{}", config.kafka.instance_id),
    )
    .set("group.id", format!("{}-restore", config.kafka.group_id))
    .set("enable.auto.commit", "false")
    .set("isolation.level", isolation)
    .create_with_context(QuietContext)
    .map_err(|e| Error::kafka("creating the state high-watermark client", e))?;
    partitions
        .iter()
        .map(|p| {
            crate::kafka::asked_again(|| client.fetch_watermarks(topic, *p, ADMIN_TIMEOUT))
                .map(|ends| (*p, ends))
                .map_err(|e| {
                    Error::kafka(
                        format!("reading the high watermark of `{topic}` partition {p}"),
                        e,
                    )
                })
        })
        .collect()
}

/// The LSO of `p` as the `read_committed` restore consumer sees it, for
/// log lines and messages only (so a failure is just "unknown").
fn last_stable_offset(consumer: &BaseConsumer<QuietContext>, topic: &str, p: i32) -> Option<i64> {
    consumer
        .fetch_watermarks(topic, p, LSO_LOOKUP)
        .ok()
        .map(|(_, lso)| lso)
}

fn log_wait(consumer: &BaseConsumer<QuietContext>, topic: &str, p: i32, high: i64, w: &Wait) {
    tracing::info!(
        topic = %topic,
        partition = p,
        last_stable_offset = %last_stable_offset(consumer, topic, p)
            .map_or_else(|| "unknown".to_string(), |o| o.to_string()),
        high_watermark = high,
        waited_s = w.since.elapsed().as_secs_f64(),
        "state restore waits on an open transaction: the partition's last stable offset is \
         below the high watermark seen at the start; it moves once the transaction ends \
         (at the latest when the coordinator aborts it after its transaction.timeout.ms)"
    );
}

fn incomplete(
    consumer: &BaseConsumer<QuietContext>,
    topic: &str,
    pending: &BTreeMap<i32, i64>,
    positions: &TopicPartitionList,
    started: Instant,
) -> Error {
    let detail = pending
        .iter()
        .map(|(p, high)| {
            let position = positions
                .find_partition(topic, *p)
                .map(|e| e.offset())
                .and_then(|o| o.to_raw())
                .filter(|o| *o >= 0)
                .map_or_else(|| "none".to_string(), |o| o.to_string());
            let lso = last_stable_offset(consumer, topic, *p)
                .map_or_else(|| "unknown".to_string(), |o| o.to_string());
            format!("partition {p}: position {position}, last stable offset {lso}, high watermark {high}")
        })
        .collect::<Vec<_>>()
        .join("; ");
    Error::RestoreIncomplete {
        topic: topic.to_string(),
        partitions: pending.keys().copied().collect(),
        limit_secs: RESTORE_STALL_LIMIT.as_secs(),
        waited_secs: started.elapsed().as_secs(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_rebuild_the_state_last_one_wins() {
        let mut s = PartitionState::default();
        let (k1, v1) = tenant_record(
            "in",
            "a/b",
            &ChainHead {
                seq: 1,
                entry_hash: [1; 32],
            },
        );
        let (k2, v2) = tenant_record(
            "in",
            "a/b",
            &ChainHead {
                seq: 2,
                entry_hash: [2; 32],
            },
        );
        let (ka, va) = anchor_record(
            "in",
            &AnchorHead {
                anchor_seq: 7,
                anchor_hash: [7; 32],
            },
        );
        for (k, v) in [(&k1, &v1), (&k2, &v2), (&ka, &va)] {
            s.apply("in", k.as_bytes(), v).expect("apply");
        }
        assert_eq!(
            s.tenants["a/b"],
            ChainHead {
                seq: 2,
                entry_hash: [2; 32]
            }
        );
        assert_eq!(s.anchor.anchor_seq, 7);
        // A tenant literally named like the anchor key cannot collide with it.
        let (kt, vt) = tenant_record(
            "in",
            "a",
            &ChainHead {
                seq: 9,
                entry_hash: [9; 32],
            },
        );
        s.apply("in", kt.as_bytes(), &vt).expect("apply");
        assert_eq!(s.anchor.anchor_seq, 7);
        assert_eq!(s.tenants["a"].seq, 9);
    }

    #[test]
    fn a_state_record_of_another_input_topic_is_refused() {
        let mut s = PartitionState::default();
        let (k, v) = anchor_record("other", &AnchorHead::default());
        let err = s
            .apply("in", k.as_bytes(), &v)
            .expect_err("other topic")
            .to_string();
        assert!(err.contains("other"), "{err}");
    }

    #[test]
    fn the_offset_record_is_read_back_and_the_last_one_wins() {
        let mut s = PartitionState::default();
        assert_eq!(s.next_offset, None, "no `o` record: unknown");
        for o in [0, 1_500, 1_200] {
            let (k, v) = offset_record("in", o);
            assert_eq!(k, OFFSET_KEY);
            s.apply("in", k.as_bytes(), &v).expect("apply");
        }
        assert_eq!(s.next_offset, Some(1_200));
        // The offset record touches neither the tenants nor the anchor.
        assert!(s.tenants.is_empty());
        assert_eq!(s.anchor, AnchorHead::default());
    }

    #[test]
    fn the_whole_rewrite_record_is_documented_json_and_touches_no_head() {
        let mut s = PartitionState::default();
        assert_eq!(s.whole_since, None);
        let (k, v) = whole_record("in", 7);
        assert_eq!(k, WHOLE_KEY);
        assert_eq!(
            std::str::from_utf8(&v).expect("utf-8"),
            r#"{"v":1,"source_topic":"in","seq":7}"#
        );
        s.apply("in", k.as_bytes(), &v).expect("apply");
        assert_eq!(s.whole_since, Some(7));
        assert!(s.tenants.is_empty());
        assert_eq!(s.anchor, AnchorHead::default());
    }

    #[test]
    fn records_encode_as_the_documented_json() {
        let (k, v) = offset_record("in", 42);
        assert_eq!(k, "o");
        assert_eq!(
            std::str::from_utf8(&v).expect("utf-8"),
            r#"{"v":1,"source_topic":"in","next_offset":42}"#
        );
        // Head records keep the layout they had before the offset key.
        let (k, v) = tenant_record(
            "in",
            "x",
            &ChainHead {
                seq: 3,
                entry_hash: [0xab; 32],
            },
        );
        assert_eq!(k, "t/x");
        assert_eq!(
            std::str::from_utf8(&v).expect("utf-8"),
            format!(
                r#"{{"v":1,"source_topic":"in","seq":3,"hash":"{}"}}"#,
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn a_tenant_named_o_does_not_collide_with_the_offset_record() {
        let mut s = PartitionState::default();
        let (k, v) = tenant_record(
            "in",
            "o",
            &ChainHead {
                seq: 5,
                entry_hash: [5; 32],
            },
        );
        s.apply("in", k.as_bytes(), &v).expect("apply");
        assert_eq!(s.next_offset, None);
        assert_eq!(s.tenants["o"].seq, 5);
    }

    #[test]
    fn malformed_offset_and_head_records_are_refused() {
        let mut s = PartitionState::default();
        let bad = [
            (
                OFFSET_KEY,
                r#"{"v":1,"source_topic":"in","next_offset":-1}"#,
            ),
            (OFFSET_KEY, r#"{"v":1,"source_topic":"in"}"#),
            (OFFSET_KEY, r#"{"v":2,"source_topic":"in","next_offset":1}"#),
            (
                OFFSET_KEY,
                r#"{"v":1,"source_topic":"other","next_offset":1}"#,
            ),
            // An offset-shaped value under a head key has no seq or hash.
            ("t/x", r#"{"v":1,"source_topic":"in","next_offset":1}"#),
            (ANCHOR_KEY, r#"{"v":1,"source_topic":"in","seq":1}"#),
            ("x", r#"{"v":1,"source_topic":"in","next_offset":1}"#),
        ];
        for (k, v) in bad {
            assert!(
                s.apply("in", k.as_bytes(), v.as_bytes()).is_err(),
                "{k}: {v}"
            );
        }
        assert_eq!(s.next_offset, None);
        assert!(s.tenants.is_empty());
    }

    #[test]
    fn an_empty_partition_has_nothing_to_read() {
        let ends = HashMap::from([(0, (0, 0)), (1, (0, 7)), (2, (5, 5)), (3, (4, 9))]);
        assert_eq!(to_read(&ends), BTreeMap::from([(1, 7), (3, 9)]));
    }

    #[test]
    fn only_a_position_at_or_past_the_high_watermark_is_the_end() {
        assert!(!reached(Offset::Invalid, 0));
        assert!(!reached(Offset::Offset(6), 7));
        assert!(reached(Offset::Offset(7), 7));
        // Past it: the last batch was a transaction marker, or a
        // transaction committed after the start was read too.
        assert!(reached(Offset::Offset(9), 7));
    }
}
