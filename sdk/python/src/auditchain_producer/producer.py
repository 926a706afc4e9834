"""Publishing signed AuditEvents with an idempotent Kafka producer."""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError as _SRError

from .errors import AuditchainError, PublishError, SchemaRegistryError
from .event import AUDIT_EVENT_AVSC, AuditEvent
from .signing import KEY_ID_HEADER, SIG_HEADER, SigningKey

#: Settings exactly-once publishing depends on; a caller's ``kafka_config`` cannot change them.
FORCED = {"enable.idempotence": True, "acks": "all"}
#: Defaults a caller may override. murmur2 is the Java client's partitioner:
#: every SDK sends a tenant to the same partition, so it gets one chain.
DEFAULTS = {"partitioner": "murmur2_random", "linger.ms": 5}

Headers = List[Tuple[str, bytes]]


def schema_id_from_registry(
    url: str,
    subject: str,
    *,
    auto_register: bool = True,
    registry_config: Optional[Mapping[str, Any]] = None,
) -> int:
    """Registers (or, with ``auto_register=False``, looks up) the AuditEvent
    schema under ``subject`` and returns its id."""
    conf = {"url": url, **(registry_config or {})}
    try:
        client = SchemaRegistryClient(conf)
        schema = Schema(AUDIT_EVENT_AVSC, "AVRO")
        if auto_register:
            return int(client.register_schema(subject, schema))
        return int(client.lookup_schema(subject, schema).schema_id)
    except _SRError as e:
        what = "registering" if auto_register else "looking up"
        raise SchemaRegistryError(f"{what} the AuditEvent schema under subject {subject!r} at {url}: {e}") from None
    except Exception as e:  # connection errors, bad URLs
        raise SchemaRegistryError(f"schema registry at {url}: {e}") from None


class EventSigner:
    """Encodes and signs events without touching Kafka: for a caller's own
    producer (an outbox relay inside its own transaction, say)."""

    def __init__(self, key: SigningKey, schema_id: int):
        self.key = key
        self.schema_id = schema_id

    def record(self, event: AuditEvent) -> Tuple[bytes, bytes, Headers]:
        """(record key, framed value, headers) for ``event``."""
        value = event.encode(self.schema_id)
        sig = self.key.sign(event.tenant_id, value)
        headers = [(KEY_ID_HEADER, self.key.key_id.encode("utf-8")), (SIG_HEADER, sig)]
        return event.tenant_id.encode("utf-8"), value, headers


class AuditProducer:
    """Signs and publishes AuditEvents to ``topic``.

    The schema id comes from the registry (``<topic>-value``) when
    ``schema_registry_url`` is given, else from ``schema_id``. Pass
    ``transactional_id`` to publish inside transactions (:meth:`transaction`),
    or ``producer`` to publish through a caller's own (idempotent)
    confluent-kafka Producer, inside the caller's own transactions.
    """

    def __init__(
        self,
        *,
        topic: str,
        key: SigningKey,
        bootstrap_servers: Optional[str] = None,
        schema_registry_url: Optional[str] = None,
        schema_id: Optional[int] = None,
        auto_register: bool = True,
        registry_config: Optional[Mapping[str, Any]] = None,
        kafka_config: Optional[Mapping[str, Any]] = None,
        transactional_id: Optional[str] = None,
        producer: Optional[Producer] = None,
    ):
        if not topic:
            raise AuditchainError("topic must not be empty")
        if schema_registry_url:
            schema_id = schema_id_from_registry(
                schema_registry_url, f"{topic}-value", auto_register=auto_register, registry_config=registry_config
            )
        elif schema_id is None:
            raise AuditchainError("give schema_registry_url, or schema_id when there is no registry")
        self.topic = topic
        self.signer = EventSigner(key, int(schema_id))
        self._failures: List[str] = []
        self._lock = threading.Lock()
        self._transactional = False
        if producer is not None:
            if bootstrap_servers or kafka_config or transactional_id:
                raise AuditchainError("with producer=, configure that producer yourself (no bootstrap_servers, kafka_config or transactional_id)")
            self._producer, self._owned = producer, False
            return
        if not bootstrap_servers:
            raise AuditchainError("bootstrap_servers must be given (or producer=)")
        conf: Dict[str, Any] = {**DEFAULTS, **(kafka_config or {}), **FORCED, "bootstrap.servers": bootstrap_servers}
        if transactional_id:
            conf["transactional.id"] = transactional_id
        try:
            self._producer, self._owned = Producer(conf), True
            if transactional_id:
                self._producer.init_transactions(30)
                self._transactional = True
        except KafkaException as e:
            raise PublishError(f"creating the Kafka producer: {e.args[0]}") from None

    @property
    def schema_id(self) -> int:
        return self.signer.schema_id

    def _on_delivery(self, user: Optional[Callable[[Optional[KafkaError], Any], None]]):
        def cb(err, msg):
            if err is not None:
                with self._lock:
                    self._failures.append(f"{msg.topic()}: {err.str()}")
            if user is not None:
                user(err, msg)

        return cb

    def publish(self, event: AuditEvent, on_delivery: Optional[Callable] = None) -> None:
        """Encodes, signs and enqueues ``event``; :meth:`flush` waits for it."""
        key, value, headers = self.signer.record(event)
        while True:
            try:
                self._producer.produce(
                    self.topic, value=value, key=key, headers=headers, on_delivery=self._on_delivery(on_delivery)
                )
                break
            except BufferError:
                self._producer.poll(0.1)  # the local queue is full: serve deliveries, then retry
            except KafkaException as e:
                raise PublishError(f"publishing to {self.topic}: {e.args[0]}") from None
        self._producer.poll(0)

    def flush(self, timeout: float = 30.0) -> None:
        """Waits until every event is delivered; raises :class:`PublishError`
        naming what failed (and forgets the failures)."""
        left = self._producer.flush(timeout)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise PublishError(f"{len(failures)} events were not delivered; first: {failures[0]}")
        if left:
            raise PublishError(f"{left} events still undelivered after {timeout} s")

    @contextlib.contextmanager
    def transaction(self, timeout: float = 30.0) -> Iterator["AuditProducer"]:
        """``with producer.transaction(): producer.publish(...)`` — commits on
        success, aborts if the block raises."""
        if not self._transactional:
            raise AuditchainError("transaction() needs transactional_id")
        try:
            self._producer.begin_transaction()
        except KafkaException as e:
            raise PublishError(f"beginning a transaction: {e.args[0]}") from None
        try:
            yield self
        except BaseException:
            with contextlib.suppress(KafkaException):
                self._producer.abort_transaction(timeout)
            raise
        try:
            self._producer.commit_transaction(timeout)
        except KafkaException as e:
            with contextlib.suppress(KafkaException):
                self._producer.abort_transaction(timeout)
            raise PublishError(f"committing the transaction: {e.args[0]}") from None
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise PublishError(f"{len(failures)} events were not delivered; first: {failures[0]}")

    def close(self, timeout: float = 30.0) -> None:
        """Flushes (owned producers only)."""
        if self._owned:
            self.flush(timeout)

    def __enter__(self) -> "AuditProducer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
