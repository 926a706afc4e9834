//! Unit tests: the repository's test vectors (read, not copied), encoding,
//! key files.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use rdkafka::message::Headers;

use crate::*;

fn repo() -> PathBuf {
    std::env::var_os("AUDITCHAIN_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")))
}

fn vectors() -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("schemas/test-vectors/chain-v1.json"))
        .expect("schemas/test-vectors/chain-v1.json");
    serde_json::from_str(&text).expect("vectors parse")
}

fn hex_of(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).expect("hex")
}

#[test]
fn event_signature_vectors() {
    let v = vectors();
    let key = SigningKey::from_seed(&hex_of(&v["producer_seed"]), "vectors").expect("seed");
    assert_eq!(
        key.verifying_key().to_bytes().to_vec(),
        hex_of(&v["producer_public_key"])
    );
    let events = v["events"].as_array().expect("events");
    assert!(events.len() >= 3);
    assert!(events
        .iter()
        .any(|e| !e["tenant_id"].as_str().unwrap_or("").is_ascii()));
    for (i, e) in events.iter().enumerate() {
        let tenant = e["tenant_id"].as_str().expect("tenant");
        let value = hex_of(&e["value"]);
        assert_eq!(
            event_msg(tenant, &value),
            hex_of(&e["event_msg"]),
            "events[{i}]"
        );
        let (id, event) = AuditEvent::decode(&value).expect("decodes");
        assert_eq!(event.tenant_id, tenant);
        let record = Signer::new(key.clone(), id).record(&event).expect("record");
        assert_eq!(record.value, value, "events[{i}] value");
        assert_eq!(record.key, tenant.as_bytes());
        let headers: Vec<(String, Vec<u8>)> = record
            .headers
            .iter()
            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
            .collect();
        assert_eq!(
            headers,
            vec![
                (KEY_ID_HEADER.to_string(), b"vectors".to_vec()),
                (SIG_HEADER.to_string(), hex_of(&e["signature"])),
            ],
            "events[{i}] headers"
        );
    }
}

#[test]
fn round_trip_defaults_and_validation() {
    let mut e = AuditEvent::new("zürich-ä", "a", "user.login", "r");
    e.outcome = Outcome::Denied;
    e.correlation_id = Some("c".into());
    e.attributes.insert("k".into(), "v".into());
    e.payload = Some(vec![0, 1]);
    assert_eq!(e.event_id.len(), 36);
    assert!(e.occurred_at > 1_700_000_000_000_000);
    let (id, back) = AuditEvent::decode(&e.encode(7).expect("encode")).expect("decode");
    assert_eq!((id, back), (7, e.clone()));
    assert_ne!(AuditEvent::new("t", "a", "x", "r").event_id, e.event_id);
    for (field, bad) in [
        ("action", AuditEvent::new("t", "a", "", "r")),
        ("tenant_id", AuditEvent::new("", "a", "x", "r")),
    ] {
        let err = bad.encode(1).expect_err("invalid").to_string();
        assert!(err.contains(field), "{err}");
    }
}

#[test]
fn key_files() {
    let v = vectors();
    let seed = v["producer_seed"].as_str().expect("seed");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.secret");
    std::fs::write(&path, format!("{seed}\n")).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let key = SigningKey::from_file(&path, "p").expect("loads");
    assert!(!format!("{key:?}").contains(&seed[..16]));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let err = SigningKey::from_file(&path, "p")
        .expect_err("refused")
        .to_string();
    assert!(err.contains("group or others (mode 640)"), "{err}");
    let short = dir.path().join("short.secret");
    std::fs::write(&short, "abcd").expect("write");
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let err = SigningKey::from_file(&short, "p")
        .expect_err("short")
        .to_string();
    assert!(err.contains("32 bytes"), "{err}");
    assert!(SigningKey::from_file(dir.path().join("missing"), "p").is_err());
    assert!(SigningKey::from_seed(b"short", "p").is_err());
}
