//! Tenant bundles against a real trail: `export` → `check-bundle` round
//! trips for a whole chain and a range of it, hold no other tenant's
//! records, and every kind of tampering is rejected for its own reason;
//! the commands as an auditor runs them (exit 0, then 1 on a tampered file).

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use auditchain::bundle::{check_bundle, export, BundleReport, Line, Selection};
use ed25519_dalek::VerifyingKey;

struct Trail {
    fx: common::Fixture,
    trail: auditchain::verify::Trail,
}

async fn trail() -> Trail {
    let fx = common::Fixture::new(2, false).await;
    fx.produce(&fx.spec(150, 5, 1)).await;
    let running = fx.start("bundle-1");
    fx.wait_caught_up(&[&running], Duration::from_secs(120))
        .await;
    running.stop();
    let (trail, report) = tokio::task::block_in_place(|| fx.verify());
    common::assert_verified(&report);
    Trail { fx, trail }
}

fn processor_keys(fx: &common::Fixture) -> HashMap<String, VerifyingKey> {
    let key = auditchain::keys::load_verifying_key(&fx.path("processor-1.pub")).expect("pub");
    HashMap::from([("processor-1".to_string(), key)])
}

fn exported(fx: &common::Fixture, selection: &Selection) -> Vec<Line> {
    let mut out = Vec::new();
    tokio::task::block_in_place(|| export(&fx.config("auditor"), selection, &mut out))
        .expect("export");
    String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a bundle line"))
        .collect()
}

fn text(lines: &[Line]) -> String {
    lines
        .iter()
        .map(|l| serde_json::to_string(l).expect("json") + "\n")
        .collect()
}

fn checked(fx: &common::Fixture, lines: &[Line]) -> BundleReport {
    let text = text(lines);
    check_bundle(|| Ok(text.as_bytes()), &processor_keys(fx), None).expect("check runs")
}

fn assert_rejected(fx: &common::Fixture, lines: &[Line], why: &str) {
    let report = checked(fx, lines);
    assert!(
        report.problems.iter().any(|p| p.contains(why)),
        "expected a problem containing `{why}`, got {:#?}",
        report.problems
    );
}

fn whole(tenant: &str) -> Selection {
    Selection {
        tenant: tenant.into(),
        from_seq: 1,
        to_seq: None,
        partitions: None,
    }
}

fn records(lines: &mut [Line]) -> Vec<&mut auditchain::bundle::BundleRecord> {
    lines
        .iter_mut()
        .filter_map(|l| match l {
            Line::Record(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bundles_round_trip_reveal_no_other_tenant_and_tampering_is_caught() {
    let Trail { fx, trail } = trail().await;
    let tenant = "tenant-1";
    let lines = exported(&fx, &whole(tenant));
    let own = trail
        .chained
        .iter()
        .filter(|r| r.tenant_id == tenant)
        .count();
    let report = checked(&fx, &lines);
    assert!(report.ok(), "{:#?}", report.problems);
    assert_eq!(report.records, own);
    assert!(report.complete_from_start());
    assert_eq!(report.chains.values().next(), Some(&(1, own as u64)));

    // No other tenant's event, and no quarantined bytes, is in the bundle.
    let bundle = text(&lines);
    for r in trail.chained.iter().filter(|r| r.tenant_id != tenant) {
        assert!(
            !bundle.contains(&hex::encode(&r.event)),
            "{} leaked",
            r.tenant_id
        );
    }
    for q in &trail.quarantined {
        if let Some(v) = q.raw_value.as_ref().filter(|v| v.len() >= 8) {
            assert!(
                !bundle.contains(&hex::encode(v)),
                "a quarantined value leaked"
            );
        }
    }

    // A range: seqs 3..=5, chain unbroken, not from the start.
    let range = exported(
        &fx,
        &Selection {
            to_seq: Some(5),
            from_seq: 3,
            ..whole(tenant)
        },
    );
    let report = checked(&fx, &range);
    assert!(report.ok(), "{:#?}", report.problems);
    assert_eq!(report.chains.values().next(), Some(&(3, 5)));
    assert!(!report.complete_from_start());

    tampered(&fx, &lines);
}

fn tampered(fx: &common::Fixture, lines: &[Line]) {
    // One byte of an event changed.
    let mut l = lines.to_vec();
    let r = records(&mut l).swap_remove(1);
    let last = r.event.len() - 1;
    let flipped = if &r.event[last..] == "0" { "1" } else { "0" };
    r.event.replace_range(last.., flipped);
    assert_rejected(fx, &l, "entry_hash does not recompute");

    // A record left out of the middle.
    let mut l = lines.to_vec();
    let at = l
        .iter()
        .position(|x| matches!(x, Line::Record(r) if r.seq == 2))
        .expect("seq 2");
    l.remove(at);
    assert_rejected(fx, &l, "the chain jumps from seq 1");

    // The last record left out: the anchor's head names it.
    let mut l = lines.to_vec();
    let at = l
        .iter()
        .rposition(|x| matches!(x, Line::Record(_)))
        .expect("a record");
    l.remove(at);
    assert_rejected(fx, &l, "records of the range are missing");

    // A wrong audit path.
    let mut l = lines.to_vec();
    let r = records(&mut l).swap_remove(0);
    match r.audit_path.first_mut() {
        Some(h) => h.replace_range(0..2, if &h[0..2] == "00" { "01" } else { "00" }),
        None => r.audit_path.push(hex::encode([7u8; 32])),
    }
    assert_rejected(fx, &l, "audit path does not lead");

    // A record claimed for another partition.
    let mut l = lines.to_vec();
    records(&mut l)[0].source_partition += 1;
    assert_rejected(fx, &l, "another topic or partition");

    // An anchor re-signed with a key the auditor does not trust, under the
    // trusted key's id.
    let mut l = lines.to_vec();
    let anchor = l
        .iter_mut()
        .find_map(|x| match x {
            Line::Anchor(a) => Some(a),
            _ => None,
        })
        .expect("an anchor");
    let msg = anchor.to_anchor().expect("fields").message();
    let rogue = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    anchor.signature = hex::encode(ed25519_dalek::Signer::sign(&rogue, &msg).to_bytes());
    assert_rejected(fx, &l, "signature does not verify");

    // The carried producer key swapped: the bundle's own keys no longer
    // verify its events, the auditor's key set still does.
    let mut l = lines.to_vec();
    if let Some(Line::ProducerKeys { keys }) = l.last_mut() {
        keys[0].public_key = hex::encode(
            ed25519_dalek::SigningKey::from_bytes(&[5u8; 32])
                .verifying_key()
                .to_bytes(),
        );
    }
    assert_rejected(fx, &l, "producer signature does not verify");
    let set = auditchain::keys::KeySet::load(&fx.path("producers.toml")).expect("keys");
    let report = {
        let text = text(&l);
        check_bundle(|| Ok(text.as_bytes()), &processor_keys(fx), Some(&set)).expect("check runs")
    };
    assert!(report.ok(), "{:#?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn export_and_check_bundle_commands() {
    let Trail { fx, .. } = trail().await;
    let bin = env!("CARGO_BIN_EXE_auditchain");
    let bundle = fx.path("tenant-2.bundle.jsonl");
    let out = Command::new(bin)
        .args(["export", "--tenant", "tenant-2", "--config"])
        .arg(fx.config_file("auditor"))
        .arg("--out")
        .arg(&bundle)
        .output()
        .expect("run export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let check = || {
        Command::new(bin)
            .args(["check-bundle", "--bundle"])
            .arg(&bundle)
            .arg("--processor-key")
            .arg(format!(
                "processor-1={}",
                fx.path("processor-1.pub").display()
            ))
            .output()
            .expect("run check-bundle")
    };
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("complete from seq 1"), "{stdout}");

    let tampered =
        std::fs::read_to_string(&bundle)
            .expect("bundle")
            .replacen("\"seq\":3,", "\"seq\":4,", 1);
    std::fs::write(&bundle, tampered).expect("write");
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED"), "{stdout}");
}
