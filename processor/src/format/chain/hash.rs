//! Hashes of §4.1–4.3. Messages are streamed into the hasher: no buffer is
//! built for the hashes on the hot path.

/// A BLAKE3-256 digest.
pub type Hash = [u8; 32];

/// `Z`: 32 zero bytes, the `prev_hash` of seq 1 and `prev_anchor_hash` of anchor 1.
pub const ZERO: Hash = [0u8; 32];

pub(crate) const EVENT_DOMAIN: &[u8] = b"auditchain/v1/event\0";
pub(crate) const ENTRY_DOMAIN: &[u8] = b"auditchain/v1/entry\0";
pub(crate) const QUARANTINE_DOMAIN: &[u8] = b"auditchain/v1/quarantine\0";

/// `lp(x) = u32be(len(x)) || x`. Kafka caps records far below 4 GiB; a longer
/// input is a caller bug.
pub(crate) fn lp_len(x: &[u8]) -> [u8; 4] {
    u32::try_from(x.len())
        .expect("length-prefixed fields are bounded by Kafka's record size")
        .to_be_bytes()
}

pub(crate) fn update_lp(h: &mut blake3::Hasher, x: &[u8]) {
    h.update(&lp_len(x));
    h.update(x);
}

pub(crate) fn push_lp(out: &mut Vec<u8>, x: &[u8]) {
    out.extend_from_slice(&lp_len(x));
    out.extend_from_slice(x);
}

/// `H(x)`.
pub fn h(x: &[u8]) -> Hash {
    *blake3::hash(x).as_bytes()
}

/// §4.1: `"auditchain/v1/event\0" || lp(tenant_id) || lp(value)`, the message a
/// producer signs.
pub fn event_msg(tenant_id: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(EVENT_DOMAIN.len() + 8 + tenant_id.len() + value.len());
    out.extend_from_slice(EVENT_DOMAIN);
    push_lp(&mut out, tenant_id.as_bytes());
    push_lp(&mut out, value);
    out
}

/// §4.2: `event_digest = H(value)`.
pub fn event_digest(value: &[u8]) -> Hash {
    h(value)
}

/// Where an input record sits. Its topic, partition and offset are hashed
/// into the record's leaf (§4.2, §4.3), so a leaf cannot be moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceCoord<'a> {
    /// Input topic.
    pub topic: &'a str,
    /// Input partition.
    pub partition: u32,
    /// Input offset.
    pub offset: u64,
}

/// §4.2: the entry hash of chain position `seq` of `tenant_id`'s chain,
/// linking to `prev_hash`, for the event with `event_digest` at `source`.
pub fn entry_hash(
    tenant_id: &str,
    seq: u64,
    prev_hash: &Hash,
    event_digest: &Hash,
    source: SourceCoord<'_>,
) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(ENTRY_DOMAIN);
    update_lp(&mut hasher, tenant_id.as_bytes());
    hasher.update(&seq.to_be_bytes());
    hasher.update(prev_hash);
    hasher.update(event_digest);
    update_source(&mut hasher, source);
    *hasher.finalize().as_bytes()
}

fn update_source(hasher: &mut blake3::Hasher, source: SourceCoord<'_>) {
    update_lp(hasher, source.topic.as_bytes());
    hasher.update(&source.partition.to_be_bytes());
    hasher.update(&source.offset.to_be_bytes());
}

/// §4.3: the Merkle leaf data of a quarantined record. Absent key or value
/// hash as the empty string.
pub fn quarantine_hash(
    source: SourceCoord<'_>,
    raw_key: &[u8],
    raw_value: &[u8],
    reason_code: &str,
) -> Hash {
    quarantine_hash_of_digests(source, &h(raw_key), &h(raw_value), reason_code)
}

/// [`quarantine_hash`] from `H(raw_key)` and `H(raw_value)`: what a verifier
/// recomputes for a record whose raw key or value was left out because it
/// was too large to keep (the record carries the digest instead).
pub fn quarantine_hash_of_digests(
    source: SourceCoord<'_>,
    raw_key_digest: &Hash,
    raw_value_digest: &Hash,
    reason_code: &str,
) -> Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(QUARANTINE_DOMAIN);
    update_source(&mut hasher, source);
    hasher.update(raw_key_digest);
    hasher.update(raw_value_digest);
    update_lp(&mut hasher, reason_code.as_bytes());
    *hasher.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_msg_layout() {
        let m = event_msg("t", b"xy");
        assert_eq!(&m[..20], b"auditchain/v1/event\0");
        assert_eq!(&m[20..], &[0, 0, 0, 1, b't', 0, 0, 0, 2, b'x', b'y']);
    }

    #[test]
    fn entry_hash_equals_hash_of_the_spelled_out_message() {
        let digest = event_digest(b"value");
        let prev = [7u8; 32];
        let mut msg = Vec::new();
        msg.extend_from_slice(b"auditchain/v1/entry\0");
        push_lp(&mut msg, "acme".as_bytes());
        msg.extend_from_slice(&3u64.to_be_bytes());
        msg.extend_from_slice(&prev);
        msg.extend_from_slice(&digest);
        push_lp(&mut msg, b"audit.events");
        msg.extend_from_slice(&2u32.to_be_bytes());
        msg.extend_from_slice(&99u64.to_be_bytes());
        assert_eq!(
            entry_hash(
                "acme",
                3,
                &prev,
                &digest,
                SourceCoord {
                    topic: "audit.events",
                    partition: 2,
                    offset: 99
                }
            ),
            h(&msg)
        );
    }

    #[test]
    fn quarantine_hash_equals_hash_of_the_spelled_out_message() {
        let mut msg = Vec::new();
        msg.extend_from_slice(b"auditchain/v1/quarantine\0");
        push_lp(&mut msg, b"in");
        msg.extend_from_slice(&1u32.to_be_bytes());
        msg.extend_from_slice(&5u64.to_be_bytes());
        msg.extend_from_slice(&h(b""));
        msg.extend_from_slice(&h(b"v"));
        push_lp(&mut msg, b"MISSING_KEY");
        assert_eq!(
            quarantine_hash(
                SourceCoord {
                    topic: "in",
                    partition: 1,
                    offset: 5
                },
                b"",
                b"v",
                "MISSING_KEY"
            ),
            h(&msg)
        );
    }
}
