"""Unit tests: the shared test vectors (read from the repository, never
copied), encoding, key files and errors. No Kafka needed."""
import json
import os
from pathlib import Path

import pytest

from auditchain_producer import (
    AUDIT_EVENT_AVSC,
    AuditEvent,
    EventSigner,
    InvalidEventError,
    KeyFileError,
    Outcome,
    SigningKey,
    event_msg,
)

REPO = Path(os.environ.get("AUDITCHAIN_REPO", Path(__file__).resolve().parents[3]))
VECTORS = json.loads((REPO / "schemas/test-vectors/chain-v1.json").read_text("utf-8"))


def producer_key() -> SigningKey:
    return SigningKey.from_bytes(bytes.fromhex(VECTORS["producer_seed"]), "vectors")


def test_the_vectors_have_events():
    assert len(VECTORS["events"]) >= 3
    assert any(not e["tenant_id"].isascii() for e in VECTORS["events"])


def test_public_key_matches_the_vectors():
    assert producer_key().public_key_hex() == VECTORS["producer_public_key"]


@pytest.mark.parametrize("i", range(len(VECTORS["events"])))
def test_event_signature_vectors(i):
    v = VECTORS["events"][i]
    value = bytes.fromhex(v["value"])
    # The value decodes to a typed event that encodes back to the same bytes.
    schema_id, event = AuditEvent.decode(value)
    assert event.tenant_id == v["tenant_id"]
    assert event.encode(schema_id) == value
    assert event_msg(v["tenant_id"], value).hex() == v["event_msg"]
    # What the SDK publishes for that event: key, value, headers.
    key, framed, headers = EventSigner(producer_key(), schema_id).record(event)
    assert key == v["tenant_id"].encode("utf-8")
    assert framed == value
    assert dict(headers) == {"auditchain-key-id": b"vectors", "auditchain-sig": bytes.fromhex(v["signature"])}


def test_packaged_schema_is_the_contract():
    assert json.loads(AUDIT_EVENT_AVSC) == json.loads((REPO / "schemas/AuditEvent.avsc").read_text("utf-8"))


def test_defaults_and_round_trip():
    e = AuditEvent(tenant_id="zürich-ä", actor="a", action="user.login", resource="r",
                   outcome=Outcome.DENIED, correlation_id="c", attributes={"k": "v"}, payload=b"\x00\x01")
    assert e.event_id and e.occurred_at > 1_700_000_000_000_000
    other = AuditEvent(tenant_id="t", actor="a", action="x", resource="r")
    assert other.event_id != e.event_id
    sid, back = AuditEvent.decode(e.encode(7))
    assert sid == 7 and back == e


def test_invalid_events_are_named():
    with pytest.raises(InvalidEventError, match="event_id"):
        AuditEvent(tenant_id="t", actor="a", action="x", resource="r", event_id="").encode(1)
    with pytest.raises(InvalidEventError, match="action"):
        AuditEvent(tenant_id="t", actor="a", action="", resource="r").encode(1)
    with pytest.raises(InvalidEventError, match="tenant_id"):
        AuditEvent(tenant_id="", actor="a", action="x", resource="r").encode(1)
    with pytest.raises(InvalidEventError, match="outcome"):
        AuditEvent(tenant_id="t", actor="a", action="x", resource="r", outcome="MAYBE").encode(1)
    import datetime
    with pytest.raises(InvalidEventError, match="naive"):
        AuditEvent(tenant_id="t", actor="a", action="x", resource="r", occurred_at=datetime.datetime.now()).encode(1)


def test_key_file_written_by_keygen_loads(tmp_path):
    f = tmp_path / "p.secret"
    f.write_text(VECTORS["producer_seed"] + "\n")
    f.chmod(0o600)
    key = SigningKey.from_file(f, "p")
    assert key.public_key_hex() == VECTORS["producer_public_key"]
    assert VECTORS["producer_seed"] not in repr(key) and VECTORS["producer_seed"] not in str(key)


def test_key_file_others_can_read_is_refused(tmp_path):
    f = tmp_path / "p.secret"
    f.write_text(VECTORS["producer_seed"])
    f.chmod(0o640)
    with pytest.raises(KeyFileError, match="group or others.*640"):
        SigningKey.from_file(f, "p")


def test_bad_key_files_are_named(tmp_path):
    with pytest.raises(KeyFileError, match="missing.secret"):
        SigningKey.from_file(tmp_path / "missing.secret", "p")
    f = tmp_path / "short.secret"
    f.write_text("abcd")
    f.chmod(0o600)
    with pytest.raises(KeyFileError, match="32 bytes"):
        SigningKey.from_file(f, "p")
    with pytest.raises(KeyFileError):
        SigningKey.from_bytes(b"short", "p")
