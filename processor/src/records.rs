//! The processor's output records (`ChainedRecord`, `QuarantineRecord`,
//! `AnchorBatch`): building their Avro values and reading them back, for the
//! processor, `verify` and the tests alike.

use std::sync::OnceLock;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;

use crate::chain::{Anchor, Hash, TenantHead};
use crate::error::{Error, Result};
use crate::route::Reason;
use crate::schema::{encode_framed, schemas, split_frame};

/// An `io.auditchain.v1.ChainedRecord`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedRecord {
    /// The chain's tenant.
    pub tenant_id: String,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// Previous entry hash (`Z` for seq 1).
    pub prev_hash: Hash,
    /// This entry's hash.
    pub entry_hash: Hash,
    /// `H(event)`.
    pub event_digest: Hash,
    /// Input topic.
    pub source_topic: String,
    /// Input partition.
    pub source_partition: u32,
    /// Input offset.
    pub source_offset: u64,
    /// Input record timestamp.
    pub source_timestamp_ms: i64,
    /// Producer key id.
    pub key_id: String,
    /// Producer signature.
    pub producer_sig: Vec<u8>,
    /// The input value, verbatim.
    pub event: Vec<u8>,
    /// The anchor covering this record.
    pub anchor_seq: u64,
}

/// One input header, kept in quarantine.
pub type Header = (String, Option<Vec<u8>>);

/// An `io.auditchain.v1.QuarantineRecord`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRecord {
    /// Why.
    pub reason: Reason,
    /// Explanation.
    pub detail: String,
    /// Input topic.
    pub source_topic: String,
    /// Input partition.
    pub source_partition: u32,
    /// Input offset.
    pub source_offset: u64,
    /// Input record timestamp.
    pub source_timestamp_ms: i64,
    /// Input key, verbatim.
    pub raw_key: Option<Vec<u8>>,
    /// Input value, verbatim.
    pub raw_value: Option<Vec<u8>>,
    /// Input headers, in order.
    pub headers: Vec<Header>,
    /// The Merkle leaf data (§4.3).
    pub quarantine_hash: Hash,
    /// The anchor covering this record.
    pub anchor_seq: u64,
}

/// An `io.auditchain.v1.AnchorBatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorBatch {
    /// The signed fields.
    pub anchor: Anchor,
    /// `H(anchor_msg)` as written.
    pub anchor_hash: Hash,
    /// Signature over `anchor_msg`.
    pub signature: Vec<u8>,
    /// The instance that wrote it.
    pub processor_id: String,
}

fn fixed(h: &Hash) -> Value {
    Value::Fixed(32, h.to_vec())
}

fn long(n: u64) -> Value {
    Value::Long(i64::try_from(n).unwrap_or(i64::MAX))
}

fn opt_bytes(b: &Option<Vec<u8>>) -> Value {
    match b {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(b) => Value::Union(1, Box::new(Value::Bytes(b.clone()))),
    }
}

impl ChainedRecord {
    /// Encodes with Confluent framing under `schema_id`.
    pub fn encode(&self, schema_id: u32) -> Result<Vec<u8>> {
        let value = Value::Record(vec![
            ("tenant_id".into(), Value::String(self.tenant_id.clone())),
            ("seq".into(), long(self.seq)),
            ("prev_hash".into(), fixed(&self.prev_hash)),
            ("entry_hash".into(), fixed(&self.entry_hash)),
            ("event_digest".into(), fixed(&self.event_digest)),
            (
                "source_topic".into(),
                Value::String(self.source_topic.clone()),
            ),
            (
                "source_partition".into(),
                Value::Int(self.source_partition as i32),
            ),
            ("source_offset".into(), long(self.source_offset)),
            (
                "source_timestamp_ms".into(),
                Value::Long(self.source_timestamp_ms),
            ),
            ("key_id".into(), Value::String(self.key_id.clone())),
            (
                "producer_sig".into(),
                Value::Bytes(self.producer_sig.clone()),
            ),
            ("event".into(), Value::Bytes(self.event.clone())),
            ("anchor_seq".into(), long(self.anchor_seq)),
        ]);
        encode_framed(&schemas().chained_record, schema_id, value)
    }

    /// Decodes a framed value.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let fields = decode_record(
            bytes,
            reader(&CHAINED_READER, &schemas().chained_record),
            "ChainedRecord",
        )?;
        let f = Fields {
            fields: &fields,
            what: "ChainedRecord",
        };
        Ok(ChainedRecord {
            tenant_id: f.string("tenant_id")?,
            seq: f.u64("seq")?,
            prev_hash: f.hash("prev_hash")?,
            entry_hash: f.hash("entry_hash")?,
            event_digest: f.hash("event_digest")?,
            source_topic: f.string("source_topic")?,
            source_partition: f.u32("source_partition")?,
            source_offset: f.u64("source_offset")?,
            source_timestamp_ms: f.i64("source_timestamp_ms")?,
            key_id: f.string("key_id")?,
            producer_sig: f.bytes("producer_sig")?,
            event: f.bytes("event")?,
            anchor_seq: f.u64("anchor_seq")?,
        })
    }
}

impl QuarantineRecord {
    /// Encodes with Confluent framing under `schema_id`.
    pub fn encode(&self, schema_id: u32) -> Result<Vec<u8>> {
        let headers = self
            .headers
            .iter()
            .map(|(k, v)| {
                Value::Record(vec![
                    ("key".into(), Value::String(k.clone())),
                    ("value".into(), opt_bytes(v)),
                ])
            })
            .collect();
        let value = Value::Record(vec![
            (
                "reason".into(),
                Value::Enum(self.reason.avro_index(), self.reason.code().into()),
            ),
            ("detail".into(), Value::String(self.detail.clone())),
            (
                "source_topic".into(),
                Value::String(self.source_topic.clone()),
            ),
            (
                "source_partition".into(),
                Value::Int(self.source_partition as i32),
            ),
            ("source_offset".into(), long(self.source_offset)),
            (
                "source_timestamp_ms".into(),
                Value::Long(self.source_timestamp_ms),
            ),
            ("raw_key".into(), opt_bytes(&self.raw_key)),
            ("raw_value".into(), opt_bytes(&self.raw_value)),
            ("headers".into(), Value::Array(headers)),
            ("quarantine_hash".into(), fixed(&self.quarantine_hash)),
            ("anchor_seq".into(), long(self.anchor_seq)),
        ]);
        encode_framed(&schemas().quarantine_record, schema_id, value)
    }

    /// Decodes a framed value.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let fields = decode_record(
            bytes,
            reader(&QUARANTINE_READER, &schemas().quarantine_record),
            "QuarantineRecord",
        )?;
        let f = Fields {
            fields: &fields,
            what: "QuarantineRecord",
        };
        let reason = match f.get("reason")? {
            Value::Enum(_, symbol) => Reason::from_code(symbol)
                .ok_or_else(|| Error::Avro(format!("QuarantineRecord.reason: unknown {symbol}")))?,
            other => return Err(Error::Avro(format!("QuarantineRecord.reason: {other:?}"))),
        };
        let headers = match f.get("headers")? {
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    let Value::Record(fields) = item else {
                        return Err(Error::Avro("QuarantineRecord.headers: not a record".into()));
                    };
                    let h = Fields {
                        fields,
                        what: "Header",
                    };
                    Ok((h.string("key")?, h.opt_bytes("value")?))
                })
                .collect::<Result<Vec<_>>>()?,
            other => return Err(Error::Avro(format!("QuarantineRecord.headers: {other:?}"))),
        };
        Ok(QuarantineRecord {
            reason,
            detail: f.string("detail")?,
            source_topic: f.string("source_topic")?,
            source_partition: f.u32("source_partition")?,
            source_offset: f.u64("source_offset")?,
            source_timestamp_ms: f.i64("source_timestamp_ms")?,
            raw_key: f.opt_bytes("raw_key")?,
            raw_value: f.opt_bytes("raw_value")?,
            headers,
            quarantine_hash: f.hash("quarantine_hash")?,
            anchor_seq: f.u64("anchor_seq")?,
        })
    }
}

impl AnchorBatch {
    /// The record key: `<source topic>/<partition>`.
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            self.anchor.source_topic, self.anchor.source_partition
        )
    }

    /// Encodes with Confluent framing under `schema_id`.
    pub fn encode(&self, schema_id: u32) -> Result<Vec<u8>> {
        let a = &self.anchor;
        let heads = a
            .tenant_heads
            .iter()
            .map(|t| {
                Value::Record(vec![
                    ("tenant_id".into(), Value::String(t.tenant_id.clone())),
                    ("seq".into(), long(t.seq)),
                    ("entry_hash".into(), fixed(&t.entry_hash)),
                ])
            })
            .collect();
        let value = Value::Record(vec![
            ("source_topic".into(), Value::String(a.source_topic.clone())),
            (
                "source_partition".into(),
                Value::Int(a.source_partition as i32),
            ),
            ("anchor_seq".into(), long(a.anchor_seq)),
            ("prev_anchor_hash".into(), fixed(&a.prev_anchor_hash)),
            ("anchor_hash".into(), fixed(&self.anchor_hash)),
            ("first_offset".into(), long(a.first_offset)),
            ("last_offset".into(), long(a.last_offset)),
            ("chained_count".into(), long(a.chained_count)),
            ("quarantined_count".into(), long(a.quarantined_count)),
            ("merkle_root".into(), fixed(&a.merkle_root)),
            ("tenant_heads".into(), Value::Array(heads)),
            ("created_at_us".into(), long(a.created_at_us)),
            (
                "signer_key_id".into(),
                Value::String(a.signer_key_id.clone()),
            ),
            ("signature".into(), Value::Bytes(self.signature.clone())),
            (
                "processor_id".into(),
                Value::String(self.processor_id.clone()),
            ),
        ]);
        encode_framed(&schemas().anchor_batch, schema_id, value)
    }

    /// Decodes a framed value.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let fields = decode_record(
            bytes,
            reader(&ANCHOR_READER, &schemas().anchor_batch),
            "AnchorBatch",
        )?;
        let f = Fields {
            fields: &fields,
            what: "AnchorBatch",
        };
        let tenant_heads = match f.get("tenant_heads")? {
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    let Value::Record(fields) = item else {
                        return Err(Error::Avro("AnchorBatch.tenant_heads: not a record".into()));
                    };
                    let h = Fields {
                        fields,
                        what: "TenantHead",
                    };
                    Ok(TenantHead {
                        tenant_id: h.string("tenant_id")?,
                        seq: h.u64("seq")?,
                        entry_hash: h.hash("entry_hash")?,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            other => return Err(Error::Avro(format!("AnchorBatch.tenant_heads: {other:?}"))),
        };
        Ok(AnchorBatch {
            anchor: Anchor {
                source_topic: f.string("source_topic")?,
                source_partition: f.u32("source_partition")?,
                anchor_seq: f.u64("anchor_seq")?,
                prev_anchor_hash: f.hash("prev_anchor_hash")?,
                first_offset: f.u64("first_offset")?,
                last_offset: f.u64("last_offset")?,
                chained_count: f.u64("chained_count")?,
                quarantined_count: f.u64("quarantined_count")?,
                merkle_root: f.hash("merkle_root")?,
                tenant_heads,
                created_at_us: f.u64("created_at_us")?,
                signer_key_id: f.string("signer_key_id")?,
            },
            anchor_hash: f.hash("anchor_hash")?,
            signature: f.bytes("signature")?,
            processor_id: f.string("processor_id")?,
        })
    }
}

/// A datum reader for a compiled-in output schema, built once: building one
/// resolves the schema, which costs more than decoding a record.
fn reader(
    cell: &'static OnceLock<GenericDatumReader<'static>>,
    schema: &'static apache_avro::Schema,
) -> &'static GenericDatumReader<'static> {
    cell.get_or_init(|| {
        GenericDatumReader::builder(schema)
            .build()
            .expect("a compiled-in schema (parsed by a unit test) builds a reader")
    })
}

static CHAINED_READER: OnceLock<GenericDatumReader<'static>> = OnceLock::new();
static QUARANTINE_READER: OnceLock<GenericDatumReader<'static>> = OnceLock::new();
static ANCHOR_READER: OnceLock<GenericDatumReader<'static>> = OnceLock::new();

/// Decodes a framed record to its fields.
fn decode_record(
    bytes: &[u8],
    reader: &GenericDatumReader<'static>,
    what: &str,
) -> Result<Vec<(String, Value)>> {
    let (_, body) =
        split_frame(bytes).ok_or_else(|| Error::Avro(format!("{what}: no Confluent framing")))?;
    let mut cursor = body;
    let value = reader
        .read_value(&mut cursor)
        .map_err(|e| Error::Avro(format!("{what}: {e}")))?;
    if !cursor.is_empty() {
        return Err(Error::Avro(format!(
            "{what}: {} bytes left over",
            cursor.len()
        )));
    }
    match value {
        Value::Record(fields) => Ok(fields),
        other => Err(Error::Avro(format!("{what}: not a record: {other:?}"))),
    }
}

/// Typed access to a decoded record's fields, with errors naming the field.
struct Fields<'a> {
    fields: &'a [(String, Value)],
    what: &'static str,
}

impl Fields<'_> {
    fn get(&self, name: &str) -> Result<&Value> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::Avro(format!("{}.{name}: missing", self.what)))
    }

    fn bad(&self, name: &str, v: &Value) -> Error {
        Error::Avro(format!("{}.{name}: unexpected {v:?}", self.what))
    }

    fn string(&self, name: &str) -> Result<String> {
        match self.get(name)? {
            Value::String(s) => Ok(s.clone()),
            v => Err(self.bad(name, v)),
        }
    }

    fn i64(&self, name: &str) -> Result<i64> {
        match self.get(name)? {
            Value::Long(n) => Ok(*n),
            v => Err(self.bad(name, v)),
        }
    }

    fn u64(&self, name: &str) -> Result<u64> {
        let n = self.i64(name)?;
        u64::try_from(n).map_err(|_| Error::Avro(format!("{}.{name}: negative ({n})", self.what)))
    }

    fn u32(&self, name: &str) -> Result<u32> {
        match self.get(name)? {
            Value::Int(n) => u32::try_from(*n)
                .map_err(|_| Error::Avro(format!("{}.{name}: negative ({n})", self.what))),
            v => Err(self.bad(name, v)),
        }
    }

    fn hash(&self, name: &str) -> Result<Hash> {
        match self.get(name)? {
            Value::Fixed(32, b) => {
                <Hash>::try_from(b.as_slice()).map_err(|_| self.bad(name, &Value::Null))
            }
            v => Err(self.bad(name, v)),
        }
    }

    fn bytes(&self, name: &str) -> Result<Vec<u8>> {
        match self.get(name)? {
            Value::Bytes(b) => Ok(b.clone()),
            v => Err(self.bad(name, v)),
        }
    }

    fn opt_bytes(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self.get(name)? {
            Value::Union(_, inner) => match inner.as_ref() {
                Value::Null => Ok(None),
                Value::Bytes(b) => Ok(Some(b.clone())),
                v => Err(self.bad(name, v)),
            },
            v => Err(self.bad(name, v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_records_round_trip() {
        let c = ChainedRecord {
            tenant_id: "acme".into(),
            seq: 3,
            prev_hash: [1; 32],
            entry_hash: [2; 32],
            event_digest: [3; 32],
            source_topic: "in".into(),
            source_partition: 4,
            source_offset: 5,
            source_timestamp_ms: 6,
            key_id: "k".into(),
            producer_sig: vec![7; 64],
            event: vec![0, 0, 0, 0, 1, 2],
            anchor_seq: 8,
        };
        assert_eq!(
            ChainedRecord::decode(&c.encode(2).expect("enc")).expect("dec"),
            c
        );
        let q = QuarantineRecord {
            reason: Reason::KeyNotAllowed,
            detail: "why".into(),
            source_topic: "in".into(),
            source_partition: 1,
            source_offset: 2,
            source_timestamp_ms: 3,
            raw_key: None,
            raw_value: Some(vec![9]),
            headers: vec![("h".into(), None), ("g".into(), Some(vec![1]))],
            quarantine_hash: [4; 32],
            anchor_seq: 5,
        };
        assert_eq!(
            QuarantineRecord::decode(&q.encode(3).expect("enc")).expect("dec"),
            q
        );
        let a = AnchorBatch {
            anchor: Anchor {
                source_topic: "in".into(),
                source_partition: 0,
                anchor_seq: 1,
                prev_anchor_hash: [0; 32],
                first_offset: 0,
                last_offset: 9,
                chained_count: 8,
                quarantined_count: 2,
                merkle_root: [5; 32],
                tenant_heads: vec![TenantHead {
                    tenant_id: "acme".into(),
                    seq: 8,
                    entry_hash: [6; 32],
                }],
                created_at_us: 7,
                signer_key_id: "p".into(),
            },
            anchor_hash: [8; 32],
            signature: vec![9; 64],
            processor_id: "i-1".into(),
        };
        assert_eq!(
            AnchorBatch::decode(&a.encode(4).expect("enc")).expect("dec"),
            a
        );
        assert_eq!(a.key(), "in/0");
    }
}
