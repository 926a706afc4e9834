package io.auditchain.peer;

import static io.auditchain.peer.Vectors.ROOT;
import static io.auditchain.peer.Vectors.hex;
import static io.auditchain.peer.Vectors.utf8;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.HashMap;
import java.util.Map;
import org.bouncycastle.crypto.params.Ed25519PrivateKeyParameters;
import org.bouncycastle.crypto.signers.Ed25519Signer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** The peer computes what DESIGN.md section 4 says, byte for byte, per the project's vectors. */
class ChainFormatTest {
  @Test
  void entryHashesAndDigestsMatchTheVectors() {
    Map<String, byte[]> heads = new HashMap<>();
    for (JsonNode e : ROOT.get("entries")) {
      byte[] value = hex(e.get("value"));
      byte[] digest = ChainFormat.h(value);
      assertArrayEquals(hex(e.get("event_digest")), digest, "event_digest " + e);
      String chain =
          e.get("tenant_id").asText()
              + "/"
              + e.get("source_topic").asText()
              + "/"
              + e.get("source_partition").asInt();
      byte[] prev = heads.getOrDefault(chain, ChainFormat.ZERO_HASH);
      assertArrayEquals(hex(e.get("prev_hash")), prev, "prev_hash links " + e);
      byte[] entry =
          ChainFormat.entryHash(
              utf8(e.get("tenant_id")),
              e.get("seq").asLong(),
              prev,
              digest,
              utf8(e.get("source_topic")),
              e.get("source_partition").asInt(),
              e.get("source_offset").asLong());
      assertArrayEquals(hex(e.get("entry_hash")), entry, "entry_hash " + e);
      heads.put(chain, entry);
    }
    assertEquals(2, heads.size());
  }

  @Test
  void quarantineLeavesMatchTheVectors() {
    for (JsonNode q : ROOT.get("quarantine")) {
      byte[] leaf =
          ChainFormat.quarantineHash(
              utf8(q.get("source_topic")),
              q.get("source_partition").asInt(),
              q.get("source_offset").asLong(),
              hex(q.get("raw_key")),
              hex(q.get("raw_value")),
              q.get("reason_code").asText());
      assertArrayEquals(hex(q.get("quarantine_hash")), leaf, "quarantine_hash " + q);
    }
  }

  @Test
  void eventMessagesAndSignaturesMatchTheVectors() {
    Ed25519PrivateKeyParameters seed =
        new Ed25519PrivateKeyParameters(hex(ROOT.get("producer_seed")), 0);
    assertArrayEquals(hex(ROOT.get("producer_public_key")), seed.generatePublicKey().getEncoded());
    Ed25519Signer signer = new Ed25519Signer();
    signer.init(true, seed);
    for (JsonNode e : ROOT.get("events")) {
      byte[] msg = ChainFormat.eventMsg(utf8(e.get("tenant_id")), hex(e.get("value")));
      assertArrayEquals(hex(e.get("event_msg")), msg, "event_msg " + e);
      signer.update(msg, 0, msg.length);
      assertArrayEquals(hex(e.get("signature")), signer.generateSignature(), "signature " + e);
    }
  }

  @ParameterizedTest
  @EnumSource(Verifier.Kind.class)
  void bothVerifiersAcceptTheVectorSignaturesAndNothingElse(Verifier.Kind kind) {
    Verifier v = kind.create(Vectors.producerKeys());
    for (JsonNode e : ROOT.get("events")) {
      byte[] msg = hex(e.get("event_msg"));
      byte[] sig = hex(e.get("signature"));
      assertTrue(v.verify("producer-test", msg, sig), "valid " + e);
      byte[] badSig = sig.clone();
      badSig[5] ^= 1;
      assertFalse(v.verify("producer-test", msg, badSig), "tampered signature " + e);
      byte[] badMsg = msg.clone();
      badMsg[badMsg.length - 1] ^= 1;
      assertFalse(v.verify("producer-test", badMsg, sig), "tampered message " + e);
      assertFalse(v.verify("someone-else", msg, sig), "unknown key " + e);
      // After each rejection the verifier is ready for the next record.
      assertTrue(v.verify("producer-test", msg, sig), "valid again " + e);
    }
  }
}
