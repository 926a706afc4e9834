"""Errors raised by the SDK. Every one is an :class:`AuditchainError`."""


class AuditchainError(Exception):
    """Base class of everything this package raises."""


class KeyFileError(AuditchainError):
    """The secret key (file or bytes) cannot be used."""


class InvalidEventError(AuditchainError, ValueError):
    """An AuditEvent the processor would quarantine (empty event_id, ...)."""


class SchemaRegistryError(AuditchainError):
    """Registering or looking up the AuditEvent schema failed."""


class PublishError(AuditchainError):
    """Kafka did not accept one or more events."""
