//! Proofs for one record: the record, its Merkle audit path, and the signed
//! anchor that commits to it — a JSON document anyone can check offline with
//! only public keys (`auditchain check-proof`).

use std::collections::HashMap;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::chain::{self, Anchor, Hash, TenantHead};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::KeySet;
use crate::records::{AnchorBatch, ChainedRecord, QuarantineRecord};
use crate::route::Reason;
use crate::verify::read_topic;

/// Proof format version.
pub const PROOF_VERSION: u32 = 1;

/// Which record to prove.
#[derive(Debug, Clone)]
pub enum Target {
    /// By source coordinates.
    Offset {
        /// Source partition.
        partition: u32,
        /// Source offset.
        offset: u64,
    },
    /// By chain position (searching every partition unless one is given).
    Seq {
        /// Tenant.
        tenant: String,
        /// Seq in the tenant's chain.
        seq: u64,
        /// Source partition, when the tenant has chains on several.
        partition: Option<u32>,
    },
}

/// The proven record, as stored in the proof.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProvenRecord {
    /// A chained record, with the chain link.
    Chained {
        /// Tenant.
        tenant_id: String,
        /// Position in the chain.
        seq: u64,
        /// Previous entry hash (hex).
        prev_hash: String,
        /// This entry hash (hex).
        entry_hash: String,
        /// The event value, verbatim (hex).
        event: String,
        /// Producer key id.
        key_id: String,
        /// Producer signature (hex).
        producer_sig: String,
    },
    /// A quarantined record.
    Quarantined {
        /// Reason code.
        reason: String,
        /// Raw key (hex), absent when the record had none.
        raw_key: Option<String>,
        /// Raw value (hex).
        raw_value: Option<String>,
        /// The Merkle leaf data (hex).
        quarantine_hash: String,
    },
}

/// The anchor in a proof.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProofAnchor {
    /// Source topic.
    pub source_topic: String,
    /// Source partition.
    pub source_partition: u32,
    /// Anchor seq.
    pub anchor_seq: u64,
    /// Hex.
    pub prev_anchor_hash: String,
    /// First covered offset.
    pub first_offset: u64,
    /// Last covered offset.
    pub last_offset: u64,
    /// Chained records covered.
    pub chained_count: u64,
    /// Quarantined records covered.
    pub quarantined_count: u64,
    /// Hex.
    pub merkle_root: String,
    /// Tenant heads: (tenant, seq, entry hash hex).
    pub tenant_heads: Vec<(String, u64, String)>,
    /// Signing time.
    pub created_at_us: u64,
    /// Processor key id.
    pub signer_key_id: String,
    /// Hex.
    pub anchor_hash: String,
    /// Hex.
    pub signature: String,
    /// Writer instance.
    pub processor_id: String,
}

/// A proof for one record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Proof {
    /// [`PROOF_VERSION`].
    pub version: u32,
    /// Source topic.
    pub source_topic: String,
    /// Source partition.
    pub source_partition: u32,
    /// Source offset.
    pub source_offset: u64,
    /// The record.
    pub record: ProvenRecord,
    /// Index of the record's leaf in the anchor's tree.
    pub leaf_index: u64,
    /// Leaves in the anchor's tree.
    pub tree_size: u64,
    /// RFC 6962 audit path, leaf to root (hex).
    pub audit_path: Vec<String>,
    /// The anchor that commits to the record.
    pub anchor: ProofAnchor,
}

impl Proof {
    /// Where the proven record's input record sits.
    pub fn source(&self) -> chain::SourceCoord<'_> {
        chain::SourceCoord {
            topic: &self.source_topic,
            partition: self.source_partition,
            offset: self.source_offset,
        }
    }
}

fn hx(h: &[u8]) -> String {
    hex::encode(h)
}

/// 32 bytes from hex; the error names `what`.
pub(crate) fn unhex32(what: &str, s: &str) -> std::result::Result<Hash, String> {
    hex::decode(s)
        .ok()
        .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
        .ok_or_else(|| format!("{what}: not 32 bytes of hex"))
}

fn unhex(what: &str, s: &str) -> std::result::Result<Vec<u8>, String> {
    hex::decode(s).map_err(|e| format!("{what}: {e}"))
}

impl ProofAnchor {
    pub(crate) fn from_batch(b: &AnchorBatch) -> Self {
        let a = &b.anchor;
        ProofAnchor {
            source_topic: a.source_topic.clone(),
            source_partition: a.source_partition,
            anchor_seq: a.anchor_seq,
            prev_anchor_hash: hx(&a.prev_anchor_hash),
            first_offset: a.first_offset,
            last_offset: a.last_offset,
            chained_count: a.chained_count,
            quarantined_count: a.quarantined_count,
            merkle_root: hx(&a.merkle_root),
            tenant_heads: a
                .tenant_heads
                .iter()
                .map(|t| (t.tenant_id.clone(), t.seq, hx(&t.entry_hash)))
                .collect(),
            created_at_us: a.created_at_us,
            signer_key_id: a.signer_key_id.clone(),
            anchor_hash: hx(&b.anchor_hash),
            signature: hx(&b.signature),
            processor_id: b.processor_id.clone(),
        }
    }

    /// The anchor as signed, from the proof's fields (an error names a
    /// field that is not valid hex of the right length).
    pub fn to_anchor(&self) -> std::result::Result<Anchor, String> {
        Ok(Anchor {
            source_topic: self.source_topic.clone(),
            source_partition: self.source_partition,
            anchor_seq: self.anchor_seq,
            prev_anchor_hash: unhex32("anchor.prev_anchor_hash", &self.prev_anchor_hash)?,
            first_offset: self.first_offset,
            last_offset: self.last_offset,
            chained_count: self.chained_count,
            quarantined_count: self.quarantined_count,
            merkle_root: unhex32("anchor.merkle_root", &self.merkle_root)?,
            tenant_heads: self
                .tenant_heads
                .iter()
                .map(|(t, seq, h)| {
                    Ok(TenantHead {
                        tenant_id: t.clone(),
                        seq: *seq,
                        entry_hash: unhex32("anchor.tenant_heads", h)?,
                    })
                })
                .collect::<std::result::Result<Vec<_>, String>>()?,
            created_at_us: self.created_at_us,
            signer_key_id: self.signer_key_id.clone(),
        })
    }
}

/// Everything of one partition needed to prove a record in it.
struct Leaf {
    offset: u64,
    hash: Hash,
    anchor_seq: u64,
}

/// Builds the proof for `target` from the output topics of `config`.
pub fn prove(config: &Config, target: &Target) -> Result<Proof> {
    let t = &config.topics;
    // Find the record and its partition.
    let mut chained: Option<ChainedRecord> = None;
    let mut quarantined: Option<QuarantineRecord> = None;
    let mut decode_error: Option<Error> = None;
    read_topic(config, &t.chained, |p, _, _, v| {
        if chained.is_some() || decode_error.is_some() {
            return;
        }
        let wanted_partition = match target {
            Target::Offset { partition, .. } => Some(*partition),
            Target::Seq { partition, .. } => *partition,
        };
        if wanted_partition.is_some_and(|w| w as i32 != p) {
            return;
        }
        match ChainedRecord::decode(v.unwrap_or_default()) {
            Ok(r) => {
                let hit = match target {
                    Target::Offset { offset, .. } => r.source_offset == *offset,
                    Target::Seq { tenant, seq, .. } => r.tenant_id == *tenant && r.seq == *seq,
                };
                if hit {
                    chained = Some(r);
                }
            }
            Err(e) => decode_error = Some(e),
        }
    })?;
    if let Some(e) = decode_error.take() {
        return Err(e);
    }
    if chained.is_none() {
        if let Target::Offset { partition, offset } = target {
            read_topic(config, &t.quarantine, |p, _, _, v| {
                if quarantined.is_some() || p != *partition as i32 {
                    return;
                }
                if let Ok(q) = QuarantineRecord::decode(v.unwrap_or_default()) {
                    if q.source_offset == *offset {
                        quarantined = Some(q);
                    }
                }
            })?;
        }
    }
    let (partition, offset, anchor_seq, record) = match (&chained, &quarantined) {
        (Some(c), _) => (
            c.source_partition,
            c.source_offset,
            c.anchor_seq,
            ProvenRecord::Chained {
                tenant_id: c.tenant_id.clone(),
                seq: c.seq,
                prev_hash: hx(&c.prev_hash),
                entry_hash: hx(&c.entry_hash),
                event: hx(&c.event),
                key_id: c.key_id.clone(),
                producer_sig: hx(&c.producer_sig),
            },
        ),
        (None, Some(q)) => (
            q.source_partition,
            q.source_offset,
            q.anchor_seq,
            ProvenRecord::Quarantined {
                reason: q.reason.code().to_string(),
                raw_key: q.raw_key.as_deref().map(hx),
                raw_value: q.raw_value.as_deref().map(hx),
                quarantine_hash: hx(&q.quarantine_hash),
            },
        ),
        (None, None) => {
            return Err(Error::NotFound(format!(
                "no chained or quarantined record matches {target:?} in `{}`/`{}`",
                t.chained, t.quarantine
            )))
        }
    };

    // The anchor, and every leaf of its segment.
    let mut anchor: Option<AnchorBatch> = None;
    read_topic(config, &t.anchors, |p, _, _, v| {
        if anchor.is_none() && p == partition as i32 {
            if let Ok(a) = AnchorBatch::decode(v.unwrap_or_default()) {
                if a.anchor.anchor_seq == anchor_seq && a.anchor.source_topic == t.input {
                    anchor = Some(a);
                }
            }
        }
    })?;
    let anchor = anchor.ok_or_else(|| {
        Error::NotFound(format!(
            "anchor {anchor_seq} of partition {partition}, which the record names, is not in `{}`",
            t.anchors
        ))
    })?;
    let mut leaves: Vec<Leaf> = Vec::new();
    read_topic(config, &t.chained, |p, _, _, v| {
        if p == partition as i32 {
            if let Ok(r) = ChainedRecord::decode(v.unwrap_or_default()) {
                if r.anchor_seq == anchor_seq {
                    leaves.push(Leaf {
                        offset: r.source_offset,
                        hash: r.entry_hash,
                        anchor_seq,
                    });
                }
            }
        }
    })?;
    read_topic(config, &t.quarantine, |p, _, _, v| {
        if p == partition as i32 {
            if let Ok(q) = QuarantineRecord::decode(v.unwrap_or_default()) {
                if q.anchor_seq == anchor_seq {
                    leaves.push(Leaf {
                        offset: q.source_offset,
                        hash: q.quarantine_hash,
                        anchor_seq,
                    });
                }
            }
        }
    })?;
    leaves.retain(|l| l.anchor_seq == anchor_seq);
    leaves.sort_by_key(|l| l.offset);
    let hashes: Vec<Hash> = leaves.iter().map(|l| l.hash).collect();
    let index = leaves
        .iter()
        .position(|l| l.offset == offset)
        .ok_or_else(|| Error::NotFound("the record is not among its anchor's leaves".into()))?;
    let path = chain::audit_path(&hashes, index)
        .ok_or_else(|| Error::State("audit path out of range".into()))?;
    Ok(Proof {
        version: PROOF_VERSION,
        source_topic: t.input.clone(),
        source_partition: partition,
        source_offset: offset,
        record,
        leaf_index: index as u64,
        tree_size: hashes.len() as u64,
        audit_path: path.iter().map(|h| hx(h)).collect(),
        anchor: ProofAnchor::from_batch(&anchor),
    })
}

/// Checks a proof offline. Returns what is wrong, empty when it holds.
/// `producer_keys`, when given, also checks the producer's signature.
pub fn check_proof(
    proof: &Proof,
    processor_keys: &HashMap<String, VerifyingKey>,
    producer_keys: Option<&KeySet>,
) -> Vec<String> {
    if proof.version != PROOF_VERSION {
        return vec![format!("unknown proof version {}", proof.version)];
    }
    let (anchor, mut problems) = check_anchor(&proof.anchor, processor_keys);
    if let Some(anchor) = anchor {
        problems.extend(check_inclusion(proof, &anchor, producer_keys));
    }
    problems
}

/// The checks of an anchor on its own: its fields parse, its `anchor_hash`
/// recomputes from them, and its signature verifies under the processor
/// key it names. Returns the anchor when its fields parse (the inclusion of
/// records is checked against it with [`check_inclusion`]), and what is
/// wrong.
pub fn check_anchor(
    signed: &ProofAnchor,
    processor_keys: &HashMap<String, VerifyingKey>,
) -> (Option<Anchor>, Vec<String>) {
    let mut problems = Vec::new();
    let anchor = match signed.to_anchor() {
        Ok(a) => a,
        Err(e) => return (None, vec![e]),
    };
    let msg = anchor.message();
    if unhex32("anchor.anchor_hash", &signed.anchor_hash).ok() != Some(chain::hash::h(&msg)) {
        problems.push("anchor_hash does not recompute from the anchor's fields".into());
    }
    match (
        processor_keys.get(&anchor.signer_key_id),
        unhex("anchor.signature", &signed.signature),
    ) {
        (None, _) => problems.push(format!(
            "no public key for processor key `{}`",
            anchor.signer_key_id
        )),
        (_, Err(e)) => problems.push(e),
        (Some(key), Ok(sig)) => {
            if !chain::verify_strict(key, &msg, &sig) {
                problems.push(format!(
                    "the anchor signature does not verify under `{}`",
                    anchor.signer_key_id
                ));
            }
        }
    }
    (Some(anchor), problems)
}

/// The checks that put a proof's record in `anchor` (checked on its own
/// with [`check_anchor`]): the record's leaf recomputes (and its producer
/// signature verifies, when `producer_keys` are given), it is of the
/// anchor's source partition and range, and its audit path leads to the
/// anchor's Merkle root.
pub fn check_inclusion(
    proof: &Proof,
    anchor: &Anchor,
    producer_keys: Option<&KeySet>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let leaf = match leaf_of(proof, producer_keys, &mut problems) {
        Ok(l) => l,
        Err(e) => {
            problems.push(e);
            return problems;
        }
    };
    if anchor.source_topic != proof.source_topic
        || anchor.source_partition != proof.source_partition
    {
        problems.push("the anchor is for another topic or partition".into());
    }
    if !(anchor.first_offset..=anchor.last_offset).contains(&proof.source_offset) {
        problems.push(format!(
            "offset {} is outside the anchor's range {}..={}",
            proof.source_offset, anchor.first_offset, anchor.last_offset
        ));
    }
    if proof.tree_size != anchor.chained_count + anchor.quarantined_count {
        problems.push("tree_size differs from the anchor's record counts".into());
    }
    let path: std::result::Result<Vec<Hash>, String> = proof
        .audit_path
        .iter()
        .map(|h| unhex32("audit_path", h))
        .collect();
    match path {
        Ok(path) => {
            if !chain::verify_audit_path(
                &leaf,
                proof.leaf_index as usize,
                proof.tree_size as usize,
                &path,
                &anchor.merkle_root,
            ) {
                problems.push("the audit path does not lead to the anchor's merkle_root".into());
            }
        }
        Err(e) => problems.push(e),
    }
    problems
}

fn leaf_of(
    proof: &Proof,
    producer_keys: Option<&KeySet>,
    problems: &mut Vec<String>,
) -> std::result::Result<Hash, String> {
    match &proof.record {
        ProvenRecord::Chained {
            tenant_id,
            seq,
            prev_hash,
            entry_hash,
            event,
            key_id,
            producer_sig,
        } => {
            let event = unhex("record.event", event)?;
            let prev = unhex32("record.prev_hash", prev_hash)?;
            let claimed = unhex32("record.entry_hash", entry_hash)?;
            let entry = chain::entry_hash(
                tenant_id,
                *seq,
                &prev,
                &chain::event_digest(&event),
                proof.source(),
            );
            if entry != claimed {
                problems.push("entry_hash does not recompute from the record".into());
            }
            if let Some(keys) = producer_keys {
                let sig = unhex("record.producer_sig", producer_sig)?;
                match keys.get(key_id) {
                    None => problems.push(format!("producer key `{key_id}` is not in the key set")),
                    Some(k) => {
                        if !chain::verify_strict(
                            &k.public_key,
                            &chain::event_msg(tenant_id, &event),
                            &sig,
                        ) {
                            problems.push("the producer signature does not verify".into());
                        }
                    }
                }
            }
            Ok(entry)
        }
        ProvenRecord::Quarantined {
            reason,
            raw_key,
            raw_value,
            quarantine_hash,
        } => {
            if Reason::from_code(reason).is_none() {
                problems.push(format!("unknown reason code `{reason}`"));
            }
            let key = raw_key
                .as_deref()
                .map(|k| unhex("record.raw_key", k))
                .transpose()?
                .unwrap_or_default();
            let value = raw_value
                .as_deref()
                .map(|v| unhex("record.raw_value", v))
                .transpose()?
                .unwrap_or_default();
            let qh = chain::quarantine_hash(proof.source(), &key, &value, reason);
            if Some(qh) != unhex32("record.quarantine_hash", quarantine_hash).ok() {
                problems.push("quarantine_hash does not recompute from the record".into());
            }
            Ok(qh)
        }
    }
}
