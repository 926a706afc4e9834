package io.auditchain.peer;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** The command line: run the peer, or micro-benchmark the two Ed25519 verifiers. */
public final class Main {
  private static final Logger log = LoggerFactory.getLogger("kstreams-peer");

  /** The faster verifier on the measurements in README.md. */
  static final Verifier.Kind DEFAULT_VERIFIER = Verifier.Kind.BC;

  static final String USAGE =
      """
      usage: java -jar kstreams-peer.jar --bootstrap HOST:PORT --input TOPIC --output TOPIC
                 --quarantine TOPIC --application-id ID --producer-keys PATH
                 [--threads N] [--commit-interval-ms N] [--state-dir DIR]
                 [--verifier jdk|bc] [--max-value-bytes N]
             java -jar kstreams-peer.jar --bench-verify N

        --threads N             num.stream.threads (default 1, the Kafka Streams default)
        --commit-interval-ms N  commit.interval.ms (default: Streams' 100 under exactly-once)
        --state-dir DIR         state.dir (default: Streams' ${java.io.tmpdir}/kafka-streams)
        --verifier jdk|bc       Ed25519 verifier (default %s)
        --max-value-bytes N     larger input values are quarantined OVERSIZED (default
                                1048576, auditchain's processing.max_record_bytes default)
        --bench-verify N        verify N signed events with each verifier, print the rates
      """
          .formatted(DEFAULT_VERIFIER.name().toLowerCase(Locale.ROOT));

  private Main() {}

  record Options(
      String bootstrap,
      String input,
      String output,
      String quarantine,
      String applicationId,
      Path producerKeys,
      int threads,
      Integer commitIntervalMs,
      String stateDir,
      Verifier.Kind verifier,
      int maxValueBytes,
      Integer benchVerify) {

    static Options parse(String[] args) {
      Map<String, String> values = new HashMap<>();
      List<String> known =
          List.of(
              "--bootstrap",
              "--input",
              "--output",
              "--quarantine",
              "--application-id",
              "--producer-keys",
              "--threads",
              "--commit-interval-ms",
              "--state-dir",
              "--verifier",
              "--max-value-bytes",
              "--bench-verify");
      for (int i = 0; i < args.length; i++) {
        String flag = args[i];
        if (flag.equals("--help") || flag.equals("-h")) {
          throw new UsageException(null);
        }
        if (!known.contains(flag)) {
          throw new UsageException("unknown argument " + flag);
        }
        if (i + 1 >= args.length) {
          throw new UsageException(flag + " needs a value");
        }
        if (values.put(flag, args[++i]) != null) {
          throw new UsageException(flag + " given twice");
        }
      }
      Integer bench = optionalInt(values, "--bench-verify", 1);
      if (bench != null) {
        return new Options(null, null, null, null, null, null, 1, null, null, null, 0, bench);
      }
      List<String> missing = new ArrayList<>();
      for (String required :
          List.of(
              "--bootstrap",
              "--input",
              "--output",
              "--quarantine",
              "--application-id",
              "--producer-keys")) {
        if (!values.containsKey(required)) {
          missing.add(required);
        }
      }
      if (!missing.isEmpty()) {
        throw new UsageException("missing " + String.join(", ", missing));
      }
      Integer threads = optionalInt(values, "--threads", 1);
      Integer maxValueBytes = optionalInt(values, "--max-value-bytes", 1);
      String verifier = values.get("--verifier");
      return new Options(
          values.get("--bootstrap"),
          values.get("--input"),
          values.get("--output"),
          values.get("--quarantine"),
          values.get("--application-id"),
          Path.of(values.get("--producer-keys")),
          threads == null ? 1 : threads,
          optionalInt(values, "--commit-interval-ms", 0),
          values.get("--state-dir"),
          verifier == null ? DEFAULT_VERIFIER : Verifier.Kind.parse(verifier),
          maxValueBytes == null ? Checks.DEFAULT_MAX_VALUE_BYTES : maxValueBytes,
          null);
    }

    private static Integer optionalInt(Map<String, String> values, String flag, int min) {
      String v = values.get(flag);
      if (v == null) {
        return null;
      }
      try {
        int n = Integer.parseInt(v);
        if (n < min) {
          throw new UsageException(flag + " must be at least " + min);
        }
        return n;
      } catch (NumberFormatException e) {
        throw new UsageException(flag + " must be a whole number, not " + v);
      }
    }
  }

  static final class UsageException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    UsageException(String message) {
      super(message);
    }
  }

  public static void main(String[] args) throws Exception {
    Options options;
    try {
      options = Options.parse(args);
    } catch (UsageException | IllegalArgumentException e) {
      if (e.getMessage() != null) {
        System.err.println("error: " + e.getMessage());
      }
      System.err.print(USAGE);
      System.exit(e.getMessage() == null ? 0 : 2);
      return;
    }
    if (options.benchVerify() != null) {
      VerifyBench.run(options.benchVerify(), System.out);
      return;
    }
    int status;
    try {
      status = run(options);
    } catch (IOException
        | ExecutionException
        | IllegalArgumentException
        | IllegalStateException e) {
      // Start-up failures (key file, topics): one line, not a stack trace.
      log.error("cannot start: {}", e.toString());
      status = 1;
    }
    System.exit(status);
  }

  static Properties streamsConfig(Options o) {
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, o.applicationId());
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, o.bootstrap());
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, o.threads());
    if (o.commitIntervalMs() != null) {
      p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, o.commitIntervalMs());
    }
    if (o.stateDir() != null) {
      p.put(StreamsConfig.STATE_DIR_CONFIG, o.stateDir());
    }
    return p;
  }

  private static int run(Options o) throws Exception {
    ProducerKeys keys = ProducerKeys.load(o.producerKeys());
    Checks.boundAvroLengths(o.maxValueBytes());
    ensureOutputTopics(o);
    ChainProcessor.Counts counts = new ChainProcessor.Counts();
    KafkaStreams streams =
        new KafkaStreams(
            ChainProcessor.topology(
                o.input(),
                o.output(),
                o.quarantine(),
                keys,
                o.verifier(),
                o.maxValueBytes(),
                counts),
            streamsConfig(o));
    CountDownLatch stopped = new CountDownLatch(1);
    streams.setStateListener(
        (now, before) -> {
          log.info("state {} -> {}", before, now);
          if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
            stopped.countDown();
          }
        });
    streams.setUncaughtExceptionHandler(
        e -> {
          log.error("stream thread failed; shutting down", e);
          return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
    ScheduledExecutorService progress =
        Executors.newSingleThreadScheduledExecutor(
            r -> {
              Thread t = new Thread(r, "progress");
              t.setDaemon(true);
              return t;
            });
    progress.scheduleAtFixedRate(new Progress(counts), 10, 10, TimeUnit.SECONDS);
    AtomicBoolean stopRequested = new AtomicBoolean();
    AtomicBoolean failed = new AtomicBoolean();
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  stopRequested.set(true);
                  log.info("stopping");
                  boolean closed = streams.close(Duration.ofSeconds(60));
                  log.info(
                      "stopped{}: chained {}, quarantined {}",
                      closed ? "" : " (close timed out)",
                      counts.chained.sum(),
                      counts.quarantined.sum());
                  // A SIGTERM otherwise ends the JVM with status 143 however clean the close;
                  // auditchain exits 0 after a clean stop, so a script checks both alike.
                  Runtime.getRuntime().halt(closed && !failed.get() ? 0 : 1);
                },
                "shutdown"));
    log.info(
        "starting: input {}, output {}, quarantine {}, application id {}, {} producer key(s), "
            + "verifier {}, {} stream thread(s), exactly_once_v2",
        o.input(),
        o.output(),
        o.quarantine(),
        o.applicationId(),
        keys.all().size(),
        o.verifier().name().toLowerCase(Locale.ROOT),
        o.threads());
    streams.start();
    stopped.await();
    if (!stopRequested.get()) {
      log.error("Kafka Streams stopped by itself in state {}", streams.state());
      failed.set(true);
    }
    // System.exit runs the shutdown hook (or, when it is already running, waits for its halt).
    return failed.get() ? 1 : 0;
  }

  /**
   * Creates the output and quarantine topics with the input's partition count if they are missing,
   * as auditchain does at start-up; records go to the input record's partition number, so existing
   * ones need at least as many partitions.
   */
  private static void ensureOutputTopics(Options o)
      throws ExecutionException, InterruptedException {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, o.bootstrap());
    try (Admin admin = Admin.create(p)) {
      int partitions = partitionCount(admin, o.input());
      if (partitions < 0) {
        throw new IllegalStateException("the input topic " + o.input() + " does not exist");
      }
      for (String topic : List.of(o.output(), o.quarantine())) {
        int have = partitionCount(admin, topic);
        if (have < 0) {
          try {
            admin
                .createTopics(
                    List.of(new NewTopic(topic, Optional.of(partitions), Optional.empty())))
                .all()
                .get();
            log.info("created topic {} with {} partitions", topic, partitions);
          } catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) {
              throw e;
            }
          }
        } else if (have < partitions) {
          throw new IllegalStateException(
              "topic "
                  + topic
                  + " has "
                  + have
                  + " partitions, fewer than the input's "
                  + partitions);
        }
      }
    }
  }

  private static int partitionCount(Admin admin, String topic)
      throws ExecutionException, InterruptedException {
    try {
      TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
      return d.partitions().size();
    } catch (ExecutionException e) {
      if (e.getCause() instanceof UnknownTopicOrPartitionException) {
        return -1;
      }
      throw e;
    }
  }

  /** Logs the records handled every 10 s while there are any. */
  private static final class Progress implements Runnable {
    private final ChainProcessor.Counts counts;
    private long lastChained;
    private long lastQuarantined;
    private long lastNanos = System.nanoTime();

    Progress(ChainProcessor.Counts counts) {
      this.counts = counts;
    }

    @Override
    public void run() {
      long chained = counts.chained.sum();
      long quarantined = counts.quarantined.sum();
      long now = System.nanoTime();
      long delta = chained + quarantined - lastChained - lastQuarantined;
      if (delta > 0) {
        log.info(
            "chained {}, quarantined {} ({} records/s)",
            chained,
            quarantined,
            Math.round(delta / ((now - lastNanos) / 1e9)));
      }
      lastChained = chained;
      lastQuarantined = quarantined;
      lastNanos = now;
    }
  }
}
