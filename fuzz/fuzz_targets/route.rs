//! Fuzzes the decode/validate/route path: any key, value and signature
//! headers get a verdict without a panic, and a quarantined record always
//! encodes and decodes back unchanged.
//!
//!   cargo +nightly fuzz run route
#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use auditchain::chain;
use auditchain::keys::KeySet;
use auditchain::records::QuarantineRecord;
use auditchain::route::{route, Decoders, Input, Verdict};
use auditchain::schema::EventDecoder;
use libfuzzer_sys::fuzz_target;

fn fixtures() -> &'static (Decoders, KeySet) {
    static F: OnceLock<(Decoders, KeySet)> = OnceLock::new();
    F.get_or_init(|| {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let keys = KeySet::parse(
            &format!(
                "[[keys]]\nkey_id = \"k\"\npublic_key = \"{}\"\n",
                hex::encode(key.verifying_key().to_bytes())
            ),
            std::path::Path::new("fuzz"),
        )
        .expect("key set");
        let decoders: Decoders = HashMap::from([(1, Some(Arc::new(EventDecoder::compiled())))]);
        (decoders, keys)
    })
}

fuzz_target!(|data: &[u8]| {
    // Layout: 4 length bytes for key, key id and signature, then the value.
    if data.len() < 3 {
        return;
    }
    let (lens, rest) = data.split_at(3);
    let (key, rest) = rest.split_at((lens[0] as usize).min(rest.len()));
    let (key_id, rest) = rest.split_at((lens[1] as usize).min(rest.len()));
    let (sig, value) = rest.split_at((lens[2] as usize).min(rest.len()));
    let (decoders, keys) = fixtures();
    let input = Input {
        key: (lens[0] & 1 == 0).then_some(key),
        value: Some(value),
        key_id: Some(key_id),
        sig: Some(sig),
    };
    match route(&input, decoders, keys, 4096) {
        Verdict::Chain { tenant, .. } => {
            assert_eq!(tenant.as_bytes(), key);
        }
        Verdict::Quarantine { reason, detail } => {
            let q = QuarantineRecord {
                reason,
                detail,
                source_topic: "in".into(),
                source_partition: 0,
                source_offset: 0,
                source_timestamp_ms: 0,
                raw_key: input.key.map(<[u8]>::to_vec),
                raw_value: Some(value.to_vec()),
                headers: vec![("auditchain-sig".into(), Some(sig.to_vec()))],
                quarantine_hash: chain::quarantine_hash(chain::SourceCoord { topic: "in", partition: 0, offset: 0 }, key, value, reason.code()),
                anchor_seq: 1,
            };
            let bytes = q.encode(3).expect("a quarantine record always encodes");
            assert_eq!(QuarantineRecord::decode(&bytes).expect("and decodes"), q);
        }
    }
});
