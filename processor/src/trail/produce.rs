//! `auditchain produce`: publishes signed `AuditEvent`s the way a service
//! would — through the Rust producer SDK (`auditchain-producer`, sdk/rust):
//! its event encoding, signatures, registry lookup and idempotent producer —
//! optionally mixed with every kind of bad record the processor must
//! quarantine. Used by the demo, the integration tests and the load tests.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use auditchain_producer::{AuditEvent, AuditProducer, Outcome, Signer, SigningKey};
use futures::stream::{FuturesOrdered, StreamExt};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::kafka::base_client_config;
use crate::route::{Reason, KEY_ID_HEADER, SIG_HEADER};
use crate::sink::headers_from;

/// A kind of bad record to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inject {
    /// A signature that does not verify.
    BadSignature,
    /// A key id not in the key set.
    UnknownKey,
    /// Signed with a revoked key.
    RevokedKey,
    /// Signed with a key not bound to the tenant.
    KeyNotAllowed,
    /// Record key and payload tenant differ.
    TenantMismatch,
    /// No signature headers.
    MissingSignature,
    /// No record key.
    MissingKey,
    /// Avro body cut short.
    TruncatedAvro,
    /// A schema id nobody registered.
    UnknownSchemaId,
    /// A value above the processor's size bound.
    Oversized,
}

impl Inject {
    /// Every kind.
    pub const ALL: [Inject; 10] = [
        Inject::BadSignature,
        Inject::UnknownKey,
        Inject::RevokedKey,
        Inject::KeyNotAllowed,
        Inject::TenantMismatch,
        Inject::MissingSignature,
        Inject::MissingKey,
        Inject::TruncatedAvro,
        Inject::UnknownSchemaId,
        Inject::Oversized,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Inject::BadSignature => "bad-signature",
            Inject::UnknownKey => "unknown-key",
            Inject::RevokedKey => "revoked-key",
            Inject::KeyNotAllowed => "key-not-allowed",
            Inject::TenantMismatch => "tenant-mismatch",
            Inject::MissingSignature => "missing-signature",
            Inject::MissingKey => "missing-key",
            Inject::TruncatedAvro => "truncated-avro",
            Inject::UnknownSchemaId => "unknown-schema-id",
            Inject::Oversized => "oversized",
        }
    }

    /// The reason the processor must give.
    pub fn expected_reason(self) -> Reason {
        match self {
            Inject::BadSignature => Reason::SignatureInvalid,
            Inject::UnknownKey => Reason::UnknownKey,
            Inject::RevokedKey | Inject::KeyNotAllowed => Reason::KeyNotAllowed,
            Inject::TenantMismatch => Reason::TenantMismatch,
            Inject::MissingSignature => Reason::MissingSignature,
            Inject::MissingKey => Reason::MissingKey,
            Inject::TruncatedAvro => Reason::DecodeFailed,
            Inject::UnknownSchemaId => Reason::SchemaUnknown,
            Inject::Oversized => Reason::Oversized,
        }
    }
}

impl FromStr for Inject {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Inject::ALL
            .into_iter()
            .find(|i| i.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Inject::ALL.iter().map(|i| i.name()).collect();
                format!("unknown injection `{s}`; one of: {}", names.join(", "))
            })
    }
}

/// A producer's signing key with its id (the SDK's).
pub type NamedKey = SigningKey;

/// What to publish.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Good events to publish.
    pub events: usize,
    /// Spread over this many tenants (`<tenant_prefix>-<i>`).
    pub tenants: usize,
    /// Tenant name prefix.
    pub tenant_prefix: String,
    /// The key that signs good events.
    pub key: NamedKey,
    /// A revoked key, needed for `revoked-key` injections.
    pub revoked_key: Option<NamedKey>,
    /// A key bound to other tenants, needed for `key-not-allowed`.
    pub restricted_key: Option<NamedKey>,
    /// How many of each bad record, spread through the stream.
    pub inject: Vec<(Inject, usize)>,
    /// Bytes of each event's opaque payload.
    pub payload_bytes: usize,
    /// Prefix of event ids, so runs are distinguishable.
    pub run_id: String,
    /// Give every record a W3C `traceparent` header of its own, as a
    /// service instrumented with OpenTelemetry would.
    pub traceparent: bool,
}

/// One record published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    /// Partition it landed in.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The record key as a tenant, if it had one.
    pub tenant: Option<String>,
    /// `None` for a good event; the expected quarantine reason otherwise.
    pub expected: Option<Reason>,
    /// The `traceparent` header it carried, if any.
    pub traceparent: Option<String>,
}

/// What `produce` did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Every record, in send order.
    pub records: Vec<Produced>,
    /// Wall time.
    pub elapsed: Duration,
}

struct Planned {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Option<OwnedHeaders>,
    tenant: Option<String>,
    expected: Option<Reason>,
    traceparent: Option<String>,
}

/// The input-side settings `produce` takes from the processor's config.
struct Target {
    schema_id: u32,
    unknown_schema_id: u32,
    oversize: usize,
}

async fn target(config: &Config) -> Result<Target> {
    let oversize = config.processing.max_record_bytes + 1;
    match &config.schema_registry {
        Some(rc) => {
            let auth = rc
                .username
                .as_deref()
                .map(|user| (user, rc.password.as_deref()));
            let id =
                auditchain_producer::schema_id(&rc.url, auth, &config.topics.input, false).await?;
            Ok(Target {
                schema_id: id,
                unknown_schema_id: 2_000_000_000,
                oversize,
            })
        }
        None => {
            let accepted = &config.schemas.audit_event_ids;
            let schema_id = accepted
                .first()
                .copied()
                .ok_or_else(|| Error::config("schemas.audit_event_ids", "is empty"))?;
            let unknown = (1..).find(|id| !accepted.contains(id)).unwrap_or(u32::MAX);
            Ok(Target {
                schema_id,
                unknown_schema_id: unknown,
                oversize,
            })
        }
    }
}

fn event(spec: &Spec, tenant: &str, i: usize) -> AuditEvent {
    AuditEvent {
        event_id: format!("{}-{i}", spec.run_id),
        tenant_id: tenant.to_string(),
        occurred_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0),
        actor: format!("user-{}", i % 97),
        action: [
            "user.login",
            "invoice.approve",
            "document.read",
            "role.grant",
        ][i % 4]
            .into(),
        resource: format!("resource/{}", i % 1000),
        outcome: if i.is_multiple_of(10) {
            Outcome::Denied
        } else {
            Outcome::Success
        },
        correlation_id: Some(format!("corr-{}", i / 3)),
        attributes: BTreeMap::from([("source".to_string(), "auditchain-produce".to_string())]),
        payload: (spec.payload_bytes > 0).then(|| vec![b'x'; spec.payload_bytes]),
    }
}

fn signed_headers(key_id: &str, sig: &[u8]) -> OwnedHeaders {
    headers_from(
        [
            (KEY_ID_HEADER, Some(key_id.as_bytes())),
            (SIG_HEADER, Some(sig)),
        ]
        .into_iter(),
    )
}

fn plan(spec: &Spec, t: &Target) -> Result<Vec<Planned>> {
    let signer = Signer::new(spec.key.clone(), t.schema_id);
    // Signs with `k` under its own id, as a producer holding only `k` would.
    let sign_with = |k: &NamedKey, tenant: &str, value: &[u8]| {
        signed_headers(k.key_id(), &k.sign(tenant, value))
    };
    let bad_total: usize = spec.inject.iter().map(|(_, n)| n).sum();
    let total = spec.events + bad_total;
    let tenants = spec.tenants.max(1);
    let mut bad: Vec<Inject> = spec
        .inject
        .iter()
        .flat_map(|(kind, n)| std::iter::repeat_n(*kind, *n))
        .collect();
    bad.reverse();
    // Spread bad records evenly: position i is bad when it crosses the next
    // multiple of total / bad_total.
    let stride = total.checked_div(bad_total).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(total);
    for i in 0..total {
        let tenant = format!("{}-{}", spec.tenant_prefix, i % tenants);
        let kind = if stride != usize::MAX && i % stride == stride / 2 {
            bad.pop()
        } else {
            None
        };
        let kind = kind.or_else(|| {
            if out.len() + bad.len() >= total {
                bad.pop()
            } else {
                None
            }
        });
        let ev = event(spec, &tenant, i);
        let planned = match kind {
            None => {
                // What a service does: the SDK's signed record.
                let record = signer.record(&ev)?;
                Planned {
                    headers: Some(record.headers),
                    key: Some(record.key),
                    value: record.value,
                    tenant: Some(tenant),
                    expected: None,
                    traceparent: None,
                }
            }
            Some(kind) => {
                let value = ev.encode(t.schema_id)?;
                let expected = Some(kind.expected_reason());
                let mut value = value;
                let mut key = Some(tenant.clone().into_bytes());
                let headers = match kind {
                    Inject::BadSignature => {
                        let mut sig = spec.key.sign(&tenant, &value);
                        sig[5] ^= 0x40;
                        Some(signed_headers(spec.key.key_id(), &sig))
                    }
                    Inject::UnknownKey => {
                        // The good key under an id the key set lacks (so
                        // adding that id fixes it: quarantine replay).
                        let k = spec.key.with_key_id(format!("unknown-{}", spec.run_id));
                        Some(sign_with(&k, &tenant, &value))
                    }
                    Inject::RevokedKey => {
                        let k = spec.revoked_key.as_ref().ok_or_else(|| {
                            Error::config(
                                "produce",
                                "revoked-key injections need a revoked key (--revoked-key-file)",
                            )
                        })?;
                        Some(sign_with(k, &tenant, &value))
                    }
                    Inject::KeyNotAllowed => {
                        let k = spec.restricted_key.as_ref().ok_or_else(|| {
                            Error::config("produce", "key-not-allowed injections need a key bound to other tenants (--restricted-key-file)")
                        })?;
                        Some(sign_with(k, &tenant, &value))
                    }
                    Inject::TenantMismatch => {
                        let other = format!("{tenant}-other");
                        key = Some(other.clone().into_bytes());
                        Some(sign_with(&spec.key, &other, &value))
                    }
                    Inject::MissingSignature => None,
                    Inject::MissingKey => {
                        key = None;
                        Some(sign_with(&spec.key, &tenant, &value))
                    }
                    Inject::TruncatedAvro => {
                        value.truncate(value.len() - 3);
                        Some(sign_with(&spec.key, &tenant, &value))
                    }
                    Inject::UnknownSchemaId => {
                        value[1..5].copy_from_slice(&t.unknown_schema_id.to_be_bytes());
                        Some(sign_with(&spec.key, &tenant, &value))
                    }
                    Inject::Oversized => {
                        value.resize(t.oversize, b'x');
                        Some(sign_with(&spec.key, &tenant, &value))
                    }
                };
                Planned {
                    tenant: key
                        .as_ref()
                        .map(|k| String::from_utf8_lossy(k).into_owned()),
                    key,
                    value,
                    headers,
                    expected,
                    traceparent: None,
                }
            }
        };
        out.push(if spec.traceparent {
            with_traceparent(planned)
        } else {
            planned
        });
    }
    Ok(out)
}

/// Adds a fresh sampled W3C trace context, the producer's "send" span.
fn with_traceparent(mut planned: Planned) -> Planned {
    use rand::RngCore;
    let mut rng = rand::thread_rng();
    let (mut trace_id, mut span_id) = ([0u8; 16], [0u8; 8]);
    // All-zero ids are invalid; with 64+ random bits that is never drawn.
    rng.fill_bytes(&mut trace_id);
    rng.fill_bytes(&mut span_id);
    trace_id[0] |= 1;
    span_id[0] |= 1;
    let value = format!("00-{}-{}-01", hex::encode(trace_id), hex::encode(span_id));
    let header = rdkafka::message::Header {
        key: crate::telemetry::TRACEPARENT_HEADER,
        value: Some(value.as_bytes()),
    };
    planned.headers = Some(planned.headers.unwrap_or_default().insert(header));
    planned.traceparent = Some(value);
    planned
}

/// Publishes `spec` to the config's input topic and reports where every
/// record landed.
pub async fn produce(config: &Config, spec: &Spec) -> Result<Report> {
    let started = Instant::now();
    let t = target(config).await?;
    let planned = plan(spec, &t)?;
    // The SDK's idempotent producer (acks=all, murmur2), on the
    // processor's client settings (TLS, SASL, [librdkafka]).
    let sdk = AuditProducer::builder_with(
        base_client_config(config, "auditchain-produce"),
        config.topics.input.as_str(),
        spec.key.clone(),
    )
    .schema_id(t.schema_id)
    .set("linger.ms", "5")
    .set("message.max.bytes", (t.oversize + 64 * 1024).to_string())
    .build()
    .await?;
    // Bad records are raw bytes no SDK would send: they go through the
    // SDK's producer as they are.
    let producer = sdk.kafka();
    let topic = config.topics.input.as_str();
    let mut in_flight = FuturesOrdered::new();
    let mut records = Vec::with_capacity(planned.len());
    let mut expectations = Vec::with_capacity(planned.len());
    for p in &planned {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).payload(&p.value);
        if let Some(k) = &p.key {
            record = record.key(k.as_slice());
        }
        if let Some(h) = &p.headers {
            record = record.headers(h.clone());
        }
        in_flight.push_back(producer.send(record, Timeout::Never));
        expectations.push((p.tenant.clone(), p.expected, p.traceparent.clone()));
        // Bound memory: keep at most 10k deliveries outstanding.
        if in_flight.len() >= 10_000 {
            if let Some(result) = in_flight.next().await {
                records.push(delivered(result, &expectations[records.len()])?);
            }
        }
    }
    while let Some(result) = in_flight.next().await {
        records.push(delivered(result, &expectations[records.len()])?);
    }
    Ok(Report {
        records,
        elapsed: started.elapsed(),
    })
}

fn delivered(
    result: rdkafka::producer::future_producer::OwnedDeliveryResult,
    expectation: &(Option<String>, Option<Reason>, Option<String>),
) -> Result<Produced> {
    match result {
        Ok(d) => Ok(Produced {
            partition: d.partition,
            offset: d.offset,
            tenant: expectation.0.clone(),
            expected: expectation.1,
            traceparent: expectation.2.clone(),
        }),
        Err((e, _)) => Err(Error::kafka("delivering an event", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_mixes_exactly_the_requested_records() {
        let spec = Spec {
            events: 50,
            tenants: 3,
            tenant_prefix: "t".into(),
            key: SigningKey::from_seed(&[1; 32], "k").expect("seed"),
            revoked_key: Some(SigningKey::from_seed(&[2; 32], "r").expect("seed")),
            restricted_key: Some(SigningKey::from_seed(&[3; 32], "x").expect("seed")),
            inject: Inject::ALL.iter().map(|i| (*i, 2)).collect(),
            payload_bytes: 0,
            run_id: "r1".into(),
            traceparent: true,
        };
        let t = Target {
            schema_id: 1,
            unknown_schema_id: 7,
            oversize: 100,
        };
        let planned = plan(&spec, &t).expect("plan");
        assert_eq!(planned.len(), 70);
        assert_eq!(planned.iter().filter(|p| p.expected.is_none()).count(), 50);
        for kind in Inject::ALL {
            let n = planned
                .iter()
                .filter(|p| p.expected == Some(kind.expected_reason()))
                .count();
            let want = Inject::ALL
                .iter()
                .filter(|k| k.expected_reason() == kind.expected_reason())
                .count()
                * 2;
            assert_eq!(n, want, "{kind:?}");
        }
        assert!(planned.iter().any(|p| p.key.is_none()));
        assert!(planned.iter().any(|p| p.value.len() == 100));
        let parents: std::collections::HashSet<&str> = planned
            .iter()
            .filter_map(|p| p.traceparent.as_deref())
            .collect();
        assert_eq!(parents.len(), 70, "one distinct trace context per record");
        for p in &planned {
            let pairs: Vec<crate::records::Header> = p
                .headers
                .as_ref()
                .map(|h| {
                    use rdkafka::message::Headers;
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default();
            let sc = crate::telemetry::remote_context(&crate::telemetry::HeaderCarrier(&pairs))
                .expect("a valid traceparent on every record");
            assert_eq!(Some(crate::telemetry::traceparent(&sc)), p.traceparent);
        }
    }
}
