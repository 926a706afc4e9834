package io.auditchain.peer;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.atomic.LongAdder;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.processor.StreamPartitioner;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The peer's one processor: check each input record, then either append it to its tenant's chain
 * (DESIGN.md 4.2) and emit a {@code ChainedRecord}, or emit a {@code QuarantineRecord}.
 *
 * <p>A Kafka Streams task owns one input partition, and its state store holds the heads of that
 * partition's chains, so a chain is per (tenant, source partition) as in auditchain. The store is
 * RocksDB with a changelog topic, both Streams defaults; under exactly_once_v2 the changelog
 * writes, the outputs and the input offsets commit in one transaction.
 */
final class ChainProcessor implements Processor<byte[], byte[], byte[], Outputs.Framed> {
  static final String STORE = "chain-heads";
  static final String SOURCE = "input";
  static final String PROCESSOR = "chain";
  static final String CHAINED_SINK = "chained";
  static final String QUARANTINE_SINK = "quarantined";

  /** A chain head: the last entry's seq and entry_hash. */
  record Head(long seq, byte[] entryHash) {
    static final Serde<Head> SERDE =
        Serdes.serdeFrom(
            (topic, h) ->
                h == null ? null : ByteBuffer.allocate(40).putLong(h.seq).put(h.entryHash).array(),
            (topic, b) -> {
              if (b == null) {
                return null;
              }
              ByteBuffer buf = ByteBuffer.wrap(b);
              long seq = buf.getLong();
              byte[] hash = new byte[ChainFormat.HASH_LEN];
              buf.get(hash);
              return new Head(seq, hash);
            });
  }

  /** Records handled by every task of the process, for the progress log. */
  static final class Counts {
    final LongAdder chained = new LongAdder();
    final LongAdder quarantined = new LongAdder();
  }

  private final Checks checks;
  private final Outputs outputs = new Outputs();
  private final Counts counts;
  private ProcessorContext<byte[], Outputs.Framed> context;
  private KeyValueStore<String, Head> heads;
  private String topic;
  private byte[] topicBytes;

  ChainProcessor(Checks checks, Counts counts) {
    this.checks = checks;
    this.counts = counts;
  }

  /** Source, processor with its store, and the two sinks. */
  static Topology topology(
      String input,
      String output,
      String quarantine,
      ProducerKeys keys,
      Verifier.Kind verifier,
      int maxValueBytes,
      Counts counts) {
    Serializer<Outputs.Framed> framed = (t, f) -> f.bytes();
    StreamPartitioner<byte[], Outputs.Framed> samePartition =
        (t, key, value, numPartitions) -> Optional.of(Set.of(value.partition()));
    Topology topology = new Topology();
    topology.addSource(
        SOURCE, Serdes.ByteArray().deserializer(), Serdes.ByteArray().deserializer(), input);
    topology.addProcessor(
        PROCESSOR,
        () -> new ChainProcessor(new Checks(keys, verifier.create(keys), maxValueBytes), counts),
        SOURCE);
    topology.addStateStore(
        Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(STORE), Serdes.String(), Head.SERDE),
        PROCESSOR);
    topology.addSink(
        CHAINED_SINK, output, new ByteArraySerializer(), framed, samePartition, PROCESSOR);
    topology.addSink(
        QUARANTINE_SINK, quarantine, new ByteArraySerializer(), framed, samePartition, PROCESSOR);
    return topology;
  }

  @Override
  public void init(ProcessorContext<byte[], Outputs.Framed> context) {
    this.context = context;
    this.heads = context.getStateStore(STORE);
  }

  @Override
  public void process(Record<byte[], byte[]> record) {
    // Always present for records that come from a source topic, as every record here does.
    RecordMetadata meta = context.recordMetadata().orElseThrow();
    if (!meta.topic().equals(topic)) {
      topic = meta.topic();
      topicBytes = topic.getBytes(StandardCharsets.UTF_8);
    }
    int partition = meta.partition();
    long offset = meta.offset();
    byte[] key = record.key();
    byte[] value = record.value();
    Checks.Verdict verdict = checks.check(key, value, record.headers());
    if (verdict instanceof Checks.Chain chain) {
      Head head = heads.get(chain.tenant());
      long seq = head == null ? 1 : head.seq() + 1;
      byte[] prevHash = head == null ? ChainFormat.ZERO_HASH : head.entryHash();
      byte[] digest = ChainFormat.h(value);
      byte[] entryHash =
          ChainFormat.entryHash(key, seq, prevHash, digest, topicBytes, partition, offset);
      heads.put(chain.tenant(), new Head(seq, entryHash));
      byte[] bytes =
          outputs.chained(
              chain.tenant(),
              seq,
              prevHash,
              entryHash,
              digest,
              topic,
              partition,
              offset,
              record.timestamp(),
              chain.keyId(),
              chain.sig(),
              value);
      context.forward(
          new Record<>(key, new Outputs.Framed(partition, bytes), record.timestamp()),
          CHAINED_SINK);
      counts.chained.increment();
    } else if (verdict instanceof Checks.Quarantine q) {
      byte[] leaf =
          ChainFormat.quarantineHash(topicBytes, partition, offset, key, value, q.reason().name());
      byte[] bytes =
          outputs.quarantine(
              q.reason(),
              q.detail(),
              topic,
              partition,
              offset,
              record.timestamp(),
              key,
              value,
              record.headers(),
              leaf);
      context.forward(
          new Record<>(key, new Outputs.Framed(partition, bytes), record.timestamp()),
          QUARANTINE_SINK);
      counts.quarantined.increment();
    }
  }
}
