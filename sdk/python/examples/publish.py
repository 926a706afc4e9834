"""The publisher the integration test (sdk/integration/run.py) drives, and
a fuller example than the README's. Configured from the environment:

  KAFKA_BOOTSTRAP_SERVERS, AUDITCHAIN_TOPIC, AUDITCHAIN_KEY_FILE, AUDITCHAIN_KEY_ID,
  SCHEMA_REGISTRY_URL (or AUDITCHAIN_SCHEMA_ID without a registry),
  AUDITCHAIN_TENANTS (comma-separated), AUDITCHAIN_EVENTS (total, round-robin over the tenants),
  AUDITCHAIN_TRANSACTIONAL_ID (optional: publish them all in one transaction).

Prints one JSON line: what it published and the rate (encoding and signing included).
"""
import json
import os
import sys
import time

from auditchain_producer import AuditEvent, AuditProducer, AuditchainError, Outcome, SigningKey


def main() -> int:
    env = os.environ
    tenants = env["AUDITCHAIN_TENANTS"].split(",")
    events = int(env["AUDITCHAIN_EVENTS"])
    key = SigningKey.from_file(env["AUDITCHAIN_KEY_FILE"], env["AUDITCHAIN_KEY_ID"])
    producer = AuditProducer(
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        topic=env["AUDITCHAIN_TOPIC"],
        key=key,
        schema_registry_url=env.get("SCHEMA_REGISTRY_URL") or None,
        schema_id=int(env["AUDITCHAIN_SCHEMA_ID"]) if env.get("AUDITCHAIN_SCHEMA_ID") else None,
        transactional_id=env.get("AUDITCHAIN_TRANSACTIONAL_ID") or None,
    )

    def publish_all():
        for i in range(events):
            producer.publish(AuditEvent(
                tenant_id=tenants[i % len(tenants)],
                actor=f"user-{i % 97}",
                action="document.read",
                resource=f"doc/{i}",
                outcome=Outcome.SUCCESS if i % 10 else Outcome.DENIED,
                attributes={"sdk": "python"},
            ))

    started = time.perf_counter()
    if env.get("AUDITCHAIN_TRANSACTIONAL_ID"):
        with producer.transaction():
            publish_all()
    else:
        publish_all()
    producer.flush()
    seconds = time.perf_counter() - started
    print(json.dumps({"sdk": "python", "published": events, "seconds": round(seconds, 3),
                      "events_per_second": round(events / seconds)}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AuditchainError as e:
        print(f"publish: {e}", file=sys.stderr)
        sys.exit(1)
