//! `prove` → `check-proof` round trips against a real trail, for chained and
//! quarantined records, through the library and through the binary as an
//! auditor would run it; and tampered proofs, each of which must be
//! rejected for its own reason.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use auditchain::keys::KeySet;
use auditchain::prove::{check_proof, prove, Proof, ProvenRecord, Target};
use ed25519_dalek::VerifyingKey;

struct Trail {
    fx: common::Fixture,
    produced: auditchain::produce::Report,
}

impl Trail {
    /// The first record produced as a good event (`good`) or a bad one.
    fn first(&self, good: bool) -> &auditchain::produce::Produced {
        self.produced
            .records
            .iter()
            .find(|r| r.expected.is_none() == good)
            .expect("such a record was produced")
    }
}

async fn trail() -> Trail {
    let fx = common::Fixture::new(2, false).await;
    let produced = fx.produce(&fx.spec(120, 6, 1)).await;
    let running = fx.start("prove-1");
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    running.stop();
    Trail { fx, produced }
}

fn processor_keys(fx: &common::Fixture) -> HashMap<String, VerifyingKey> {
    let key = auditchain::keys::load_verifying_key(&fx.path("processor-1.pub")).expect("pub");
    HashMap::from([("processor-1".to_string(), key)])
}

fn producer_keys(fx: &common::Fixture) -> KeySet {
    KeySet::load(&fx.path("producers.toml")).expect("key set")
}

fn prove_offset(fx: &common::Fixture, partition: i32, offset: i64) -> Proof {
    let config = fx.config("auditor");
    let target = Target::Offset {
        partition: partition as u32,
        offset: offset as u64,
    };
    tokio::task::block_in_place(|| prove(&config, &target)).expect("prove")
}

/// `check_proof`'s verdict with every key an auditor has.
fn problems(fx: &common::Fixture, proof: &Proof) -> Vec<String> {
    check_proof(proof, &processor_keys(fx), Some(&producer_keys(fx)))
}

fn flip_hex(s: &mut String, at: usize) {
    let c = s.as_bytes()[at];
    let flipped = if c == b'0' { '1' } else { '0' };
    s.replace_range(at..=at, &flipped.to_string());
}

fn assert_rejected(fx: &common::Fixture, proof: &Proof, because: &str) {
    let found = problems(fx, proof);
    assert!(
        found.iter().any(|p| p.contains(because)),
        "expected a problem containing {because:?}, got {found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proofs_round_trip_and_tampering_is_caught() {
    let trail = trail().await;
    let (fx, good, bad) = (&trail.fx, trail.first(true), trail.first(false));

    // A chained record, proven by its source coordinates.
    let chained = prove_offset(fx, good.partition, good.offset);
    let ProvenRecord::Chained { tenant_id, seq, .. } = &chained.record else {
        panic!("record {good:?} was not proven as chained: {chained:?}");
    };
    assert_eq!(Some(tenant_id), good.tenant.as_ref());
    assert_eq!(problems(fx, &chained), Vec::<String>::new());

    // The same record by its place in the tenant's chain: the same proof.
    let config = fx.config("auditor");
    let by_seq = Target::Seq {
        tenant: tenant_id.clone(),
        seq: *seq,
        partition: None,
    };
    let again = tokio::task::block_in_place(|| prove(&config, &by_seq)).expect("prove by seq");
    assert_eq!(again, chained);

    // A quarantined record, with its reason.
    let quarantined = prove_offset(fx, bad.partition, bad.offset);
    let ProvenRecord::Quarantined { reason, .. } = &quarantined.record else {
        panic!("record {bad:?} was not proven as quarantined: {quarantined:?}");
    };
    assert_eq!(
        Some(reason.as_str()),
        bad.expected.map(|r| r.code()),
        "quarantine reason"
    );
    assert_eq!(problems(fx, &quarantined), Vec::<String>::new());

    // JSON is the format auditors keep: it survives a round trip.
    let text = serde_json::to_string_pretty(&chained).expect("to json");
    let parsed: Proof = serde_json::from_str(&text).expect("from json");
    assert_eq!(parsed, chained);

    tampered_chained(fx, &chained);
    tampered_quarantined(fx, &quarantined);
    tampered_anchor(fx, &chained);
}

fn tampered_chained(fx: &common::Fixture, proof: &Proof) {
    // One byte of the event changed.
    let mut p = proof.clone();
    if let ProvenRecord::Chained { event, .. } = &mut p.record {
        flip_hex(event, event.len() - 1);
    }
    assert_rejected(fx, &p, "entry_hash does not recompute");

    // The entry re-hashed to match the changed event: the audit path no
    // longer leads to the signed root.
    let mut p = proof.clone();
    if let ProvenRecord::Chained {
        tenant_id,
        seq,
        prev_hash,
        entry_hash,
        event,
        ..
    } = &mut p.record
    {
        flip_hex(event, event.len() - 1);
        let prev: [u8; 32] = hex::decode(&*prev_hash)
            .expect("hex")
            .try_into()
            .expect("32");
        let bytes = hex::decode(&*event).expect("hex");
        *entry_hash = hex::encode(auditchain::chain::entry_hash(
            tenant_id,
            *seq,
            &prev,
            &auditchain::chain::event_digest(&bytes),
            proof.source(),
        ));
    }
    assert_rejected(fx, &p, "audit path does not lead");

    // A wrong audit path.
    let mut p = proof.clone();
    if p.audit_path.is_empty() {
        p.audit_path.push(hex::encode([7u8; 32]));
    } else {
        flip_hex(&mut p.audit_path[0], 0);
    }
    assert_rejected(fx, &p, "audit path does not lead");

    // The proof moved to another partition.
    let mut p = proof.clone();
    p.source_partition += 1;
    assert_rejected(fx, &p, "another topic or partition");

    // An offset outside the anchor.
    let mut p = proof.clone();
    p.source_offset = p.anchor.last_offset + 1;
    assert_rejected(fx, &p, "outside the anchor's range");
}

fn tampered_quarantined(fx: &common::Fixture, proof: &Proof) {
    // Another reason claimed for the same record.
    let mut p = proof.clone();
    if let ProvenRecord::Quarantined { reason, .. } = &mut p.record {
        *reason = if reason == "MALFORMED" {
            "SIGNATURE_INVALID".into()
        } else {
            "MALFORMED".into()
        };
    }
    assert_rejected(fx, &p, "quarantine_hash does not recompute");
}

fn tampered_anchor(fx: &common::Fixture, proof: &Proof) {
    // A field of the signed anchor changed.
    let mut p = proof.clone();
    p.anchor.chained_count += 1;
    assert_rejected(fx, &p, "anchor_hash does not recompute");

    // Re-signed (hash recomputed and signed) with a key the auditor does not
    // trust, under the trusted key's id.
    let mut p = proof.clone();
    let rogue = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let msg = anchor_message(&p);
    let signature = hex::decode(&proof.anchor.signature).expect("hex");
    assert!(
        auditchain::chain::verify_strict(&processor_keys(fx)["processor-1"], &msg, &signature),
        "the rebuilt message is not the one the processor signed"
    );
    p.anchor.signature = hex::encode(ed25519_dalek::Signer::sign(&rogue, &msg).to_bytes());
    assert_rejected(fx, &p, "signature does not verify");

    // Signed by a key id the auditor has no key for.
    let mut p = proof.clone();
    p.anchor.signer_key_id = "rogue".into();
    let found = check_proof(&p, &processor_keys(fx), None);
    assert!(
        found.iter().any(|f| f.contains("no public key")),
        "{found:?}"
    );
}

/// The anchor's signed message, rebuilt from the proof's fields as an
/// attacker holding the proof would (checked against the real signature
/// before it is re-signed).
fn anchor_message(proof: &Proof) -> Vec<u8> {
    proof.anchor.to_anchor().expect("anchor fields").message()
}

/// The commands as an auditor runs them: `prove --out`, then `check-proof`
/// with public keys only (exit 0), and on a tampered file (exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prove_and_check_proof_commands() {
    let trail = trail().await;
    let (fx, good) = (&trail.fx, trail.first(true));
    let config = fx.config_file("auditor");
    let out = fx.path("proof.json");
    let bin = env!("CARGO_BIN_EXE_auditchain");
    let status = Command::new(bin)
        .args(["prove", "--config"])
        .arg(&config)
        .args([
            "--partition",
            &good.partition.to_string(),
            "--offset",
            &good.offset.to_string(),
            "--out",
        ])
        .arg(&out)
        .status()
        .expect("run prove");
    assert!(status.success(), "prove failed: {status}");

    let check = |proof: &Path| {
        Command::new(bin)
            .arg("check-proof")
            .arg("--proof")
            .arg(proof)
            .arg("--processor-key")
            .arg(format!(
                "processor-1={}",
                fx.path("processor-1.pub").display()
            ))
            .arg("--producer-keys")
            .arg(fx.path("producers.toml"))
            .output()
            .expect("run check-proof")
    };
    let ok = check(&out);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("check-proof: OK"));

    let mut proof: Proof =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("read proof")).expect("proof");
    proof.anchor.anchor_seq += 1;
    let forged = fx.path("forged.json");
    std::fs::write(&forged, serde_json::to_string(&proof).expect("json")).expect("write");
    let refused = check(&forged);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    assert!(String::from_utf8_lossy(&refused.stdout).contains("check-proof: FAILED"));
}
