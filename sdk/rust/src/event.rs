//! The v1 `AuditEvent` and its Confluent-framed Avro encoding.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;

use crate::error::{Error, Result};

/// `schemas/AuditEvent.avsc`, the v1 contract.
pub const AUDIT_EVENT_AVSC: &str = include_str!("../../../schemas/AuditEvent.avsc");

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        // Compiled in and parsed by a unit test: a failure is a build defect.
        #[allow(clippy::expect_used)]
        Schema::parse_str(AUDIT_EVENT_AVSC).expect("schemas/AuditEvent.avsc parses")
    })
}

/// `io.auditchain.v1.Outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Outcome {
    /// The action succeeded.
    #[default]
    Success,
    /// The action failed.
    Failure,
    /// The action was refused.
    Denied,
    /// The action errored.
    Error,
}

impl Outcome {
    const SYMBOLS: [&'static str; 4] = ["SUCCESS", "FAILURE", "DENIED", "ERROR"];
    const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Denied,
        Outcome::Error,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The schema's symbol.
    pub fn symbol(self) -> &'static str {
        Self::SYMBOLS[self.index()]
    }
}

/// An `io.auditchain.v1.AuditEvent` (DESIGN.md §1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Producer-assigned unique id (default: a random UUID).
    pub event_id: String,
    /// The tenant; also the record key.
    pub tenant_id: String,
    /// Microseconds since the Unix epoch (default: now).
    pub occurred_at: i64,
    /// Who acted.
    pub actor: String,
    /// What was done; must not be empty.
    pub action: String,
    /// What it was done to.
    pub resource: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Optional correlation id.
    pub correlation_id: Option<String>,
    /// Free-form attributes (ordered, so the same event encodes to the same bytes).
    pub attributes: BTreeMap<String, String>,
    /// Optional opaque payload.
    pub payload: Option<Vec<u8>>,
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl AuditEvent {
    /// An event with a fresh UUID, occurring now, outcome `SUCCESS`.
    pub fn new(
        tenant_id: impl Into<String>,
        actor: impl Into<String>,
        action: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        AuditEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            tenant_id: tenant_id.into(),
            occurred_at: now_micros(),
            actor: actor.into(),
            action: action.into(),
            resource: resource.into(),
            outcome: Outcome::Success,
            correlation_id: None,
            attributes: BTreeMap::new(),
            payload: None,
        }
    }

    /// Checks what the processor checks before it would chain the event.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in [
            ("event_id", &self.event_id),
            ("tenant_id", &self.tenant_id),
            ("action", &self.action),
        ] {
            if value.is_empty() {
                return Err(Error::InvalidEvent {
                    field,
                    reason: "must not be empty".into(),
                });
            }
        }
        Ok(())
    }

    fn to_value(&self) -> Value {
        let union = |v: Option<Value>| match v {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(v) => Value::Union(1, Box::new(v)),
        };
        Value::Record(vec![
            ("event_id".into(), Value::String(self.event_id.clone())),
            ("tenant_id".into(), Value::String(self.tenant_id.clone())),
            (
                "occurred_at".into(),
                Value::TimestampMicros(self.occurred_at),
            ),
            ("actor".into(), Value::String(self.actor.clone())),
            ("action".into(), Value::String(self.action.clone())),
            ("resource".into(), Value::String(self.resource.clone())),
            (
                "outcome".into(),
                Value::Enum(self.outcome.index() as u32, self.outcome.symbol().into()),
            ),
            (
                "correlation_id".into(),
                union(self.correlation_id.clone().map(Value::String)),
            ),
            (
                "attributes".into(),
                Value::Map(
                    self.attributes
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                ),
            ),
            (
                "payload".into(),
                union(self.payload.clone().map(Value::Bytes)),
            ),
        ])
    }

    /// The Avro binary body (no framing).
    pub fn to_avro(&self) -> Result<Vec<u8>> {
        self.validate()?;
        GenericDatumWriter::builder(schema())
            .build()
            .and_then(|w| w.write_value_to_vec(self.to_value()))
            .map_err(|e| Error::Avro(e.to_string()))
    }

    /// The Confluent wire format: 0x00, the schema id (u32 big-endian), the Avro body.
    pub fn encode(&self, schema_id: u32) -> Result<Vec<u8>> {
        Ok(frame(schema_id, &self.to_avro()?))
    }

    /// The inverse of [`AuditEvent::encode`]: the schema id and the event.
    pub fn decode(value: &[u8]) -> Result<(u32, AuditEvent)> {
        if value.len() < 5 || value[0] != 0 {
            return Err(Error::Avro(
                "not a Confluent-framed value (magic byte 0 and a 4-byte schema id)".into(),
            ));
        }
        let id = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
        let mut body = &value[5..];
        let v = GenericDatumReader::builder(schema())
            .build()
            .and_then(|r| r.read_value(&mut body))
            .map_err(|e| Error::Avro(e.to_string()))?;
        if !body.is_empty() {
            return Err(Error::Avro(format!(
                "{} bytes left over after the Avro body",
                body.len()
            )));
        }
        Ok((id, Self::from_value(v).map_err(Error::Avro)?))
    }

    fn from_value(value: Value) -> std::result::Result<Self, String> {
        let Value::Record(fields) = value else {
            return Err("not a record".into());
        };
        let mut e = AuditEvent::new("", "", "", "");
        for (name, value) in fields {
            match (name.as_str(), value) {
                ("event_id", Value::String(s)) => e.event_id = s,
                ("tenant_id", Value::String(s)) => e.tenant_id = s,
                ("occurred_at", Value::TimestampMicros(t) | Value::Long(t)) => e.occurred_at = t,
                ("actor", Value::String(s)) => e.actor = s,
                ("action", Value::String(s)) => e.action = s,
                ("resource", Value::String(s)) => e.resource = s,
                ("outcome", Value::Enum(i, _)) => {
                    e.outcome = *Outcome::ALL
                        .get(i as usize)
                        .ok_or_else(|| format!("outcome index {i}"))?
                }
                ("correlation_id", Value::Union(_, inner)) => match *inner {
                    Value::Null => e.correlation_id = None,
                    Value::String(s) => e.correlation_id = Some(s),
                    other => return Err(format!("correlation_id: unexpected {other:?}")),
                },
                ("attributes", Value::Map(map)) => {
                    for (k, v) in map {
                        match v {
                            Value::String(s) => {
                                e.attributes.insert(k, s);
                            }
                            other => return Err(format!("attributes[{k}]: unexpected {other:?}")),
                        }
                    }
                }
                ("payload", Value::Union(_, inner)) => match *inner {
                    Value::Null => e.payload = None,
                    Value::Bytes(b) => e.payload = Some(b),
                    other => return Err(format!("payload: unexpected {other:?}")),
                },
                (name, other) => return Err(format!("{name}: unexpected {other:?}")),
            }
        }
        Ok(e)
    }
}

/// Prefixes an Avro body with the Confluent framing for `schema_id`.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}
