//! The open transaction as a value, and the chaining decisions themselves,
//! with no I/O: unit-tested without a broker.
//!
//! Committed state (each owned partition's tenant heads, anchor head and
//! next input offset) changes only when a transaction commits: everything
//! the open transaction would change lives in [`Txn`], and an abort — from
//! the main loop, a revoke, a pause or a shutdown — is simply dropping it
//! and rewinding the consumer to the committed offsets. There is no partial
//! state to undo.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime};

use crate::chain::{self, Anchor, Hash, TenantHead};
use crate::route::Reason;
use crate::state::{AnchorHead, ChainHead, PartitionState};

/// Bytes an anchor takes besides its tenant heads and its strings: hashes,
/// counters, the signature and Avro framing, rounded up generously.
pub const ANCHOR_FIXED_BYTES: usize = 512;

/// Encoded bytes one tenant head adds to an anchor: the id with its length,
/// seq and entry hash (Avro: a varint length, a varint long, 32 bytes).
pub fn tenant_head_bytes(tenant: &str) -> usize {
    tenant.len() + 10 + 10 + 32
}

/// What the open transaction adds for one input partition.
#[derive(Debug, Default)]
pub struct Pending {
    /// New heads of the tenants that gained entries (the anchor's tenant
    /// heads, and the state records to write).
    pub heads: BTreeMap<String, ChainHead>,
    /// Merkle leaves in offset order.
    pub leaves: Vec<Hash>,
    /// First input offset in the segment.
    pub first_offset: u64,
    /// Last input offset in the segment.
    pub last_offset: u64,
    /// Records chained.
    pub chained: u64,
    /// Records quarantined.
    pub quarantined: u64,
    /// Quarantined by reason.
    pub reasons: BTreeMap<Reason, u64>,
    /// Input timestamps, for the end-to-end latency at commit.
    pub timestamps_ms: Vec<i64>,
    /// New chains of tenants held on another partition, counted at commit.
    pub tenants_elsewhere: u64,
    /// Input offset after the last record of the segment.
    pub next_offset: i64,
    /// Encoded size of `heads` in the anchor.
    pub head_bytes: usize,
}

/// A chained entry computed for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Its seq in the tenant's chain.
    pub seq: u64,
    /// The previous entry's hash (`Z` for seq 1).
    pub prev_hash: Hash,
    /// `H(value)`.
    pub event_digest: Hash,
    /// The entry hash (DESIGN.md §4.2).
    pub entry_hash: Hash,
}

impl Pending {
    /// The tenant's current head: this transaction's, else the committed one.
    pub fn head(&self, committed: &PartitionState, tenant: &str) -> Option<ChainHead> {
        self.heads
            .get(tenant)
            .or_else(|| committed.tenants.get(tenant))
            .copied()
    }

    /// Bytes the anchor would grow by if `tenant` gained an entry now.
    pub fn anchor_growth(&self, tenant: &str) -> usize {
        if self.heads.contains_key(tenant) {
            0
        } else {
            tenant_head_bytes(tenant)
        }
    }

    fn leaf(&mut self, offset: i64, leaf: Hash, timestamp_ms: i64) {
        if self.leaves.is_empty() {
            self.first_offset = offset as u64;
        }
        self.last_offset = offset as u64;
        self.leaves.push(leaf);
        self.timestamps_ms.push(timestamp_ms);
        self.next_offset = offset + 1;
    }

    /// The entry `value` would get as the next of `tenant`'s chain (DESIGN.md
    /// §4.2), without appending it.
    pub fn next_entry(
        &self,
        committed: &PartitionState,
        tenant: &str,
        value: &[u8],
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Entry {
        let head = self.head(committed, tenant);
        let (seq, prev_hash) = head.map_or((1, chain::ZERO), |h| (h.seq + 1, h.entry_hash));
        let event_digest = chain::event_digest(value);
        let entry_hash = chain::entry_hash(
            tenant,
            seq,
            &prev_hash,
            &event_digest,
            chain::SourceCoord {
                topic,
                partition: partition as u32,
                offset: offset as u64,
            },
        );
        Entry {
            seq,
            prev_hash,
            event_digest,
            entry_hash,
        }
    }

    /// Appends `entry` (from [`Pending::next_entry`]) to `tenant`'s chain.
    pub fn append(&mut self, tenant: &str, entry: &Entry, offset: i64, timestamp_ms: i64) {
        self.head_bytes += self.anchor_growth(tenant);
        self.heads.insert(
            tenant.to_string(),
            ChainHead {
                seq: entry.seq,
                entry_hash: entry.entry_hash,
            },
        );
        self.chained += 1;
        self.leaf(offset, entry.entry_hash, timestamp_ms);
    }

    /// Computes and appends the next entry of `tenant`'s chain.
    #[allow(clippy::too_many_arguments)]
    pub fn chain(
        &mut self,
        committed: &PartitionState,
        tenant: &str,
        value: &[u8],
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp_ms: i64,
    ) -> Entry {
        let entry = self.next_entry(committed, tenant, value, topic, partition, offset);
        self.append(tenant, &entry, offset, timestamp_ms);
        entry
    }

    /// Adds a quarantined record's leaf.
    pub fn quarantine(
        &mut self,
        reason: Reason,
        quarantine_hash: Hash,
        offset: i64,
        timestamp_ms: i64,
    ) {
        self.quarantined += 1;
        *self.reasons.entry(reason).or_default() += 1;
        self.leaf(offset, quarantine_hash, timestamp_ms);
    }

    /// The anchor of this segment (unsigned), continuing `prev`.
    pub fn anchor(
        &self,
        prev: &AnchorHead,
        topic: &str,
        partition: i32,
        signer_key_id: &str,
        created_at_us: u64,
    ) -> Option<Anchor> {
        let merkle_root = chain::merkle_root(&self.leaves)?;
        Some(Anchor {
            source_topic: topic.to_string(),
            source_partition: partition as u32,
            anchor_seq: prev.anchor_seq + 1,
            prev_anchor_hash: prev.anchor_hash,
            first_offset: self.first_offset,
            last_offset: self.last_offset,
            chained_count: self.chained,
            quarantined_count: self.quarantined,
            merkle_root,
            // A BTreeMap iterates in tenant id byte order, as §4.4 requires.
            tenant_heads: self
                .heads
                .iter()
                .map(|(t, h)| TenantHead {
                    tenant_id: t.clone(),
                    seq: h.seq,
                    entry_hash: h.entry_hash,
                })
                .collect(),
            created_at_us,
            signer_key_id: signer_key_id.to_string(),
        })
    }

    /// Applies a committed segment to the partition's committed state.
    pub fn apply(self, committed: &mut PartitionState, anchor: Option<AnchorHead>) {
        committed.tenants.extend(self.heads);
        if let Some(anchor) = anchor {
            committed.anchor = anchor;
        }
    }
}

/// The open transaction.
#[derive(Debug)]
pub struct Txn {
    /// What it adds, per input partition.
    pub partitions: BTreeMap<i32, Pending>,
    /// When it opened (commit interval, latency).
    pub started: Instant,
    /// Wall-clock twin of `started`, for the transaction span.
    pub started_at: SystemTime,
    /// Input records written in it.
    pub records: usize,
    /// Set once its anchors and state records are written: what the commit
    /// applies, and the offsets it must send. A failed commit keeps it, so
    /// nothing is written twice and the offsets are never lost.
    pub sealed: Option<Sealed>,
}

/// What a sealed transaction commits, per partition.
#[derive(Debug, Default)]
pub struct Sealed {
    /// The new anchor head of each partition that got an anchor.
    pub anchors: HashMap<i32, AnchorHead>,
    /// The next input offset of each partition, committed with the outputs.
    pub offsets: BTreeMap<i32, i64>,
}

impl Txn {
    /// A new, empty transaction.
    pub fn new() -> Txn {
        Txn {
            partitions: BTreeMap::new(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            records: 0,
            sealed: None,
        }
    }

    /// The next offset to process on `partition`, given the committed one.
    pub fn next_offset(&self, partition: i32, committed: Option<i64>) -> Option<i64> {
        match self.partitions.get(&partition) {
            Some(p) if !p.leaves.is_empty() => Some(p.next_offset),
            _ => committed,
        }
    }
}

impl Default for Txn {
    fn default() -> Self {
        Txn::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed_with(tenant: &str, seq: u64, hash: Hash) -> PartitionState {
        let mut s = PartitionState::default();
        s.tenants.insert(
            tenant.into(),
            ChainHead {
                seq,
                entry_hash: hash,
            },
        );
        s
    }

    #[test]
    fn a_chain_continues_from_the_committed_head_then_from_the_pending_one() {
        let committed = committed_with("acme", 4, [4; 32]);
        let mut p = Pending::default();
        let first = p.chain(&committed, "acme", b"v1", "in", 0, 10, 0);
        assert_eq!((first.seq, first.prev_hash), (5, [4; 32]));
        let second = p.chain(&committed, "acme", b"v2", "in", 0, 11, 0);
        assert_eq!((second.seq, second.prev_hash), (6, first.entry_hash));
        let fresh = p.chain(&committed, "globex", b"v3", "in", 0, 12, 0);
        assert_eq!((fresh.seq, fresh.prev_hash), (1, chain::ZERO));
        assert_eq!(p.next_offset, 13);
        assert_eq!((p.first_offset, p.last_offset, p.chained), (10, 12, 3));
        // The committed state is untouched until the transaction commits.
        assert_eq!(committed.tenants["acme"].seq, 4);
        assert!(!committed.tenants.contains_key("globex"));
    }

    #[test]
    fn dropping_an_aborted_transaction_leaves_the_next_one_on_the_committed_chain() {
        let committed = committed_with("acme", 1, [1; 32]);
        let mut aborted = Pending::default();
        aborted.chain(&committed, "acme", b"lost", "in", 0, 5, 0);
        drop(aborted);
        let mut redo = Pending::default();
        let e = redo.chain(&committed, "acme", b"lost", "in", 0, 5, 0);
        assert_eq!((e.seq, e.prev_hash), (2, [1; 32]));
    }

    #[test]
    fn commit_applies_heads_and_anchor() {
        let mut committed = committed_with("acme", 1, [1; 32]);
        let mut p = Pending::default();
        let e = p.chain(&committed, "acme", b"v", "in", 3, 7, 0);
        p.quarantine(Reason::DecodeFailed, [9; 32], 8, 0);
        let anchor = p
            .anchor(&committed.anchor, "in", 3, "proc-1", 42)
            .expect("anchor");
        assert_eq!(anchor.anchor_seq, 1);
        assert_eq!((anchor.first_offset, anchor.last_offset), (7, 8));
        assert_eq!((anchor.chained_count, anchor.quarantined_count), (1, 1));
        assert_eq!(
            anchor.merkle_root,
            chain::merkle_root(&[e.entry_hash, [9; 32]]).expect("root")
        );
        let head = AnchorHead {
            anchor_seq: 1,
            anchor_hash: [5; 32],
        };
        p.apply(&mut committed, Some(head));
        assert_eq!(committed.tenants["acme"].seq, 2);
        assert_eq!(committed.anchor, head);
    }

    #[test]
    fn tenant_heads_are_sorted_by_id_bytes_and_sized() {
        let committed = PartitionState::default();
        let mut p = Pending::default();
        for (i, t) in ["zeta", "Ärzte", "alpha", "zeta"].iter().enumerate() {
            p.chain(&committed, t, b"v", "in", 0, i as i64, 0);
        }
        let anchor = p
            .anchor(&AnchorHead::default(), "in", 0, "k", 0)
            .expect("anchor");
        let ids: Vec<&str> = anchor
            .tenant_heads
            .iter()
            .map(|h| h.tenant_id.as_str())
            .collect();
        assert_eq!(ids, ["alpha", "zeta", "Ärzte"]);
        assert_eq!(anchor.tenant_heads[1].seq, 2);
        let expected: usize = ["zeta", "Ärzte", "alpha"]
            .iter()
            .map(|t| tenant_head_bytes(t))
            .sum();
        assert_eq!(p.head_bytes, expected);
        assert_eq!(p.anchor_growth("zeta"), 0);
        assert_eq!(p.anchor_growth("new"), tenant_head_bytes("new"));
    }

    #[test]
    fn the_anchor_size_estimate_bounds_the_encoded_anchor() {
        let committed = PartitionState::default();
        let mut p = Pending::default();
        let long_id = "x".repeat(300);
        for i in 0..2_000u32 {
            let tenant = format!("{long_id}-Ärzte-{i}");
            p.chain(
                &committed,
                &tenant,
                b"v",
                "audit.events",
                0,
                i64::from(i),
                0,
            );
        }
        let anchor = p
            .anchor(
                &AnchorHead::default(),
                "audit.events",
                0,
                "processor-key",
                u64::MAX >> 1,
            )
            .expect("anchor");
        let batch = crate::records::AnchorBatch {
            anchor_hash: [7; 32],
            signature: vec![9; 64],
            processor_id: "instance-1".into(),
            anchor,
        };
        let encoded = batch.encode(u32::MAX).expect("encode").len();
        let estimate = ANCHOR_FIXED_BYTES
            + 2 * ("audit.events".len() + "processor-key".len() + "instance-1".len())
            + p.head_bytes;
        assert!(
            encoded <= estimate,
            "encoded {encoded} bytes, estimated {estimate}"
        );
    }

    #[test]
    fn a_segment_with_no_records_has_no_anchor_and_keeps_the_committed_offset() {
        let p = Pending::default();
        assert!(p.anchor(&AnchorHead::default(), "in", 0, "k", 0).is_none());
        let mut txn = Txn::new();
        txn.partitions.insert(0, p);
        assert_eq!(txn.next_offset(0, Some(17)), Some(17));
        assert_eq!(txn.next_offset(1, None), None);
    }
}
