package io.auditchain.peer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class ProducerKeysTest {
  private static final String PK = Vectors.ROOT.get("producer_public_key").asText();

  @Test
  void readsAuditchainsKeySetFormat() {
    ProducerKeys keys =
        ProducerKeys.parse(
            "# producers\n"
                + "[[keys]]\n"
                + "key_id = \"load-producer\"\n"
                + "public_key = \""
                + PK
                + "\"\n"
                + "\n"
                + "[[keys]]\n"
                + "key_id = \"old\"   # rotated out\n"
                + "public_key = \""
                + PK
                + "\"\n"
                + "revoked = true\n"
                + "[[keys]]\n"
                + "key_id = \"bound\"\n"
                + "public_key = \""
                + PK
                + "\"\n"
                + "tenants = [\"acme\", \"globex\"]\n",
            "t");
    assertEquals(3, keys.all().size());
    assertTrue(keys.get("load-producer").allows("anyone"));
    assertFalse(keys.get("old").allows("anyone"));
    assertTrue(keys.get("bound").allows("globex"));
    assertFalse(keys.get("bound").allows("initech"));
  }

  @Test
  void badEntriesAreNamed() {
    assertThrows(
        IllegalArgumentException.class,
        () -> ProducerKeys.parse("[[keys]]\nkey_id = \"x\"\npublic_key = \"abcd\"\n", "t"));
    assertThrows(
        IllegalArgumentException.class,
        () ->
            ProducerKeys.parse(
                "[[keys]]\nkey_id = \"x\"\npublic_key = \"" + PK + "\"\ncolour = \"red\"\n", "t"));
    IllegalArgumentException twice =
        assertThrows(
            IllegalArgumentException.class,
            () ->
                ProducerKeys.parse(
                    ("[[keys]]\nkey_id = \"x\"\npublic_key = \"" + PK + "\"\n").repeat(2), "t"));
    assertTrue(twice.getMessage().contains("appears twice"), twice.getMessage());
  }
}
