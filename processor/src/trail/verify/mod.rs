//! Checking an audit trail (DESIGN.md §4.5): tenant chains, anchors and
//! their signatures, and completeness against the input.
//!
//! `verify` streams each partition's trail from Kafka through a
//! [`check::PartitionCheck`], so memory holds chain heads and one anchor's
//! leaves, never the trail; [`check`] runs the same checks over a trail held
//! in memory.
//!
//! - `check`: the checks themselves, fed one record at a time (no I/O);
//! - `stream`: the output streams of a partition in anchor order, decoded
//!   and signature-checked a chunk at a time on all cores;
//! - `read`: reading topic partitions from Kafka.

mod check;
pub mod read;
mod stream;

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::VerifyingKey;
use rayon::prelude::*;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::KeySet;
use crate::records::{AnchorBatch, ChainedRecord, QuarantineRecord};

pub use check::{HeadState, PartitionState, Positions};
use check::{InputOffsets, InputVec, Link, PartitionCheck, QuarantineLeaf, Scope};
pub use read::{
    read_input_coords, read_input_partitions, read_partitions, read_topic, read_trail,
    read_trail_partitions, topic_partitions, Isolation, PartitionReader,
};
use stream::{prefetch, Item, KafkaSource, Stream, Streams, VecSource, ANCHOR_CHUNK, CHUNK};

/// Source coordinates of an input record.
pub type Coord = (String, u32, u64);

/// The output of a processor deployment, as read from its topics.
#[derive(Debug, Default, Clone)]
pub struct Trail {
    /// `ChainedRecord`s.
    pub chained: Vec<ChainedRecord>,
    /// `QuarantineRecord`s.
    pub quarantined: Vec<QuarantineRecord>,
    /// `AnchorBatch`es.
    pub anchors: Vec<AnchorBatch>,
    /// Output records that did not decode: (topic, partition, offset, error).
    pub undecodable: Vec<(String, i32, i64, String)>,
}

/// What is wrong, in the order problems are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// An output record does not decode.
    Undecodable,
    /// An output record lies in another source partition's output.
    Misplaced,
    /// A tenant chain is broken.
    Chain,
    /// A quarantine record's hash does not recompute.
    Quarantine,
    /// A source record is in the output more than once.
    Duplicate,
    /// An anchor is wrong, or does not match the records it covers.
    Anchor,
    /// A record no anchor covers.
    Uncovered,
    /// An input record the output lacks.
    Lost,
    /// An output record whose input record is not in the committed input.
    Extra,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 9] = [
        Kind::Undecodable,
        Kind::Misplaced,
        Kind::Chain,
        Kind::Quarantine,
        Kind::Duplicate,
        Kind::Anchor,
        Kind::Uncovered,
        Kind::Lost,
        Kind::Extra,
    ];

    /// The kind's name in `--json` output.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Undecodable => "undecodable",
            Kind::Misplaced => "misplaced",
            Kind::Chain => "chain",
            Kind::Quarantine => "quarantine",
            Kind::Duplicate => "duplicate",
            Kind::Anchor => "anchor",
            Kind::Uncovered => "uncovered",
            Kind::Lost => "lost",
            Kind::Extra => "extra",
        }
    }
}

/// One thing wrong with a trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What kind of thing.
    pub kind: Kind,
    /// Where: a chain, an anchor, or a source coordinate.
    pub place: String,
    /// What.
    pub what: String,
}

/// The result of checking a trail.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Chains: (tenant, source topic, source partition) → length.
    pub chains: BTreeMap<(String, String, u32), u64>,
    /// Chained records checked.
    pub chained: usize,
    /// Quarantined records checked.
    pub quarantined: usize,
    /// Quarantined records by reason code.
    pub quarantined_by_reason: BTreeMap<String, usize>,
    /// Anchors checked.
    pub anchors: usize,
    /// Input records compared, when the input was given.
    pub input_records: Option<usize>,
    /// What is wrong, by kind (see [`Kind`]) and within a kind in the order
    /// found; at most 10,000 of a kind per partition.
    pub problems: Vec<Problem>,
    /// Problems found beyond those listed.
    pub omitted: usize,
    /// Input records not processed yet (at or past the processor's
    /// committed offset), when the input was compared.
    pub pending: Option<usize>,
    /// Output records whose input record retention has deleted (below the
    /// input's log start offset), when the input was compared: checked in
    /// every way but completeness.
    pub input_trimmed: Option<usize>,
    /// Each partition's state at its last anchor checked, when asked for
    /// ([`Options::checkpoint`]): the next checkpoint.
    pub states: BTreeMap<i32, PartitionState>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.omitted == 0
    }

    /// Adds the report of another partition.
    fn absorb(&mut self, other: Report) {
        self.chains.extend(other.chains);
        self.chained += other.chained;
        self.quarantined += other.quarantined;
        for (reason, n) in other.quarantined_by_reason {
            *self.quarantined_by_reason.entry(reason).or_default() += n;
        }
        self.anchors += other.anchors;
        self.input_records = match (self.input_records, other.input_records) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.problems.extend(other.problems);
        self.omitted += other.omitted;
        self.pending = match (self.pending, other.pending) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.input_trimmed = match (self.input_trimmed, other.input_trimmed) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
        self.states.extend(other.states);
    }

    /// The report as `verify --json` prints it (without the fields about
    /// checkpoints, which the command adds).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.ok(),
            "chained": self.chained,
            "quarantined": self.quarantined,
            "quarantined_by_reason": self.quarantined_by_reason,
            "anchors": self.anchors,
            "input_records": self.input_records,
            "chains": self.chains.iter().map(|((tenant, topic, partition), len)| serde_json::json!({
                "tenant_id": tenant, "source_topic": topic, "source_partition": partition, "length": len,
            })).collect::<Vec<_>>(),
            "problems": self.problems.iter().map(|p| serde_json::json!({
                "kind": p.kind.name(), "place": p.place, "what": p.what,
            })).collect::<Vec<_>>(),
            "problems_omitted": self.omitted,
            "pending_input_records": self.pending,
            "input_trimmed_records": self.input_trimmed,
        })
    }

    /// Orders the problems by kind, keeping each kind's order.
    fn sort(&mut self) {
        self.problems.sort_by_key(|p| p.kind);
    }
}

/// The records of one source partition, for the in-memory [`check`].
#[derive(Default)]
struct Held {
    chained: Vec<Item<Link>>,
    quarantined: Vec<Item<QuarantineLeaf>>,
    anchors: Vec<Item<AnchorBatch>>,
    input: Vec<u64>,
}

/// Checks chains, anchors and (when `input` is given) completeness of a
/// trail held in memory, each record list in log order.
/// `processor_keys` are the public keys anchors may be signed with, by key id.
pub fn check(
    trail: &Trail,
    producer_keys: &KeySet,
    processor_keys: &HashMap<String, VerifyingKey>,
    input: Option<&[Coord]>,
) -> Report {
    let mut held: BTreeMap<(String, u32), Held> = BTreeMap::new();
    // Output offsets are positions in the lists.
    let links: Vec<Link> = trail
        .chained
        .par_iter()
        .map(|r| Link::check(r.clone(), producer_keys))
        .collect();
    for (i, (r, link)) in trail.chained.iter().zip(links).enumerate() {
        let at = (r.source_topic.clone(), r.source_partition);
        held.entry(at)
            .or_default()
            .chained
            .push(Item::Record(i as i64, link));
    }
    for (i, q) in trail.quarantined.iter().enumerate() {
        let at = (q.source_topic.clone(), q.source_partition);
        let leaf = QuarantineLeaf::check(q.clone());
        held.entry(at)
            .or_default()
            .quarantined
            .push(Item::Record(i as i64, leaf));
    }
    for (i, a) in trail.anchors.iter().enumerate() {
        let at = (a.anchor.source_topic.clone(), a.anchor.source_partition);
        held.entry(at)
            .or_default()
            .anchors
            .push(Item::Record(i as i64, a.clone()));
    }
    for (topic, p, o) in input.unwrap_or_default() {
        held.entry((topic.clone(), *p)).or_default().input.push(*o);
    }
    let mut report = Report::default();
    if input.is_some() {
        report.input_records = Some(0);
    }
    for (topic, p, o, e) in &trail.undecodable {
        report.problems.push(Problem {
            kind: Kind::Undecodable,
            place: format!("{topic}/{p}@{o}"),
            what: format!("output record does not decode: {e}"),
        });
    }
    for ((topic, p), held) in held {
        let input = input
            .is_some()
            .then(|| Box::new(InputVec::new(held.input)) as Box<dyn InputOffsets>);
        let mut check =
            PartitionCheck::new(topic.clone(), p, processor_keys, Scope::default(), input);
        let mut streams = Streams {
            anchors: Stream::new(
                "anchors",
                p as i32,
                0,
                ANCHOR_CHUNK,
                VecSource(held.anchors.into_iter()),
            ),
            chained: Stream::new(
                "chained",
                p as i32,
                0,
                CHUNK,
                VecSource(held.chained.into_iter()),
            ),
            quarantined: Stream::new(
                "quarantine",
                p as i32,
                0,
                CHUNK,
                VecSource(held.quarantined.into_iter()),
            ),
        };
        // Nothing held in memory fails to read; were it to, say so.
        match stream::run(&mut check, &mut streams, &mut |_| {}).and_then(|()| check.finish()) {
            Ok(r) => report.absorb(r),
            Err(e) => report.problems.push(Problem {
                kind: Kind::Undecodable,
                place: format!("{topic}/{p}"),
                what: e.to_string(),
            }),
        }
    }
    report.sort();
    report
}

/// What `verify` covers.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only these source partitions (all when `None`).
    pub partitions: Option<Vec<i32>>,
    /// Only this tenant's chains are reported; completeness is not checked
    /// (the input is not read per tenant).
    pub tenant: Option<String>,
    /// Completeness is checked for input offsets in this range only.
    pub offsets: Option<(u64, u64)>,
    /// Compare against the committed input.
    pub check_input: bool,
    /// Verify only what follows this checkpoint of an earlier run.
    pub resume: Option<Checkpoint>,
    /// Report each partition's state for the next checkpoint
    /// ([`Report::states`]).
    pub checkpoint: bool,
}

/// What an earlier `verify` established, so that the next verifies only
/// what is new: per partition, the last anchor checked, every tenant's
/// chain head and where reading resumes. An auditor keeps it as they keep
/// any evidence; `verify` confirms its anchor is still in the trail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Format version, [`Checkpoint::VERSION`].
    pub version: u32,
    /// The input topic.
    pub input: String,
    /// The chained topic.
    pub chained: String,
    /// The quarantine topic.
    pub quarantine: String,
    /// The anchors topic.
    pub anchors: String,
    /// By source partition.
    pub partitions: BTreeMap<i32, PartitionState>,
}

impl Checkpoint {
    /// The format this build reads and writes.
    pub const VERSION: u32 = 1;

    /// Reads `path`; `None` when it does not exist yet.
    pub fn load(path: &std::path::Path) -> Result<Option<Checkpoint>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    path: path.into(),
                    source,
                })
            }
        };
        let checkpoint: Checkpoint = serde_json::from_str(&text)
            .map_err(|e| Error::Checkpoint(format!("{}: {e}", path.display())))?;
        if checkpoint.version != Checkpoint::VERSION {
            return Err(Error::Checkpoint(format!(
                "{}: version {} (this build reads {})",
                path.display(),
                checkpoint.version,
                Checkpoint::VERSION
            )));
        }
        Ok(Some(checkpoint))
    }

    /// Writes `path` whole or not at all (a new file renamed over it).
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let io = |source| Error::Io {
            path: path.into(),
            source,
        };
        let text =
            serde_json::to_string_pretty(self).map_err(|e| Error::Checkpoint(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// A checkpoint of `config`'s trail from `states`, keeping the
    /// partitions of `earlier` this run did not reach.
    pub fn of(
        config: &Config,
        earlier: Option<&Checkpoint>,
        states: &BTreeMap<i32, PartitionState>,
    ) -> Checkpoint {
        let t = &config.topics;
        let mut partitions = earlier.map(|c| c.partitions.clone()).unwrap_or_default();
        partitions.extend(states.iter().map(|(p, s)| (*p, s.clone())));
        Checkpoint {
            version: Checkpoint::VERSION,
            input: t.input.clone(),
            chained: t.chained.clone(),
            quarantine: t.quarantine.clone(),
            anchors: t.anchors.clone(),
            partitions,
        }
    }

    /// An error unless this checkpoint is of `config`'s topics.
    fn fits(&self, config: &Config) -> Result<()> {
        let t = &config.topics;
        let ours = [&t.input, &t.chained, &t.quarantine, &t.anchors];
        let its = [&self.input, &self.chained, &self.quarantine, &self.anchors];
        if ours != its {
            return Err(Error::Checkpoint(format!(
                "it is of topics {its:?}, the configuration names {ours:?}"
            )));
        }
        Ok(())
    }
}

/// The input's offsets, read from Kafka.
struct InputReader(PartitionReader, Option<u64>);

impl InputOffsets for InputReader {
    fn peek(&mut self) -> Result<Option<u64>> {
        if self.1.is_none() {
            self.1 = self
                .0
                .next_record()?
                .map(|m| rdkafka::Message::offset(&m) as u64);
        }
        Ok(self.1)
    }
    fn advance(&mut self) {
        self.1 = None;
    }
}

/// Verifies the trail of `config`, streaming one partition after the other
/// through the checks; `progress` is told the output records done and
/// their total, as it goes.
///
/// What is read is fixed first, in this order: the processor group's
/// committed offsets (input below them must be in the output: they commit
/// atomically with the anchors), then the record streams' cuts (their last
/// stable offsets: every record before a cut must be covered by an anchor
/// read, see [`stream::run`]), then the anchors' ends (after the cuts, so
/// the anchor of every record before a cut is read: a trail being written
/// raises no false alarm), then the input's ends (past every anchor read,
/// so the input an anchor covers is all read), then the records' ends
/// (every anchor read has its records in range). Input inside an anchored
/// range must be in the output whatever the committed offsets say.
pub fn verify(
    config: &Config,
    producer_keys: &KeySet,
    processor_keys: &HashMap<String, VerifyingKey>,
    options: &Options,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report> {
    let t = &config.topics;
    if let Some(c) = &options.resume {
        c.fits(config)?;
    }
    let partitions: Vec<i32> = match &options.partitions {
        Some(ps) => ps.clone(),
        None => (0..topic_partitions(config, &t.input)? as i32).collect(),
    };
    let check_input = options.check_input && options.tenant.is_none();
    let processed = if check_input {
        processed_offsets(config)?
    } else {
        HashMap::new()
    };
    let ends = |topic: &str| read::watermarks(config, topic, &partitions);
    let cuts = |topic: &str| read::stable_offsets(config, topic, &partitions);
    let (chained_cuts, quarantine_cuts) = (cuts(&t.chained)?, cuts(&t.quarantine)?);
    let anchor_ends = ends(&t.anchors)?;
    let input_ends = if check_input {
        ends(&t.input)?
    } else {
        HashMap::new()
    };
    let (chained_ends, quarantine_ends) = (ends(&t.chained)?, ends(&t.quarantine)?);
    let resumed = |p: i32| options.resume.as_ref().and_then(|c| c.partitions.get(&p));
    let span = |e: &HashMap<i32, (i64, i64)>, p: i32| e.get(&p).copied().unwrap_or((0, 0));
    let from = |e: &HashMap<i32, (i64, i64)>, p: i32, start: Option<i64>| {
        let (low, high) = span(e, p);
        (start.map_or(low, |s| s.max(low)), high)
    };
    // Where a reader starts: the checkpoint's position, or the beginning.
    let open = |topic: &str, e: &HashMap<i32, (i64, i64)>, p: i32, start: Option<i64>| {
        PartitionReader::open(config, topic, p, span(e, p), start)
    };
    let total: u64 = partitions
        .iter()
        .map(|p| {
            let next = resumed(*p).map(|s| s.next);
            let (cl, ch) = from(&chained_ends, *p, next.map(|n| n.chained));
            let (ql, qh) = from(&quarantine_ends, *p, next.map(|n| n.quarantine));
            ((ch - cl).max(0) + (qh - ql).max(0)) as u64
        })
        .sum();
    let mut report = Report::default();
    if options.partitions.is_none() {
        report
            .problems
            .extend(beyond_the_input(config, partitions.len())?);
    }
    let mut done = 0;
    for p in partitions.iter().copied() {
        // Retention may have moved the input's start since the ends were
        // read (partitions are verified one after another): read it again.
        let input_low = if check_input {
            let fresh = crate::state::high_watermarks(config, &t.input, &[p])?;
            fresh
                .get(&p)
                .map_or(span(&input_ends, p).0, |(low, _)| *low)
        } else {
            0
        };
        let scope = Scope {
            tenant: options.tenant.as_deref(),
            offsets: options.offsets,
            processed: processed.get(&p).copied().unwrap_or(u64::MAX),
            input_end: if check_input {
                span(&input_ends, p).1.max(0) as u64
            } else {
                u64::MAX
            },
            input_start: input_low.max(0) as u64,
            // A checkpoint vouches for everything before it: only a run
            // that checked everything may write one.
            keep_state: options.checkpoint && check_input && options.offsets.is_none(),
        };
        let next = resumed(p).map(|s| s.next);
        let input = if check_input {
            // Retention may have deleted input since the checkpoint: read
            // what is left (the records before it count as trimmed).
            let start = next.map(|n| n.input.max(input_low));
            let reader = open(&t.input, &input_ends, p, start)?;
            Some(Box::new(InputReader(reader, None)) as Box<dyn InputOffsets>)
        } else {
            None
        };
        let mut check =
            PartitionCheck::new(t.input.clone(), p as u32, processor_keys, scope, input);
        if let Some(state) = resumed(p) {
            check = check.resume(state)?;
        }
        let reader = |topic: &str, ends, start: Option<i64>| {
            Ok::<_, Error>((from(ends, p, start).0, open(topic, ends, p, start)?))
        };
        let (a0, anchors) = reader(&t.anchors, &anchor_ends, next.map(|n| n.anchors))?;
        let (c0, chained) = reader(&t.chained, &chained_ends, next.map(|n| n.chained))?;
        let (q0, quarantined) =
            reader(&t.quarantine, &quarantine_ends, next.map(|n| n.quarantine))?;
        std::thread::scope(|scope| {
            let chained = KafkaSource::new(chained, |v: &[u8]| {
                ChainedRecord::decode(v).map(|r| Link::check(r, producer_keys))
            });
            let quarantined = KafkaSource::new(quarantined, |v: &[u8]| {
                QuarantineRecord::decode(v).map(QuarantineLeaf::check)
            });
            let anchors = KafkaSource::new(anchors, AnchorBatch::decode);
            let mut streams = Streams {
                anchors: Stream::new(
                    &t.anchors,
                    p,
                    a0,
                    ANCHOR_CHUNK,
                    prefetch(scope, anchors, ANCHOR_CHUNK),
                ),
                chained: Stream::new(&t.chained, p, c0, CHUNK, prefetch(scope, chained, CHUNK))
                    .with_cut(span(&chained_cuts, p).1),
                quarantined: Stream::new(
                    &t.quarantine,
                    p,
                    q0,
                    CHUNK,
                    prefetch(scope, quarantined, CHUNK),
                )
                .with_cut(span(&quarantine_cuts, p).1),
            };
            stream::run(&mut check, &mut streams, &mut |n| {
                done += n;
                progress(done, total);
            })
        })?;
        report.absorb(check.finish()?);
    }
    if check_input && report.input_records.is_none() {
        report.input_records = Some(0);
    }
    report.sort();
    Ok(report)
}

/// Output partitions past the input's count hold nothing auditchain wrote
/// (a source partition's output goes to the partition of the same number):
/// records there are someone else's, and would be read by consumers of the
/// whole topic, so each such partition is a problem.
fn beyond_the_input(config: &Config, input_partitions: usize) -> Result<Vec<Problem>> {
    let t = &config.topics;
    let mut found = Vec::new();
    for topic in [&t.chained, &t.quarantine, &t.anchors] {
        let count = topic_partitions(config, topic)?;
        let extra: Vec<i32> = (input_partitions as i32..count as i32).collect();
        if extra.is_empty() {
            continue;
        }
        for (p, (low, high)) in crate::state::high_watermarks(config, topic, &extra)? {
            if high > low {
                found.push(Problem {
                    kind: Kind::Misplaced,
                    place: format!("{topic}/{p}"),
                    what: format!(
                        "holds {} records, but the input has only {input_partitions} partitions: nothing auditchain writes goes there",
                        high - low
                    ),
                });
            }
        }
    }
    Ok(found)
}

/// Per input partition, the offset below which the processor has
/// processed the input: its group's committed offsets. When the group has
/// committed nothing anywhere (it never ran, or this configuration names
/// another group), none: all of the input must then be in the output.
fn processed_offsets(config: &Config) -> Result<HashMap<i32, u64>> {
    let lag = crate::kafka::group_lag(config)?;
    if lag.iter().all(|l| l.committed <= 0) {
        return Ok(HashMap::new());
    }
    Ok(lag
        .iter()
        .map(|l| (l.partition, l.committed.max(0) as u64))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{self, Hash, ZERO};
    use crate::chain::{Anchor, TenantHead};
    use crate::records::DROPPED_VALUE_MARK;
    use crate::route::Reason;
    use ed25519_dalek::SigningKey;

    struct Built {
        trail: Trail,
        keys: KeySet,
        processors: HashMap<String, VerifyingKey>,
        input: Vec<Coord>,
    }

    /// A chained record of `tenant` in partition `in`/0, signed by the test
    /// producer key.
    fn chained(tenant: &str, seq: u64, prev: Hash, offset: u64, event: Vec<u8>) -> ChainedRecord {
        let producer = SigningKey::from_bytes(&[1; 32]);
        let digest = chain::event_digest(&event);
        ChainedRecord {
            tenant_id: tenant.into(),
            seq,
            prev_hash: prev,
            entry_hash: chain::entry_hash(
                tenant,
                seq,
                &prev,
                &digest,
                chain::SourceCoord {
                    topic: "in",
                    partition: 0,
                    offset,
                },
            ),
            event_digest: digest,
            source_topic: "in".into(),
            source_partition: 0,
            source_offset: offset,
            source_timestamp_ms: 0,
            key_id: "p".into(),
            producer_sig: chain::sign(&producer, &chain::event_msg(tenant, &event)).to_vec(),
            event,
            anchor_seq: 1,
        }
    }

    /// A `MISSING_KEY` quarantine record at `offset` of `in`/0.
    fn quarantined(offset: u64) -> QuarantineRecord {
        QuarantineRecord {
            reason: Reason::MissingKey,
            detail: String::new(),
            source_topic: "in".into(),
            source_partition: 0,
            source_offset: offset,
            source_timestamp_ms: 0,
            raw_key: None,
            raw_value: Some(b"junk".to_vec()),
            headers: Vec::new(),
            quarantine_hash: chain::quarantine_hash(
                chain::SourceCoord {
                    topic: "in",
                    partition: 0,
                    offset,
                },
                b"",
                b"junk",
                "MISSING_KEY",
            ),
            anchor_seq: 1,
        }
    }

    /// A valid trail: tenant `a` at offsets 0, 1, 3; a quarantined record at
    /// 2; one anchor over 0..=3.
    fn build() -> Built {
        let producer = SigningKey::from_bytes(&[1; 32]);
        let processor = SigningKey::from_bytes(&[2; 32]);
        let keys = KeySet::parse(
            &format!(
                "[[keys]]\nkey_id = \"p\"\npublic_key = \"{}\"\n",
                hex::encode(producer.verifying_key().to_bytes())
            ),
            std::path::Path::new("k"),
        )
        .expect("keys");
        let mut trail = Trail::default();
        let mut prev = ZERO;
        let mut leaves = Vec::new();
        for (seq, offset) in [(1u64, 0u64), (2, 1), (3, 3)] {
            let r = chained("a", seq, prev, offset, vec![0, 0, 0, 0, 1, seq as u8]);
            prev = r.entry_hash;
            leaves.push((offset, r.entry_hash));
            trail.chained.push(r);
        }
        let q = quarantined(2);
        leaves.push((2, q.quarantine_hash));
        trail.quarantined.push(q);
        leaves.sort_by_key(|(o, _)| *o);
        let hashes: Vec<Hash> = leaves.iter().map(|(_, h)| *h).collect();
        let anchor = Anchor {
            source_topic: "in".into(),
            source_partition: 0,
            anchor_seq: 1,
            prev_anchor_hash: ZERO,
            first_offset: 0,
            last_offset: 3,
            chained_count: 3,
            quarantined_count: 1,
            merkle_root: chain::merkle_root(&hashes).expect("leaves"),
            tenant_heads: vec![TenantHead {
                tenant_id: "a".into(),
                seq: 3,
                entry_hash: prev,
            }],
            created_at_us: 1,
            signer_key_id: "proc".into(),
        };
        let msg = anchor.message();
        trail.anchors.push(AnchorBatch {
            anchor_hash: chain::hash::h(&msg),
            signature: chain::sign(&processor, &msg).to_vec(),
            processor_id: "i".into(),
            anchor,
        });
        Built {
            trail,
            keys,
            processors: HashMap::from([("proc".to_string(), processor.verifying_key())]),
            input: (0..4).map(|o| ("in".to_string(), 0, o)).collect(),
        }
    }

    fn problems(b: &Built) -> Vec<Problem> {
        check(&b.trail, &b.keys, &b.processors, Some(&b.input)).problems
    }

    /// Recomputes the anchor of `b` over its current leaves and signs it.
    fn reanchor(b: &mut Built) {
        let mut leaves: Vec<(u64, Hash)> = b
            .trail
            .chained
            .iter()
            .map(|c| (c.source_offset, c.entry_hash))
            .chain(
                b.trail
                    .quarantined
                    .iter()
                    .map(|q| (q.source_offset, q.quarantine_hash)),
            )
            .collect();
        leaves.sort_by_key(|(o, _)| *o);
        let hashes: Vec<Hash> = leaves.iter().map(|(_, h)| *h).collect();
        let batch = &mut b.trail.anchors[0];
        batch.anchor.merkle_root = chain::merkle_root(&hashes).expect("leaves");
        let msg = batch.anchor.message();
        batch.anchor_hash = chain::hash::h(&msg);
        batch.signature = chain::sign(&SigningKey::from_bytes(&[2; 32]), &msg).to_vec();
    }

    /// A record too large to keep whole, written by `encode_to_fit`.
    fn with_dropped_fields() -> Built {
        let mut b = build();
        let q = &mut b.trail.quarantined[0];
        q.raw_key = Some(b"key".to_vec());
        q.encode_to_fit(3, 120).expect("fit");
        assert_eq!((q.raw_key.as_ref(), q.raw_value.as_ref()), (None, None));
        reanchor(&mut b);
        b
    }

    #[test]
    fn dropped_fields_verify_from_their_digests() {
        assert_eq!(problems(&with_dropped_fields()), Vec::new());
    }

    #[test]
    fn dropping_or_editing_a_digest_is_detected() {
        let mut b = with_dropped_fields();
        let detail = &mut b.trail.quarantined[0].detail;
        let at = detail.find("blake3 ").expect("mark") + "blake3 ".len();
        let flipped = if &detail[at..=at] == "0" { "1" } else { "0" };
        detail.replace_range(at..=at, flipped);
        assert!(!problems(&b).is_empty());
        // A value left out of a record that is not OVERSIZED, with a
        // correct mark: the mark is not honoured.
        let mut b = build();
        let q = &mut b.trail.quarantined[0];
        q.detail = format!(
            "{DROPPED_VALUE_MARK} 4 bytes blake3 {}; ",
            hex::encode(chain::hash::h(b"junk"))
        );
        q.raw_value = None;
        assert!(!problems(&b).is_empty());
    }

    #[test]
    fn a_valid_trail_verifies() {
        let b = build();
        assert_eq!(problems(&b), Vec::new());
    }

    #[test]
    fn quarantined_records_are_counted_by_reason() {
        let b = build();
        let report = check(&b.trail, &b.keys, &b.processors, Some(&b.input));
        assert_eq!(report.quarantined, 1);
        assert_eq!(
            report.quarantined_by_reason,
            BTreeMap::from([("MISSING_KEY".to_string(), 1)])
        );
    }

    #[test]
    fn every_kind_of_tampering_is_found() {
        type Tamper = fn(&mut Built);
        let cases: Vec<(&str, Tamper)> = vec![
            ("changed event byte", |b| b.trail.chained[1].event[5] ^= 1),
            ("dropped chained record", |b| {
                b.trail.chained.remove(1);
            }),
            ("swapped records", |b| {
                let (x, y) = (
                    b.trail.chained[0].source_offset,
                    b.trail.chained[1].source_offset,
                );
                b.trail.chained[0].source_offset = y;
                b.trail.chained[1].source_offset = x;
            }),
            ("duplicated record", |b| {
                let dup = b.trail.chained[2].clone();
                b.trail.chained.push(dup);
            }),
            ("removed quarantine record", |b| {
                b.trail.quarantined.clear();
            }),
            ("anchor re-signed by an unknown key", |b| {
                let other = SigningKey::from_bytes(&[9; 32]);
                b.trail.anchors[0].signature =
                    chain::sign(&other, &b.trail.anchors[0].anchor.message()).to_vec();
            }),
            ("anchor count edited", |b| {
                b.trail.anchors[0].anchor.chained_count = 2
            }),
            ("input record lost", |b| b.input.push(("in".into(), 0, 4))),
            ("quarantine reason edited", |b| {
                b.trail.quarantined[0].reason = Reason::Oversized
            }),
        ];
        for (name, tamper) in cases {
            let mut b = build();
            tamper(&mut b);
            assert!(!problems(&b).is_empty(), "{name} was not detected");
        }
    }

    /// A trail of `records` events over `tenants` tenants in one partition,
    /// every `quarantine_every`th offset quarantined, an anchor per
    /// `per_anchor` offsets: many anchors, and more records than one chunk.
    fn long_trail(records: u64, tenants: u64, per_anchor: u64, quarantine_every: u64) -> Built {
        let mut b = build();
        b.trail = Trail::default();
        let processor = SigningKey::from_bytes(&[2; 32]);
        let mut heads: BTreeMap<String, (u64, Hash)> = BTreeMap::new();
        let (mut prev_anchor, mut anchor_seq) = (ZERO, 1);
        let mut segment: Vec<Hash> = Vec::new();
        let mut touched: BTreeMap<String, (u64, Hash)> = BTreeMap::new();
        let (mut in_chains, mut in_quarantine, mut first) = (0, 0, 0);
        for offset in 0..records {
            if offset % quarantine_every == quarantine_every - 1 {
                let q = QuarantineRecord {
                    anchor_seq,
                    ..quarantined(offset)
                };
                segment.push(q.quarantine_hash);
                b.trail.quarantined.push(q);
                in_quarantine += 1;
            } else {
                let tenant = format!("t{}", offset % tenants);
                let (seq, prev) = heads.get(&tenant).copied().unwrap_or((0, ZERO));
                let r = ChainedRecord {
                    anchor_seq,
                    ..chained(
                        &tenant,
                        seq + 1,
                        prev,
                        offset,
                        offset.to_be_bytes().to_vec(),
                    )
                };
                heads.insert(tenant.clone(), (seq + 1, r.entry_hash));
                touched.insert(tenant, (seq + 1, r.entry_hash));
                segment.push(r.entry_hash);
                b.trail.chained.push(r);
                in_chains += 1;
            }
            if offset % per_anchor == per_anchor - 1 || offset == records - 1 {
                let anchor = Anchor {
                    source_topic: "in".into(),
                    source_partition: 0,
                    anchor_seq,
                    prev_anchor_hash: prev_anchor,
                    first_offset: first,
                    last_offset: offset,
                    chained_count: in_chains,
                    quarantined_count: in_quarantine,
                    merkle_root: chain::merkle_root(&segment).expect("leaves"),
                    tenant_heads: std::mem::take(&mut touched)
                        .into_iter()
                        .map(|(tenant_id, (seq, entry_hash))| TenantHead {
                            tenant_id,
                            seq,
                            entry_hash,
                        })
                        .collect(),
                    created_at_us: 1,
                    signer_key_id: "proc".into(),
                };
                let msg = anchor.message();
                prev_anchor = chain::hash::h(&msg);
                b.trail.anchors.push(AnchorBatch {
                    anchor_hash: prev_anchor,
                    signature: chain::sign(&processor, &msg).to_vec(),
                    processor_id: "i".into(),
                    anchor,
                });
                anchor_seq += 1;
                segment.clear();
                (in_chains, in_quarantine, first) = (0, 0, offset + 1);
            }
        }
        b.input = (0..records).map(|o| ("in".to_string(), 0, o)).collect();
        b
    }

    fn kinds(b: &Built) -> Vec<Kind> {
        let mut kinds: Vec<Kind> = problems(b).iter().map(|p| p.kind).collect();
        kinds.dedup();
        kinds
    }

    #[test]
    fn a_trail_of_many_anchors_and_chunks_verifies() {
        let b = long_trail(10_000, 37, 700, 11);
        let report = check(&b.trail, &b.keys, &b.processors, Some(&b.input));
        assert_eq!(report.problems, Vec::new());
        assert_eq!(report.anchors, 15);
        assert_eq!(report.chains.len(), 37);
        assert_eq!(report.input_records, Some(10_000));
        assert_eq!(report.chained + report.quarantined, 10_000);
    }

    #[test]
    fn tenant_heads_that_do_not_match_the_records_are_found() {
        let mut b = long_trail(300, 5, 100, 7);
        let batch = &mut b.trail.anchors[1];
        batch.anchor.tenant_heads[0].seq += 1;
        let msg = batch.anchor.message();
        batch.anchor_hash = chain::hash::h(&msg);
        batch.signature = chain::sign(&SigningKey::from_bytes(&[2; 32]), &msg).to_vec();
        let found = problems(&b);
        assert!(
            found[0].kind == Kind::Anchor && found[0].what.contains("tenant_heads"),
            "{found:?}"
        );
    }

    #[test]
    fn records_after_the_last_anchor_are_uncovered() {
        let mut b = long_trail(300, 5, 100, 7);
        b.trail.anchors.pop();
        assert_eq!(kinds(&b), vec![Kind::Uncovered]);
        let found = problems(&b);
        assert_eq!(found[0].place, "in/0@200", "{found:?}");
    }

    /// Where the records of source offset `from` on start in `b`'s chained
    /// and quarantine lists: the cuts of a run that fixed what it reads
    /// while the transaction starting there was still open.
    fn cuts_at(b: &Built, from: u64) -> (i64, i64) {
        let at = |offsets: Vec<u64>| offsets.iter().take_while(|o| **o < from).count() as i64;
        (
            at(b.trail.chained.iter().map(|c| c.source_offset).collect()),
            at(b.trail
                .quarantined
                .iter()
                .map(|q| q.source_offset)
                .collect()),
        )
    }

    #[test]
    fn records_committed_after_the_anchors_end_are_left_for_the_next_run() {
        // A live trail: the last transaction (input 200..) committed after
        // the anchors' end was read, so its anchor is not among them; it
        // had not ended when the cuts were taken.
        let mut b = long_trail(300, 5, 100, 7);
        b.trail.anchors.pop();
        let cuts = cuts_at(&b, 200);
        let r = run_cut(&b, Scope::default(), None, None, 64, cuts);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.chained + r.quarantined, 200);
        // The same run with cuts taken later (the transaction had ended,
        // so its anchor must be there): the records are uncovered.
        let cuts = cuts_at(&b, 250);
        let r = run_cut(&b, Scope::default(), None, None, 64, cuts);
        assert_eq!(
            r.problems.iter().map(|p| p.kind).collect::<Vec<_>>(),
            vec![Kind::Uncovered],
            "{:?}",
            r.problems
        );
        assert_eq!(r.problems[0].place, "in/0@200", "{:?}", r.problems);
    }

    #[test]
    fn records_past_the_cut_that_an_anchor_covers_are_checked_with_it() {
        // Every anchor was read, though the cut is before the last
        // transaction's records: they are verified with their anchor, and a
        // record altered there is still found.
        let mut b = long_trail(300, 5, 100, 7);
        let cuts = cuts_at(&b, 200);
        let r = run_cut(&b, Scope::default(), None, None, 64, cuts);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(r.chained + r.quarantined, 300);
        let last = b.trail.chained.len() - 1;
        b.trail.chained[last].event.push(0);
        let r = run_cut(&b, Scope::default(), None, None, 64, cuts);
        assert!(!r.ok());
    }

    #[test]
    fn a_missing_anchor_in_the_middle_is_a_gap() {
        let mut b = long_trail(300, 5, 100, 7);
        b.trail.anchors.remove(1);
        let found = problems(&b);
        assert_eq!(found[0].kind, Kind::Anchor);
        assert!(found[0].what.contains("anchor 2 is missing"), "{found:?}");
        assert!(found.iter().any(|p| p.kind == Kind::Uncovered), "{found:?}");
    }

    #[test]
    fn a_record_repeated_in_a_later_anchor_is_found() {
        let mut b = long_trail(300, 5, 100, 7);
        let mut copy = b.trail.quarantined[0].clone();
        copy.anchor_seq = 3;
        let at = b
            .trail
            .quarantined
            .iter()
            .position(|q| q.source_offset >= 200)
            .expect("a record in anchor 3");
        b.trail.quarantined.insert(at, copy);
        assert_eq!(kinds(&b), vec![Kind::Duplicate]);
        assert_eq!(problems(&b)[0].place, "in/0@6");
    }

    #[test]
    fn chain_problems_come_first_whatever_the_stream_order() {
        // Seq 5 of a tenant is dropped after its anchor closed: the anchor's
        // own problem is found first in the stream, the chain's is listed
        // first.
        let mut b = long_trail(300, 5, 10, 1000);
        let at = b
            .trail
            .chained
            .iter()
            .position(|r| r.tenant_id == "t0" && r.seq == 2)
            .expect("t0 seq 2");
        b.trail.chained.remove(at);
        let found = problems(&b);
        assert_eq!(found[0].kind, Kind::Chain, "{found:?}");
        assert!(found[0].what.contains("seq 2 is missing"), "{found:?}");
    }

    #[test]
    fn problems_beyond_the_limit_are_counted_not_listed() {
        let mut b = long_trail(20, 2, 10, 1000);
        b.input.extend(
            (20..20 + check::PROBLEMS_PER_KIND as u64 + 5).map(|o| ("in".to_string(), 0, o)),
        );
        let report = check(&b.trail, &b.keys, &b.processors, Some(&b.input));
        assert_eq!(report.problems.len(), check::PROBLEMS_PER_KIND);
        assert_eq!(report.omitted, 5);
        assert!(!report.ok());
    }

    /// Re-signs every anchor of `b` over the records now in its range, as a
    /// buggy processor holding the key would: counts, root, heads, links.
    fn resign_all(b: &mut Built) {
        let processor = SigningKey::from_bytes(&[2; 32]);
        let mut prev = ZERO;
        for i in 0..b.trail.anchors.len() {
            let a = &b.trail.anchors[i].anchor;
            let range = a.first_offset..=a.last_offset;
            // (offset, leaf hash, the tenant and seq of a chained record)
            type Leaf = (u64, Hash, Option<(String, u64)>);
            let mut leaves: Vec<Leaf> = b
                .trail
                .chained
                .iter()
                .filter(|c| range.contains(&c.source_offset))
                .map(|c| {
                    (
                        c.source_offset,
                        c.entry_hash,
                        Some((c.tenant_id.clone(), c.seq)),
                    )
                })
                .chain(
                    b.trail
                        .quarantined
                        .iter()
                        .filter(|q| range.contains(&q.source_offset))
                        .map(|q| (q.source_offset, q.quarantine_hash, None)),
                )
                .collect();
            leaves.sort_by_key(|l| l.0);
            let mut heads: BTreeMap<String, (u64, Hash)> = BTreeMap::new();
            for (_, h, t) in &leaves {
                if let Some((t, seq)) = t {
                    heads.insert(t.clone(), (*seq, *h));
                }
            }
            let a = &mut b.trail.anchors[i];
            a.anchor.prev_anchor_hash = prev;
            a.anchor.chained_count = leaves.iter().filter(|l| l.2.is_some()).count() as u64;
            a.anchor.quarantined_count = leaves.iter().filter(|l| l.2.is_none()).count() as u64;
            let hashes: Vec<Hash> = leaves.iter().map(|l| l.1).collect();
            a.anchor.merkle_root = chain::merkle_root(&hashes).expect("leaves");
            a.anchor.tenant_heads = heads
                .into_iter()
                .map(|(tenant_id, (seq, entry_hash))| TenantHead {
                    tenant_id,
                    seq,
                    entry_hash,
                })
                .collect();
            let msg = a.anchor.message();
            a.anchor_hash = chain::hash::h(&msg);
            a.signature = chain::sign(&processor, &msg).to_vec();
            prev = a.anchor_hash;
        }
    }

    /// The streaming check of partition in/0 of `b` as `verify` runs it:
    /// with `scope`, resumed from `state`, over `input` (`None`: no input).
    /// Output offsets are positions in the trail's lists.
    fn run_scoped(
        b: &Built,
        scope: Scope<'_>,
        state: Option<&PartitionState>,
        input: Option<Vec<u64>>,
    ) -> Report {
        run_chunked(b, scope, state, input, CHUNK)
    }

    /// [`run_scoped`] reading the record streams `chunk` records at a time.
    fn run_chunked(
        b: &Built,
        scope: Scope<'_>,
        state: Option<&PartitionState>,
        input: Option<Vec<u64>>,
        chunk: usize,
    ) -> Report {
        run_cut(b, scope, state, input, chunk, (i64::MAX, i64::MAX))
    }

    /// [`run_chunked`] with the chained and quarantine streams cut at
    /// `cuts` (output offsets: positions in the trail's lists).
    fn run_cut(
        b: &Built,
        scope: Scope<'_>,
        state: Option<&PartitionState>,
        input: Option<Vec<u64>>,
        chunk: usize,
        cuts: (i64, i64),
    ) -> Report {
        let next = state.map(|s| s.next);
        let input = input.map(|v| {
            let from = next.map_or(0, |n| n.input as u64);
            let v: Vec<u64> = v
                .into_iter()
                .filter(|o| *o >= from && *o < scope.input_end)
                .collect();
            Box::new(InputVec::new(v)) as Box<dyn InputOffsets>
        });
        let mut check = PartitionCheck::new("in".into(), 0, &b.processors, scope, input);
        if let Some(s) = state {
            check = check.resume(s).expect("resume");
        }
        let start = |o: Option<i64>| o.unwrap_or(0).max(0) as usize;
        let (a0, c0, q0) = (
            start(next.map(|n| n.anchors)),
            start(next.map(|n| n.chained)),
            start(next.map(|n| n.quarantine)),
        );
        let anchors: Vec<(usize, AnchorBatch)> = b
            .trail
            .anchors
            .iter()
            .cloned()
            .enumerate()
            .skip(a0)
            .collect();
        let chained: Vec<(usize, Link)> = b
            .trail
            .chained
            .iter()
            .enumerate()
            .skip(c0)
            .map(|(i, r)| (i, Link::check(r.clone(), &b.keys)))
            .collect();
        let quarantined: Vec<(usize, QuarantineLeaf)> = b
            .trail
            .quarantined
            .iter()
            .enumerate()
            .skip(q0)
            .map(|(i, q)| (i, QuarantineLeaf::check(q.clone())))
            .collect();
        let mut streams = Streams {
            anchors: Stream::new(
                "anchors",
                0,
                a0 as i64,
                ANCHOR_CHUNK,
                VecSource(items(anchors)),
            ),
            chained: Stream::new("chained", 0, c0 as i64, chunk, VecSource(items(chained)))
                .with_cut(cuts.0),
            quarantined: Stream::new(
                "quarantine",
                0,
                q0 as i64,
                chunk,
                VecSource(items(quarantined)),
            )
            .with_cut(cuts.1),
        };
        stream::run(&mut check, &mut streams, &mut |_| {}).expect("run");
        check.finish().expect("finish")
    }

    /// A processor that lost input offset `lost` (a quarantine record) and
    /// signed anchors over what it wrote.
    fn trail_losing(lost: u64) -> Built {
        let mut b = long_trail(300, 5, 100, 7);
        b.trail.quarantined.retain(|q| q.source_offset != lost);
        resign_all(&mut b);
        b
    }

    fn items<T>(v: Vec<(usize, T)>) -> std::vec::IntoIter<Item<T>> {
        v.into_iter()
            .map(|(i, x)| Item::Record(i as i64, x))
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn all_input(b: &Built) -> Vec<u64> {
        b.input.iter().map(|c| c.2).collect()
    }

    fn lost_at(r: &Report, offset: u64) -> bool {
        r.problems
            .iter()
            .any(|p| p.kind == Kind::Lost && p.place == format!("in/0@{offset}"))
    }

    #[test]
    fn a_loss_inside_an_anchored_range_is_lost_whatever_the_committed_offsets() {
        let b = trail_losing(202);
        // The committed offsets were read (200) before the last
        // transaction, which anchors 200..=299, became visible.
        let scope = Scope {
            processed: 200,
            keep_state: true,
            ..Scope::default()
        };
        let r = run_scoped(&b, scope, None, Some(all_input(&b)));
        assert!(lost_at(&r, 202), "{:?}", r.problems);
    }

    #[test]
    fn output_for_input_retention_deleted_is_trimmed_not_extra_and_losses_after_it_count() {
        let b = trail_losing(202);
        // Retention deleted the input below 150: the reader starts there.
        let kept: Vec<u64> = all_input(&b).into_iter().filter(|o| *o >= 150).collect();
        let trimmed = Scope {
            input_start: 150,
            ..Scope::default()
        };
        let r = run_scoped(&b, trimmed, None, Some(kept.clone()));
        let extra = r.problems.iter().filter(|p| p.kind == Kind::Extra).count();
        assert_eq!(extra, 0, "{:?}", r.problems);
        assert_eq!(r.input_trimmed, Some(150));
        assert!(lost_at(&r, 202), "{:?}", r.problems);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        // Without knowing where the input starts, the same output looks
        // like records no input has.
        let r = run_scoped(&b, Scope::default(), None, Some(kept));
        assert_eq!(
            r.problems.iter().filter(|p| p.kind == Kind::Extra).count(),
            150
        );
    }

    #[test]
    fn no_checkpoint_past_input_that_was_not_read() {
        let b = trail_losing(258);
        // The input's end (250) is inside the last anchor's range.
        let scope = Scope {
            input_end: 250,
            keep_state: true,
            ..Scope::default()
        };
        let r = run_scoped(&b, scope, None, Some(all_input(&b)));
        assert!(r.states.is_empty(), "{:?}", r.states);
    }

    #[test]
    fn only_a_whole_check_writes_a_checkpoint() {
        let b = trail_losing(202);
        let keep = Scope {
            keep_state: true,
            ..Scope::default()
        };
        let whole = run_scoped(&b, keep, None, Some(all_input(&b)));
        assert!(lost_at(&whole, 202));
        let no_input = run_scoped(&b, keep, None, None);
        assert!(no_input.ok() && no_input.states.is_empty());
        let one_tenant = Scope {
            tenant: Some("t0"),
            ..keep
        };
        assert!(run_scoped(&b, one_tenant, None, Some(all_input(&b)))
            .states
            .is_empty());
        let some_offsets = Scope {
            offsets: Some((0, 10)),
            ..keep
        };
        assert!(run_scoped(&b, some_offsets, None, Some(all_input(&b)))
            .states
            .is_empty());
        // A sound trail's whole check does write one, and a run resumed
        // from it checks the rest.
        let sound = long_trail(300, 5, 100, 7);
        let first = run_scoped(&sound, keep, None, Some(all_input(&sound)));
        let state = first.states.get(&0).cloned().expect("a checkpoint");
        let again = run_scoped(&sound, keep, Some(&state), Some(all_input(&sound)));
        assert!(again.ok(), "{:?}", again.problems);
        assert_eq!(again.states.get(&0), Some(&state));
    }

    #[test]
    fn a_key_bound_to_other_tenants_is_reported() {
        let mut b = build();
        let producer = SigningKey::from_bytes(&[1; 32]);
        b.keys = KeySet::parse(
            &format!(
                "[[keys]]\nkey_id = \"p\"\npublic_key = \"{}\"\ntenants = [\"someone-else\"]\n",
                hex::encode(producer.verifying_key().to_bytes())
            ),
            std::path::Path::new("k"),
        )
        .expect("keys");
        let found = problems(&b);
        assert!(
            found
                .iter()
                .any(|p| p.what.contains("may not sign for this tenant")),
            "{found:?}"
        );
    }

    #[test]
    fn an_anchor_of_another_partition_takes_no_records() {
        let mut b = long_trail(5_000, 37, 100, 11);
        let mut bogus = b.trail.anchors[0].clone();
        bogus.anchor.source_partition = 1;
        bogus.anchor.last_offset = u64::MAX;
        b.trail.anchors.insert(1, bogus);
        let mut forged = chained("zz", 1, ZERO, 1 << 40, vec![1, 2, 3]);
        forged.anchor_seq = 999;
        b.trail.chained.push(forged);
        let r = run_scoped(&b, Scope::default(), None, None);
        let kinds: Vec<Kind> = r.problems.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            vec![Kind::Misplaced, Kind::Uncovered],
            "{:?}",
            r.problems
        );
        assert_eq!(r.problems[1].place, format!("in/0@{}", 1u64 << 40));
    }

    #[test]
    fn a_record_forged_with_a_far_source_offset_holds_nothing_back() {
        for (at, chunk, forgeries) in [
            (50, CHUNK, 1),
            (15, 16, 1),
            (16, 16, 1),
            (40, CHUNK, 2),
            (14, 16, 2),
        ] {
            let mut b = long_trail(1_000, 5, 100, 7);
            for n in 0..forgeries {
                let mut forged = b.trail.chained[at].clone();
                forged.source_offset = (1 << 50) + n;
                b.trail.chained.insert(at, forged);
            }
            let r = run_chunked(&b, Scope::default(), None, Some(all_input(&b)), chunk);
            let what = format!("at {at}, chunk {chunk}: {:?}", r.problems);
            assert_eq!(r.problems.len(), forgeries as usize, "{what}");
            for (n, p) in r.problems.iter().enumerate() {
                assert_eq!(p.kind, Kind::Extra, "{what}");
                assert!(p.what.contains("stands before"), "{what}");
                assert_eq!(p.place, format!("chained/0@{}", at + n), "{what}");
            }
        }
    }

    #[test]
    fn a_forged_anchor_is_rejected_before_it_takes_records() {
        let mut b = long_trail(1_000, 5, 100, 7);
        let mut forged = b.trail.anchors[1].clone();
        forged.anchor.last_offset = u64::MAX;
        b.trail.anchors[1] = forged;
        let found = problems(&b);
        assert_eq!(found[0].kind, Kind::Anchor, "{found:?}");
        assert!(
            found[0].what.contains("anchor_hash does not recompute"),
            "{found:?}"
        );
        assert!(found.iter().any(|p| p.kind == Kind::Uncovered), "{found:?}");
    }
}
