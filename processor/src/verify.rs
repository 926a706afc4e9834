//! Checking an audit trail (DESIGN.md §4.5): tenant chains, anchors and
//! their signatures, and completeness against the input.
//!
//! The checks are pure functions over records; `read_*` fetch those records
//! from Kafka (`read_committed`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::chain::{self, Hash, ZERO};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::kafka::{base_client_config, partition_count, QuietContext};
use crate::keys::KeySet;
use crate::records::{
    dropped_digest, AnchorBatch, ChainedRecord, QuarantineRecord, DROPPED_KEY_MARK,
    DROPPED_VALUE_MARK,
};
use crate::route::Reason;

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

/// One thing wrong with a trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
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
    /// Everything wrong, in the order found.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, place: impl Into<String>, what: impl Into<String>) {
        self.problems.push(Problem {
            place: place.into(),
            what: what.into(),
        });
    }
}

/// A record's Merkle leaf data and what the record says about itself.
#[derive(Debug, Clone, Copy)]
struct Leaf {
    hash: Hash,
    chained: bool,
    anchor_seq: u64,
}

fn short(h: &Hash) -> String {
    hex::encode(&h[..8])
}

/// Checks chains, anchors and (when `input` is given) completeness.
/// `processor_keys` are the public keys anchors may be signed with, by key id.
pub fn check(
    trail: &Trail,
    producer_keys: &KeySet,
    processor_keys: &HashMap<String, VerifyingKey>,
    input: Option<&[Coord]>,
) -> Report {
    let mut report = Report {
        chained: trail.chained.len(),
        quarantined: trail.quarantined.len(),
        anchors: trail.anchors.len(),
        ..Report::default()
    };
    for q in &trail.quarantined {
        *report
            .quarantined_by_reason
            .entry(q.reason.code().to_string())
            .or_default() += 1;
    }
    for (topic, p, o, e) in &trail.undecodable {
        report.problem(
            format!("{topic}/{p}@{o}"),
            format!("output record does not decode: {e}"),
        );
    }

    // Chains.
    let mut chains: BTreeMap<(String, String, u32), Vec<&ChainedRecord>> = BTreeMap::new();
    for r in &trail.chained {
        chains
            .entry((
                r.tenant_id.clone(),
                r.source_topic.clone(),
                r.source_partition,
            ))
            .or_default()
            .push(r);
    }
    for (id, records) in &mut chains {
        records.sort_by_key(|r| (r.seq, r.source_offset));
        let place = format!("chain {}@{}/{}", id.0, id.1, id.2);
        let mut prev = ZERO;
        let mut last_offset: Option<u64> = None;
        for (i, r) in records.iter().enumerate() {
            let want = i as u64 + 1;
            if r.seq != want {
                report.problem(
                    format!("{place} seq {}", r.seq),
                    if r.seq < want {
                        "seq repeated (duplicate or fork)".to_string()
                    } else {
                        format!("gap: seq {want} is missing")
                    },
                );
                break;
            }
            if r.prev_hash != prev {
                report.problem(
                    format!("{place} seq {}", r.seq),
                    format!(
                        "prev_hash {} does not link to seq {}'s entry_hash {}",
                        short(&r.prev_hash),
                        r.seq - 1,
                        short(&prev)
                    ),
                );
            }
            if let Some(lo) = last_offset {
                if r.source_offset <= lo {
                    report.problem(
                        format!("{place} seq {}", r.seq),
                        format!(
                            "source offset {} is not after the previous entry's {lo} (reordered)",
                            r.source_offset
                        ),
                    );
                }
            }
            let digest = chain::event_digest(&r.event);
            if digest != r.event_digest {
                report.problem(
                    format!("{place} seq {}", r.seq),
                    "event_digest does not match the event bytes",
                );
            }
            let entry = chain::entry_hash(
                &r.tenant_id,
                r.seq,
                &r.prev_hash,
                &digest,
                &r.source_topic,
                r.source_partition,
                r.source_offset,
            );
            if entry != r.entry_hash {
                report.problem(
                    format!("{place} seq {}", r.seq),
                    "entry_hash does not recompute",
                );
            }
            match producer_keys.get(&r.key_id) {
                None => report.problem(
                    format!("{place} seq {}", r.seq),
                    format!("producer key `{}` is not in the key set", r.key_id),
                ),
                Some(k) => {
                    if !chain::verify_strict(
                        &k.public_key,
                        &chain::event_msg(&r.tenant_id, &r.event),
                        &r.producer_sig,
                    ) {
                        report.problem(
                            format!("{place} seq {}", r.seq),
                            format!("producer signature does not verify under `{}`", r.key_id),
                        );
                    }
                }
            }
            prev = r.entry_hash;
            last_offset = Some(r.source_offset);
        }
        report.chains.insert(id.clone(), records.len() as u64);
    }

    // Leaves by source partition and offset; duplicates across both sets.
    let mut leaves: HashMap<(String, u32), BTreeMap<u64, Leaf>> = HashMap::new();
    let mut seen: HashSet<Coord> = HashSet::new();
    let mut coords: Vec<(Coord, Leaf)> =
        Vec::with_capacity(trail.chained.len() + trail.quarantined.len());
    coords.extend(trail.chained.iter().map(|r| {
        let leaf = Leaf {
            hash: r.entry_hash,
            chained: true,
            anchor_seq: r.anchor_seq,
        };
        (
            (r.source_topic.clone(), r.source_partition, r.source_offset),
            leaf,
        )
    }));
    for q in &trail.quarantined {
        let qh = chain::quarantine_hash_of_digests(
            &q.source_topic,
            q.source_partition,
            q.source_offset,
            &raw_digest(q, q.raw_key.as_deref(), DROPPED_KEY_MARK),
            &raw_digest(q, q.raw_value.as_deref(), DROPPED_VALUE_MARK),
            q.reason.code(),
        );
        let place = format!(
            "quarantine {}/{}@{}",
            q.source_topic, q.source_partition, q.source_offset
        );
        if qh != q.quarantine_hash {
            report.problem(place, "quarantine_hash does not recompute");
        }
        let leaf = Leaf {
            hash: qh,
            chained: false,
            anchor_seq: q.anchor_seq,
        };
        coords.push((
            (q.source_topic.clone(), q.source_partition, q.source_offset),
            leaf,
        ));
    }
    for (coord, leaf) in coords {
        if !seen.insert(coord.clone()) {
            report.problem(
                format!("{}/{}@{}", coord.0, coord.1, coord.2),
                "source record appears more than once in the output (duplicated or doubly routed)",
            );
            continue;
        }
        leaves
            .entry((coord.0, coord.1))
            .or_default()
            .insert(coord.2, leaf);
    }

    // Anchors.
    let mut anchor_chains: BTreeMap<(String, u32), Vec<&AnchorBatch>> = BTreeMap::new();
    for a in &trail.anchors {
        anchor_chains
            .entry((a.anchor.source_topic.clone(), a.anchor.source_partition))
            .or_default()
            .push(a);
    }
    let mut covered: HashMap<(String, u32), u64> = HashMap::new();
    for ((topic, p), anchors) in &mut anchor_chains {
        anchors.sort_by_key(|a| a.anchor.anchor_seq);
        let mut prev = ZERO;
        let empty = BTreeMap::new();
        let part_leaves = leaves.get(&(topic.clone(), *p)).unwrap_or(&empty);
        for (i, b) in anchors.iter().enumerate() {
            let a = &b.anchor;
            let place = format!("anchor {topic}/{p} #{}", a.anchor_seq);
            if a.anchor_seq != i as u64 + 1 {
                report.problem(
                    &place,
                    if a.anchor_seq < i as u64 + 1 {
                        "anchor_seq repeated".to_string()
                    } else {
                        format!("gap: anchor {} is missing", i + 1)
                    },
                );
                break;
            }
            if a.prev_anchor_hash != prev {
                report.problem(
                    &place,
                    "prev_anchor_hash does not link to the previous anchor",
                );
            }
            let msg = a.message();
            if chain::hash::h(&msg) != b.anchor_hash {
                report.problem(
                    &place,
                    "anchor_hash does not recompute (a signed field was altered)",
                );
            }
            match processor_keys.get(&a.signer_key_id) {
                None => report.problem(
                    &place,
                    format!("signed by unknown processor key `{}`", a.signer_key_id),
                ),
                Some(k) => {
                    if !chain::verify_strict(k, &msg, &b.signature) {
                        report.problem(
                            &place,
                            format!(
                                "signature does not verify under processor key `{}`",
                                a.signer_key_id
                            ),
                        );
                    }
                }
            }
            let segment: Vec<(&u64, &Leaf)> =
                part_leaves.range(a.first_offset..=a.last_offset).collect();
            let chained = segment.iter().filter(|(_, l)| l.chained).count() as u64;
            let quarantined = segment.len() as u64 - chained;
            if chained != a.chained_count || quarantined != a.quarantined_count {
                report.problem(&place, format!("covers {chained} chained and {quarantined} quarantined records in offsets {}..={}, the anchor says {} and {}", a.first_offset, a.last_offset, a.chained_count, a.quarantined_count));
            }
            let hashes: Vec<Hash> = segment.iter().map(|(_, l)| l.hash).collect();
            if chain::merkle_root(&hashes) != Some(a.merkle_root) {
                report.problem(
                    &place,
                    "merkle_root does not recompute from the records it covers",
                );
            }
            for (offset, leaf) in &segment {
                let seq = leaf.anchor_seq;
                if seq != a.anchor_seq {
                    report.problem(
                        format!("{topic}/{p}@{offset}"),
                        format!(
                            "record says anchor {seq} but lies in anchor {}'s range",
                            a.anchor_seq
                        ),
                    );
                }
            }
            prev = b.anchor_hash;
            covered.insert((topic.clone(), *p), a.last_offset);
        }
    }
    for ((topic, p), part_leaves) in &leaves {
        let last = covered.get(&(topic.clone(), *p)).copied();
        for offset in part_leaves.keys() {
            if last.is_none_or(|l| *offset > l) {
                report.problem(
                    format!("{topic}/{p}@{offset}"),
                    "record is not covered by any anchor",
                );
                break;
            }
        }
    }

    // Completeness.
    if let Some(input) = input {
        report.input_records = Some(input.len());
        let input_set: HashSet<&Coord> = input.iter().collect();
        let mut missing: Vec<&Coord> = input.iter().filter(|c| !seen.contains(*c)).collect();
        missing.sort();
        for c in missing {
            report.problem(
                format!("{}/{}@{}", c.0, c.1, c.2),
                "input record is neither chained nor quarantined (lost)",
            );
        }
        let mut extra: Vec<&Coord> = seen.iter().filter(|c| !input_set.contains(c)).collect();
        extra.sort();
        for c in extra {
            report.problem(
                format!("{}/{}@{}", c.0, c.1, c.2),
                "output refers to an input record that is not in the committed input",
            );
        }
    }
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
}

/// Verifies the trail of `config` partition by partition, so memory holds
/// one partition's records at a time; `progress` is told each partition done.
pub fn verify(
    config: &Config,
    producer_keys: &KeySet,
    processor_keys: &HashMap<String, VerifyingKey>,
    options: &Options,
    mut progress: impl FnMut(usize, usize),
) -> Result<Report> {
    let partitions: Vec<i32> = match &options.partitions {
        Some(ps) => ps.clone(),
        None => (0..topic_partitions(config, &config.topics.input)? as i32).collect(),
    };
    let mut total = Report::default();
    let check_input = options.check_input && options.tenant.is_none();
    if check_input {
        total.input_records = Some(0);
    }
    for (i, p) in partitions.iter().enumerate() {
        let only = [*p];
        let trail = read_trail_partitions(config, Some(&only))?;
        let input = if check_input {
            let mut coords = read_input_partitions(config, Some(&only))?;
            if let Some((lo, hi)) = options.offsets {
                coords.retain(|c| (lo..=hi).contains(&c.2));
            }
            Some(coords)
        } else {
            None
        };
        let mut report = check(&trail, producer_keys, processor_keys, input.as_deref());
        if let Some((lo, hi)) = options.offsets {
            // Output records outside the range are not "extra" when only a
            // range of the input was compared.
            report.problems.retain(|pr| {
                !pr.what.starts_with("output refers to an input record")
                    || offset_in_place(&pr.place).is_some_and(|o| (lo..=hi).contains(&o))
            });
        }
        if let Some(tenant) = &options.tenant {
            report.chains.retain(|(t, _, _), _| t == tenant);
            let prefix = format!("chain {tenant}@");
            report
                .problems
                .retain(|pr| !pr.place.starts_with("chain ") || pr.place.starts_with(&prefix));
        }
        total.chains.extend(report.chains);
        total.chained += report.chained;
        total.quarantined += report.quarantined;
        for (reason, n) in report.quarantined_by_reason {
            *total.quarantined_by_reason.entry(reason).or_default() += n;
        }
        total.anchors += report.anchors;
        if let (Some(t), Some(n)) = (total.input_records.as_mut(), report.input_records) {
            *t += n;
        }
        total.problems.extend(report.problems);
        progress(i + 1, partitions.len());
    }
    Ok(total)
}

fn offset_in_place(place: &str) -> Option<u64> {
    place.rsplit_once('@').and_then(|(_, o)| o.parse().ok())
}

/// Reads every partition of `topic` to its end (`read_committed`), handing
/// each record to `f`.
pub fn read_topic(
    config: &Config,
    topic: &str,
    f: impl FnMut(i32, i64, Option<&[u8]>, Option<&[u8]>),
) -> Result<()> {
    read_partitions(config, topic, None, f)
}

/// Number of partitions of `topic`.
pub fn topic_partitions(config: &Config, topic: &str) -> Result<usize> {
    let consumer: BaseConsumer<QuietContext> = base_client_config(config, "auditchain-verify")
        .create_with_context(QuietContext)
        .map_err(|e| Error::kafka("creating a metadata client", e))?;
    partition_count(&consumer, topic, &config.kafka.bootstrap_servers)?.ok_or_else(|| {
        Error::Topic {
            topic: topic.into(),
            message: "does not exist".into(),
        }
    })
}

/// Like [`read_topic`], for `only` partitions (all when `None`).
pub fn read_partitions(
    config: &Config,
    topic: &str,
    only: Option<&[i32]>,
    mut f: impl FnMut(i32, i64, Option<&[u8]>, Option<&[u8]>),
) -> Result<()> {
    let consumer: BaseConsumer<QuietContext> = base_client_config(config, "auditchain-verify")
        .set(
            "group.id",
            format!("auditchain-verify-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create_with_context(QuietContext)
        .map_err(|e| Error::kafka("creating a reader", e))?;
    let partitions = partition_count(&consumer, topic, &config.kafka.bootstrap_servers)?
        .ok_or_else(|| Error::Topic {
            topic: topic.into(),
            message: "does not exist".into(),
        })?;
    let wanted: Vec<i32> = match only {
        Some(ps) => ps
            .iter()
            .copied()
            .filter(|p| (*p as usize) < partitions)
            .collect(),
        None => (0..partitions as i32).collect(),
    };
    if wanted.is_empty() {
        return Ok(());
    }
    // The end is each partition's high watermark when reading starts, not
    // the LSO: right after a processor died its open transaction holds the
    // LSO back until the coordinator aborts it, and stopping there would
    // report the records committed after it as lost (a false alarm).
    // Records written after the start are left for the next run.
    let mut pending =
        crate::state::to_read(&crate::state::high_watermarks(config, topic, &wanted)?);
    if pending.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for p in pending.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(|e| Error::kafka("building the assignment", e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka(format!("assigning `{topic}`"), e))?;
    let deadline = Instant::now() + READ_LIMIT;
    loop {
        let positions = consumer
            .position()
            .map_err(|e| Error::kafka(format!("reading the position in `{topic}`"), e))?;
        for e in positions.elements_for_topic(topic) {
            if pending
                .get(&e.partition())
                .is_some_and(|high| crate::state::reached(e.offset(), *high))
            {
                pending.remove(&e.partition());
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::State(format!(
                "reading `{topic}` did not reach the high watermark of partitions {:?} within {} s: a transaction is still open there (a processor that died mid-transaction, until the broker aborts it, or a producer outside auditchain); run verify again once it has ended",
                pending.keys().collect::<Vec<_>>(),
                READ_LIMIT.as_secs()
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Ok(m)) => {
                if pending
                    .get(&m.partition())
                    .is_some_and(|high| m.offset() < *high)
                {
                    f(m.partition(), m.offset(), m.key(), m.payload());
                }
            }
            Some(Err(e)) => return Err(Error::kafka(format!("reading `{topic}`"), e)),
        }
    }
}

/// How long reading one topic may wait for open transactions to end.
const READ_LIMIT: Duration = Duration::from_secs(300);

/// Reads the three output topics of `config`.
pub fn read_trail(config: &Config) -> Result<Trail> {
    read_trail_partitions(config, None)
}

/// Reads `only` partitions (all when `None`) of the three output topics.
pub fn read_trail_partitions(config: &Config, only: Option<&[i32]>) -> Result<Trail> {
    let mut trail = Trail::default();
    let t = &config.topics;
    let mut undecodable = Vec::new();
    read_partitions(
        config,
        &t.chained,
        only,
        |p, o, _, v| match ChainedRecord::decode(v.unwrap_or_default()) {
            Ok(r) => trail.chained.push(r),
            Err(e) => undecodable.push((t.chained.clone(), p, o, e.to_string())),
        },
    )?;
    read_partitions(
        config,
        &t.quarantine,
        only,
        |p, o, _, v| match QuarantineRecord::decode(v.unwrap_or_default()) {
            Ok(r) => trail.quarantined.push(r),
            Err(e) => undecodable.push((t.quarantine.clone(), p, o, e.to_string())),
        },
    )?;
    read_partitions(
        config,
        &t.anchors,
        only,
        |p, o, _, v| match AnchorBatch::decode(v.unwrap_or_default()) {
            Ok(r) => trail.anchors.push(r),
            Err(e) => undecodable.push((t.anchors.clone(), p, o, e.to_string())),
        },
    )?;
    trail.undecodable = undecodable;
    Ok(trail)
}

/// The coordinates of every committed data record of the input topic.
pub fn read_input_coords(config: &Config) -> Result<Vec<Coord>> {
    read_input_partitions(config, None)
}

/// Like [`read_input_coords`], for `only` partitions.
pub fn read_input_partitions(config: &Config, only: Option<&[i32]>) -> Result<Vec<Coord>> {
    let topic = config.topics.input.clone();
    let mut coords = Vec::new();
    read_partitions(config, &topic, only, |p, o, _, _| {
        coords.push((topic.clone(), p as u32, o as u64))
    })?;
    Ok(coords)
}

/// `H(raw field)` for the quarantine hash: of the field when the record has
/// it; for an `OVERSIZED` record that left it out because it was too large to
/// keep, the digest its detail gives instead (docs/decisions.md, "Output size
/// limits"). Any other record without the field hashes the empty string, as
/// §4.3 says.
fn raw_digest(q: &QuarantineRecord, field: Option<&[u8]>, mark: &str) -> Hash {
    match field {
        Some(bytes) => chain::hash::h(bytes),
        None => (q.reason == Reason::Oversized)
            .then(|| dropped_digest(&q.detail, mark))
            .flatten()
            .unwrap_or_else(|| chain::hash::h(&[])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{Anchor, TenantHead};
    use crate::route::Reason;
    use ed25519_dalek::SigningKey;

    struct Built {
        trail: Trail,
        keys: KeySet,
        processors: HashMap<String, VerifyingKey>,
        input: Vec<Coord>,
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
            let event = vec![0, 0, 0, 0, 1, seq as u8];
            let digest = chain::event_digest(&event);
            let entry = chain::entry_hash("a", seq, &prev, &digest, "in", 0, offset);
            trail.chained.push(ChainedRecord {
                tenant_id: "a".into(),
                seq,
                prev_hash: prev,
                entry_hash: entry,
                event_digest: digest,
                source_topic: "in".into(),
                source_partition: 0,
                source_offset: offset,
                source_timestamp_ms: 0,
                key_id: "p".into(),
                producer_sig: chain::sign(&producer, &chain::event_msg("a", &event)).to_vec(),
                event,
                anchor_seq: 1,
            });
            prev = entry;
            leaves.push((offset, entry));
        }
        let qh = chain::quarantine_hash("in", 0, 2, b"", b"junk", "MISSING_KEY");
        trail.quarantined.push(QuarantineRecord {
            reason: Reason::MissingKey,
            detail: String::new(),
            source_topic: "in".into(),
            source_partition: 0,
            source_offset: 2,
            source_timestamp_ms: 0,
            raw_key: None,
            raw_value: Some(b"junk".to_vec()),
            headers: Vec::new(),
            quarantine_hash: qh,
            anchor_seq: 1,
        });
        leaves.push((2, qh));
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
}
