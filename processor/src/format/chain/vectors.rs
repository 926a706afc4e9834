//! Generates `schemas/test-vectors/chain-v1.json` (DESIGN.md §4.6) from this
//! module's own functions, deterministically, so another implementation can
//! check itself against it. A test keeps the committed file equal to this
//! output; `cargo run --example chain_vectors` rewrites it.

use std::collections::HashMap;

use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use super::anchor::{Anchor, TenantHead};
use super::hash::{entry_hash, event_digest, event_msg, quarantine_hash, Hash, SourceCoord, ZERO};
use super::merkle::merkle_root;
use super::sign::sign;
use crate::schema::{AuditEvent, Outcome};

const PRODUCER_SEED: [u8; 32] = [0x11; 32];
const PROCESSOR_SEED: [u8; 32] = [0x22; 32];
const TOPIC: &str = "audit.events";
const PARTITION: u32 = 0;

fn value_of(tenant: &str, i: u64) -> Vec<u8> {
    let event = AuditEvent {
        event_id: format!("evt-{tenant}-{i}"),
        tenant_id: tenant.to_string(),
        occurred_at: 1_764_000_000_000_000 + i as i64,
        actor: "alice@example.com".into(),
        action: "document.read".into(),
        resource: format!("doc/{i}"),
        outcome: Outcome::Success,
        correlation_id: None,
        attributes: HashMap::new(),
        payload: None,
    };
    event
        .encode(1)
        .expect("the compiled-in schema encodes its own events")
}

/// The test vectors as JSON.
pub fn generate() -> Value {
    let producer = SigningKey::from_bytes(&PRODUCER_SEED);
    let processor = SigningKey::from_bytes(&PROCESSOR_SEED);

    // Interleaved arrivals of two tenants on one partition, offsets 0..7, with
    // quarantined records at offsets 3 and 7.
    let arrivals: [(&str, u64); 6] = [
        ("acme", 0),
        ("zürich-ä", 1),
        ("acme", 2),
        ("zürich-ä", 4),
        ("acme", 5),
        ("zürich-ä", 6),
    ];
    let mut heads: HashMap<&str, (u64, Hash)> = HashMap::new();
    let mut events = Vec::new();
    let mut entries = Vec::new();
    let mut leaves_by_offset: Vec<(u64, Hash)> = Vec::new();
    for (tenant, offset) in arrivals {
        let value = value_of(tenant, offset);
        let msg = event_msg(tenant, &value);
        events.push(json!({
            "tenant_id": tenant,
            "value": hex::encode(&value),
            "event_msg": hex::encode(&msg),
            "signature": hex::encode(sign(&producer, &msg)),
        }));
        let (seq, prev) = heads.get(tenant).map_or((1, ZERO), |(s, h)| (s + 1, *h));
        let digest = event_digest(&value);
        let entry = entry_hash(
            tenant,
            seq,
            &prev,
            &digest,
            SourceCoord {
                topic: TOPIC,
                partition: PARTITION,
                offset,
            },
        );
        heads.insert(tenant, (seq, entry));
        leaves_by_offset.push((offset, entry));
        entries.push(json!({
            "tenant_id": tenant,
            "seq": seq,
            "prev_hash": hex::encode(prev),
            "value": hex::encode(&value),
            "source_topic": TOPIC,
            "source_partition": PARTITION,
            "source_offset": offset,
            "event_digest": hex::encode(digest),
            "entry_hash": hex::encode(entry),
        }));
    }

    let quarantined: [(u64, &[u8], &[u8], &str); 3] = [
        (3, b"", b"\x00\x00\x00\x00\x01garbage", "MISSING_KEY"),
        (7, "zürich-ä".as_bytes(), b"not avro", "DECODE_FAILED"),
        (8, b"acme", b"", "OVERSIZED"),
    ];
    let mut quarantine = Vec::new();
    for (offset, key, value, reason) in quarantined {
        let qh = quarantine_hash(
            SourceCoord {
                topic: TOPIC,
                partition: PARTITION,
                offset,
            },
            key,
            value,
            reason,
        );
        leaves_by_offset.push((offset, qh));
        quarantine.push(json!({
            "source_topic": TOPIC,
            "source_partition": PARTITION,
            "source_offset": offset,
            "raw_key": hex::encode(key),
            "raw_value": hex::encode(value),
            "reason_code": reason,
            "quarantine_hash": hex::encode(qh),
        }));
    }
    leaves_by_offset.sort_by_key(|(o, _)| *o);
    let all_leaves: Vec<Hash> = leaves_by_offset.iter().map(|(_, h)| *h).collect();

    let merkle: Vec<Value> = (1..=all_leaves.len())
        .map(|n| {
            let leaves = &all_leaves[..n];
            json!({
                "leaves": leaves.iter().map(hex::encode).collect::<Vec<_>>(),
                "root": hex::encode(merkle_root(leaves).expect("non-empty")),
            })
        })
        .collect();

    // Two transactions: offsets 0..=3, then 4..=8.
    let segments: [(u64, u64); 2] = [(0, 3), (4, 8)];
    let mut anchors = Vec::new();
    let mut prev_anchor = ZERO;
    let mut tenant_state: HashMap<&str, (u64, Hash)> = HashMap::new();
    let entries_by_offset: Vec<(u64, &str, Hash)> = arrivals
        .iter()
        .zip(entries.iter())
        .map(|((tenant, offset), e)| {
            let hash = hex::decode(e["entry_hash"].as_str().unwrap_or_default())
                .ok()
                .and_then(|v| <Hash>::try_from(v).ok())
                .unwrap_or(ZERO);
            (*offset, *tenant, hash)
        })
        .collect();
    for (i, (first, last)) in segments.iter().enumerate() {
        let seg: Vec<&(u64, Hash)> = leaves_by_offset
            .iter()
            .filter(|(o, _)| o >= first && o <= last)
            .collect();
        let leaves: Vec<Hash> = seg.iter().map(|(_, h)| *h).collect();
        let mut grown: Vec<&str> = Vec::new();
        for (offset, tenant, hash) in &entries_by_offset {
            if offset >= first && offset <= last {
                let seq = tenant_state.get(tenant).map_or(1, |(s, _)| s + 1);
                tenant_state.insert(tenant, (seq, *hash));
                if !grown.contains(tenant) {
                    grown.push(tenant);
                }
            }
        }
        grown.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let chained = entries_by_offset
            .iter()
            .filter(|(o, _, _)| o >= first && o <= last)
            .count() as u64;
        let anchor = Anchor {
            source_topic: TOPIC.into(),
            source_partition: PARTITION,
            anchor_seq: i as u64 + 1,
            prev_anchor_hash: prev_anchor,
            first_offset: *first,
            last_offset: *last,
            chained_count: chained,
            quarantined_count: leaves.len() as u64 - chained,
            merkle_root: merkle_root(&leaves).expect("non-empty segment"),
            tenant_heads: grown
                .iter()
                .map(|t| TenantHead {
                    tenant_id: t.to_string(),
                    seq: tenant_state[t].0,
                    entry_hash: tenant_state[t].1,
                })
                .collect(),
            created_at_us: 1_764_000_000_500_000 + i as u64,
            signer_key_id: "processor-test".into(),
        };
        let msg = anchor.message();
        let hash = anchor.hash();
        anchors.push(json!({
            "source_topic": anchor.source_topic,
            "source_partition": anchor.source_partition,
            "anchor_seq": anchor.anchor_seq,
            "prev_anchor_hash": hex::encode(anchor.prev_anchor_hash),
            "first_offset": anchor.first_offset,
            "last_offset": anchor.last_offset,
            "chained_count": anchor.chained_count,
            "quarantined_count": anchor.quarantined_count,
            "merkle_root": hex::encode(anchor.merkle_root),
            "tenant_heads": anchor.tenant_heads.iter().map(|t| json!({
                "tenant_id": t.tenant_id,
                "seq": t.seq,
                "entry_hash": hex::encode(t.entry_hash),
            })).collect::<Vec<_>>(),
            "created_at_us": anchor.created_at_us,
            "signer_key_id": anchor.signer_key_id,
            "anchor_msg": hex::encode(&msg),
            "anchor_hash": hex::encode(hash),
            "signature": hex::encode(sign(&processor, &msg)),
        }));
        prev_anchor = hash;
    }

    json!({
        "producer_seed": hex::encode(PRODUCER_SEED),
        "producer_public_key": hex::encode(producer.verifying_key().to_bytes()),
        "processor_seed": hex::encode(PROCESSOR_SEED),
        "processor_public_key": hex::encode(processor.verifying_key().to_bytes()),
        "events": events,
        "entries": entries,
        "quarantine": quarantine,
        "merkle": merkle,
        "anchors": anchors,
    })
}

/// The file's text: pretty JSON with a trailing newline.
pub fn render() -> String {
    let mut text = serde_json::to_string_pretty(&generate()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::sign::verify_strict;
    use ed25519_dalek::VerifyingKey;

    #[test]
    fn committed_vectors_match_the_code() {
        let committed = include_str!("../../../../schemas/test-vectors/chain-v1.json");
        assert!(
            committed == render(),
            "schemas/test-vectors/chain-v1.json is stale: run `cargo run --example chain_vectors`"
        );
    }

    fn bytes(v: &Value) -> Vec<u8> {
        hex::decode(v.as_str().expect("hex string")).expect("valid hex")
    }

    #[test]
    fn vectors_cover_what_the_design_requires_and_verify() {
        let v = generate();
        let producer = VerifyingKey::try_from(&bytes(&v["producer_public_key"])[..]).expect("key");
        let processor =
            VerifyingKey::try_from(&bytes(&v["processor_public_key"])[..]).expect("key");
        for e in v["events"].as_array().expect("events") {
            assert!(verify_strict(
                &producer,
                &bytes(&e["event_msg"]),
                &bytes(&e["signature"])
            ));
        }
        let entries = v["entries"].as_array().expect("entries");
        let mut per_tenant: HashMap<&str, usize> = HashMap::new();
        for e in entries {
            *per_tenant
                .entry(e["tenant_id"].as_str().expect("tenant"))
                .or_default() += 1;
        }
        assert!(per_tenant.len() >= 2 && per_tenant.values().all(|n| *n >= 3));
        assert!(per_tenant.keys().any(|t| !t.is_ascii()));
        assert!(v["quarantine"]
            .as_array()
            .expect("quarantine")
            .iter()
            .any(|q| q["raw_key"] == ""));
        let sizes: Vec<usize> = v["merkle"]
            .as_array()
            .expect("merkle")
            .iter()
            .map(|m| m["leaves"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, (1..=9).collect::<Vec<_>>());
        let anchors = v["anchors"].as_array().expect("anchors");
        assert!(anchors.len() >= 2);
        assert_eq!(anchors[1]["prev_anchor_hash"], anchors[0]["anchor_hash"]);
        for a in anchors {
            assert!(verify_strict(
                &processor,
                &bytes(&a["anchor_msg"]),
                &bytes(&a["signature"])
            ));
            assert_eq!(
                bytes(&a["anchor_hash"]),
                crate::chain::hash::h(&bytes(&a["anchor_msg"])).to_vec()
            );
        }
    }
}
