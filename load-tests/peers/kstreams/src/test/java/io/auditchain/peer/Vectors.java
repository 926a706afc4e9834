package io.auditchain.peer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.HexFormat;

/** The project's chain-v1 test vectors (schemas/test-vectors/chain-v1.json, DESIGN.md 4.6). */
final class Vectors {
  static final JsonNode ROOT = load();

  private Vectors() {}

  private static JsonNode load() {
    String path = System.getProperty("auditchain.vectors");
    if (path == null) {
      throw new IllegalStateException("run through Maven: surefire sets auditchain.vectors");
    }
    try {
      return new ObjectMapper().readTree(Path.of(path).toFile());
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static byte[] hex(JsonNode node) {
    return HexFormat.of().parseHex(node.asText());
  }

  static byte[] utf8(JsonNode node) {
    return node.asText().getBytes(java.nio.charset.StandardCharsets.UTF_8);
  }

  /** A key set with the vectors' producer key as {@code producer-test}. */
  static ProducerKeys producerKeys() {
    return ProducerKeys.parse(
        "[[keys]]\nkey_id = \"producer-test\"\npublic_key = \""
            + ROOT.get("producer_public_key").asText()
            + "\"\n",
        "vectors");
  }
}
