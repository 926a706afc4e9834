package io.auditchain.peer;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Set;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.Headers;

/**
 * The decision for one input record (DESIGN.md section 2 steps 1-2, section 5), in auditchain's
 * check order ({@code processor/src/route.rs}): chain it, or quarantine it with the first reason
 * that applies. One instance per stream task: the Avro decoder and the verifier are reused.
 */
final class Checks {
  static final String KEY_ID_HEADER = "auditchain-key-id";
  static final String SIG_HEADER = "auditchain-sig";

  /** auditchain's default {@code processing.max_record_bytes}. */
  static final int DEFAULT_MAX_VALUE_BYTES = 1 << 20;

  /** auditchain's default {@code schemas.audit_event_ids}: the ids read as the compiled-in v1. */
  static final Set<Integer> ACCEPTED_SCHEMA_IDS = Set.of(1);

  static final Schema AUDIT_EVENT = schema("AuditEvent.avsc");

  /** What the checks decided. */
  sealed interface Verdict permits Chain, Quarantine {}

  /** Passed every check; {@code tenant} is the record key, already known to be UTF-8. */
  record Chain(String tenant, String keyId, byte[] sig) implements Verdict {}

  record Quarantine(Reason reason, String detail) implements Verdict {}

  private final ProducerKeys keys;
  private final Verifier verifier;
  private final int maxValueBytes;
  private final GenericDatumReader<GenericRecord> reader = new GenericDatumReader<>(AUDIT_EVENT);
  private BinaryDecoder decoder;
  private GenericRecord reuse;

  Checks(ProducerKeys keys, Verifier verifier, int maxValueBytes) {
    this.keys = keys;
    this.verifier = verifier;
    this.maxValueBytes = maxValueBytes;
  }

  /**
   * No string, bytes or collection in a body of at most {@code maxValueBytes} can be longer than
   * that; without these bounds Avro allocates whatever length a corrupt record claims before it
   * finds the body too short. Avro reads them once, on its first length check, so this runs before
   * the first record is decoded.
   */
  static void boundAvroLengths(int maxValueBytes) {
    for (String p :
        List.of(
            "org.apache.avro.limits.string.maxLength",
            "org.apache.avro.limits.bytes.maxLength",
            "org.apache.avro.limits.collectionItems.maxLength")) {
      System.setProperty(p, Integer.toString(maxValueBytes));
    }
  }

  static Schema schema(String resource) {
    try (InputStream in = Checks.class.getResourceAsStream(resource)) {
      if (in == null) {
        throw new IllegalStateException(resource + " is missing from the jar");
      }
      return new Schema.Parser().parse(in);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  private static Quarantine quarantine(Reason reason, String detail) {
    return new Quarantine(reason, detail);
  }

  /** The first header called {@code name} that has a value, as auditchain reads it. */
  static byte[] firstHeader(Headers headers, String name) {
    for (Header h : headers.headers(name)) {
      if (h.value() != null) {
        return h.value();
      }
    }
    return null;
  }

  private static String strictUtf8(byte[] bytes) {
    try {
      CharBuffer chars =
          StandardCharsets.UTF_8
              .newDecoder()
              .onMalformedInput(CodingErrorAction.REPORT)
              .onUnmappableCharacter(CodingErrorAction.REPORT)
              .decode(ByteBuffer.wrap(bytes));
      return chars.toString();
    } catch (CharacterCodingException e) {
      return null;
    }
  }

  Verdict check(byte[] key, byte[] value, Headers headers) {
    // 1. MISSING_KEY
    if (key == null) {
      return quarantine(Reason.MISSING_KEY, "the record has no key");
    }
    if (key.length == 0) {
      return quarantine(Reason.MISSING_KEY, "the record key is empty");
    }
    String tenant = strictUtf8(key);
    if (tenant == null) {
      return quarantine(Reason.MISSING_KEY, "the record key is not UTF-8");
    }
    // 2. OVERSIZED
    int length = value == null ? 0 : value.length;
    if (length > maxValueBytes) {
      return quarantine(
          Reason.OVERSIZED, "value is " + length + " bytes, the bound is " + maxValueBytes);
    }
    // 3. DECODE_FAILED: framing
    if (value == null) {
      return quarantine(Reason.DECODE_FAILED, "the record has no value");
    }
    if (value.length < 5 || value[0] != 0) {
      return quarantine(
          Reason.DECODE_FAILED, "no Confluent framing (magic byte 0 and a 4-byte schema id)");
    }
    // 4. SCHEMA_UNKNOWN
    int schemaId = ByteBuffer.wrap(value, 1, 4).getInt();
    if (!ACCEPTED_SCHEMA_IDS.contains(schemaId)) {
      return quarantine(
          Reason.SCHEMA_UNKNOWN,
          "schema id " + Integer.toUnsignedString(schemaId) + " is not known");
    }
    // 5. DECODE_FAILED: body, every byte of it
    GenericRecord event;
    try {
      decoder = DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, decoder);
      event = reader.read(reuse, decoder);
      reuse = event;
      if (!decoder.isEnd()) {
        return quarantine(
            Reason.DECODE_FAILED, "not an AuditEvent: bytes left over after the Avro body");
      }
    } catch (IOException | RuntimeException e) {
      return quarantine(Reason.DECODE_FAILED, "not an AuditEvent: avro body: " + e);
    }
    // 6. TENANT_MISMATCH
    String payloadTenant = event.get("tenant_id").toString();
    if (!payloadTenant.equals(tenant)) {
      return quarantine(
          Reason.TENANT_MISMATCH,
          "record key `" + tenant + "` but payload tenant_id `" + payloadTenant + "`");
    }
    // 7. INVALID_FIELD
    if (((CharSequence) event.get("event_id")).length() == 0) {
      return quarantine(Reason.INVALID_FIELD, "event_id is empty");
    }
    if (((CharSequence) event.get("action")).length() == 0) {
      return quarantine(Reason.INVALID_FIELD, "action is empty");
    }
    long occurredAt = (Long) event.get("occurred_at");
    if (occurredAt < 0) {
      return quarantine(
          Reason.INVALID_FIELD, "occurred_at " + occurredAt + " is before the Unix epoch");
    }
    // 8. MISSING_SIGNATURE
    byte[] keyIdBytes = firstHeader(headers, KEY_ID_HEADER);
    byte[] sig = firstHeader(headers, SIG_HEADER);
    if (keyIdBytes == null && sig == null) {
      return quarantine(
          Reason.MISSING_SIGNATURE,
          "headers " + KEY_ID_HEADER + " and " + SIG_HEADER + " are absent");
    }
    if (keyIdBytes == null) {
      return quarantine(Reason.MISSING_SIGNATURE, "header " + KEY_ID_HEADER + " is absent");
    }
    if (sig == null) {
      return quarantine(Reason.MISSING_SIGNATURE, "header " + SIG_HEADER + " is absent");
    }
    // 9. UNKNOWN_KEY
    String keyId = strictUtf8(keyIdBytes);
    if (keyId == null) {
      return quarantine(Reason.UNKNOWN_KEY, "key id header is not UTF-8");
    }
    ProducerKeys.Key producerKey = keys.get(keyId);
    if (producerKey == null) {
      return quarantine(Reason.UNKNOWN_KEY, "key id `" + keyId + "` is not in the key set");
    }
    // 10. KEY_NOT_ALLOWED
    if (producerKey.revoked()) {
      return quarantine(Reason.KEY_NOT_ALLOWED, "key `" + keyId + "` is revoked");
    }
    if (!producerKey.allows(tenant)) {
      return quarantine(
          Reason.KEY_NOT_ALLOWED, "key `" + keyId + "` is not bound to tenant `" + tenant + "`");
    }
    // 11. SIGNATURE_INVALID
    if (sig.length != 64) {
      return quarantine(Reason.SIGNATURE_INVALID, "signature is " + sig.length + " bytes, not 64");
    }
    if (!verifier.verify(keyId, ChainFormat.eventMsg(key, value), sig)) {
      return quarantine(
          Reason.SIGNATURE_INVALID, "signature does not verify under key `" + keyId + "`");
    }
    return new Chain(tenant, keyId, sig);
  }
}
