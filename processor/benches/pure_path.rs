//! The processor's pure path per record — route (decode, checks, strict
//! Ed25519 verification), entry hash, Merkle tree and a signed anchor per
//! batch — without Kafka. Reports records/s for one core and for the
//! verification pool across all cores.

use std::collections::HashMap;
use std::sync::Arc;

use auditchain::chain::{self, Anchor, TenantHead, ZERO};
use auditchain::keys::KeySet;
use auditchain::route::{route, Decoders, Input, Verdict};
use auditchain::schema::{AuditEvent, EventDecoder, Outcome};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use rayon::prelude::*;

struct Rec {
    tenant: String,
    value: Vec<u8>,
    sig: [u8; 64],
}

fn records(n: usize) -> (Vec<Rec>, KeySet) {
    let key = SigningKey::from_bytes(&[3; 32]);
    let keys = KeySet::parse(
        &format!(
            "[[keys]]\nkey_id = \"k\"\npublic_key = \"{}\"\n",
            hex::encode(key.verifying_key().to_bytes())
        ),
        std::path::Path::new("bench"),
    )
    .expect("keys");
    let recs = (0..n)
        .map(|i| {
            let tenant = format!("tenant-{}", i % 50);
            let value = AuditEvent {
                event_id: format!("evt-{i}"),
                tenant_id: tenant.clone(),
                occurred_at: 1_764_000_000_000_000,
                actor: "alice@example.com".into(),
                action: "invoice.approve".into(),
                resource: format!("invoice/{i}"),
                outcome: Outcome::Success,
                correlation_id: Some("c".into()),
                attributes: HashMap::from([("ip".to_string(), "10.1.2.3".to_string())]),
                payload: Some(vec![b'x'; 200]),
            }
            .encode(1)
            .expect("encode");
            let sig = chain::sign(&key, &chain::event_msg(&tenant, &value));
            Rec { tenant, value, sig }
        })
        .collect();
    (recs, keys)
}

/// Everything the engine computes for a batch, minus Kafka.
fn process(
    batch: &[Rec],
    keys: &KeySet,
    decoders: &Decoders,
    parallel: bool,
    signer: &SigningKey,
) -> [u8; 32] {
    let route_one = |r: &Rec| {
        let input = Input {
            key: Some(r.tenant.as_bytes()),
            value: Some(&r.value),
            key_id: Some(b"k"),
            sig: Some(&r.sig),
        };
        route(&input, decoders, keys, 1 << 20)
    };
    let verdicts: Vec<Verdict> = if parallel {
        batch.par_iter().map(route_one).collect()
    } else {
        batch.iter().map(route_one).collect()
    };
    let mut heads: HashMap<&str, (u64, [u8; 32])> = HashMap::new();
    let mut leaves = Vec::with_capacity(batch.len());
    for (i, (r, v)) in batch.iter().zip(verdicts).enumerate() {
        assert!(matches!(v, Verdict::Chain { .. }));
        let (seq, prev) = heads
            .get(r.tenant.as_str())
            .map_or((1, ZERO), |(s, h)| (s + 1, *h));
        let entry = chain::entry_hash(
            &r.tenant,
            seq,
            &prev,
            &chain::event_digest(&r.value),
            chain::SourceCoord {
                topic: "audit.events",
                partition: 0,
                offset: i as u64,
            },
        );
        heads.insert(&r.tenant, (seq, entry));
        leaves.push(entry);
    }
    let mut tenant_heads: Vec<TenantHead> = heads
        .iter()
        .map(|(t, (seq, h))| TenantHead {
            tenant_id: t.to_string(),
            seq: *seq,
            entry_hash: *h,
        })
        .collect();
    tenant_heads.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    let anchor = Anchor {
        source_topic: "audit.events".into(),
        source_partition: 0,
        anchor_seq: 1,
        prev_anchor_hash: ZERO,
        first_offset: 0,
        last_offset: batch.len() as u64 - 1,
        chained_count: batch.len() as u64,
        quarantined_count: 0,
        merkle_root: chain::merkle_root(&leaves).expect("leaves"),
        tenant_heads,
        created_at_us: 0,
        signer_key_id: "p".into(),
    };
    let msg = anchor.message();
    let _ = chain::sign(signer, &msg);
    chain::hash::h(&msg)
}

fn bench(c: &mut Criterion) {
    let n = 2_000;
    let (batch, keys) = records(n);
    let decoders: Decoders = HashMap::from([(1, Some(Arc::new(EventDecoder::compiled())))]);
    let signer = SigningKey::from_bytes(&[4; 32]);
    let mut group = c.benchmark_group("pure_path");
    group.throughput(Throughput::Elements(n as u64));
    group.sample_size(20);
    for (name, parallel) in [("one_core", false), ("all_cores", true)] {
        group.bench_with_input(BenchmarkId::new(name, n), &parallel, |b, &parallel| {
            b.iter(|| process(&batch, &keys, &decoders, parallel, &signer))
        });
    }
    group.finish();

    let mut parts = c.benchmark_group("parts");
    parts.throughput(Throughput::Elements(1));
    let r = &batch[0];
    let key = keys.get("k").expect("key").public_key;
    parts.bench_function("verify_strict", |b| {
        b.iter(|| chain::verify_strict(&key, &chain::event_msg(&r.tenant, &r.value), &r.sig))
    });
    parts.bench_function("avro_decode", |b| {
        let d = EventDecoder::compiled();
        b.iter(|| d.decode(&r.value[5..]).expect("decode"))
    });
    parts.bench_function("entry_hash", |b| {
        b.iter(|| {
            chain::entry_hash(
                &r.tenant,
                7,
                &ZERO,
                &chain::event_digest(&r.value),
                chain::SourceCoord {
                    topic: "audit.events",
                    partition: 0,
                    offset: 1,
                },
            )
        })
    });
    // With tracing on, each record's `traceparent` is read and linked to
    // the transaction span (a fresh collector per 128 records, the SDK's
    // default link limit, so every call does the full work).
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let traces = auditchain::telemetry::Traces::new(&provider, 128);
    let headers: Vec<auditchain::records::Header> = (0..128u32)
        .map(|i| {
            (
                "traceparent".to_string(),
                Some(
                    format!("00-4bf92f3577b34da6a3ce929d0e0e{i:04x}-00f067aa0ba902b7-01")
                        .into_bytes(),
                ),
            )
        })
        .collect();
    parts.throughput(Throughput::Elements(128));
    parts.bench_function("trace_link_128", |b| {
        b.iter(|| {
            let mut links = traces.links();
            for (i, h) in headers.iter().enumerate() {
                links.add(std::slice::from_ref(h), 0, i as i64);
            }
            links.len()
        })
    });
    parts.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
