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

/// The longest `detail` a `QuarantineRecord` is written with. A detail can
/// quote the input (its key, key id, payload tenant id), so longer ones are
/// cut, at a character boundary, ending in `…`: this bounds the record's
/// envelope (`kafka::OUTPUT_ENVELOPE_BYTES`).
pub const MAX_DETAIL_BYTES: usize = 1024;

/// `detail` cut to at most [`MAX_DETAIL_BYTES`].
pub fn bounded_detail(detail: &str) -> std::borrow::Cow<'_, str> {
    if detail.len() <= MAX_DETAIL_BYTES {
        return detail.into();
    }
    const ELLIPSIS: &str = "…";
    let mut end = MAX_DETAIL_BYTES - ELLIPSIS.len();
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &detail[..end]).into()
}

/// How the detail of a quarantine record that was too large to write whole
/// starts, for each raw field it leaves out: `<mark> <bytes> bytes blake3
/// <hex>; `. The digest stands in for the field in the quarantine hash
/// (DESIGN.md §4.3 hashes `H(raw_key)` and `H(raw_value)`), so a verifier
/// still recomputes the leaf, which still commits to the input's bytes.
pub const DROPPED_VALUE_MARK: &str = "dropped raw_value";
/// See [`DROPPED_VALUE_MARK`].
pub const DROPPED_KEY_MARK: &str = "dropped raw_key";

fn dropped_mark(mark: &str, bytes: &[u8]) -> String {
    format!(
        "{mark} {} bytes blake3 {}; ",
        bytes.len(),
        hex::encode(crate::chain::hash::h(bytes))
    )
}

/// The digest a detail gives for a dropped field (`mark` is
/// [`DROPPED_VALUE_MARK`] or [`DROPPED_KEY_MARK`]), if it gives one. Marks
/// lead the detail, so truncation never cuts them.
pub fn dropped_digest(detail: &str, mark: &str) -> Option<Hash> {
    detail.split("; ").find_map(|part| {
        let rest = part.strip_prefix(mark)?.strip_prefix(' ')?;
        let (_, hex_digest) = rest.split_once(" bytes blake3 ")?;
        let bytes = hex::decode(hex_digest).ok()?;
        bytes.try_into().ok()
    })
}

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
    /// Where its input record sits.
    pub fn source(&self) -> crate::chain::SourceCoord<'_> {
        crate::chain::SourceCoord {
            topic: &self.source_topic,
            partition: self.source_partition,
            offset: self.source_offset,
        }
    }

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
    /// Where its input record sits.
    pub fn source(&self) -> crate::chain::SourceCoord<'_> {
        crate::chain::SourceCoord {
            topic: &self.source_topic,
            partition: self.source_partition,
            offset: self.source_offset,
        }
    }

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
            (
                "detail".into(),
                Value::String(bounded_detail(&self.detail).into_owned()),
            ),
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

    /// Encodes under `schema_id` so that the record, written with its raw
    /// key as the Kafka key, fits `limit` (the output limit of
    /// `kafka::TopicReport`). A record that does not fit whole (possible only
    /// for a compressed input batch, or an input topic whose
    /// `max.message.bytes` grew since start-up) becomes `OVERSIZED` and
    /// leaves out, in this order and only as far as needed, its raw value,
    /// its headers, its raw key; the detail starts with a mark and the
    /// digest of each raw field left out and then says what the record was.
    /// `quarantine_hash` is recomputed for the new reason from the input's
    /// bytes, so the leaf still commits to them. Returns the encoded value
    /// and whether the raw key is still the Kafka key (when false, write the
    /// record without a key).
    pub fn encode_to_fit(&mut self, schema_id: u32, limit: usize) -> Result<(Vec<u8>, bool)> {
        use crate::kafka::output_record_fits;
        let key_len = |r: &QuarantineRecord| r.raw_key.as_ref().map_or(0, Vec::len);
        let bytes = self.encode(schema_id)?;
        if output_record_fits(key_len(self), bytes.len(), limit) {
            return Ok((bytes, true));
        }
        let wrapped = bytes.len() + key_len(self);
        let key = self.raw_key.take();
        let value = self.raw_value.take();
        let key_ref = key.as_deref().unwrap_or_default();
        let value_ref = value.as_deref().unwrap_or_default();
        self.quarantine_hash = crate::chain::quarantine_hash(
            self.source(),
            key_ref,
            value_ref,
            Reason::Oversized.code(),
        );
        let was = format!(
            "too large to keep whole: wrapped, {wrapped} bytes, above the output limit of {limit}; it was {} ({})",
            self.reason.code(),
            self.detail
        );
        self.reason = Reason::Oversized;
        let value_mark = value.as_ref().map(|v| dropped_mark(DROPPED_VALUE_MARK, v));
        self.detail = format!("{}{was}", value_mark.as_deref().unwrap_or_default());
        self.raw_key = key;
        let bytes = self.encode(schema_id)?;
        if output_record_fits(key_len(self), bytes.len(), limit) {
            return Ok((bytes, true));
        }
        let headers = std::mem::take(&mut self.headers);
        self.detail = format!(
            "{}headers dropped ({}); {was}",
            value_mark.as_deref().unwrap_or_default(),
            headers.len()
        );
        let bytes = self.encode(schema_id)?;
        if output_record_fits(key_len(self), bytes.len(), limit) {
            return Ok((bytes, true));
        }
        let key_mark = self
            .raw_key
            .take()
            .map(|k| dropped_mark(DROPPED_KEY_MARK, &k));
        self.detail = format!(
            "{}{}headers dropped ({}); {was}",
            value_mark.as_deref().unwrap_or_default(),
            key_mark.as_deref().unwrap_or_default(),
            headers.len()
        );
        Ok((self.encode(schema_id)?, false))
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

    /// Bytes of a zigzag varint (Kafka record fields and Avro both use it).
    fn varint(n: i64) -> usize {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        let mut len = 1;
        while z >= 0x80 {
            z >>= 7;
            len += 1;
        }
        len
    }

    /// Bytes `headers` take in a Kafka v2 record.
    fn wire_headers(headers: &[Header]) -> usize {
        headers
            .iter()
            .map(|(k, v)| {
                varint(k.len() as i64)
                    + k.len()
                    + v.as_ref()
                        .map_or(varint(-1), |v| varint(v.len() as i64) + v.len())
            })
            .sum()
    }

    fn worst_quarantine(
        key: usize,
        value: Option<usize>,
        headers: Vec<Header>,
    ) -> QuarantineRecord {
        QuarantineRecord {
            reason: Reason::SignatureInvalid,
            // Multi-byte characters, far above the bound.
            detail: "é".repeat(5 * MAX_DETAIL_BYTES),
            source_topic: "t".repeat(249),
            source_partition: i32::MAX as u32,
            source_offset: u64::MAX,
            source_timestamp_ms: i64::MIN,
            raw_key: Some(vec![b'k'; key]),
            raw_value: value.map(|v| vec![b'v'; v]),
            headers,
            quarantine_hash: [0xff; 32],
            anchor_seq: u64::MAX,
        }
    }

    /// The derived output limit (`kafka::max_output_record_bytes`) holds
    /// worst-case wrappings of input records of every shape, and the fixed
    /// part stays within what `kafka::OUTPUT_ENVELOPE_BYTES` spells out.
    #[test]
    fn worst_case_records_fit_the_derived_limit() {
        use crate::kafka::{max_output_record_bytes, BATCH_FRAMING_BYTES};
        let empty_headers = |n: usize| vec![(String::new(), Some(Vec::new())); n];
        let shapes = [
            (
                "large key, no value",
                worst_quarantine(100_000, None, Vec::new()),
            ),
            (
                "many empty headers",
                worst_quarantine(1, Some(0), empty_headers(20_000)),
            ),
            (
                "everything",
                worst_quarantine(
                    30_000,
                    Some(60_000),
                    (0..1000)
                        .map(|i| (format!("h{i}"), (i % 2 == 0).then(|| vec![1; 10])))
                        .collect(),
                ),
            ),
        ];
        for (name, q) in shapes {
            let key = q.raw_key.as_ref().map_or(0, Vec::len);
            let value = q.raw_value.as_ref().map_or(0, Vec::len);
            let hw = wire_headers(&q.headers);
            let valued = q.headers.iter().filter(|(_, v)| v.is_some()).count();
            let input = key + value + hw;
            let out = key + q.encode(u32::MAX).expect("encode").len() + BATCH_FRAMING_BYTES;
            assert!(
                out <= max_output_record_bytes(input),
                "{name}: {out} for {input}"
            );
            let fixed = out - (2 * key + value + hw + valued);
            assert!(fixed <= 1_470, "{name}: fixed part {fixed}");
        }
        let tenant = 50_000;
        let key_id = 10_000;
        let c = ChainedRecord {
            tenant_id: "a".repeat(tenant),
            seq: u64::MAX,
            prev_hash: [1; 32],
            entry_hash: [2; 32],
            event_digest: [3; 32],
            source_topic: "t".repeat(249),
            source_partition: i32::MAX as u32,
            source_offset: u64::MAX,
            source_timestamp_ms: i64::MIN,
            key_id: "i".repeat(key_id),
            producer_sig: vec![7; 64],
            event: vec![9; 70_000],
            anchor_seq: u64::MAX,
        };
        let headers: Vec<Header> = vec![
            (
                "auditchain-key-id".into(),
                Some(c.key_id.clone().into_bytes()),
            ),
            ("auditchain-sig".into(), Some(c.producer_sig.clone())),
        ];
        let input = tenant + c.event.len() + wire_headers(&headers);
        let out = tenant + c.encode(u32::MAX).expect("encode").len() + BATCH_FRAMING_BYTES;
        assert!(
            out <= max_output_record_bytes(input),
            "chained: {out} for {input}"
        );
        let fixed = out - (2 * tenant + c.event.len() + key_id);
        assert!(
            fixed <= 477 + BATCH_FRAMING_BYTES,
            "chained: fixed part {fixed}"
        );
    }

    #[test]
    fn details_are_cut_at_a_character_boundary() {
        assert_eq!(bounded_detail("short"), "short");
        let long = "é".repeat(MAX_DETAIL_BYTES);
        let cut = bounded_detail(&long);
        assert!(cut.len() <= MAX_DETAIL_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        let q = worst_quarantine(1, Some(1), Vec::new());
        let back = QuarantineRecord::decode(&q.encode(3).expect("enc")).expect("dec");
        assert_eq!(back.detail, bounded_detail(&q.detail));
    }

    #[test]
    fn a_record_that_fits_is_written_whole() {
        let mut q = worst_quarantine(10, Some(10), vec![("h".into(), None)]);
        let before = q.clone();
        let (bytes, keyed) = q.encode_to_fit(3, 1 << 20).expect("fit");
        assert!(keyed);
        assert_eq!(q, before);
        assert_eq!(bytes, before.encode(3).expect("enc"));
    }

    #[test]
    fn a_record_too_large_drops_its_value_then_headers_then_key() {
        use crate::chain::{hash::h, quarantine_hash_of_digests};
        use crate::kafka::output_record_fits;
        let headers = vec![("h".to_string(), Some(vec![1; 3000]))];
        let original = QuarantineRecord {
            detail: "short".into(),
            ..worst_quarantine(600, Some(10_000), headers.clone())
        };
        let key = original.raw_key.clone().expect("key");
        let value = original.raw_value.clone().expect("value");
        let leaf = quarantine_hash_of_digests(
            original.source(),
            &h(&key),
            &h(&value),
            Reason::Oversized.code(),
        );
        // Value dropped, headers and key kept.
        let mut q = original.clone();
        let (bytes, keyed) = q.encode_to_fit(3, 8_000).expect("fit");
        assert!(keyed && output_record_fits(key.len(), bytes.len(), 8_000));
        assert_eq!(q.reason, Reason::Oversized);
        assert_eq!(
            (q.raw_value.as_ref(), q.raw_key.as_ref()),
            (None, Some(&key))
        );
        assert_eq!(q.headers, headers);
        assert_eq!(q.quarantine_hash, leaf);
        assert_eq!(
            dropped_digest(&q.detail, DROPPED_VALUE_MARK),
            Some(h(&value))
        );
        assert_eq!(dropped_digest(&q.detail, DROPPED_KEY_MARK), None);
        assert!(
            q.detail.contains("SIGNATURE_INVALID (short)"),
            "{}",
            q.detail
        );
        // Headers dropped too.
        let mut q = original.clone();
        let (bytes, keyed) = q.encode_to_fit(3, 2_400).expect("fit");
        assert!(keyed && output_record_fits(key.len(), bytes.len(), 2_400));
        assert!(q.headers.is_empty() && q.raw_key.is_some());
        assert_eq!(q.quarantine_hash, leaf);
        // And the key: the stub is what is left.
        let mut q = original.clone();
        let (bytes, keyed) = q.encode_to_fit(3, 1_500).expect("fit");
        assert!(!keyed && output_record_fits(0, bytes.len(), 1_500));
        assert_eq!(q.raw_key, None);
        assert_eq!(dropped_digest(&q.detail, DROPPED_KEY_MARK), Some(h(&key)));
        assert_eq!(
            dropped_digest(&q.detail, DROPPED_VALUE_MARK),
            Some(h(&value))
        );
        assert_eq!(q.quarantine_hash, leaf);
        let back = QuarantineRecord::decode(&bytes).expect("dec");
        assert_eq!(
            dropped_digest(&back.detail, DROPPED_VALUE_MARK),
            Some(h(&value))
        );
    }
}
