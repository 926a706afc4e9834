package io.auditchain.producer;

/** {@code io.auditchain.v1.Outcome}, in the schema's symbol order. */
public enum Outcome {
  SUCCESS,
  FAILURE,
  DENIED,
  ERROR
}
