// Checks what the peer wrote against its input, read read_committed to the end of every topic:
// every input record is in the output topic or the quarantine topic exactly once (by source
// partition and offset), every chain (tenant, source partition) runs seq 1..n with each
// prev_hash the previous entry_hash and each entry_hash recomputing (DESIGN.md 4.2).
// Single-file program, run against the peer's jar for its dependencies:
//   java -cp target/kstreams-peer.jar tools/CheckOutput.java BOOTSTRAP INPUT OUTPUT QUARANTINE
// Prints a summary; exit 0 when everything holds, 1 otherwise.

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.function.Consumer;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericFixed;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.commons.codec.digest.Blake3;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class CheckOutput {
  static String bootstrap;
  static final List<String> problems = new ArrayList<>();

  public static void main(String[] args) throws Exception {
    if (args.length != 4) {
      System.err.println("usage: CheckOutput BOOTSTRAP INPUT OUTPUT QUARANTINE");
      System.exit(2);
    }
    bootstrap = args[0];
    String input = args[1];
    Schema chained = schema("io/auditchain/peer/ChainedRecord.avsc");
    Schema quarantine = schema("io/auditchain/peer/QuarantineRecord.avsc");

    // source partition -> source offset -> times seen in either output
    Map<Integer, Map<Long, Integer>> seen = new HashMap<>();
    long[] inputs = {0};
    readAll(
        input,
        r -> {
          inputs[0]++;
          seen.computeIfAbsent(r.partition(), p -> new HashMap<>()).put(r.offset(), 0);
        });

    Map<String, long[]> heads = new HashMap<>(); // "tenant/partition" -> {seq}
    Map<String, byte[]> headHashes = new HashMap<>();
    long[] chainedCount = {0};
    GenericDatumReader<GenericRecord> chainedReader = new GenericDatumReader<>(chained);
    readAll(
        args[2],
        r -> {
          chainedCount[0]++;
          GenericRecord c = decode(chainedReader, r.value(), 2);
          int partition = (Integer) c.get("source_partition");
          long offset = (Long) c.get("source_offset");
          count(seen, partition, offset, "chained");
          if (r.partition() != partition) {
            problems.add(
                "chained record of source partition "
                    + partition
                    + " written to partition "
                    + r.partition());
          }
          String tenant = c.get("tenant_id").toString();
          String chain = tenant + "/" + partition;
          long seq = (Long) c.get("seq");
          long expectedSeq = heads.computeIfAbsent(chain, k -> new long[] {0})[0] + 1;
          byte[] prev = fixed(c, "prev_hash");
          byte[] expectedPrev = headHashes.getOrDefault(chain, new byte[32]);
          if (seq != expectedSeq || !Arrays.equals(prev, expectedPrev)) {
            problems.add(
                chain
                    + ": seq "
                    + seq
                    + " where "
                    + expectedSeq
                    + " was due, or prev_hash does not link");
          }
          byte[] event = bytes(c, "event");
          byte[] digest = Blake3.hash(event);
          byte[] topic = c.get("source_topic").toString().getBytes(StandardCharsets.UTF_8);
          byte[] t = tenant.getBytes(StandardCharsets.UTF_8);
          byte[] msg =
              ByteBuffer.allocate(20 + 4 + t.length + 8 + 64 + 4 + topic.length + 12)
                  .put("auditchain/v1/entry\0".getBytes(StandardCharsets.US_ASCII))
                  .putInt(t.length)
                  .put(t)
                  .putLong(seq)
                  .put(prev)
                  .put(digest)
                  .putInt(topic.length)
                  .put(topic)
                  .putInt(partition)
                  .putLong(offset)
                  .array();
          byte[] entry = fixed(c, "entry_hash");
          if (!Arrays.equals(digest, fixed(c, "event_digest"))
              || !Arrays.equals(entry, Blake3.hash(msg))) {
            problems.add(chain + " seq " + seq + ": event_digest or entry_hash does not recompute");
          }
          heads.get(chain)[0] = seq;
          headHashes.put(chain, entry);
        });

    Map<String, Integer> reasons = new TreeMap<>();
    long[] quarantinedCount = {0};
    GenericDatumReader<GenericRecord> quarantineReader = new GenericDatumReader<>(quarantine);
    readAll(
        args[3],
        r -> {
          quarantinedCount[0]++;
          GenericRecord q = decode(quarantineReader, r.value(), 3);
          count(
              seen,
              (Integer) q.get("source_partition"),
              (Long) q.get("source_offset"),
              "quarantined");
          reasons.merge(q.get("reason").toString(), 1, Integer::sum);
        });

    long missing = 0;
    for (Map.Entry<Integer, Map<Long, Integer>> p : seen.entrySet()) {
      for (Map.Entry<Long, Integer> o : p.getValue().entrySet()) {
        if (o.getValue() == 0) {
          missing++;
          if (missing <= 5) {
            problems.add(
                "input partition "
                    + p.getKey()
                    + " offset "
                    + o.getKey()
                    + " is in neither output");
          }
        }
      }
    }
    System.out.printf(
        "input %d records; chained %d (%d chains), quarantined %d %s; missing %d%n",
        inputs[0], chainedCount[0], heads.size(), quarantinedCount[0], reasons, missing);
    if (!problems.isEmpty()) {
      problems.stream().limit(20).forEach(p -> System.out.println("  FAIL " + p));
      System.out.println("check: FAILED (" + problems.size() + " problems)");
      System.exit(1);
    }
    System.out.println(
        "check: OK (every input record exactly once; every chain links and recomputes)");
  }

  static void count(
      Map<Integer, Map<Long, Integer>> seen, int partition, long offset, String where) {
    Map<Long, Integer> offsets = seen.get(partition);
    Integer n = offsets == null ? null : offsets.get(offset);
    if (n == null) {
      problems.add(
          where
              + " record for input partition "
              + partition
              + " offset "
              + offset
              + ", which the input does not have");
      return;
    }
    if (n > 0) {
      problems.add(
          "input partition "
              + partition
              + " offset "
              + offset
              + " written more than once ("
              + where
              + ")");
    }
    offsets.put(offset, n + 1);
  }

  static Schema schema(String resource) throws Exception {
    try (var in = CheckOutput.class.getClassLoader().getResourceAsStream(resource)) {
      return new Schema.Parser().parse(in);
    }
  }

  static GenericRecord decode(GenericDatumReader<GenericRecord> reader, byte[] v, int schemaId) {
    if (v[0] != 0 || ByteBuffer.wrap(v, 1, 4).getInt() != schemaId) {
      throw new IllegalStateException("not framed with schema id " + schemaId);
    }
    try {
      BinaryDecoder d = DecoderFactory.get().binaryDecoder(v, 5, v.length - 5, null);
      return reader.read(null, d);
    } catch (java.io.IOException e) {
      throw new IllegalStateException(e);
    }
  }

  static byte[] fixed(GenericRecord r, String field) {
    return ((GenericFixed) r.get(field)).bytes();
  }

  static byte[] bytes(GenericRecord r, String field) {
    ByteBuffer b = (ByteBuffer) r.get(field);
    byte[] out = new byte[b.remaining()];
    b.duplicate().get(out);
    return out;
  }

  /** Every committed record of every partition of {@code topic}, up to its end now. */
  static void readAll(String topic, Consumer<ConsumerRecord<byte[], byte[]>> each) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
    p.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, 4 << 20);
    try (KafkaConsumer<byte[], byte[]> c =
        new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
      List<TopicPartition> parts = new ArrayList<>();
      c.partitionsFor(topic).forEach(i -> parts.add(new TopicPartition(topic, i.partition())));
      c.assign(parts);
      c.seekToBeginning(parts);
      Map<TopicPartition, Long> end = c.endOffsets(parts);
      while (parts.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
        c.poll(Duration.ofMillis(500)).forEach(each);
      }
    }
  }
}
