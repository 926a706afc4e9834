//! Tampering is found: the real output of a processor run is copied to
//! scratch topics with one change — a byte of an event, a dropped record, two
//! records swapped, an anchor re-signed by an unknown key, a quarantined
//! record removed — and `verify` reports each, naming the first broken place.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use auditchain::config::Config;
use auditchain::records::{AnchorBatch, ChainedRecord, QuarantineRecord};
use auditchain::schema::split_frame;
use ed25519_dalek::SigningKey;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

/// One output record: partition, key, value.
type Rec = (i32, Option<Vec<u8>>, Vec<u8>);

fn read_all(config: &Config, topic: &str) -> Vec<Rec> {
    let mut out = Vec::new();
    auditchain::verify::read_topic(config, topic, |p, _, k, v| {
        out.push((p, k.map(<[u8]>::to_vec), v.unwrap_or_default().to_vec()))
    })
    .expect("read");
    out
}

struct Output {
    chained: Vec<Rec>,
    quarantine: Vec<Rec>,
    anchors: Vec<Rec>,
}

async fn write_copy(fx: &common::Fixture, out: &Output, name: &str) -> Config {
    let mut config = fx.config("verifier");
    let prefix = common::unique(name);
    config.topics.chained = format!("{prefix}.chained");
    config.topics.quarantine = format!("{prefix}.quarantine");
    config.topics.anchors = format!("{prefix}.anchors");
    let producer: FutureProducer = common::client_config().create().expect("producer");
    for (topic, records) in [
        (&config.topics.chained, &out.chained),
        (&config.topics.quarantine, &out.quarantine),
        (&config.topics.anchors, &out.anchors),
    ] {
        common::create_topic(topic, fx.partitions, &[]).await;
        let sends = records.iter().map(|(p, k, v)| {
            let mut r: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(topic).partition(*p).payload(v);
            if let Some(k) = k {
                r = r.key(k.as_slice());
            }
            producer.send(r, Timeout::Never)
        });
        // Per partition, librdkafka keeps send order (idempotent producer).
        for result in futures::future::join_all(sends).await {
            result.expect("copy");
        }
    }
    config
}

fn schema_id(v: &[u8]) -> u32 {
    split_frame(v).expect("framed").0
}

fn first_problem(fx: &common::Fixture, config: &Config) -> (usize, String) {
    let keys = auditchain::keys::KeySet::load(&fx.path("producers.toml")).expect("keys");
    let processor = HashMap::from([(
        "processor-1".to_string(),
        auditchain::keys::load_verifying_key(&fx.path("processor-1.pub")).expect("pub"),
    )]);
    let options = auditchain::verify::Options {
        check_input: true,
        ..Default::default()
    };
    let report = tokio::task::block_in_place(|| {
        auditchain::verify::verify(config, &keys, &processor, &options, |_, _| {})
    })
    .expect("verify runs");
    let first = report
        .problems
        .first()
        .map(|p| format!("{}: {}", p.place, p.what))
        .unwrap_or_default();
    (report.problems.len(), first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kind_of_tampering_is_reported_at_its_place() {
    let fx = common::Fixture::new(2, false).await;
    let running = fx.start("tamper-1");
    fx.produce(&fx.spec(300, 4, 1)).await;
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    running.stop();

    let config = fx.config("verifier");
    let original = tokio::task::block_in_place(|| Output {
        chained: read_all(&config, &config.topics.chained),
        quarantine: read_all(&config, &config.topics.quarantine),
        anchors: read_all(&config, &config.topics.anchors),
    });
    assert!(original.chained.len() == 300 && !original.quarantine.is_empty());

    // The untouched copy verifies: the copying itself changes nothing.
    let copy = write_copy(&fx, &original, "copy").await;
    assert_eq!(first_problem(&fx, &copy), (0, String::new()));

    // Pick the 5th and 6th entries of one chain.
    let decoded: Vec<ChainedRecord> = original
        .chained
        .iter()
        .map(|(_, _, v)| ChainedRecord::decode(v).expect("decode"))
        .collect();
    let tenant = decoded[0].tenant_id.clone();
    let at = |seq: u64| {
        decoded
            .iter()
            .position(|r| r.tenant_id == tenant && r.seq == seq)
            .expect("entry")
    };
    let (i5, i6) = (at(5), at(6));
    let place5 = format!(
        "chain {tenant}@{}/{} seq 5",
        decoded[i5].source_topic, decoded[i5].source_partition
    );

    // 1. One byte of an event changed.
    let mut out = clone(&original);
    let mut r = decoded[i5].clone();
    let last = r.event.len() - 1;
    r.event[last] ^= 0x01;
    out.chained[i5].2 = r
        .encode(schema_id(&original.chained[i5].2))
        .expect("encode");
    let (n, first) = first_problem(&fx, &write_copy(&fx, &out, "byte").await);
    assert!(
        n > 0 && first.starts_with(&place5) && first.contains("event_digest"),
        "{first}"
    );

    // 2. One record dropped.
    let mut out = clone(&original);
    out.chained.remove(i5);
    let (n, first) = first_problem(&fx, &write_copy(&fx, &out, "drop").await);
    assert!(
        n > 0 && first.contains(&format!("chain {tenant}@")) && first.contains("seq 5 is missing"),
        "{first}"
    );

    // 3. Two records swapped: seq 5 and 6 exchange their events.
    let mut out = clone(&original);
    let (mut a, mut b) = (decoded[i5].clone(), decoded[i6].clone());
    std::mem::swap(&mut a.event, &mut b.event);
    std::mem::swap(&mut a.producer_sig, &mut b.producer_sig);
    out.chained[i5].2 = a
        .encode(schema_id(&original.chained[i5].2))
        .expect("encode");
    out.chained[i6].2 = b
        .encode(schema_id(&original.chained[i6].2))
        .expect("encode");
    let (n, first) = first_problem(&fx, &write_copy(&fx, &out, "swap").await);
    assert!(n > 0 && first.starts_with(&place5), "{first}");

    // 4. An anchor re-signed by a key the verifier does not know.
    let mut out = clone(&original);
    let mut anchor = AnchorBatch::decode(&original.anchors[0].2).expect("anchor");
    anchor.anchor.signer_key_id = "rogue".into();
    let msg = anchor.anchor.message();
    anchor.anchor_hash = auditchain::chain::hash::h(&msg);
    anchor.signature = auditchain::chain::sign(&SigningKey::from_bytes(&[0x66; 32]), &msg).to_vec();
    out.anchors[0].2 = anchor
        .encode(schema_id(&original.anchors[0].2))
        .expect("encode");
    let (n, first) = first_problem(&fx, &write_copy(&fx, &out, "resign").await);
    let place = format!(
        "anchor {}/{} #{}",
        anchor.anchor.source_topic, anchor.anchor.source_partition, anchor.anchor.anchor_seq
    );
    assert!(
        n > 0 && first.starts_with(&place) && first.contains("rogue"),
        "{first}"
    );

    // 5. One quarantined record removed.
    let mut out = clone(&original);
    let removed = QuarantineRecord::decode(&out.quarantine.remove(0).2).expect("quarantine");
    let (n, first) = first_problem(&fx, &write_copy(&fx, &out, "unquarantine").await);
    let anchor_place = format!(
        "anchor {}/{} #{}",
        removed.source_topic, removed.source_partition, removed.anchor_seq
    );
    assert!(
        n > 0 && first.starts_with(&anchor_place) && first.contains("covers"),
        "{first}"
    );
}

fn clone(o: &Output) -> Output {
    Output {
        chained: o.chained.clone(),
        quarantine: o.quarantine.clone(),
        anchors: o.anchors.clone(),
    }
}
