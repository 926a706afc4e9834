package io.auditchain.producer;

/** Everything this library throws on purpose; the subclasses say what is wrong. */
public class AuditchainException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public AuditchainException(String message) {
    super(message);
  }

  public AuditchainException(String message, Throwable cause) {
    super(message, cause);
  }

  /** A secret key (file or bytes) that cannot be used. */
  public static final class KeyException extends AuditchainException {
    private static final long serialVersionUID = 1L;

    public KeyException(String message) {
      super(message);
    }
  }

  /** An event the processor would quarantine (empty event_id, ...). */
  public static final class InvalidEventException extends AuditchainException {
    private static final long serialVersionUID = 1L;

    public InvalidEventException(String message) {
      super(message);
    }
  }

  /** Registering or looking up the AuditEvent schema failed. */
  public static final class SchemaRegistryException extends AuditchainException {
    private static final long serialVersionUID = 1L;

    public SchemaRegistryException(String message, Throwable cause) {
      super(message, cause);
    }
  }
}
