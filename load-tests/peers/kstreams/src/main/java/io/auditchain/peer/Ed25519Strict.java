package io.auditchain.peer;

/**
 * The strictness checks of DESIGN.md 4.1 ("ed25519-dalek's verify_strict"), done on the encodings
 * before a provider runs the verification equation, so the JDK and the BouncyCastle verifier reject
 * exactly what auditchain rejects whatever their own leniency: a non-canonical {@code s}, a
 * non-canonical or small-order {@code R}, a small-order public key (refused when the key set is
 * loaded).
 */
final class Ed25519Strict {
  /** The group order L, little-endian. */
  private static final byte[] L =
      hex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");

  /**
   * Every encoding of a point of order 1, 2, 4 or 8, the sign bit left out (libsodium's {@code
   * has_small_order} list): y = 0, 1, the two order-8 y values, p - 1, and the non-canonical p and
   * p + 1.
   */
  private static final byte[][] SMALL_ORDER = {
    hex("0000000000000000000000000000000000000000000000000000000000000000"),
    hex("0100000000000000000000000000000000000000000000000000000000000000"),
    hex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    hex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
  };

  private Ed25519Strict() {}

  private static byte[] hex(String s) {
    return java.util.HexFormat.of().parseHex(s);
  }

  /** Whether the 32-byte point encoding at {@code off} is of a small-order point. */
  static boolean isSmallOrder(byte[] enc, int off) {
    for (byte[] bad : SMALL_ORDER) {
      int diff = (enc[off + 31] ^ bad[31]) & 0x7f;
      for (int i = 0; i < 31; i++) {
        diff |= enc[off + i] ^ bad[i];
      }
      if (diff == 0) {
        return true;
      }
    }
    return false;
  }

  static boolean isSmallOrder(byte[] enc) {
    return isSmallOrder(enc, 0);
  }

  /** Whether the y coordinate of the encoding at {@code off} is below p = 2^255 - 19. */
  static boolean isCanonicalPoint(byte[] enc, int off) {
    if ((enc[off + 31] & 0x7f) != 0x7f) {
      return true;
    }
    for (int i = 30; i >= 1; i--) {
      if (enc[off + i] != (byte) 0xff) {
        return true;
      }
    }
    return (enc[off] & 0xff) < 0xed;
  }

  /** Whether the scalar at {@code off} is below L. */
  static boolean isCanonicalScalar(byte[] s, int off) {
    for (int i = 31; i >= 0; i--) {
      int a = s[off + i] & 0xff;
      int b = L[i] & 0xff;
      if (a != b) {
        return a < b;
      }
    }
    return false;
  }

  /** Whether a 64-byte signature passes the encoding checks that precede the equation. */
  static boolean encodingsAcceptable(byte[] sig) {
    return sig.length == 64
        && isCanonicalScalar(sig, 32)
        && isCanonicalPoint(sig, 0)
        && !isSmallOrder(sig, 0);
  }
}
