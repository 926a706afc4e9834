package io.auditchain.producer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.Map;

/**
 * A small client of the Confluent-compatible schema registry REST API (Confluent, or Apicurio's
 * {@code /apis/ccompat/v7}): just enough to register or look up the AuditEvent schema.
 */
public final class SchemaRegistry {
  private static final ObjectMapper JSON = new ObjectMapper();
  private final String url;
  private final String authorization;
  private final HttpClient http =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

  /** {@code username} may be null (no authentication). */
  public SchemaRegistry(String url, String username, String password) {
    this.url = url.replaceAll("/+$", "");
    this.authorization =
        username == null
            ? null
            : "Basic "
                + Base64.getEncoder()
                    .encodeToString(
                        (username + ":" + (password == null ? "" : password))
                            .getBytes(StandardCharsets.UTF_8));
  }

  /** Registers the AuditEvent schema under {@code subject} (idempotent) and returns its id. */
  public int register(String subject) {
    return post("/subjects/" + enc(subject) + "/versions", "registering", subject);
  }

  /** The id the AuditEvent schema already has under {@code subject}. */
  public int lookup(String subject) {
    return post("/subjects/" + enc(subject), "looking up", subject);
  }

  private static String enc(String s) {
    return URLEncoder.encode(s, StandardCharsets.UTF_8).replace("+", "%20");
  }

  private int post(String path, String what, String subject) {
    String context = what + " the AuditEvent schema under subject '" + subject + "' at " + url;
    try {
      String body = JSON.writeValueAsString(Map.of("schema", AuditEvent.SCHEMA_JSON));
      HttpRequest.Builder req =
          HttpRequest.newBuilder(URI.create(url + path))
              .timeout(Duration.ofSeconds(10))
              .header("Content-Type", "application/vnd.schemaregistry.v1+json")
              .header("Accept", "application/vnd.schemaregistry.v1+json, application/json")
              .POST(HttpRequest.BodyPublishers.ofString(body));
      if (authorization != null) {
        req.header("Authorization", authorization);
      }
      HttpResponse<String> resp = http.send(req.build(), HttpResponse.BodyHandlers.ofString());
      if (resp.statusCode() / 100 != 2) {
        throw new AuditchainException.SchemaRegistryException(
            context + ": HTTP " + resp.statusCode() + " " + resp.body(), null);
      }
      JsonNode id = JSON.readTree(resp.body()).get("id");
      if (id == null || !id.canConvertToInt()) {
        throw new AuditchainException.SchemaRegistryException(
            context + ": no id in the answer " + resp.body(), null);
      }
      return id.intValue();
    } catch (IOException e) {
      throw new AuditchainException.SchemaRegistryException(context + ": " + e, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new AuditchainException.SchemaRegistryException(context + ": interrupted", e);
    } catch (IllegalArgumentException e) {
      throw new AuditchainException.SchemaRegistryException(context + ": bad URL (" + e.getMessage() + ")", e);
    }
  }
}
