package io.auditchain.producer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.UUID;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;

/**
 * The v1 {@code io.auditchain.v1.AuditEvent} (DESIGN.md 1.1). Build one with {@link
 * #builder(String)}; {@code eventId} defaults to a random UUID and {@code occurredAt} to now.
 */
public final class AuditEvent {
  /** {@code schemas/AuditEvent.avsc}, as packaged. */
  public static final String SCHEMA_JSON = readSchema();

  /** The parsed schema. */
  public static final Schema SCHEMA = new Schema.Parser().parse(SCHEMA_JSON);

  private static final Schema OUTCOME = SCHEMA.getField("outcome").schema();

  private final String eventId;
  private final String tenantId;
  private final long occurredAtMicros;
  private final String actor;
  private final String action;
  private final String resource;
  private final Outcome outcome;
  private final String correlationId;
  private final Map<String, String> attributes;
  private final byte[] payload;

  private AuditEvent(Builder b) {
    this.eventId = b.eventId != null ? b.eventId : UUID.randomUUID().toString();
    this.tenantId = b.tenantId;
    this.occurredAtMicros = b.occurredAtMicros != null ? b.occurredAtMicros : micros(Instant.now());
    this.actor = b.actor;
    this.action = b.action;
    this.resource = b.resource;
    this.outcome = b.outcome;
    this.correlationId = b.correlationId;
    this.attributes = Collections.unmodifiableMap(new LinkedHashMap<>(b.attributes));
    this.payload = b.payload == null ? null : b.payload.clone();
    check("event_id", eventId);
    check("tenant_id", tenantId);
    check("action", action);
    if (actor == null || resource == null || outcome == null) {
      throw new AuditchainException.InvalidEventException(
          "invalid AuditEvent: actor, resource and outcome must be set");
    }
  }

  private static void check(String field, String value) {
    if (value == null || value.isEmpty()) {
      throw new AuditchainException.InvalidEventException(
          "invalid AuditEvent: " + field + " must not be empty");
    }
  }

  static long micros(Instant t) {
    return ChronoUnit.MICROS.between(Instant.EPOCH, t);
  }

  public static Builder builder(String tenantId) {
    return new Builder().tenantId(tenantId);
  }

  public String eventId() {
    return eventId;
  }

  public String tenantId() {
    return tenantId;
  }

  /** Microseconds since the Unix epoch. */
  public long occurredAtMicros() {
    return occurredAtMicros;
  }

  public String actor() {
    return actor;
  }

  public String action() {
    return action;
  }

  public String resource() {
    return resource;
  }

  public Outcome outcome() {
    return outcome;
  }

  public Optional<String> correlationId() {
    return Optional.ofNullable(correlationId);
  }

  public Map<String, String> attributes() {
    return attributes;
  }

  public Optional<byte[]> payload() {
    return Optional.ofNullable(payload == null ? null : payload.clone());
  }

  /** The Avro binary body (no framing). */
  public byte[] toAvro() {
    GenericRecord r = new GenericData.Record(SCHEMA);
    r.put("event_id", eventId);
    r.put("tenant_id", tenantId);
    r.put("occurred_at", occurredAtMicros);
    r.put("actor", actor);
    r.put("action", action);
    r.put("resource", resource);
    r.put("outcome", new GenericData.EnumSymbol(OUTCOME, outcome.name()));
    r.put("correlation_id", correlationId);
    r.put("attributes", attributes);
    r.put("payload", payload == null ? null : ByteBuffer.wrap(payload));
    ByteArrayOutputStream out = new ByteArrayOutputStream(128);
    BinaryEncoder enc = EncoderFactory.get().directBinaryEncoder(out, null);
    try {
      new GenericDatumWriter<GenericRecord>(SCHEMA).write(r, enc);
      enc.flush();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return out.toByteArray();
  }

  /** Confluent wire format: 0x00, the schema id (big-endian), the Avro body. */
  public byte[] encode(int schemaId) {
    byte[] body = toAvro();
    return ByteBuffer.allocate(5 + body.length).put((byte) 0).putInt(schemaId).put(body).array();
  }

  /** The schema id and event of a Confluent-framed value: the inverse of {@link #encode}. */
  public static Map.Entry<Integer, AuditEvent> decode(byte[] value) {
    if (value.length < 5 || value[0] != 0) {
      throw new AuditchainException.InvalidEventException(
          "not a Confluent-framed value (magic byte 0 and a 4-byte schema id)");
    }
    int id = ByteBuffer.wrap(value, 1, 4).getInt();
    BinaryDecoder dec = DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, null);
    GenericRecord r;
    try {
      r = new GenericDatumReader<GenericRecord>(SCHEMA).read(null, dec);
      if (!dec.isEnd()) {
        throw new AuditchainException.InvalidEventException("bytes left over after the Avro body");
      }
    } catch (IOException e) {
      throw new AuditchainException.InvalidEventException("not an AuditEvent: " + e.getMessage());
    }
    Builder b =
        builder(r.get("tenant_id").toString())
            .eventId(r.get("event_id").toString())
            .occurredAtMicros((Long) r.get("occurred_at"))
            .actor(r.get("actor").toString())
            .action(r.get("action").toString())
            .resource(r.get("resource").toString())
            .outcome(Outcome.valueOf(r.get("outcome").toString()));
    Object corr = r.get("correlation_id");
    if (corr != null) {
      b.correlationId(corr.toString());
    }
    Map<?, ?> attrs = (Map<?, ?>) r.get("attributes");
    attrs.forEach((k, v) -> b.attribute(k.toString(), v.toString()));
    Object payload = r.get("payload");
    if (payload != null) {
      ByteBuffer buf = (ByteBuffer) payload;
      byte[] bytes = new byte[buf.remaining()];
      buf.get(bytes);
      b.payload(bytes);
    }
    return Map.entry(id, b.build());
  }

  private static String readSchema() {
    try (InputStream in = AuditEvent.class.getResourceAsStream("AuditEvent.avsc")) {
      if (in == null) {
        throw new IllegalStateException("AuditEvent.avsc is missing from the jar");
      }
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  @Override
  public boolean equals(Object o) {
    if (!(o instanceof AuditEvent)) {
      return false;
    }
    AuditEvent e = (AuditEvent) o;
    return occurredAtMicros == e.occurredAtMicros
        && eventId.equals(e.eventId)
        && tenantId.equals(e.tenantId)
        && actor.equals(e.actor)
        && action.equals(e.action)
        && resource.equals(e.resource)
        && outcome == e.outcome
        && Objects.equals(correlationId, e.correlationId)
        && attributes.equals(e.attributes)
        && java.util.Arrays.equals(payload, e.payload);
  }

  @Override
  public int hashCode() {
    return Objects.hash(eventId, tenantId, occurredAtMicros, action);
  }

  @Override
  public String toString() {
    return "AuditEvent{eventId=" + eventId + ", tenantId=" + tenantId + ", action=" + action + "}";
  }

  /** Builds an {@link AuditEvent}; {@code build()} checks what the processor checks. */
  public static final class Builder {
    private String eventId;
    private String tenantId;
    private Long occurredAtMicros;
    private String actor = "";
    private String action;
    private String resource = "";
    private Outcome outcome = Outcome.SUCCESS;
    private String correlationId;
    private final Map<String, String> attributes = new LinkedHashMap<>();
    private byte[] payload;

    private Builder() {}

    public Builder eventId(String v) {
      eventId = v;
      return this;
    }

    public Builder tenantId(String v) {
      tenantId = v;
      return this;
    }

    public Builder occurredAt(Instant v) {
      occurredAtMicros = micros(v);
      return this;
    }

    public Builder occurredAtMicros(long v) {
      occurredAtMicros = v;
      return this;
    }

    public Builder actor(String v) {
      actor = v;
      return this;
    }

    public Builder action(String v) {
      action = v;
      return this;
    }

    public Builder resource(String v) {
      resource = v;
      return this;
    }

    public Builder outcome(Outcome v) {
      outcome = v;
      return this;
    }

    public Builder correlationId(String v) {
      correlationId = v;
      return this;
    }

    public Builder attribute(String k, String v) {
      attributes.put(Objects.requireNonNull(k), Objects.requireNonNull(v));
      return this;
    }

    public Builder payload(byte[] v) {
      payload = v;
      return this;
    }

    public AuditEvent build() {
      return new AuditEvent(this);
    }
  }
}
