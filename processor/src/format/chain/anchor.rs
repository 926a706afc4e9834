//! §4.4: the anchor message, its hash and signature.

use super::hash::{h, push_lp, Hash};

/// Head of one tenant chain after a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantHead {
    /// The tenant.
    pub tenant_id: String,
    /// Its chain's last seq.
    pub seq: u64,
    /// Its chain's last entry hash.
    pub entry_hash: Hash,
}

/// Every signed field of an `AnchorBatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Input topic.
    pub source_topic: String,
    /// Input partition.
    pub source_partition: u32,
    /// Position in the partition's anchor chain, from 1.
    pub anchor_seq: u64,
    /// The previous anchor's hash, `Z` for anchor 1.
    pub prev_anchor_hash: Hash,
    /// Smallest source offset among the leaves.
    pub first_offset: u64,
    /// Largest source offset among the leaves.
    pub last_offset: u64,
    /// Chained records in the segment.
    pub chained_count: u64,
    /// Quarantined records in the segment.
    pub quarantined_count: u64,
    /// Merkle root over the segment's leaves.
    pub merkle_root: Hash,
    /// Heads of the tenant chains that grew, sorted by tenant id bytes.
    pub tenant_heads: Vec<TenantHead>,
    /// Signing time, microseconds since the Unix epoch.
    pub created_at_us: u64,
    /// The processor key's id.
    pub signer_key_id: String,
}

const ANCHOR_DOMAIN: &[u8] = b"auditchain/v1/anchor\0";

impl Anchor {
    /// `anchor_msg`, the bytes that are hashed and signed.
    pub fn message(&self) -> Vec<u8> {
        let heads_len: usize = self
            .tenant_heads
            .iter()
            .map(|t| 4 + t.tenant_id.len() + 8 + 32)
            .sum();
        let mut m = Vec::with_capacity(
            ANCHOR_DOMAIN.len()
                + 4
                + self.source_topic.len()
                + 4
                + 8
                + 32
                + 32
                + 32
                + 4
                + heads_len
                + 8
                + 4
                + self.signer_key_id.len(),
        );
        m.extend_from_slice(ANCHOR_DOMAIN);
        push_lp(&mut m, self.source_topic.as_bytes());
        m.extend_from_slice(&self.source_partition.to_be_bytes());
        m.extend_from_slice(&self.anchor_seq.to_be_bytes());
        m.extend_from_slice(&self.prev_anchor_hash);
        m.extend_from_slice(&self.first_offset.to_be_bytes());
        m.extend_from_slice(&self.last_offset.to_be_bytes());
        m.extend_from_slice(&self.chained_count.to_be_bytes());
        m.extend_from_slice(&self.quarantined_count.to_be_bytes());
        m.extend_from_slice(&self.merkle_root);
        let n_heads = u32::try_from(self.tenant_heads.len()).unwrap_or(u32::MAX);
        m.extend_from_slice(&n_heads.to_be_bytes());
        for head in &self.tenant_heads {
            push_lp(&mut m, head.tenant_id.as_bytes());
            m.extend_from_slice(&head.seq.to_be_bytes());
            m.extend_from_slice(&head.entry_hash);
        }
        m.extend_from_slice(&self.created_at_us.to_be_bytes());
        push_lp(&mut m, self.signer_key_id.as_bytes());
        m
    }

    /// `anchor_hash = H(anchor_msg)`.
    pub fn hash(&self) -> Hash {
        h(&self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor() -> Anchor {
        Anchor {
            source_topic: "in".into(),
            source_partition: 3,
            anchor_seq: 2,
            prev_anchor_hash: [1; 32],
            first_offset: 10,
            last_offset: 12,
            chained_count: 2,
            quarantined_count: 1,
            merkle_root: [2; 32],
            tenant_heads: vec![TenantHead {
                tenant_id: "a".into(),
                seq: 5,
                entry_hash: [3; 32],
            }],
            created_at_us: 99,
            signer_key_id: "k".into(),
        }
    }

    #[test]
    fn message_layout_is_exact() {
        let m = anchor().message();
        let mut expected = Vec::new();
        expected.extend_from_slice(b"auditchain/v1/anchor\0");
        expected.extend_from_slice(&[0, 0, 0, 2, b'i', b'n']);
        expected.extend_from_slice(&3u32.to_be_bytes());
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(&[1; 32]);
        expected.extend_from_slice(&10u64.to_be_bytes());
        expected.extend_from_slice(&12u64.to_be_bytes());
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(&1u64.to_be_bytes());
        expected.extend_from_slice(&[2; 32]);
        expected.extend_from_slice(&1u32.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 1, b'a']);
        expected.extend_from_slice(&5u64.to_be_bytes());
        expected.extend_from_slice(&[3; 32]);
        expected.extend_from_slice(&99u64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 1, b'k']);
        assert_eq!(m, expected);
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let base = anchor().hash();
        let edits: Vec<fn(&mut Anchor)> = vec![
            |a| a.source_topic.push('x'),
            |a| a.source_partition += 1,
            |a| a.anchor_seq += 1,
            |a| a.prev_anchor_hash[0] ^= 1,
            |a| a.first_offset += 1,
            |a| a.last_offset += 1,
            |a| a.chained_count += 1,
            |a| a.quarantined_count += 1,
            |a| a.merkle_root[31] ^= 1,
            |a| a.tenant_heads[0].seq += 1,
            |a| a.tenant_heads[0].entry_hash[0] ^= 1,
            |a| a.tenant_heads[0].tenant_id.push('b'),
            |a| a.tenant_heads.clear(),
            |a| a.created_at_us += 1,
            |a| a.signer_key_id.push('2'),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut a = anchor();
            edit(&mut a);
            assert_ne!(a.hash(), base, "edit {i} did not change the hash");
        }
    }
}
