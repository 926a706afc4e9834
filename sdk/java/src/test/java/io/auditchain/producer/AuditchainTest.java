package io.auditchain.producer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.HexFormat;
import java.util.Map;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AuditchainTest {
  private static final HexFormat HEX = HexFormat.of();

  /** The auditchain repository this module sits in (AUDITCHAIN_REPO overrides). */
  static Path repo() {
    String r = System.getenv("AUDITCHAIN_REPO");
    return r != null ? Path.of(r) : Path.of("..", "..");
  }

  static JsonNode vectors() throws Exception {
    return new ObjectMapper()
        .readTree(repo().resolve("schemas/test-vectors/chain-v1.json").toFile());
  }

  @Test
  void eventSignatureVectors() throws Exception {
    JsonNode v = vectors();
    SigningKey key = SigningKey.fromSeed(HEX.parseHex(v.get("producer_seed").asText()), "vectors");
    JsonNode events = v.get("events");
    assertTrue(events.size() >= 3);
    boolean nonAscii = false;
    for (JsonNode e : events) {
      String tenant = e.get("tenant_id").asText();
      byte[] value = HEX.parseHex(e.get("value").asText());
      assertEquals(e.get("event_msg").asText(), HEX.formatHex(SigningKey.eventMsg(tenant, value)));
      Map.Entry<Integer, AuditEvent> decoded = AuditEvent.decode(value);
      assertEquals(tenant, decoded.getValue().tenantId());
      ProducerRecord<byte[], byte[]> r =
          new EventSigner(key, decoded.getKey()).record("t", decoded.getValue());
      assertArrayEquals(value, r.value(), "framed value of " + tenant);
      assertArrayEquals(tenant.getBytes(StandardCharsets.UTF_8), r.key());
      assertArrayEquals(
          "vectors".getBytes(StandardCharsets.UTF_8),
          r.headers().lastHeader(EventSigner.KEY_ID_HEADER).value());
      assertEquals(
          e.get("signature").asText(),
          HEX.formatHex(r.headers().lastHeader(EventSigner.SIG_HEADER).value()));
      nonAscii |= !StandardCharsets.US_ASCII.newEncoder().canEncode(tenant);
    }
    assertTrue(nonAscii, "the vectors have a non-ASCII tenant");
  }

  @Test
  void packagedSchemaIsTheContract() throws Exception {
    assertEquals(Files.readString(repo().resolve("schemas/AuditEvent.avsc")), AuditEvent.SCHEMA_JSON);
  }

  @Test
  void defaultsAndRoundTrip() {
    AuditEvent e =
        AuditEvent.builder("zürich-ä")
            .actor("a")
            .action("user.login")
            .resource("r")
            .outcome(Outcome.DENIED)
            .correlationId("c")
            .attribute("k", "v")
            .payload(new byte[] {0, 1})
            .build();
    assertEquals(36, e.eventId().length());
    assertTrue(e.occurredAtMicros() > 1_700_000_000_000_000L);
    Map.Entry<Integer, AuditEvent> back = AuditEvent.decode(e.encode(7));
    assertEquals(7, back.getKey());
    assertEquals(e, back.getValue());
    assertNotEquals(e.eventId(), AuditEvent.builder("t").action("x").build().eventId());
  }

  @Test
  void invalidEventsAreNamed() {
    assertTrue(
        assertThrows(AuditchainException.InvalidEventException.class, () -> AuditEvent.builder("t").build())
            .getMessage()
            .contains("action"));
    assertTrue(
        assertThrows(
                AuditchainException.InvalidEventException.class,
                () -> AuditEvent.builder("").action("x").build())
            .getMessage()
            .contains("tenant_id"));
    assertTrue(
        assertThrows(
                AuditchainException.InvalidEventException.class,
                () -> AuditEvent.builder("t").action("x").eventId("").build())
            .getMessage()
            .contains("event_id"));
  }

  @Test
  void keyFiles(@TempDir Path dir) throws Exception {
    String seed = vectors().get("producer_seed").asText();
    Path f = dir.resolve("p.secret");
    Files.writeString(f, seed + "\n");
    Files.setPosixFilePermissions(f, PosixFilePermissions.fromString("rw-------"));
    SigningKey key = SigningKey.fromFile(f, "p");
    assertFalse(key.toString().contains(seed.substring(0, 16)));
    Files.setPosixFilePermissions(f, PosixFilePermissions.fromString("rw-r-----"));
    String msg = assertThrows(AuditchainException.KeyException.class, () -> SigningKey.fromFile(f, "p")).getMessage();
    assertTrue(msg.contains("group or others (mode 640)"), msg);
    Path shortKey = dir.resolve("short.secret");
    Files.writeString(shortKey, "abcd");
    Files.setPosixFilePermissions(shortKey, PosixFilePermissions.fromString("rw-------"));
    assertTrue(
        assertThrows(AuditchainException.KeyException.class, () -> SigningKey.fromFile(shortKey, "p"))
            .getMessage()
            .contains("32 bytes"));
    assertThrows(AuditchainException.KeyException.class, () -> SigningKey.fromFile(dir.resolve("missing"), "p"));
  }
}
