//! The Avro contract (DESIGN.md §1.1): the four schemas compiled in from
//! `schemas/`, Confluent wire framing, and the typed views the processor
//! works with.
//!
//! Values are built and read as `apache_avro::types::Value` by hand rather
//! than through serde: the field layout is the public contract, and explicit
//! code makes every byte that goes out visible in review.

use std::collections::HashMap;
use std::sync::OnceLock;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;

use crate::error::{Error, Result};

/// `schemas/AuditEvent.avsc`.
pub const AUDIT_EVENT_AVSC: &str = include_str!("../../../schemas/AuditEvent.avsc");
/// `schemas/ChainedRecord.avsc`.
pub const CHAINED_RECORD_AVSC: &str = include_str!("../../../schemas/ChainedRecord.avsc");
/// `schemas/QuarantineRecord.avsc`.
pub const QUARANTINE_RECORD_AVSC: &str = include_str!("../../../schemas/QuarantineRecord.avsc");
/// `schemas/AnchorBatch.avsc`.
pub const ANCHOR_BATCH_AVSC: &str = include_str!("../../../schemas/AnchorBatch.avsc");

/// The Confluent wire format's magic byte.
pub const MAGIC: u8 = 0;
/// Magic byte plus the 4-byte schema id.
pub const FRAME_HEADER_LEN: usize = 5;

/// The four parsed schemas.
#[derive(Debug)]
pub struct Schemas {
    /// `io.auditchain.v1.AuditEvent`.
    pub audit_event: Schema,
    /// `io.auditchain.v1.ChainedRecord`.
    pub chained_record: Schema,
    /// `io.auditchain.v1.QuarantineRecord`.
    pub quarantine_record: Schema,
    /// `io.auditchain.v1.AnchorBatch`.
    pub anchor_batch: Schema,
}

/// The compiled-in schemas, parsed once.
pub fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        // The files are part of this crate's source and a unit test parses
        // each; a failure here is a build defect, not an input error.
        let parse = |text: &str, name: &str| {
            Schema::parse_str(text).unwrap_or_else(|e| panic!("compiled-in schema {name}: {e}"))
        };
        Schemas {
            audit_event: parse(AUDIT_EVENT_AVSC, "AuditEvent"),
            chained_record: parse(CHAINED_RECORD_AVSC, "ChainedRecord"),
            quarantine_record: parse(QUARANTINE_RECORD_AVSC, "QuarantineRecord"),
            anchor_batch: parse(ANCHOR_BATCH_AVSC, "AnchorBatch"),
        }
    })
}

/// Splits a Confluent-framed value into schema id and Avro body; `None` when
/// the framing is absent (too short or wrong magic byte).
pub fn split_frame(value: &[u8]) -> Option<(u32, &[u8])> {
    if value.len() < FRAME_HEADER_LEN || value[0] != MAGIC {
        return None;
    }
    let id = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
    Some((id, &value[FRAME_HEADER_LEN..]))
}

/// Prefixes an Avro body with the Confluent framing for `schema_id`.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Encodes `value` with `schema` and frames it.
pub fn encode_framed(schema: &Schema, schema_id: u32, value: Value) -> Result<Vec<u8>> {
    let body = GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(value))
        .map_err(|e| Error::Avro(e.to_string()))?;
    Ok(frame(schema_id, &body))
}

/// How an input event ended: `io.auditchain.v1.Outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The action succeeded.
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

    fn index(self) -> u32 {
        match self {
            Outcome::Success => 0,
            Outcome::Failure => 1,
            Outcome::Denied => 2,
            Outcome::Error => 3,
        }
    }

    fn from_symbol(symbol: &str) -> Option<Self> {
        match symbol {
            "SUCCESS" => Some(Outcome::Success),
            "FAILURE" => Some(Outcome::Failure),
            "DENIED" => Some(Outcome::Denied),
            "ERROR" => Some(Outcome::Error),
            _ => None,
        }
    }
}

/// An `io.auditchain.v1.AuditEvent`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Producer-assigned unique id.
    pub event_id: String,
    /// The tenant; must equal the record key.
    pub tenant_id: String,
    /// Microseconds since the Unix epoch.
    pub occurred_at: i64,
    /// Who acted.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// To what.
    pub resource: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Optional correlation id.
    pub correlation_id: Option<String>,
    /// Free-form attributes.
    pub attributes: HashMap<String, String>,
    /// Optional opaque payload.
    pub payload: Option<Vec<u8>>,
}

impl AuditEvent {
    /// The Avro value of this event under the compiled-in schema.
    pub fn to_value(&self) -> Value {
        let opt_string = |v: &Option<String>| match v {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(s) => Value::Union(1, Box::new(Value::String(s.clone()))),
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
                Value::Enum(
                    self.outcome.index(),
                    Outcome::SYMBOLS[self.outcome.index() as usize].to_string(),
                ),
            ),
            ("correlation_id".into(), opt_string(&self.correlation_id)),
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
                match &self.payload {
                    None => Value::Union(0, Box::new(Value::Null)),
                    Some(b) => Value::Union(1, Box::new(Value::Bytes(b.clone()))),
                },
            ),
        ])
    }

    /// Encodes the event in the Confluent wire format under `schema_id`.
    pub fn encode(&self, schema_id: u32) -> Result<Vec<u8>> {
        encode_framed(&schemas().audit_event, schema_id, self.to_value())
    }

    /// Reads an event from an Avro value already resolved to the compiled-in
    /// reader schema. Errors describe the first field that does not fit.
    pub fn from_value(value: Value) -> std::result::Result<Self, String> {
        let Value::Record(fields) = value else {
            return Err("not a record".into());
        };
        let mut event = AuditEvent {
            event_id: String::new(),
            tenant_id: String::new(),
            occurred_at: 0,
            actor: String::new(),
            action: String::new(),
            resource: String::new(),
            outcome: Outcome::Success,
            correlation_id: None,
            attributes: HashMap::new(),
            payload: None,
        };
        for (name, value) in fields {
            match (name.as_str(), value) {
                ("event_id", Value::String(s)) => event.event_id = s,
                ("tenant_id", Value::String(s)) => event.tenant_id = s,
                ("occurred_at", Value::TimestampMicros(t) | Value::Long(t)) => {
                    event.occurred_at = t
                }
                ("actor", Value::String(s)) => event.actor = s,
                ("action", Value::String(s)) => event.action = s,
                ("resource", Value::String(s)) => event.resource = s,
                ("outcome", Value::Enum(_, symbol)) => {
                    event.outcome = Outcome::from_symbol(&symbol)
                        .ok_or_else(|| format!("outcome: unknown symbol {symbol}"))?
                }
                ("correlation_id", Value::Union(_, inner)) => match *inner {
                    Value::Null => event.correlation_id = None,
                    Value::String(s) => event.correlation_id = Some(s),
                    other => return Err(format!("correlation_id: unexpected {other:?}")),
                },
                ("attributes", Value::Map(map)) => {
                    for (k, v) in map {
                        match v {
                            Value::String(s) => {
                                event.attributes.insert(k, s);
                            }
                            other => return Err(format!("attributes[{k}]: unexpected {other:?}")),
                        }
                    }
                }
                ("payload", Value::Union(_, inner)) => match *inner {
                    Value::Null => event.payload = None,
                    Value::Bytes(b) => event.payload = Some(b),
                    other => return Err(format!("payload: unexpected {other:?}")),
                },
                (name, other) => return Err(format!("{name}: unexpected {other:?}")),
            }
        }
        Ok(event)
    }
}

/// A parsed writer schema that can decode `AuditEvent` bodies, resolving
/// them to the compiled-in reader schema. The datum reader (with its
/// resolved schemas) is built once, not per record.
pub struct EventDecoder {
    reader: GenericDatumReader<'static>,
}

impl std::fmt::Debug for EventDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventDecoder").finish_non_exhaustive()
    }
}

impl EventDecoder {
    /// A decoder for bodies written with the compiled-in schema itself.
    pub fn compiled() -> Self {
        Self::for_writer(&schemas().audit_event)
            .expect("the compiled-in schema resolves against itself")
    }

    /// A decoder for bodies written with `writer_schema_json` (from the
    /// registry). The schema is kept for the life of the process: registry
    /// schemas are immutable and few, and a `'static` schema lets the decoder
    /// be shared across verification threads without copies.
    pub fn from_writer_schema(writer_schema_json: &str) -> Result<Self> {
        let writer =
            Schema::parse_str(writer_schema_json).map_err(|e| Error::Avro(e.to_string()))?;
        let writer: &'static Schema = Box::leak(Box::new(writer));
        Self::for_writer(writer)
    }

    fn for_writer(writer: &'static Schema) -> Result<Self> {
        let reader_schema = &schemas().audit_event;
        let builder = GenericDatumReader::builder(writer);
        // When the producer wrote with v1 itself, resolution is a no-op.
        let reader = if writer.canonical_form() == reader_schema.canonical_form() {
            builder.build()
        } else {
            builder.reader_schema(reader_schema).build()
        }
        .map_err(|e| Error::Avro(format!("schema resolution: {e}")))?;
        Ok(EventDecoder { reader })
    }

    /// Decodes one Avro body (framing already removed). Every byte must be
    /// consumed: trailing bytes mean the record is not what it claims to be.
    pub fn decode(&self, body: &[u8]) -> std::result::Result<AuditEvent, String> {
        let mut cursor = body;
        let value = self
            .reader
            .read_value(&mut cursor)
            .map_err(|e| format!("avro body: {e}"))?;
        if !cursor.is_empty() {
            return Err(format!(
                "{} bytes left over after the Avro body",
                cursor.len()
            ));
        }
        AuditEvent::from_value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_event() -> AuditEvent {
        AuditEvent {
            event_id: "e-1".into(),
            tenant_id: "acme".into(),
            occurred_at: 1_700_000_000_000_000,
            actor: "alice".into(),
            action: "user.login".into(),
            resource: "console".into(),
            outcome: Outcome::Denied,
            correlation_id: Some("c-9".into()),
            attributes: HashMap::from([("ip".to_string(), "10.0.0.1".to_string())]),
            payload: Some(vec![1, 2, 3]),
        }
    }

    #[test]
    fn all_four_schemas_parse_with_their_v1_names() {
        let s = schemas();
        for (schema, name) in [
            (&s.audit_event, "io.auditchain.v1.AuditEvent"),
            (&s.chained_record, "io.auditchain.v1.ChainedRecord"),
            (&s.quarantine_record, "io.auditchain.v1.QuarantineRecord"),
            (&s.anchor_batch, "io.auditchain.v1.AnchorBatch"),
        ] {
            let Schema::Record(record) = schema else {
                panic!("{name} is not a record");
            };
            assert_eq!(record.name.fullname(None), name);
        }
    }

    #[test]
    fn event_round_trips_through_the_wire_format() {
        let event = sample_event();
        let bytes = event.encode(42).expect("encode");
        let (id, body) = split_frame(&bytes).expect("framed");
        assert_eq!(id, 42);
        let decoded = EventDecoder::compiled().decode(body).expect("decode");
        assert_eq!(decoded, event);
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = sample_event().encode(1).expect("encode");
        bytes.push(0);
        let (_, body) = split_frame(&bytes).expect("framed");
        let err = EventDecoder::compiled()
            .decode(body)
            .expect_err("must fail");
        assert!(err.contains("left over"), "{err}");
    }

    #[test]
    fn framing_needs_magic_byte_and_four_id_bytes() {
        assert_eq!(split_frame(&[0, 0, 0, 0]), None);
        assert_eq!(split_frame(&[1, 0, 0, 0, 7]), None);
        assert_eq!(split_frame(&[0, 0, 0, 0, 7]), Some((7, &[][..])));
    }

    #[test]
    fn an_evolved_writer_schema_resolves_to_v1() {
        // A producer on a later minor version with an extra optional field.
        let evolved = AUDIT_EVENT_AVSC.replacen(
            "\"fields\": [",
            "\"fields\": [{\"name\": \"region\", \"type\": \"string\", \"default\": \"eu\"},",
            1,
        );
        let writer = Schema::parse_str(&evolved).expect("parse evolved");
        let mut value = sample_event().to_value();
        if let Value::Record(fields) = &mut value {
            fields.insert(0, ("region".into(), Value::String("us".into())));
        }
        let body = GenericDatumWriter::builder(&writer)
            .build()
            .and_then(|w| w.write_value_to_vec(value))
            .expect("encode evolved");
        let decoder = EventDecoder::from_writer_schema(&evolved).expect("decoder");
        assert_eq!(decoder.decode(&body).expect("decode"), sample_event());
    }
}
