package io.auditchain.producer;

import java.nio.charset.StandardCharsets;
import java.util.List;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;

/**
 * Encodes and signs events into records without touching Kafka: for a caller's own producer (an
 * outbox relay inside its own transaction, say).
 */
public final class EventSigner {
  public static final String KEY_ID_HEADER = "auditchain-key-id";
  public static final String SIG_HEADER = "auditchain-sig";

  private final SigningKey key;
  private final int schemaId;

  public EventSigner(SigningKey key, int schemaId) {
    this.key = key;
    this.schemaId = schemaId;
  }

  public int schemaId() {
    return schemaId;
  }

  /** The record for {@code event}: key = tenant id, framed Avro value, the signature headers. */
  public ProducerRecord<byte[], byte[]> record(String topic, AuditEvent event) {
    byte[] value = event.encode(schemaId);
    List<Header> headers =
        List.of(
            new RecordHeader(KEY_ID_HEADER, key.keyId().getBytes(StandardCharsets.UTF_8)),
            new RecordHeader(SIG_HEADER, key.sign(event.tenantId(), value)));
    return new ProducerRecord<>(
        topic, null, event.tenantId().getBytes(StandardCharsets.UTF_8), value, headers);
  }
}
