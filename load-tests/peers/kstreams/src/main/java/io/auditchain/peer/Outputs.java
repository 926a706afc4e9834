package io.auditchain.peer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.EncoderFactory;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;

/**
 * Encodes the peer's output records in the Confluent wire format, under the ids auditchain writes
 * with its compiled-in schemas ({@code schemas.chained_record_id} 2, {@code
 * schemas.quarantine_record_id} 3). One instance per stream task: buffers are reused.
 */
final class Outputs {
  static final int CHAINED_SCHEMA_ID = 2;
  static final int QUARANTINE_SCHEMA_ID = 3;

  /** The peer writes no anchors, so no record is covered by one. */
  static final long NO_ANCHOR = -1;

  /** auditchain's {@code MAX_DETAIL_BYTES}: a detail can quote the input, so it is bounded. */
  static final int MAX_DETAIL_BYTES = 1024;

  static final Schema CHAINED = Checks.schema("ChainedRecord.avsc");
  static final Schema QUARANTINE = Checks.schema("QuarantineRecord.avsc");
  private static final Schema HASH32 = CHAINED.getField("prev_hash").schema();
  private static final Schema Q_HASH32 = QUARANTINE.getField("quarantine_hash").schema();
  private static final Schema REASON = QUARANTINE.getField("reason").schema();
  private static final Schema HEADER = QUARANTINE.getField("headers").schema().getElementType();

  /** A record value bound for one explicit partition (auditchain never hash-partitions). */
  record Framed(int partition, byte[] bytes) {}

  private final GenericDatumWriter<GenericRecord> chainedWriter = new GenericDatumWriter<>(CHAINED);
  private final GenericDatumWriter<GenericRecord> quarantineWriter =
      new GenericDatumWriter<>(QUARANTINE);
  private final ByteArrayOutputStream buffer = new ByteArrayOutputStream(1024);
  private BinaryEncoder encoder;

  byte[] chained(
      String tenant,
      long seq,
      byte[] prevHash,
      byte[] entryHash,
      byte[] eventDigest,
      String sourceTopic,
      int sourcePartition,
      long sourceOffset,
      long sourceTimestampMs,
      String keyId,
      byte[] producerSig,
      byte[] event) {
    GenericRecord r = new GenericData.Record(CHAINED);
    r.put("tenant_id", tenant);
    r.put("seq", seq);
    r.put("prev_hash", new GenericData.Fixed(HASH32, prevHash));
    r.put("entry_hash", new GenericData.Fixed(HASH32, entryHash));
    r.put("event_digest", new GenericData.Fixed(HASH32, eventDigest));
    r.put("source_topic", sourceTopic);
    r.put("source_partition", sourcePartition);
    r.put("source_offset", sourceOffset);
    r.put("source_timestamp_ms", sourceTimestampMs);
    r.put("key_id", keyId);
    r.put("producer_sig", ByteBuffer.wrap(producerSig));
    r.put("event", ByteBuffer.wrap(event));
    r.put("anchor_seq", NO_ANCHOR);
    return encode(chainedWriter, CHAINED_SCHEMA_ID, r);
  }

  byte[] quarantine(
      Reason reason,
      String detail,
      String sourceTopic,
      int sourcePartition,
      long sourceOffset,
      long sourceTimestampMs,
      byte[] rawKey,
      byte[] rawValue,
      Headers headers,
      byte[] quarantineHash) {
    List<GenericRecord> kept = new ArrayList<>();
    for (Header h : headers) {
      GenericRecord hr = new GenericData.Record(HEADER);
      hr.put("key", h.key());
      hr.put("value", h.value() == null ? null : ByteBuffer.wrap(h.value()));
      kept.add(hr);
    }
    GenericRecord r = new GenericData.Record(QUARANTINE);
    r.put("reason", new GenericData.EnumSymbol(REASON, reason.name()));
    r.put("detail", bounded(detail));
    r.put("source_topic", sourceTopic);
    r.put("source_partition", sourcePartition);
    r.put("source_offset", sourceOffset);
    r.put("source_timestamp_ms", sourceTimestampMs);
    r.put("raw_key", rawKey == null ? null : ByteBuffer.wrap(rawKey));
    r.put("raw_value", rawValue == null ? null : ByteBuffer.wrap(rawValue));
    r.put("headers", kept);
    r.put("quarantine_hash", new GenericData.Fixed(Q_HASH32, quarantineHash));
    r.put("anchor_seq", NO_ANCHOR);
    return encode(quarantineWriter, QUARANTINE_SCHEMA_ID, r);
  }

  /** {@code detail} cut at a character boundary to {@link #MAX_DETAIL_BYTES}, ending in "…". */
  static String bounded(String detail) {
    byte[] utf8 = detail.getBytes(StandardCharsets.UTF_8);
    if (utf8.length <= MAX_DETAIL_BYTES) {
      return detail;
    }
    byte[] ellipsis = "…".getBytes(StandardCharsets.UTF_8);
    int end = MAX_DETAIL_BYTES - ellipsis.length;
    while ((utf8[end] & 0xc0) == 0x80) {
      end--;
    }
    return new String(utf8, 0, end, StandardCharsets.UTF_8) + "…";
  }

  private byte[] encode(GenericDatumWriter<GenericRecord> writer, int schemaId, GenericRecord r) {
    buffer.reset();
    buffer.write(0);
    buffer.write(schemaId >>> 24);
    buffer.write(schemaId >>> 16);
    buffer.write(schemaId >>> 8);
    buffer.write(schemaId);
    encoder = EncoderFactory.get().binaryEncoder(buffer, encoder);
    try {
      writer.write(r, encoder);
      encoder.flush();
    } catch (IOException e) {
      throw new UncheckedIOException("encoding an output record", e);
    }
    return buffer.toByteArray();
  }
}
