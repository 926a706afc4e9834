package io.auditchain.peer;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import org.apache.commons.codec.digest.Blake3;

/** The byte layouts of DESIGN.md section 4 (chain format v1) that the peer computes. */
final class ChainFormat {
  static final int HASH_LEN = 32;
  static final byte[] ZERO_HASH = new byte[HASH_LEN];

  private static final byte[] EVENT_DOMAIN = ascii("auditchain/v1/event\0");
  private static final byte[] ENTRY_DOMAIN = ascii("auditchain/v1/entry\0");
  private static final byte[] QUARANTINE_DOMAIN = ascii("auditchain/v1/quarantine\0");

  private ChainFormat() {}

  private static byte[] ascii(String s) {
    return s.getBytes(StandardCharsets.US_ASCII);
  }

  static byte[] h(byte[] data) {
    return Blake3.hash(data);
  }

  /** {@code "auditchain/v1/event\0" || lp(tenant_id) || lp(value)} (4.1). */
  static byte[] eventMsg(byte[] tenant, byte[] value) {
    return ByteBuffer.allocate(EVENT_DOMAIN.length + 4 + tenant.length + 4 + value.length)
        .put(EVENT_DOMAIN)
        .putInt(tenant.length)
        .put(tenant)
        .putInt(value.length)
        .put(value)
        .array();
  }

  /** The entry hash of 4.2; {@code eventDigest} is {@code H(value)}. */
  static byte[] entryHash(
      byte[] tenant,
      long seq,
      byte[] prevHash,
      byte[] eventDigest,
      byte[] sourceTopic,
      int sourcePartition,
      long sourceOffset) {
    // lp(tenant), u64 seq, prev_hash, digest, lp(topic), u32 partition, u64 offset
    int size = ENTRY_DOMAIN.length + 4 + tenant.length + 8 + 2 * HASH_LEN;
    size += 4 + sourceTopic.length + 4 + 8;
    byte[] msg =
        ByteBuffer.allocate(size)
            .put(ENTRY_DOMAIN)
            .putInt(tenant.length)
            .put(tenant)
            .putLong(seq)
            .put(prevHash)
            .put(eventDigest)
            .putInt(sourceTopic.length)
            .put(sourceTopic)
            .putInt(sourcePartition)
            .putLong(sourceOffset)
            .array();
    return h(msg);
  }

  /** The quarantine leaf of 4.3; absent key or value hash as empty byte strings. */
  static byte[] quarantineHash(
      byte[] sourceTopic,
      int sourcePartition,
      long sourceOffset,
      byte[] rawKey,
      byte[] rawValue,
      String reasonCode) {
    byte[] reason = ascii(reasonCode);
    // lp(topic), u32 partition, u64 offset, H(key), H(value), lp(reason)
    int size = QUARANTINE_DOMAIN.length + 4 + sourceTopic.length + 4 + 8;
    size += 2 * HASH_LEN + 4 + reason.length;
    byte[] msg =
        ByteBuffer.allocate(size)
            .put(QUARANTINE_DOMAIN)
            .putInt(sourceTopic.length)
            .put(sourceTopic)
            .putInt(sourcePartition)
            .putLong(sourceOffset)
            .put(h(rawKey == null ? new byte[0] : rawKey))
            .put(h(rawValue == null ? new byte[0] : rawValue))
            .putInt(reason.length)
            .put(reason)
            .array();
    return h(msg);
  }
}
