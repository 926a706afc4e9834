// The publisher the integration test (sdk/integration/run.py) drives, run as a
// single source file: java -cp target/classes:$(cat target/classpath.txt) examples/Publish.java
// Configured from the environment:
//   KAFKA_BOOTSTRAP_SERVERS, AUDITCHAIN_TOPIC, AUDITCHAIN_KEY_FILE, AUDITCHAIN_KEY_ID,
//   SCHEMA_REGISTRY_URL (or AUDITCHAIN_SCHEMA_ID without a registry),
//   AUDITCHAIN_TENANTS (comma-separated), AUDITCHAIN_EVENTS (total, round-robin),
//   AUDITCHAIN_TRANSACTIONAL_ID (optional: all in one transaction).
// Prints one JSON line with the publish rate (encoding and signing included).
import io.auditchain.producer.AuditEvent;
import io.auditchain.producer.AuditProducer;
import io.auditchain.producer.AuditchainException;
import io.auditchain.producer.Outcome;
import io.auditchain.producer.SigningKey;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

public class Publish {
  public static void main(String[] args) throws Exception {
    Map<String, String> env = System.getenv();
    String[] tenants = env.get("AUDITCHAIN_TENANTS").split(",");
    int events = Integer.parseInt(env.get("AUDITCHAIN_EVENTS"));
    String txn = env.get("AUDITCHAIN_TRANSACTIONAL_ID");
    try {
      SigningKey key = SigningKey.fromFile(Path.of(env.get("AUDITCHAIN_KEY_FILE")), env.get("AUDITCHAIN_KEY_ID"));
      AuditProducer.Builder b = AuditProducer.builder()
          .bootstrapServers(env.get("KAFKA_BOOTSTRAP_SERVERS"))
          .topic(env.get("AUDITCHAIN_TOPIC"))
          .signingKey(key);
      if (env.get("SCHEMA_REGISTRY_URL") != null && !env.get("SCHEMA_REGISTRY_URL").isEmpty()) {
        b.schemaRegistryUrl(env.get("SCHEMA_REGISTRY_URL"));
      } else {
        b.schemaId(Integer.parseInt(env.get("AUDITCHAIN_SCHEMA_ID")));
      }
      if (txn != null && !txn.isEmpty()) {
        b.transactionalId(txn);
      }
      try (AuditProducer producer = b.build()) {
        long started = System.nanoTime();
        if (txn != null && !txn.isEmpty()) {
          producer.beginTransaction();
        }
        List<CompletableFuture<?>> sent = new ArrayList<>(events);
        for (int i = 0; i < events; i++) {
          sent.add(producer.publish(AuditEvent.builder(tenants[i % tenants.length])
              .actor("user-" + (i % 97))
              .action("document.read")
              .resource("doc/" + i)
              .outcome(i % 10 == 0 ? Outcome.DENIED : Outcome.SUCCESS)
              .attribute("sdk", "java")
              .build()));
        }
        if (txn != null && !txn.isEmpty()) {
          producer.commitTransaction();
        } else {
          producer.flush();
        }
        CompletableFuture.allOf(sent.toArray(new CompletableFuture<?>[0])).join();
        double secs = (System.nanoTime() - started) / 1e9;
        System.out.printf("{\"sdk\": \"java\", \"published\": %d, \"seconds\": %.3f, \"events_per_second\": %d}%n",
            events, secs, (long) (events / secs));
      }
    } catch (AuditchainException e) {
      System.err.println("publish: " + e.getMessage());
      System.exit(1);
    }
  }
}
