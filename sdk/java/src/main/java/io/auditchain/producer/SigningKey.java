package io.auditchain.producer;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.Signature;
import java.security.spec.EdECPrivateKeySpec;
import java.security.spec.NamedParameterSpec;
import java.util.EnumSet;
import java.util.HexFormat;
import java.util.Set;

/**
 * A producer's Ed25519 key (the JDK's own) and its id. {@link #toString()} shows the key id only,
 * never the secret.
 */
public final class SigningKey {
  private static final byte[] EVENT_DOMAIN = "auditchain/v1/event\0".getBytes(StandardCharsets.UTF_8);
  private static final Set<PosixFilePermission> GROUP_OR_OTHERS =
      EnumSet.complementOf(
          EnumSet.of(
              PosixFilePermission.OWNER_READ,
              PosixFilePermission.OWNER_WRITE,
              PosixFilePermission.OWNER_EXECUTE));

  private final String keyId;
  private final PrivateKey key;

  private SigningKey(byte[] seed, String keyId) {
    if (keyId == null || keyId.isEmpty()) {
      throw new AuditchainException.KeyException("the key id must not be empty");
    }
    if (seed == null || seed.length != 32) {
      throw new AuditchainException.KeyException(
          "an Ed25519 secret seed is 32 bytes, got " + (seed == null ? 0 : seed.length));
    }
    this.keyId = keyId;
    try {
      this.key =
          KeyFactory.getInstance("Ed25519")
              .generatePrivate(new EdECPrivateKeySpec(NamedParameterSpec.ED25519, seed));
    } catch (GeneralSecurityException e) {
      throw new AuditchainException.KeyException("this JDK cannot make an Ed25519 key: " + e);
    }
  }

  /** A key from the caller's 32-byte seed (from a secret manager, say). */
  public static SigningKey fromSeed(byte[] seed, String keyId) {
    return new SigningKey(seed, keyId);
  }

  /**
   * Reads the hex seed {@code auditchain keygen} writes, refusing a file that group or others can
   * access.
   */
  public static SigningKey fromFile(Path path, String keyId) {
    String text;
    try {
      Set<PosixFilePermission> perms = Files.getPosixFilePermissions(path);
      if (perms.stream().anyMatch(GROUP_OR_OTHERS::contains)) {
        throw new AuditchainException.KeyException(
            path
                + ": is accessible by group or others (mode "
                + mode(perms)
                + "); a secret key must be private to its owner: chmod 600 "
                + path);
      }
      text = Files.readString(path, StandardCharsets.US_ASCII).strip();
    } catch (IOException e) {
      throw new AuditchainException.KeyException(path + ": cannot read it (" + e + ")");
    }
    byte[] seed;
    try {
      seed = HexFormat.of().parseHex(text);
    } catch (IllegalArgumentException e) {
      throw new AuditchainException.KeyException(
          path + ": not an Ed25519 secret seed (invalid hex)");
    }
    if (seed.length != 32) {
      throw new AuditchainException.KeyException(
          path
              + ": not an Ed25519 secret seed: expected 32 bytes (64 hex characters), found "
              + seed.length);
    }
    return new SigningKey(seed, keyId);
  }

  private static String mode(Set<PosixFilePermission> p) {
    int m = 0;
    for (PosixFilePermission x : p) {
      m |= 1 << (8 - x.ordinal());
    }
    return String.format("%03o", m);
  }

  public String keyId() {
    return keyId;
  }

  /** {@code "auditchain/v1/event\0" || lp(tenant_id) || lp(value)} (DESIGN.md 4.1). */
  public static byte[] eventMsg(String tenantId, byte[] value) {
    byte[] tenant = tenantId.getBytes(StandardCharsets.UTF_8);
    return ByteBuffer.allocate(EVENT_DOMAIN.length + 8 + tenant.length + value.length)
        .put(EVENT_DOMAIN)
        .putInt(tenant.length)
        .put(tenant)
        .putInt(value.length)
        .put(value)
        .array();
  }

  /** The 64-byte {@code auditchain-sig} of {@code value} for {@code tenantId}. */
  public byte[] sign(String tenantId, byte[] value) {
    try {
      Signature s = Signature.getInstance("Ed25519");
      s.initSign(key);
      s.update(eventMsg(tenantId, value));
      return s.sign();
    } catch (GeneralSecurityException e) {
      throw new AuditchainException("Ed25519 signing failed", e);
    }
  }

  @Override
  public String toString() {
    return "SigningKey{keyId=" + keyId + "}";
  }
}
