package io.auditchain.peer;

import java.security.GeneralSecurityException;
import java.security.InvalidKeyException;
import java.security.KeyFactory;
import java.security.PublicKey;
import java.security.Signature;
import java.security.SignatureException;
import java.security.spec.X509EncodedKeySpec;
import java.util.HashMap;
import java.util.Map;
import org.bouncycastle.crypto.params.Ed25519PublicKeyParameters;
import org.bouncycastle.crypto.signers.Ed25519Signer;

/**
 * Verifies producer signatures under the keys of one key set. Not thread-safe: each stream task
 * makes its own (both providers keep per-key state that a verification mutates).
 */
interface Verifier {
  /** Whether {@code sig} is a strictly valid signature of {@code msg} by the key {@code keyId}. */
  boolean verify(String keyId, byte[] msg, byte[] sig);

  enum Kind {
    /** The JDK's own provider (SunEC), {@code Signature.getInstance("Ed25519")}. */
    JDK,
    /** BouncyCastle's lightweight API, {@code Ed25519Signer}. */
    BC;

    Verifier create(ProducerKeys keys) {
      return switch (this) {
        case JDK -> new Jdk(keys);
        case BC -> new Bc(keys);
      };
    }

    static Kind parse(String name) {
      return switch (name) {
        case "jdk" -> JDK;
        case "bc" -> BC;
        default -> throw new IllegalArgumentException("--verifier is jdk or bc, not " + name);
      };
    }
  }

  final class Jdk implements Verifier {
    /** The DER prefix of an X.509 SubjectPublicKeyInfo for Ed25519 (RFC 8410). */
    private static final byte[] X509_PREFIX =
        java.util.HexFormat.of().parseHex("302a300506032b6570032100");

    /** A Signature initialised for one key: verify() leaves it ready for that key again. */
    private record Initialised(PublicKey key, Signature signature) {}

    // The key is decoded once per key, not per record.
    private final Map<String, Initialised> byKey = new HashMap<>();

    Jdk(ProducerKeys keys) {
      try {
        KeyFactory factory = KeyFactory.getInstance("Ed25519");
        for (ProducerKeys.Key key : keys.all().values()) {
          byte[] der = new byte[X509_PREFIX.length + 32];
          System.arraycopy(X509_PREFIX, 0, der, 0, X509_PREFIX.length);
          System.arraycopy(key.publicKey(), 0, der, X509_PREFIX.length, 32);
          PublicKey publicKey = factory.generatePublic(new X509EncodedKeySpec(der));
          Signature s = Signature.getInstance("Ed25519");
          s.initVerify(publicKey);
          byKey.put(key.keyId(), new Initialised(publicKey, s));
        }
      } catch (GeneralSecurityException e) {
        throw new IllegalStateException("this JDK cannot verify Ed25519: " + e, e);
      }
    }

    @Override
    public boolean verify(String keyId, byte[] msg, byte[] sig) {
      Initialised init = byKey.get(keyId);
      if (init == null || !Ed25519Strict.encodingsAcceptable(sig)) {
        return false;
      }
      Signature s = init.signature();
      try {
        s.update(msg);
        return s.verify(sig);
      } catch (SignatureException e) {
        // SunEC throws for an R that is not a curve point, and then keeps the message it
        // buffered: initialise again so the next record is not verified with this one's bytes.
        try {
          s.initVerify(init.key());
        } catch (InvalidKeyException impossible) {
          throw new IllegalStateException("a key that initialised once no longer does", impossible);
        }
        return false;
      }
    }
  }

  final class Bc implements Verifier {
    private final Map<String, Ed25519Signer> byKey = new HashMap<>();

    Bc(ProducerKeys keys) {
      for (ProducerKeys.Key key : keys.all().values()) {
        Ed25519Signer s = new Ed25519Signer();
        s.init(false, new Ed25519PublicKeyParameters(key.publicKey(), 0));
        byKey.put(key.keyId(), s);
      }
    }

    @Override
    public boolean verify(String keyId, byte[] msg, byte[] sig) {
      Ed25519Signer s = byKey.get(keyId);
      if (s == null || !Ed25519Strict.encodingsAcceptable(sig)) {
        return false;
      }
      s.update(msg, 0, msg.length);
      return s.verifySignature(sig);
    }
  }
}
