//! Tenant bundles: one tenant's records with the signed anchors that cover
//! them and each record's Merkle audit path, in a file that `check-bundle`
//! verifies offline with public keys only (`auditchain export`).
//!
//! A bundle is JSON Lines, which `export` writes a line at a time, holding
//! one anchor's records at most (`check-bundle` reads the whole file: the
//! producer keys come last):
//!
//! ```text
//! {"type":"header", "format":"auditchain-bundle/v1", "tenant_id":…, "source_topic":…, "from_seq":…, "to_seq":…}
//! {"type":"anchor", …the signed anchor, as in a proof…}
//! {"type":"record", "source_partition":…, "source_offset":…, "seq":…, …, "leaf_index":…, "audit_path":[…]}
//! …                               (each anchor before the records it covers)
//! {"type":"producer_keys", "keys":[{"key_id":…, "public_key":…}]}
//! ```
//!
//! Other tenants' records never appear: only sibling hashes in audit paths
//! and, because the anchor signature covers them (§4.4), the other tenant
//! heads of the same anchors (tenant id, seq, entry hash).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::chain::{self, Anchor, Hash, ZERO};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::KeySet;
use crate::prove::{
    check_anchor, check_inclusion, unhex32, Proof, ProofAnchor, ProvenRecord, PROOF_VERSION,
};
use crate::records::{AnchorBatch, ChainedRecord, QuarantineRecord};
use crate::verify::{read, PartitionReader};

/// The `format` of a bundle's header.
pub const BUNDLE_FORMAT: &str = "auditchain-bundle/v1";

/// One line of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// First line: what the bundle holds.
    Header {
        /// [`BUNDLE_FORMAT`].
        format: String,
        /// The tenant.
        tenant_id: String,
        /// The input topic of its chains.
        source_topic: String,
        /// First seq asked for.
        from_seq: u64,
        /// Last seq asked for (the end of the trail when absent).
        to_seq: Option<u64>,
    },
    /// A signed anchor covering the records that follow it.
    Anchor(ProofAnchor),
    /// One of the tenant's chained records.
    Record(BundleRecord),
    /// Last line: the producer public keys the records name.
    ProducerKeys {
        /// Key id and public key (hex).
        keys: Vec<BundleKey>,
    },
}

/// A producer key carried in a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BundleKey {
    /// Key id.
    pub key_id: String,
    /// Ed25519 public key (hex).
    pub public_key: String,
}

/// A chained record with where it sits in its anchor's tree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BundleRecord {
    /// Source partition.
    pub source_partition: u32,
    /// Source offset.
    pub source_offset: u64,
    /// Source timestamp (ms).
    pub source_timestamp_ms: i64,
    /// Position in the chain.
    pub seq: u64,
    /// Previous entry hash (hex).
    pub prev_hash: String,
    /// This entry hash (hex).
    pub entry_hash: String,
    /// The event value, verbatim (hex).
    pub event: String,
    /// Producer key id.
    pub key_id: String,
    /// Producer signature (hex).
    pub producer_sig: String,
    /// The anchor that covers it.
    pub anchor_seq: u64,
    /// Index of its leaf in the anchor's tree.
    pub leaf_index: u64,
    /// RFC 6962 audit path, leaf to root (hex).
    pub audit_path: Vec<String>,
}

/// Which of a tenant's records to export.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The tenant.
    pub tenant: String,
    /// Seqs from this one (1 for the whole chain).
    pub from_seq: u64,
    /// ... up to this one (all when `None`).
    pub to_seq: Option<u64>,
    /// Only these source partitions (all when `None`).
    pub partitions: Option<Vec<i32>>,
}

/// What `export` wrote.
#[derive(Debug, Clone, Default)]
pub struct Exported {
    /// Records.
    pub records: usize,
    /// Anchors.
    pub anchors: usize,
    /// Source partitions the tenant has records in.
    pub partitions: Vec<u32>,
}

fn write_line(out: &mut impl Write, line: &Line) -> Result<()> {
    let text = serde_json::to_string(line).map_err(|e| Error::Bundle(e.to_string()))?;
    writeln!(out, "{text}").map_err(|e| Error::Bundle(format!("writing: {e}")))
}

/// A record stream with one record of look-ahead.
struct Peeked<T> {
    reader: PartitionReader,
    decode: fn(&[u8]) -> Result<T>,
    next: Option<T>,
}

impl<T> Peeked<T> {
    fn peek(&mut self) -> Result<Option<&T>> {
        if self.next.is_none() {
            if let Some(m) = self.reader.next_record()? {
                let value = rdkafka::Message::payload(&m).unwrap_or_default();
                self.next = Some((self.decode)(value)?);
            }
        }
        Ok(self.next.as_ref())
    }
}

/// Writes the bundle of `selection` from `config`'s trail to `out`.
pub fn export(config: &Config, selection: &Selection, out: &mut impl Write) -> Result<Exported> {
    let t = &config.topics;
    write_line(
        out,
        &Line::Header {
            format: BUNDLE_FORMAT.into(),
            tenant_id: selection.tenant.clone(),
            source_topic: t.input.clone(),
            from_seq: selection.from_seq,
            to_seq: selection.to_seq,
        },
    )?;
    let partitions: Vec<i32> = match &selection.partitions {
        Some(ps) => ps.clone(),
        None => (0..read::topic_partitions(config, &t.input)? as i32).collect(),
    };
    let ends = |topic: &str| read::watermarks(config, topic, &partitions);
    let (anchor_ends, chained_ends, quarantine_ends) =
        (ends(&t.anchors)?, ends(&t.chained)?, ends(&t.quarantine)?);
    let mut exported = Exported::default();
    let mut key_ids: BTreeMap<String, ()> = BTreeMap::new();
    for p in partitions {
        let open = |topic: &str, e: &HashMap<i32, (i64, i64)>| {
            PartitionReader::open(config, topic, p, e.get(&p).copied().unwrap_or((0, 0)), None)
        };
        let mut anchors = Peeked {
            reader: open(&t.anchors, &anchor_ends)?,
            decode: AnchorBatch::decode,
            next: None,
        };
        let mut chained = Peeked {
            reader: open(&t.chained, &chained_ends)?,
            decode: ChainedRecord::decode,
            next: None,
        };
        let mut quarantined = Peeked {
            reader: open(&t.quarantine, &quarantine_ends)?,
            decode: QuarantineRecord::decode,
            next: None,
        };
        let before = exported.records;
        while let Some(anchor) = anchors.peek()?.cloned() {
            anchors.next = None;
            let segment = segment(&mut chained, &mut quarantined, anchor.anchor.last_offset)?;
            exported.records += export_segment(out, selection, &anchor, &segment, &mut key_ids)?;
            if segment.iter().any(|l| l.wanted(selection)) {
                exported.anchors += 1;
            }
        }
        if exported.records > before {
            exported.partitions.push(p as u32);
        }
    }
    let keys = load_keys(config)?;
    write_line(
        out,
        &Line::ProducerKeys {
            keys: key_ids
                .into_keys()
                .filter_map(|id| {
                    keys.get(&id).map(|k| BundleKey {
                        public_key: hex::encode(k.public_key.to_bytes()),
                        key_id: id,
                    })
                })
                .collect(),
        },
    )?;
    out.flush()
        .map_err(|e| Error::Bundle(format!("writing: {e}")))?;
    Ok(exported)
}

fn load_keys(config: &Config) -> Result<KeySet> {
    KeySet::load(&config.producer_keys.file)
}

/// A leaf of an anchor's segment; chained ones keep their record.
enum SegmentLeaf {
    Chained(Box<ChainedRecord>),
    Quarantined { offset: u64, hash: Hash },
}

impl SegmentLeaf {
    fn offset(&self) -> u64 {
        match self {
            SegmentLeaf::Chained(r) => r.source_offset,
            SegmentLeaf::Quarantined { offset, .. } => *offset,
        }
    }
    fn hash(&self) -> Hash {
        match self {
            SegmentLeaf::Chained(r) => r.entry_hash,
            SegmentLeaf::Quarantined { hash, .. } => *hash,
        }
    }
    fn wanted(&self, s: &Selection) -> bool {
        match self {
            SegmentLeaf::Chained(r) => {
                r.tenant_id == s.tenant
                    && r.seq >= s.from_seq
                    && s.to_seq.is_none_or(|to| r.seq <= to)
            }
            SegmentLeaf::Quarantined { .. } => false,
        }
    }
}

/// The records up to `bound`, in offset order. Other tenants' records are
/// kept only for their leaf hash while the anchor is open.
fn segment(
    chained: &mut Peeked<ChainedRecord>,
    quarantined: &mut Peeked<QuarantineRecord>,
    bound: u64,
) -> Result<Vec<SegmentLeaf>> {
    let mut leaves = Vec::new();
    while chained.peek()?.is_some_and(|r| r.source_offset <= bound) {
        if let Some(r) = chained.next.take() {
            leaves.push(SegmentLeaf::Chained(Box::new(r)));
        }
    }
    while quarantined
        .peek()?
        .is_some_and(|q| q.source_offset <= bound)
    {
        if let Some(q) = quarantined.next.take() {
            leaves.push(SegmentLeaf::Quarantined {
                offset: q.source_offset,
                hash: q.quarantine_hash,
            });
        }
    }
    leaves.sort_by_key(SegmentLeaf::offset);
    Ok(leaves)
}

/// Writes the anchor and the wanted records of one segment; how many.
fn export_segment(
    out: &mut impl Write,
    selection: &Selection,
    anchor: &AnchorBatch,
    segment: &[SegmentLeaf],
    key_ids: &mut BTreeMap<String, ()>,
) -> Result<usize> {
    if !segment.iter().any(|l| l.wanted(selection)) {
        return Ok(0);
    }
    write_line(out, &Line::Anchor(ProofAnchor::from_batch(anchor)))?;
    let hashes: Vec<Hash> = segment.iter().map(SegmentLeaf::hash).collect();
    let mut written = 0;
    for (index, leaf) in segment.iter().enumerate() {
        let SegmentLeaf::Chained(r) = leaf else {
            continue;
        };
        if !leaf.wanted(selection) {
            continue;
        }
        let path = chain::audit_path(&hashes, index)
            .ok_or_else(|| Error::State("audit path out of range".into()))?;
        key_ids.insert(r.key_id.clone(), ());
        write_line(
            out,
            &Line::Record(BundleRecord {
                source_partition: r.source_partition,
                source_offset: r.source_offset,
                source_timestamp_ms: r.source_timestamp_ms,
                seq: r.seq,
                prev_hash: hex::encode(r.prev_hash),
                entry_hash: hex::encode(r.entry_hash),
                event: hex::encode(&r.event),
                key_id: r.key_id.clone(),
                producer_sig: hex::encode(&r.producer_sig),
                anchor_seq: r.anchor_seq,
                leaf_index: index as u64,
                audit_path: path.iter().map(hex::encode).collect(),
            }),
        )?;
        written += 1;
    }
    Ok(written)
}

/// What `check-bundle` found.
#[derive(Debug, Clone, Default)]
pub struct BundleReport {
    /// The tenant.
    pub tenant_id: String,
    /// Records checked.
    pub records: usize,
    /// Anchors checked.
    pub anchors: usize,
    /// Per source partition, the first and last seq in the bundle.
    pub chains: BTreeMap<u32, (u64, u64)>,
    /// Whether producer signatures were checked against keys the auditor
    /// gave (`true`) or only against the keys the bundle carries.
    pub producer_keys_given: bool,
    /// Everything wrong, in the order found.
    pub problems: Vec<String>,
}

impl BundleReport {
    /// Whether the bundle holds.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Chains that start at seq 1: complete from their beginning.
    pub fn complete_from_start(&self) -> bool {
        !self.chains.is_empty() && self.chains.values().all(|(first, _)| *first == 1)
    }
}

/// A tenant chain being followed through the bundle.
#[derive(Debug, Clone, Copy)]
struct Followed {
    seq: u64,
    hash: Hash,
}

/// Checks a bundle offline: each record is in its signed anchor (audit
/// path, anchor hash and signature under `processor_keys`), signed by its
/// producer (under `producer_keys`, or else the keys the bundle carries),
/// the chain is unbroken from the first record to the last, and each
/// anchor's head for the tenant is the last of its records in the bundle —
/// so no record of the range is left out.
///
/// The bundle is read line by line, holding one anchor at a time: a
/// tenant's bundle can be as large as its trail. `open` gives the bundle
/// from its start; without `producer_keys` it is read twice, first for the
/// keys it carries (written after the records).
pub fn check_bundle<R: BufRead>(
    open: impl Fn() -> Result<R>,
    processor_keys: &HashMap<String, VerifyingKey>,
    producer_keys: Option<&KeySet>,
) -> Result<BundleReport> {
    let mut report = BundleReport {
        producer_keys_given: producer_keys.is_some(),
        ..BundleReport::default()
    };
    let carried = match producer_keys {
        Some(_) => HashMap::new(),
        None => carried_keys(open()?, &mut report)?,
    };
    let key = |id: &str| match producer_keys {
        Some(set) => set.get(id).map(|k| k.public_key),
        None => carried.get(id).copied(),
    };
    let mut lines = read_lines(open()?);
    let Some(Line::Header {
        format,
        tenant_id,
        source_topic,
        from_seq,
        to_seq,
    }) = lines.next().transpose()?
    else {
        return Err(Error::Bundle(
            "the bundle does not start with its header".into(),
        ));
    };
    if format != BUNDLE_FORMAT {
        return Err(Error::Bundle(format!(
            "bundle format `{format}` (this build reads {BUNDLE_FORMAT})"
        )));
    }
    report.tenant_id = tenant_id.clone();
    let mut chains: HashMap<u32, Followed> = HashMap::new();
    let mut anchor: Option<(ProofAnchor, Option<Anchor>)> = None;
    // The end of the bundle closes the last anchor as the next anchor line
    // would.
    for line in lines.map(Some).chain(std::iter::once(None)) {
        let line = line.transpose()?;
        if matches!(line, None | Some(Line::Anchor(_))) {
            close_anchor(
                anchor.as_ref().map(|(a, _)| a),
                &tenant_id,
                to_seq,
                &chains,
                &mut report,
            );
        }
        match line {
            Some(Line::Anchor(a)) => {
                report.anchors += 1;
                let (parsed, problems) = check_anchor(&a, processor_keys);
                report.problems.extend(problems.into_iter().map(|p| {
                    format!(
                        "anchor {}/{} #{}: {p}",
                        a.source_topic, a.source_partition, a.anchor_seq
                    )
                }));
                anchor = Some((a, parsed));
            }
            Some(Line::Record(r)) => {
                report.records += 1;
                let Some((a, parsed)) = &anchor else {
                    report.problems.push(format!(
                        "record {}@{} comes before any anchor",
                        r.source_partition, r.source_offset
                    ));
                    continue;
                };
                // An anchor whose fields do not parse was reported once.
                if let Some(parsed) = parsed {
                    let proven = Checked {
                        signed: a,
                        anchor: parsed,
                    };
                    check_record(&r, &proven, &tenant_id, &source_topic, &key, &mut report);
                }
                follow(&r, from_seq, &mut chains, &mut report);
            }
            Some(Line::Header { .. }) => report.problems.push("a second header".into()),
            Some(Line::ProducerKeys { .. }) | None => {}
        }
    }
    if report.records == 0 {
        report.problems.push("the bundle holds no records".into());
    }
    Ok(report)
}

/// The bundle's lines, parsed one at a time (blank lines skipped).
fn read_lines(bundle: impl BufRead) -> impl Iterator<Item = Result<Line>> {
    bundle
        .lines()
        .enumerate()
        .filter(|(_, l)| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(|(i, l)| {
            let l = l.map_err(|e| Error::Bundle(format!("reading: {e}")))?;
            serde_json::from_str(&l).map_err(|e| Error::Bundle(format!("line {}: {e}", i + 1)))
        })
}

/// The producer keys the bundle carries. Only their lines are parsed here;
/// the second pass parses (and reports) every line.
fn carried_keys(
    bundle: impl BufRead,
    report: &mut BundleReport,
) -> Result<HashMap<String, VerifyingKey>> {
    let mut keys = HashMap::new();
    for line in bundle.lines() {
        let line = line.map_err(|e| Error::Bundle(format!("reading: {e}")))?;
        if !line.contains("\"producer_keys\"") {
            continue;
        }
        let Ok(Line::ProducerKeys { keys: list }) = serde_json::from_str(&line) else {
            continue;
        };
        for k in list {
            match crate::keys::parse_verifying_key(&k.public_key) {
                Ok(v) => {
                    keys.insert(k.key_id.clone(), v);
                }
                Err(e) => report
                    .problems
                    .push(format!("producer key `{}`: {e}", k.key_id)),
            }
        }
    }
    Ok(keys)
}

/// An anchor line and its fields, checked once when the line was read.
struct Checked<'a> {
    signed: &'a ProofAnchor,
    anchor: &'a Anchor,
}

/// The checks of one record against its anchor (checked already): the
/// inclusion checks of a proof, as `check-proof` makes them, and the
/// producer's signature.
fn check_record(
    r: &BundleRecord,
    anchor: &Checked<'_>,
    tenant_id: &str,
    source_topic: &str,
    key: &dyn Fn(&str) -> Option<VerifyingKey>,
    report: &mut BundleReport,
) {
    let place = format!(
        "record {}@{} (seq {})",
        r.source_partition, r.source_offset, r.seq
    );
    if r.anchor_seq != anchor.signed.anchor_seq {
        report.problems.push(format!(
            "{place}: names anchor {} but follows anchor {}",
            r.anchor_seq, anchor.signed.anchor_seq
        ));
    }
    let proof = Proof {
        version: PROOF_VERSION,
        source_topic: source_topic.to_string(),
        source_partition: r.source_partition,
        source_offset: r.source_offset,
        record: ProvenRecord::Chained {
            tenant_id: tenant_id.to_string(),
            seq: r.seq,
            prev_hash: r.prev_hash.clone(),
            entry_hash: r.entry_hash.clone(),
            event: r.event.clone(),
            key_id: r.key_id.clone(),
            producer_sig: r.producer_sig.clone(),
        },
        leaf_index: r.leaf_index,
        tree_size: anchor.signed.chained_count + anchor.signed.quarantined_count,
        audit_path: r.audit_path.clone(),
        anchor: anchor.signed.clone(),
    };
    for p in check_inclusion(&proof, anchor.anchor, None) {
        report.problems.push(format!("{place}: {p}"));
    }
    let signed = match (
        key(&r.key_id),
        hex::decode(&r.event),
        hex::decode(&r.producer_sig),
    ) {
        (Some(k), Ok(event), Ok(sig)) => {
            chain::verify_strict(&k, &chain::event_msg(tenant_id, &event), &sig)
        }
        _ => false,
    };
    if !signed {
        report.problems.push(format!(
            "{place}: the producer signature does not verify under `{}`",
            r.key_id
        ));
    }
}

/// Follows the tenant's chain through `r`.
fn follow(
    r: &BundleRecord,
    from_seq: u64,
    chains: &mut HashMap<u32, Followed>,
    report: &mut BundleReport,
) {
    let place = format!(
        "record {}@{} (seq {})",
        r.source_partition, r.source_offset, r.seq
    );
    let (Ok(prev), Ok(hash)) = (
        unhex32("prev_hash", &r.prev_hash),
        unhex32("entry_hash", &r.entry_hash),
    ) else {
        report
            .problems
            .push(format!("{place}: a hash is not 32 bytes of hex"));
        return;
    };
    match chains.get(&r.source_partition) {
        None => {
            if r.seq == 1 && prev != ZERO {
                report
                    .problems
                    .push(format!("{place}: seq 1 must link to the zero hash"));
            }
            if r.seq != from_seq.max(1) {
                report.problems.push(format!(
                    "{place}: the chain starts at seq {}, the bundle is for seqs from {}",
                    r.seq,
                    from_seq.max(1)
                ));
            }
            report.chains.insert(r.source_partition, (r.seq, r.seq));
        }
        Some(f) => {
            if r.seq != f.seq + 1 {
                report.problems.push(format!(
                    "{place}: the chain jumps from seq {} (a record is missing or repeated)",
                    f.seq
                ));
            } else if prev != f.hash {
                report
                    .problems
                    .push(format!("{place}: prev_hash does not link to seq {}", f.seq));
            }
            if let Some(c) = report.chains.get_mut(&r.source_partition) {
                c.1 = r.seq;
            }
        }
    }
    chains.insert(r.source_partition, Followed { seq: r.seq, hash });
}

/// At the end of an anchor's records: its head for the tenant must be the
/// last record the bundle gave for that partition.
fn close_anchor(
    anchor: Option<&ProofAnchor>,
    tenant_id: &str,
    to_seq: Option<u64>,
    chains: &HashMap<u32, Followed>,
    report: &mut BundleReport,
) {
    let Some(a) = anchor else {
        return;
    };
    let head = a.tenant_heads.iter().find(|(t, _, _)| t == tenant_id);
    let followed = chains.get(&a.source_partition);
    let matches = match (head, followed) {
        (Some((_, seq, hash)), Some(f)) => {
            (*seq == f.seq && unhex32("tenant head", hash).ok() == Some(f.hash))
                // The range asked for ends inside this anchor.
                || (*seq > f.seq && to_seq == Some(f.seq))
        }
        _ => false,
    };
    if !matches {
        report.problems.push(format!(
            "anchor {}/{} #{}: its head for `{tenant_id}` is not the last record the bundle gives (records of the range are missing)",
            a.source_topic, a.source_partition, a.anchor_seq
        ));
    }
}
