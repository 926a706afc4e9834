"""The v1 ``AuditEvent`` (DESIGN.md §1.1) and its Confluent-framed Avro encoding."""
from __future__ import annotations

import datetime as _dt
import enum
import io
import json
import struct
import uuid
from dataclasses import dataclass, field
from importlib import resources
from typing import Dict, Optional, Union

import fastavro

from .errors import InvalidEventError

#: The schema text, ``schemas/AuditEvent.avsc`` of the auditchain repository.
AUDIT_EVENT_AVSC: str = resources.files(__package__).joinpath("AuditEvent.avsc").read_text("utf-8")
_SCHEMA = fastavro.parse_schema(json.loads(AUDIT_EVENT_AVSC))
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


class Outcome(str, enum.Enum):
    """``io.auditchain.v1.Outcome``."""

    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    DENIED = "DENIED"
    ERROR = "ERROR"


def _now_micros() -> int:
    return (_dt.datetime.now(_dt.timezone.utc) - _EPOCH) // _dt.timedelta(microseconds=1)


def to_micros(t: Union[int, _dt.datetime]) -> int:
    """Microseconds since the Unix epoch; a naive datetime is refused (ambiguous)."""
    if isinstance(t, bool):
        raise InvalidEventError("occurred_at: expected an int (µs) or an aware datetime, not a bool")
    if isinstance(t, int):
        return t
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            raise InvalidEventError("occurred_at: a naive datetime has no time zone; use an aware one (UTC)")
        return (t - _EPOCH) // _dt.timedelta(microseconds=1)
    raise InvalidEventError(f"occurred_at: expected an int (µs) or an aware datetime, got {type(t).__name__}")


@dataclass
class AuditEvent:
    """One audited action. ``event_id`` defaults to a random UUID and
    ``occurred_at`` (µs since the epoch, or an aware datetime) to now."""

    tenant_id: str
    actor: str
    action: str
    resource: str
    outcome: Outcome = Outcome.SUCCESS
    correlation_id: Optional[str] = None
    attributes: Dict[str, str] = field(default_factory=dict)
    payload: Optional[bytes] = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: Union[int, _dt.datetime] = field(default_factory=_now_micros)

    def validate(self) -> None:
        """Raises :class:`InvalidEventError` for what the processor would quarantine."""
        for name in ("event_id", "tenant_id", "action"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidEventError(f"{name} must be a non-empty string, got {value!r}")
        for name in ("actor", "resource"):
            if not isinstance(getattr(self, name), str):
                raise InvalidEventError(f"{name} must be a string")
        try:
            Outcome(self.outcome)
        except ValueError:
            raise InvalidEventError(f"outcome must be one of {[o.value for o in Outcome]}, got {self.outcome!r}") from None
        to_micros(self.occurred_at)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.attributes.items()):
            raise InvalidEventError("attributes must map strings to strings")
        if self.payload is not None and not isinstance(self.payload, (bytes, bytearray)):
            raise InvalidEventError("payload must be bytes or None")

    def to_avro(self) -> bytes:
        """The Avro binary body (no framing)."""
        self.validate()
        record = {
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "occurred_at": to_micros(self.occurred_at),
            "actor": self.actor,
            "action": self.action,
            "resource": self.resource,
            "outcome": Outcome(self.outcome).value,
            "correlation_id": self.correlation_id,
            "attributes": dict(self.attributes),
            "payload": bytes(self.payload) if self.payload is not None else None,
        }
        out = io.BytesIO()
        fastavro.schemaless_writer(out, _SCHEMA, record)
        return out.getvalue()

    def encode(self, schema_id: int) -> bytes:
        """Confluent wire format: 0x00, the schema id (u32 big-endian), the Avro body."""
        return frame(schema_id, self.to_avro())

    @classmethod
    def decode(cls, value: bytes) -> "tuple[int, AuditEvent]":
        """The inverse of :meth:`encode`: (schema id, event)."""
        if len(value) < 5 or value[0] != 0:
            raise InvalidEventError("not a Confluent-framed value (magic byte 0 and a 4-byte schema id)")
        (schema_id,) = struct.unpack(">I", value[1:5])
        body = io.BytesIO(value[5:])
        rec = fastavro.schemaless_reader(body, _SCHEMA, None)
        if body.read():
            raise InvalidEventError("bytes left over after the Avro body")
        occurred = rec["occurred_at"]
        return schema_id, cls(
            event_id=rec["event_id"],
            tenant_id=rec["tenant_id"],
            occurred_at=to_micros(occurred) if isinstance(occurred, _dt.datetime) else occurred,
            actor=rec["actor"],
            action=rec["action"],
            resource=rec["resource"],
            outcome=Outcome(rec["outcome"]),
            correlation_id=rec["correlation_id"],
            attributes=dict(rec["attributes"]),
            payload=rec["payload"],
        )


def frame(schema_id: int, body: bytes) -> bytes:
    if not 0 <= schema_id <= 0xFFFFFFFF:
        raise InvalidEventError(f"schema id {schema_id} does not fit 4 bytes")
    return b"\x00" + struct.pack(">I", schema_id) + body
