package io.auditchain.peer;

import static io.auditchain.peer.Vectors.ROOT;
import static io.auditchain.peer.Vectors.hex;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericFixed;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.TestInputTopic;
import org.apache.kafka.streams.TestOutputTopic;
import org.apache.kafka.streams.TopologyTestDriver;
import org.apache.kafka.streams.test.TestRecord;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The vectors' input partition (offsets 0-7 of audit.events partition 0: six signed events of two
 * tenants, a record with an empty key, one that is not Avro) through the real topology: the chained
 * records carry the vectors' seq, prev_hash, event_digest and entry_hash, the quarantined ones the
 * vectors' reason and quarantine_hash, and a chain continues from the state store.
 */
class TopologyTest {
  @TempDir Path stateDir;

  private static GenericRecord decode(byte[] framed, int schemaId, Schema schema)
      throws IOException {
    assertEquals(0, framed[0]);
    assertEquals(schemaId, ByteBuffer.wrap(framed, 1, 4).getInt());
    return new GenericDatumReader<GenericRecord>(schema)
        .read(null, DecoderFactory.get().binaryDecoder(framed, 5, framed.length - 5, null));
  }

  private static byte[] fixed(GenericRecord r, String field) {
    return ((GenericFixed) r.get(field)).bytes();
  }

  private static byte[] bytes(GenericRecord r, String field) {
    ByteBuffer b = (ByteBuffer) r.get(field);
    return Arrays.copyOfRange(
        b.array(), b.arrayOffset() + b.position(), b.arrayOffset() + b.limit());
  }

  @Test
  void theVectorPartitionChainsAndQuarantinesAsAuditchainDoes() throws IOException {
    Path keyFile = stateDir.resolve("producers.toml");
    Files.writeString(
        keyFile,
        "[[keys]]\nkey_id = \"producer-test\"\npublic_key = \""
            + ROOT.get("producer_public_key").asText()
            + "\"\n");
    Properties props =
        Main.streamsConfig(
            new Main.Options(
                "unused:9092",
                "audit.events",
                "audit.chained",
                "audit.quarantine",
                "peer-test",
                keyFile,
                1,
                null,
                stateDir.resolve("state").toString(),
                Main.DEFAULT_VERIFIER,
                Checks.DEFAULT_MAX_VALUE_BYTES,
                null));
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
    ProducerKeys keys = ProducerKeys.load(keyFile);
    try (TopologyTestDriver driver =
        new TopologyTestDriver(
            ChainProcessor.topology(
                "audit.events",
                "audit.chained",
                "audit.quarantine",
                keys,
                Main.DEFAULT_VERIFIER,
                Checks.DEFAULT_MAX_VALUE_BYTES,
                new ChainProcessor.Counts()),
            props)) {
      TestInputTopic<byte[], byte[]> in =
          driver.createInputTopic(
              "audit.events", new ByteArraySerializer(), new ByteArraySerializer());
      TestOutputTopic<byte[], byte[]> chained =
          driver.createOutputTopic(
              "audit.chained", new ByteArrayDeserializer(), new ByteArrayDeserializer());
      TestOutputTopic<byte[], byte[]> quarantined =
          driver.createOutputTopic(
              "audit.quarantine", new ByteArrayDeserializer(), new ByteArrayDeserializer());

      List<JsonNode> entries = new ArrayList<>();
      ROOT.get("entries").forEach(entries::add);
      JsonNode[] byOffset = new JsonNode[8];
      for (JsonNode e : entries) {
        byOffset[e.get("source_offset").asInt()] = e;
      }
      for (JsonNode q : ROOT.get("quarantine")) {
        if (q.get("source_offset").asInt() < byOffset.length) {
          byOffset[q.get("source_offset").asInt()] = q;
        }
      }
      for (int offset = 0; offset < byOffset.length; offset++) {
        JsonNode n = byOffset[offset];
        long timestamp = 1_764_000_000_000L + offset;
        if (n.has("entry_hash")) {
          byte[] value = hex(n.get("value"));
          byte[] sig = signatureOf(n.get("tenant_id").asText(), value);
          RecordHeaders headers = new RecordHeaders();
          headers.add(Checks.KEY_ID_HEADER, "producer-test".getBytes(StandardCharsets.UTF_8));
          headers.add(Checks.SIG_HEADER, sig);
          in.pipeInput(
              new TestRecord<>(Vectors.utf8(n.get("tenant_id")), value, headers, timestamp));
        } else {
          in.pipeInput(
              new TestRecord<>(
                  hex(n.get("raw_key")), hex(n.get("raw_value")), new RecordHeaders(), timestamp));
        }
      }

      for (JsonNode e : entries) {
        TestRecord<byte[], byte[]> out = chained.readRecord();
        GenericRecord r = decode(out.value(), Outputs.CHAINED_SCHEMA_ID, Outputs.CHAINED);
        assertArrayEquals(Vectors.utf8(e.get("tenant_id")), out.key());
        assertEquals(e.get("tenant_id").asText(), r.get("tenant_id").toString());
        assertEquals(e.get("seq").asLong(), r.get("seq"));
        assertArrayEquals(hex(e.get("prev_hash")), fixed(r, "prev_hash"));
        assertArrayEquals(hex(e.get("entry_hash")), fixed(r, "entry_hash"));
        assertArrayEquals(hex(e.get("event_digest")), fixed(r, "event_digest"));
        assertEquals("audit.events", r.get("source_topic").toString());
        assertEquals(0, r.get("source_partition"));
        assertEquals(e.get("source_offset").asLong(), r.get("source_offset"));
        assertEquals(
            1_764_000_000_000L + e.get("source_offset").asLong(), r.get("source_timestamp_ms"));
        assertEquals("producer-test", r.get("key_id").toString());
        assertArrayEquals(
            signatureOf(e.get("tenant_id").asText(), hex(e.get("value"))),
            bytes(r, "producer_sig"));
        assertArrayEquals(hex(e.get("value")), bytes(r, "event"));
        assertEquals(Outputs.NO_ANCHOR, r.get("anchor_seq"));
      }
      assertEquals(true, chained.isEmpty());

      for (JsonNode q : ROOT.get("quarantine")) {
        if (q.get("source_offset").asInt() >= byOffset.length) {
          continue;
        }
        GenericRecord r =
            decode(quarantined.readValue(), Outputs.QUARANTINE_SCHEMA_ID, Outputs.QUARANTINE);
        assertEquals(q.get("reason_code").asText(), r.get("reason").toString());
        assertEquals(q.get("source_offset").asLong(), r.get("source_offset"));
        assertArrayEquals(hex(q.get("quarantine_hash")), fixed(r, "quarantine_hash"));
        assertArrayEquals(hex(q.get("raw_value")), bytes(r, "raw_value"));
      }
      assertEquals(true, quarantined.isEmpty());

      // The head survives in the store: acme's next event is seq 4 after the vectors' seq 3.
      JsonNode last = entries.get(4);
      byte[] value = hex(last.get("value"));
      RecordHeaders headers = new RecordHeaders();
      headers.add(Checks.KEY_ID_HEADER, "producer-test".getBytes(StandardCharsets.UTF_8));
      headers.add(Checks.SIG_HEADER, signatureOf("acme", value));
      in.pipeInput(new TestRecord<>("acme".getBytes(StandardCharsets.UTF_8), value, headers, 0L));
      GenericRecord r = decode(chained.readValue(), Outputs.CHAINED_SCHEMA_ID, Outputs.CHAINED);
      assertEquals(4L, r.get("seq"));
      assertArrayEquals(hex(last.get("entry_hash")), fixed(r, "prev_hash"));

      // A bad signature is quarantined and leaves the chain alone.
      RecordHeaders forged = new RecordHeaders();
      forged.add(Checks.KEY_ID_HEADER, "producer-test".getBytes(StandardCharsets.UTF_8));
      forged.add(Checks.SIG_HEADER, new byte[64]);
      in.pipeInput(new TestRecord<>("acme".getBytes(StandardCharsets.UTF_8), value, forged, 0L));
      assertEquals(
          "SIGNATURE_INVALID",
          decode(quarantined.readValue(), Outputs.QUARANTINE_SCHEMA_ID, Outputs.QUARANTINE)
              .get("reason")
              .toString());
      assertEquals(true, chained.isEmpty());
    }
  }

  private static byte[] signatureOf(String tenant, byte[] value) {
    for (JsonNode e : ROOT.get("events")) {
      if (e.get("tenant_id").asText().equals(tenant) && Arrays.equals(hex(e.get("value")), value)) {
        return hex(e.get("signature"));
      }
    }
    throw new IllegalArgumentException("no vector event for " + tenant);
  }
}
