package io.auditchain.peer;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.bouncycastle.math.ec.rfc8032.Ed25519;

/**
 * The producer key set, in auditchain's file format ({@code processor/src/keys.rs}):
 *
 * <pre>
 * [[keys]]
 * key_id = "billing-2026"
 * public_key = "&lt;64 hex chars&gt;"
 * tenants = ["acme", "globex"]   # optional, ["*"] (the default) for any tenant
 * revoked = false                # optional
 * </pre>
 *
 * The parser reads exactly this subset of TOML (basic strings, string arrays, booleans, comments)
 * rather than pulling in a TOML library for one table array.
 */
final class ProducerKeys {
  /** One producer key; {@code tenants} null means any tenant. */
  record Key(String keyId, byte[] publicKey, Set<String> tenants, boolean revoked) {
    boolean allows(String tenant) {
      return !revoked && (tenants == null || tenants.contains(tenant));
    }
  }

  private final Map<String, Key> keys;

  private ProducerKeys(Map<String, Key> keys) {
    this.keys = Collections.unmodifiableMap(keys);
  }

  Key get(String keyId) {
    return keys.get(keyId);
  }

  Map<String, Key> all() {
    return keys;
  }

  static ProducerKeys load(Path path) throws IOException {
    return parse(Files.readString(path, StandardCharsets.UTF_8), path.toString());
  }

  static ProducerKeys parse(String text, String origin) {
    List<Map<String, Object>> entries = new ArrayList<>();
    String[] lines = text.split("\r?\n", -1);
    for (int n = 0; n < lines.length; n++) {
      String where = origin + ":" + (n + 1);
      Cursor c = new Cursor(lines[n], where);
      c.skipSpace();
      if (c.atEnd()) {
        continue;
      }
      if (c.rest().startsWith("[[")) {
        c.expect("[[");
        c.skipSpace();
        String table = c.bareKey();
        c.skipSpace();
        c.expect("]]");
        c.endOfLine();
        if (!table.equals("keys")) {
          throw c.error("only [[keys]] tables are allowed, found [[" + table + "]]");
        }
        entries.add(new LinkedHashMap<>());
        continue;
      }
      String name = c.bareKey();
      c.skipSpace();
      c.expect("=");
      c.skipSpace();
      Object value = c.value();
      c.endOfLine();
      if (entries.isEmpty()) {
        throw c.error("`" + name + "` outside a [[keys]] table");
      }
      if (entries.get(entries.size() - 1).put(name, value) != null) {
        throw c.error("`" + name + "` given twice");
      }
    }
    Map<String, Key> keys = new LinkedHashMap<>();
    for (int i = 0; i < entries.size(); i++) {
      Key key = toKey(entries.get(i), origin + ": keys[" + i + "]");
      if (keys.put(key.keyId(), key) != null) {
        throw new IllegalArgumentException(origin + ": key id `" + key.keyId() + "` appears twice");
      }
    }
    return new ProducerKeys(keys);
  }

  private static Key toKey(Map<String, Object> entry, String where) {
    for (String field : entry.keySet()) {
      if (!List.of("key_id", "public_key", "tenants", "revoked").contains(field)) {
        throw new IllegalArgumentException(where + ": unknown field `" + field + "`");
      }
    }
    String keyId = typed(entry, "key_id", String.class, null, where);
    if (keyId == null || keyId.isEmpty()) {
      throw new IllegalArgumentException(where + ": key_id must be given and not empty");
    }
    String hex = typed(entry, "public_key", String.class, null, where);
    if (hex == null) {
      throw new IllegalArgumentException(where + " (" + keyId + "): public_key is missing");
    }
    byte[] publicKey;
    try {
      publicKey = HexFormat.of().parseHex(hex.strip());
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException(where + " (" + keyId + "): public_key is not hex");
    }
    if (publicKey.length != 32) {
      throw new IllegalArgumentException(
          where + " (" + keyId + "): public_key must be 32 bytes, found " + publicKey.length);
    }
    if (Ed25519Strict.isSmallOrder(publicKey)) {
      throw new IllegalArgumentException(
          where + " (" + keyId + "): public_key is a small-order (weak) Ed25519 point");
    }
    // auditchain refuses a key that does not decode to a curve point; BouncyCastle's check also
    // refuses a non-canonical encoding (y >= p), which no keygen writes.
    if (!Ed25519.validatePublicKeyPartial(publicKey, 0)) {
      throw new IllegalArgumentException(
          where + " (" + keyId + "): public_key is not an Ed25519 public key");
    }
    @SuppressWarnings("unchecked")
    List<String> tenants = typed(entry, "tenants", List.class, List.of("*"), where);
    Set<String> bound = tenants.contains("*") ? null : Set.copyOf(new LinkedHashSet<>(tenants));
    boolean revoked = typed(entry, "revoked", Boolean.class, false, where);
    return new Key(keyId, publicKey, bound, revoked);
  }

  private static <T> T typed(
      Map<String, Object> entry, String field, Class<T> type, T fallback, String where) {
    Object v = entry.get(field);
    if (v == null) {
      return fallback;
    }
    if (!type.isInstance(v)) {
      throw new IllegalArgumentException(where + ": `" + field + "` has the wrong type");
    }
    return type.cast(v);
  }

  /** A position in one line of the key file. */
  private static final class Cursor {
    private final String line;
    private final String where;
    private int i;

    Cursor(String line, String where) {
      this.line = line;
      this.where = where;
    }

    IllegalArgumentException error(String message) {
      return new IllegalArgumentException(where + ": " + message);
    }

    boolean atEnd() {
      return i >= line.length() || line.charAt(i) == '#';
    }

    String rest() {
      return line.substring(i);
    }

    void skipSpace() {
      while (i < line.length() && (line.charAt(i) == ' ' || line.charAt(i) == '\t')) {
        i++;
      }
    }

    void expect(String token) {
      if (!line.startsWith(token, i)) {
        throw error("expected `" + token + "`");
      }
      i += token.length();
    }

    void endOfLine() {
      skipSpace();
      if (!atEnd()) {
        throw error("unexpected `" + rest() + "`");
      }
    }

    String bareKey() {
      int start = i;
      while (i < line.length()
          && (Character.isLetterOrDigit(line.charAt(i))
              || line.charAt(i) == '_'
              || line.charAt(i) == '-')) {
        i++;
      }
      if (start == i) {
        throw error("expected a key name");
      }
      return line.substring(start, i);
    }

    Object value() {
      if (i >= line.length()) {
        throw error("expected a value");
      }
      char ch = line.charAt(i);
      if (ch == '"') {
        return string();
      }
      if (ch == '[') {
        i++;
        List<String> items = new ArrayList<>();
        skipSpace();
        while (i < line.length() && line.charAt(i) != ']') {
          items.add(string());
          skipSpace();
          if (i < line.length() && line.charAt(i) == ',') {
            i++;
            skipSpace();
          }
        }
        expect("]");
        return items;
      }
      if (line.startsWith("true", i)) {
        i += 4;
        return Boolean.TRUE;
      }
      if (line.startsWith("false", i)) {
        i += 5;
        return Boolean.FALSE;
      }
      throw error("expected a string, an array of strings or a boolean");
    }

    private String string() {
      expect("\"");
      StringBuilder out = new StringBuilder();
      while (i < line.length() && line.charAt(i) != '"') {
        char ch = line.charAt(i++);
        if (ch == '\\') {
          if (i >= line.length()) {
            throw error("unterminated escape");
          }
          char esc = line.charAt(i++);
          switch (esc) {
            case '"', '\\' -> out.append(esc);
            case 'n' -> out.append('\n');
            case 't' -> out.append('\t');
            default -> throw error("unsupported escape \\" + esc);
          }
        } else {
          out.append(ch);
        }
      }
      expect("\"");
      return out.toString();
    }
  }
}
