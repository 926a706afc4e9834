"""Sign and publish auditchain ``AuditEvent``s to Kafka (DESIGN.md §1.1, §4.1)."""
from .errors import AuditchainError, InvalidEventError, KeyFileError, PublishError, SchemaRegistryError
from .event import AUDIT_EVENT_AVSC, AuditEvent, Outcome
from .producer import AuditProducer, EventSigner, schema_id_from_registry
from .signing import KEY_ID_HEADER, SIG_HEADER, SigningKey, event_msg

__all__ = [
    "AUDIT_EVENT_AVSC",
    "AuditEvent",
    "AuditProducer",
    "AuditchainError",
    "EventSigner",
    "InvalidEventError",
    "KEY_ID_HEADER",
    "KeyFileError",
    "Outcome",
    "PublishError",
    "SIG_HEADER",
    "SchemaRegistryError",
    "SigningKey",
    "event_msg",
    "schema_id_from_registry",
]
