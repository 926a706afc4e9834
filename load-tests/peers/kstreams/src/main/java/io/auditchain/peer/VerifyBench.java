package io.auditchain.peer;

import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;
import java.util.Locale;
import java.util.Random;
import org.bouncycastle.crypto.params.Ed25519PrivateKeyParameters;
import org.bouncycastle.crypto.signers.Ed25519Signer;

/**
 * {@code --bench-verify N}: N distinct signed events, shaped like the load test's (200 tenants, a
 * framed value of about 400 bytes), verified by each verifier on one thread, as a stream task
 * verifies them. Every round checks every signature; the best of the timed rounds is reported after
 * warm-up rounds that let the JIT compile both paths. The rate per second of the thread's own CPU
 * time is reported beside the wall-clock rate: on a machine shared with other work the first is
 * what the code costs, the second also what the neighbours took.
 */
final class VerifyBench {
  private static final int VALUE_BYTES = 400;
  private static final int WARMUP_ROUNDS = 3;
  private static final int TIMED_ROUNDS = 5;

  private VerifyBench() {}

  static void run(int n, PrintStream out) {
    Random random = new Random(42);
    byte[] seed = new byte[32];
    random.nextBytes(seed);
    Ed25519PrivateKeyParameters secret = new Ed25519PrivateKeyParameters(seed, 0);
    String keyText =
        "[[keys]]\nkey_id = \"bench\"\npublic_key = \""
            + HexFormat.of().formatHex(secret.generatePublicKey().getEncoded())
            + "\"\n";
    ProducerKeys keys = ProducerKeys.parse(keyText, "bench");
    byte[][] msgs = new byte[n][];
    byte[][] sigs = new byte[n][];
    Ed25519Signer signer = new Ed25519Signer();
    signer.init(true, secret);
    for (int i = 0; i < n; i++) {
      byte[] tenant = ("tenant-" + (i % 200)).getBytes(StandardCharsets.UTF_8);
      byte[] value = new byte[VALUE_BYTES];
      random.nextBytes(value);
      msgs[i] = ChainFormat.eventMsg(tenant, value);
      signer.update(msgs[i], 0, msgs[i].length);
      sigs[i] = signer.generateSignature();
    }
    out.printf(
        "verify bench: %d signed events (%d-byte values), 1 thread, best of %d rounds after %d"
            + " warm-up rounds; java %s%n",
        n, VALUE_BYTES, TIMED_ROUNDS, WARMUP_ROUNDS, System.getProperty("java.version"));
    ThreadMXBean threads = ManagementFactory.getThreadMXBean();
    for (Verifier.Kind kind : Verifier.Kind.values()) {
      Verifier verifier = kind.create(keys);
      double bestWall = 0;
      double bestCpu = 0;
      for (int round = 0; round < WARMUP_ROUNDS + TIMED_ROUNDS; round++) {
        long wall = System.nanoTime();
        long cpu = threads.getCurrentThreadCpuTime();
        for (int i = 0; i < n; i++) {
          if (!verifier.verify("bench", msgs[i], sigs[i])) {
            throw new IllegalStateException(kind + " rejected a valid signature (event " + i + ")");
          }
        }
        if (round >= WARMUP_ROUNDS) {
          bestWall = Math.max(bestWall, n / ((System.nanoTime() - wall) / 1e9));
          bestCpu = Math.max(bestCpu, n / ((threads.getCurrentThreadCpuTime() - cpu) / 1e9));
        }
      }
      out.printf(
          "  %-3s %,10.0f verifications/s (wall clock), %,10.0f per CPU-second%n",
          kind.name().toLowerCase(Locale.ROOT), bestWall, bestCpu);
    }
  }
}
