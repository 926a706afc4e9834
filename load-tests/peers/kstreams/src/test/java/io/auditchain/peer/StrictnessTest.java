package io.auditchain.peer;

import static io.auditchain.peer.Vectors.ROOT;
import static io.auditchain.peer.Vectors.hex;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.HexFormat;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** The verify_strict rules of DESIGN.md 4.1 hold for both providers. */
class StrictnessTest {
  private static final byte[] L =
      HexFormat.of().parseHex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");

  private static JsonNode event() {
    return ROOT.get("events").get(0);
  }

  @ParameterizedTest
  @EnumSource(Verifier.Kind.class)
  void nonCanonicalSIsRejected(Verifier.Kind kind) {
    // s + L satisfies the verification equation; only the canonical-s rule rejects it.
    byte[] sig = hex(event().get("signature"));
    int carry = 0;
    for (int i = 0; i < 32; i++) {
      int sum = (sig[32 + i] & 0xff) + (L[i] & 0xff) + carry;
      sig[32 + i] = (byte) sum;
      carry = sum >> 8;
    }
    assertFalse(
        kind.create(Vectors.producerKeys())
            .verify("producer-test", hex(event().get("event_msg")), sig));
  }

  @ParameterizedTest
  @EnumSource(Verifier.Kind.class)
  void smallOrderOrUndecodableRIsRejectedAndTheVerifierRecovers(Verifier.Kind kind) {
    Verifier v = kind.create(Vectors.producerKeys());
    byte[] msg = hex(event().get("event_msg"));
    byte[] good = hex(event().get("signature"));
    byte[] identityR = good.clone();
    identityR[0] = 1;
    for (int i = 1; i < 32; i++) {
      identityR[i] = 0;
    }
    assertFalse(v.verify("producer-test", msg, identityR));
    // y = 2 is not on the curve: SunEC throws rather than returning false.
    byte[] notAPoint = good.clone();
    notAPoint[0] = 2;
    for (int i = 1; i < 32; i++) {
      notAPoint[i] = 0;
    }
    assertFalse(v.verify("producer-test", msg, notAPoint));
    assertTrue(v.verify("producer-test", msg, good));
  }

  @Test
  void smallOrderAndNonCanonicalEncodingsAreRecognised() {
    byte[] identity = new byte[32];
    identity[0] = 1;
    assertTrue(Ed25519Strict.isSmallOrder(identity));
    byte[] negatedIdentity = identity.clone();
    negatedIdentity[31] = (byte) 0x80;
    assertTrue(Ed25519Strict.isSmallOrder(negatedIdentity));
    assertFalse(Ed25519Strict.isSmallOrder(hex(ROOT.get("producer_public_key"))));
    byte[] p =
        HexFormat.of().parseHex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
    assertFalse(Ed25519Strict.isCanonicalPoint(p, 0));
    p[0] = (byte) 0xec;
    assertTrue(Ed25519Strict.isCanonicalPoint(p, 0));
    assertFalse(Ed25519Strict.isCanonicalScalar(L, 0));
    byte[] belowL = L.clone();
    belowL[0]--;
    assertTrue(Ed25519Strict.isCanonicalScalar(belowL, 0));
  }

  @Test
  void aSmallOrderProducerKeyIsRefusedAtLoad() {
    String identity = "01" + "00".repeat(31);
    IllegalArgumentException e =
        assertThrows(
            IllegalArgumentException.class,
            () ->
                ProducerKeys.parse(
                    "[[keys]]\nkey_id = \"weak\"\npublic_key = \"" + identity + "\"\n", "t"));
    assertTrue(e.getMessage().contains("small-order"), e.getMessage());
  }
}
