package io.auditchain.producer;

import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Signs and publishes {@link AuditEvent}s with an idempotent {@link KafkaProducer} ({@code
 * acks=all}, idempotence on). Build with {@link #builder()}.
 */
public final class AuditProducer implements AutoCloseable {
  private final String topic;
  private final EventSigner signer;
  private final Producer<byte[], byte[]> producer;
  private final boolean owned;

  private AuditProducer(String topic, EventSigner signer, Producer<byte[], byte[]> producer, boolean owned) {
    this.topic = topic;
    this.signer = signer;
    this.producer = producer;
    this.owned = owned;
  }

  public static Builder builder() {
    return new Builder();
  }

  public int schemaId() {
    return signer.schemaId();
  }

  /** Signs and sends {@code event}; the future completes when Kafka has it. */
  public CompletableFuture<RecordMetadata> publish(AuditEvent event) {
    CompletableFuture<RecordMetadata> done = new CompletableFuture<>();
    Future<RecordMetadata> ignored =
        producer.send(
            signer.record(topic, event),
            (md, err) -> {
              if (err != null) {
                done.completeExceptionally(
                    new AuditchainException("publishing event " + event.eventId() + " to " + topic + " failed", err));
              } else {
                done.complete(md);
              }
            });
    return done;
  }

  /** Waits until everything sent so far is acknowledged or failed. */
  public void flush() {
    producer.flush();
  }

  /** Opens a transaction (needs {@link Builder#transactionalId}). */
  public void beginTransaction() {
    producer.beginTransaction();
  }

  /** Commits the open transaction. */
  public void commitTransaction() {
    producer.commitTransaction();
  }

  /** Aborts the open transaction. */
  public void abortTransaction() {
    producer.abortTransaction();
  }

  /** Flushes and closes the producer it made (a caller's own producer is left open). */
  @Override
  public void close() {
    if (owned) {
      producer.close(Duration.ofSeconds(30));
    } else {
      producer.flush();
    }
  }

  /** Configures an {@link AuditProducer}. */
  public static final class Builder {
    private String bootstrapServers;
    private String topic;
    private SigningKey key;
    private String registryUrl;
    private String registryUser;
    private String registryPassword;
    private boolean lookupOnly;
    private Integer schemaId;
    private String transactionalId;
    private final Properties extra = new Properties();
    private Producer<byte[], byte[]> producer;

    private Builder() {}

    public Builder bootstrapServers(String v) {
      bootstrapServers = v;
      return this;
    }

    public Builder topic(String v) {
      topic = v;
      return this;
    }

    public Builder signingKey(SigningKey v) {
      key = v;
      return this;
    }

    /** The schema is registered under {@code <topic>-value} (see {@link #lookupOnly}). */
    public Builder schemaRegistryUrl(String v) {
      registryUrl = v;
      return this;
    }

    public Builder schemaRegistryAuth(String user, String password) {
      registryUser = user;
      registryPassword = password;
      return this;
    }

    /** Look the schema up instead of registering it. */
    public Builder lookupOnly(boolean v) {
      lookupOnly = v;
      return this;
    }

    /** The schema id to frame with when there is no registry. */
    public Builder schemaId(int v) {
      schemaId = v;
      return this;
    }

    public Builder transactionalId(String v) {
      transactionalId = v;
      return this;
    }

    /** Extra producer properties; acks and idempotence cannot be overridden. */
    public Builder kafkaProperty(String name, Object value) {
      extra.put(name, value);
      return this;
    }

    /**
     * Publish through the caller's own producer (which must be idempotent, with byte[] key and
     * value), inside the caller's own transactions: the outbox pattern.
     */
    public Builder producer(Producer<byte[], byte[]> v) {
      producer = v;
      return this;
    }

    public AuditProducer build() {
      if (topic == null || topic.isEmpty()) {
        throw new IllegalArgumentException("topic must be set");
      }
      if (key == null) {
        throw new IllegalArgumentException("signingKey must be set");
      }
      int id;
      if (registryUrl != null) {
        SchemaRegistry registry = new SchemaRegistry(registryUrl, registryUser, registryPassword);
        String subject = topic + "-value";
        id = lookupOnly ? registry.lookup(subject) : registry.register(subject);
      } else if (schemaId != null) {
        id = schemaId;
      } else {
        throw new IllegalArgumentException("set schemaRegistryUrl, or schemaId when there is no registry");
      }
      EventSigner signer = new EventSigner(key, id);
      if (producer != null) {
        return new AuditProducer(topic, signer, producer, false);
      }
      if (bootstrapServers == null) {
        throw new IllegalArgumentException("bootstrapServers must be set (or producer)");
      }
      Properties p = new Properties();
      p.putAll(extra);
      p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrapServers);
      p.put(ProducerConfig.ACKS_CONFIG, "all");
      p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
      p.putIfAbsent(ProducerConfig.LINGER_MS_CONFIG, 5);
      if (transactionalId != null) {
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
      }
      KafkaProducer<byte[], byte[]> kp =
          new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
      if (transactionalId != null) {
        kp.initTransactions();
      }
      return new AuditProducer(topic, signer, kp, true);
    }
  }
}
