//! The decision for one input record (DESIGN.md §2 steps 1–2 and §5): chain
//! it, or quarantine it with the first reason that applies. Pure and total:
//! any bytes, any headers, a verdict — never a panic — so it runs on many
//! threads at once and is fuzzed.

use std::collections::HashMap;
use std::sync::Arc;

use crate::chain;
use crate::keys::KeySet;
use crate::schema::{split_frame, EventDecoder};

/// Header carrying the producer's key id (UTF-8).
pub const KEY_ID_HEADER: &str = "auditchain-key-id";
/// Header carrying the producer's Ed25519 signature (64 raw bytes).
pub const SIG_HEADER: &str = "auditchain-sig";

/// Why a record was quarantined (§5), in check order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// No record key, an empty one, or one that is not UTF-8.
    MissingKey,
    /// The value is larger than `processing.max_record_bytes`.
    Oversized,
    /// No Confluent framing, or an Avro body that does not decode.
    DecodeFailed,
    /// A schema id the registry (or the compiled-in list) does not know.
    SchemaUnknown,
    /// The key differs from the payload's `tenant_id`.
    TenantMismatch,
    /// `event_id` or `action` empty, or a field out of range.
    InvalidField,
    /// A signature header is absent.
    MissingSignature,
    /// The key id is not in the key set.
    UnknownKey,
    /// The key is revoked or not bound to this tenant.
    KeyNotAllowed,
    /// The signature is not 64 bytes or does not verify.
    SignatureInvalid,
}

impl Reason {
    /// Every reason, in check order.
    pub const ALL: [Reason; 10] = [
        Reason::MissingKey,
        Reason::Oversized,
        Reason::DecodeFailed,
        Reason::SchemaUnknown,
        Reason::TenantMismatch,
        Reason::InvalidField,
        Reason::MissingSignature,
        Reason::UnknownKey,
        Reason::KeyNotAllowed,
        Reason::SignatureInvalid,
    ];

    /// The reason code: the Avro enum symbol, also hashed into the
    /// quarantine leaf (§4.3).
    pub fn code(self) -> &'static str {
        match self {
            Reason::MissingKey => "MISSING_KEY",
            Reason::Oversized => "OVERSIZED",
            Reason::DecodeFailed => "DECODE_FAILED",
            Reason::SchemaUnknown => "SCHEMA_UNKNOWN",
            Reason::TenantMismatch => "TENANT_MISMATCH",
            Reason::InvalidField => "INVALID_FIELD",
            Reason::MissingSignature => "MISSING_SIGNATURE",
            Reason::UnknownKey => "UNKNOWN_KEY",
            Reason::KeyNotAllowed => "KEY_NOT_ALLOWED",
            Reason::SignatureInvalid => "SIGNATURE_INVALID",
        }
    }

    /// The reason for a code.
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }

    /// Position of the symbol in the `QuarantineReason` Avro enum.
    pub fn avro_index(self) -> u32 {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0) as u32
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// What the router needs of one input record.
#[derive(Debug, Clone, Copy, Default)]
pub struct Input<'a> {
    /// Record key.
    pub key: Option<&'a [u8]>,
    /// Record value.
    pub value: Option<&'a [u8]>,
    /// First `auditchain-key-id` header value.
    pub key_id: Option<&'a [u8]>,
    /// First `auditchain-sig` header value.
    pub sig: Option<&'a [u8]>,
}

/// The router's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Passed every check: append to the tenant's chain.
    Chain {
        /// The tenant (record key and payload agree).
        tenant: String,
        /// The producer key that signed.
        key_id: String,
    },
    /// Failed a check.
    Quarantine {
        /// The first check that failed.
        reason: Reason,
        /// A human-readable explanation.
        detail: String,
    },
}

fn quarantine(reason: Reason, detail: impl Into<String>) -> Verdict {
    Verdict::Quarantine {
        reason,
        detail: detail.into(),
    }
}

/// Schema id → decoder, or `None` for an id known not to exist. Ids absent
/// from the map have not been looked up yet; the caller resolves them before
/// routing (see `missing_schema_ids`).
pub type Decoders = HashMap<u32, Option<Arc<EventDecoder>>>;

/// Schema ids in `values` that `decoders` has no answer for yet.
pub fn missing_schema_ids<'a>(
    values: impl Iterator<Item = Option<&'a [u8]>>,
    decoders: &Decoders,
) -> Vec<u32> {
    let mut ids: Vec<u32> = values
        .filter_map(|v| v.and_then(split_frame).map(|(id, _)| id))
        .filter(|id| !decoders.contains_key(id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Routes one record. Checks run in the order of §5; the first failure names
/// the reason.
pub fn route(
    input: &Input<'_>,
    decoders: &Decoders,
    keys: &KeySet,
    max_value_bytes: usize,
) -> Verdict {
    // 1. MISSING_KEY
    let tenant = match input.key {
        None => return quarantine(Reason::MissingKey, "the record has no key"),
        Some([]) => return quarantine(Reason::MissingKey, "the record key is empty"),
        Some(k) => match std::str::from_utf8(k) {
            Ok(t) => t,
            Err(e) => {
                return quarantine(
                    Reason::MissingKey,
                    format!("the record key is not UTF-8: {e}"),
                )
            }
        },
    };
    let value = input.value.unwrap_or_default();
    // 2. OVERSIZED
    if value.len() > max_value_bytes {
        return quarantine(
            Reason::Oversized,
            format!(
                "value is {} bytes, the bound is {max_value_bytes}",
                value.len()
            ),
        );
    }
    // 3. DECODE_FAILED: framing
    let Some((schema_id, body)) = split_frame(value) else {
        return quarantine(
            Reason::DecodeFailed,
            if input.value.is_none() {
                "the record has no value".to_string()
            } else {
                "no Confluent framing (magic byte 0 and a 4-byte schema id)".to_string()
            },
        );
    };
    // 4. SCHEMA_UNKNOWN
    let decoder = match decoders.get(&schema_id) {
        Some(Some(d)) => d,
        Some(None) | None => {
            return quarantine(
                Reason::SchemaUnknown,
                format!("schema id {schema_id} is not known"),
            )
        }
    };
    // 5. DECODE_FAILED: body
    let event = match decoder.decode(body) {
        Ok(e) => e,
        Err(e) => return quarantine(Reason::DecodeFailed, format!("not an AuditEvent: {e}")),
    };
    // 6. TENANT_MISMATCH
    if event.tenant_id != tenant {
        return quarantine(
            Reason::TenantMismatch,
            format!(
                "record key `{tenant}` but payload tenant_id `{}`",
                event.tenant_id
            ),
        );
    }
    // 7. INVALID_FIELD
    if event.event_id.is_empty() {
        return quarantine(Reason::InvalidField, "event_id is empty");
    }
    if event.action.is_empty() {
        return quarantine(Reason::InvalidField, "action is empty");
    }
    if event.occurred_at < 0 {
        return quarantine(
            Reason::InvalidField,
            format!("occurred_at {} is before the Unix epoch", event.occurred_at),
        );
    }
    // 8. MISSING_SIGNATURE
    let (Some(key_id), Some(sig)) = (input.key_id, input.sig) else {
        let missing = match (input.key_id, input.sig) {
            (None, None) => format!("headers {KEY_ID_HEADER} and {SIG_HEADER} are absent"),
            (None, _) => format!("header {KEY_ID_HEADER} is absent"),
            _ => format!("header {SIG_HEADER} is absent"),
        };
        return quarantine(Reason::MissingSignature, missing);
    };
    // 9. UNKNOWN_KEY
    let Ok(key_id) = std::str::from_utf8(key_id) else {
        return quarantine(Reason::UnknownKey, "key id header is not UTF-8");
    };
    let Some(key) = keys.get(key_id) else {
        return quarantine(
            Reason::UnknownKey,
            format!("key id `{key_id}` is not in the key set"),
        );
    };
    // 10. KEY_NOT_ALLOWED
    if key.revoked {
        return quarantine(Reason::KeyNotAllowed, format!("key `{key_id}` is revoked"));
    }
    if !key.allows(tenant) {
        return quarantine(
            Reason::KeyNotAllowed,
            format!("key `{key_id}` is not bound to tenant `{tenant}`"),
        );
    }
    // 11. SIGNATURE_INVALID
    if sig.len() != 64 {
        return quarantine(
            Reason::SignatureInvalid,
            format!("signature is {} bytes, not 64", sig.len()),
        );
    }
    let msg = chain::event_msg(tenant, value);
    if !chain::verify_strict(&key.public_key, &msg, sig) {
        return quarantine(
            Reason::SignatureInvalid,
            format!("signature does not verify under key `{key_id}`"),
        );
    }
    Verdict::Chain {
        tenant: tenant.to_string(),
        key_id: key_id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{AuditEvent, Outcome};
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    fn signer() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn keyset() -> KeySet {
        let pk = |seed: u8| {
            hex::encode(
                SigningKey::from_bytes(&[seed; 32])
                    .verifying_key()
                    .to_bytes(),
            )
        };
        let text = format!(
            "[[keys]]\nkey_id = \"good\"\npublic_key = \"{}\"\n\
             [[keys]]\nkey_id = \"bound\"\npublic_key = \"{}\"\ntenants = [\"other\"]\n\
             [[keys]]\nkey_id = \"old\"\npublic_key = \"{}\"\nrevoked = true\n",
            pk(7),
            pk(7),
            pk(7)
        );
        KeySet::parse(&text, std::path::Path::new("test")).expect("keyset")
    }

    fn decoders() -> Decoders {
        HashMap::from([(1, Some(Arc::new(EventDecoder::compiled()))), (9, None)])
    }

    fn value(tenant: &str, event_id: &str) -> Vec<u8> {
        AuditEvent {
            event_id: event_id.into(),
            tenant_id: tenant.into(),
            occurred_at: 1,
            actor: "a".into(),
            action: "x.y".into(),
            resource: "r".into(),
            outcome: Outcome::Success,
            correlation_id: None,
            attributes: HashMap::new(),
            payload: None,
        }
        .encode(1)
        .expect("encode")
    }

    fn reason_of(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        key_id: Option<&[u8]>,
        sig: Option<&[u8]>,
    ) -> Option<Reason> {
        let input = Input {
            key,
            value,
            key_id,
            sig,
        };
        match route(&input, &decoders(), &keyset(), 1000) {
            Verdict::Chain { .. } => None,
            Verdict::Quarantine { reason, .. } => Some(reason),
        }
    }

    #[test]
    fn every_reason_in_order() {
        let v = value("acme", "e1");
        let sig = chain::sign(&signer(), &chain::event_msg("acme", &v));
        let good = Some(&b"good"[..]);
        let s = Some(&sig[..]);
        assert_eq!(reason_of(Some(b"acme"), Some(&v), good, s), None);
        assert_eq!(reason_of(None, Some(&v), good, s), Some(Reason::MissingKey));
        assert_eq!(
            reason_of(Some(b""), Some(&v), good, s),
            Some(Reason::MissingKey)
        );
        assert_eq!(
            reason_of(Some(&[0xff, 0xfe]), Some(&v), good, s),
            Some(Reason::MissingKey)
        );
        assert_eq!(
            reason_of(Some(b"acme"), Some(&[0; 1001]), good, s),
            Some(Reason::Oversized)
        );
        assert_eq!(
            reason_of(Some(b"acme"), Some(b"json"), good, s),
            Some(Reason::DecodeFailed)
        );
        assert_eq!(
            reason_of(Some(b"acme"), None, good, s),
            Some(Reason::DecodeFailed)
        );
        let mut unknown = v.clone();
        unknown[4] = 9;
        assert_eq!(
            reason_of(Some(b"acme"), Some(&unknown), good, s),
            Some(Reason::SchemaUnknown)
        );
        unknown[4] = 8; // never looked up: also unknown, never a panic
        assert_eq!(
            reason_of(Some(b"acme"), Some(&unknown), good, s),
            Some(Reason::SchemaUnknown)
        );
        assert_eq!(
            reason_of(Some(b"acme"), Some(&v[..v.len() - 3]), good, s),
            Some(Reason::DecodeFailed)
        );
        assert_eq!(
            reason_of(Some(b"globex"), Some(&v), good, s),
            Some(Reason::TenantMismatch)
        );
        let empty_id = value("acme", "");
        assert_eq!(
            reason_of(Some(b"acme"), Some(&empty_id), good, s),
            Some(Reason::InvalidField)
        );
        assert_eq!(
            reason_of(Some(b"acme"), Some(&v), None, s),
            Some(Reason::MissingSignature)
        );
        assert_eq!(
            reason_of(Some(b"acme"), Some(&v), good, None),
            Some(Reason::MissingSignature)
        );
        assert_eq!(
            reason_of(Some(b"acme"), Some(&v), Some(b"nope"), s),
            Some(Reason::UnknownKey)
        );
        assert_eq!(
            reason_of(Some(b"acme"), Some(&v), Some(b"old"), s),
            Some(Reason::KeyNotAllowed)
        );
        assert_eq!(
            reason_of(Some(b"acme"), Some(&v), Some(b"bound"), s),
            Some(Reason::KeyNotAllowed)
        );
        assert_eq!(
            reason_of(Some(b"acme"), Some(&v), good, Some(&sig[..63])),
            Some(Reason::SignatureInvalid)
        );
        let mut bad = sig;
        bad[0] ^= 1;
        assert_eq!(
            reason_of(Some(b"acme"), Some(&v), good, Some(&bad)),
            Some(Reason::SignatureInvalid)
        );
        // A signature over another tenant's message does not transfer.
        let other = chain::sign(&signer(), &chain::event_msg("acm", &v));
        assert_eq!(
            reason_of(Some(b"acme"), Some(&v), good, Some(&other)),
            Some(Reason::SignatureInvalid)
        );
    }

    #[test]
    fn codes_round_trip_and_match_the_avro_enum() {
        let schema = crate::schema::QUARANTINE_RECORD_AVSC;
        for r in Reason::ALL {
            assert_eq!(Reason::from_code(r.code()), Some(r));
            assert!(schema.contains(&format!("\"{}\"", r.code())));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_records_always_get_a_verdict(
            key in prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
            value in prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
            key_id in prop::option::of(prop::collection::vec(any::<u8>(), 0..8)),
            sig in prop::option::of(prop::collection::vec(any::<u8>(), 0..70)),
            framed in any::<bool>(),
        ) {
            let value = value.map(|mut v| {
                if framed { v.splice(0..0, [0, 0, 0, 0, 1]); }
                v
            });
            let input = Input {
                key: key.as_deref(),
                value: value.as_deref(),
                key_id: key_id.as_deref(),
                sig: sig.as_deref(),
            };
            // Random bytes never carry a valid signature, so every such
            // record must be quarantined, and never panic the router; its
            // quarantine record, raw bytes and headers kept, must encode and
            // read back unchanged.
            let verdict = route(&input, &decoders(), &keyset(), 256);
            let Verdict::Quarantine { reason, detail } = verdict else {
                return Err(TestCaseError::fail(format!("routed to a chain: {input:?}")));
            };
            let q = crate::records::QuarantineRecord {
                reason,
                detail,
                source_topic: "in".into(),
                source_partition: 1,
                source_offset: 2,
                source_timestamp_ms: 3,
                raw_key: input.key.map(<[u8]>::to_vec),
                raw_value: input.value.map(<[u8]>::to_vec),
                headers: vec![
                    (KEY_ID_HEADER.into(), input.key_id.map(<[u8]>::to_vec)),
                    (SIG_HEADER.into(), input.sig.map(<[u8]>::to_vec)),
                ],
                quarantine_hash: chain::quarantine_hash(chain::SourceCoord { topic: "in", partition: 1, offset: 2 }, input.key.unwrap_or_default(), input.value.unwrap_or_default(), reason.code()),
                anchor_seq: 1,
            };
            let bytes = q.encode(3).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = crate::records::QuarantineRecord::decode(&bytes)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, q);
        }
    }
}
