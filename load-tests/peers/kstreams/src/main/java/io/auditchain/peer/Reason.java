package io.auditchain.peer;

/** Quarantine reason codes (DESIGN.md section 5), in check order, as the Avro enum lists them. */
enum Reason {
  MISSING_KEY,
  OVERSIZED,
  DECODE_FAILED,
  SCHEMA_UNKNOWN,
  TENANT_MISMATCH,
  INVALID_FIELD,
  MISSING_SIGNATURE,
  UNKNOWN_KEY,
  KEY_NOT_ALLOWED,
  SIGNATURE_INVALID
}
