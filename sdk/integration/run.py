#!/usr/bin/env python3
"""The integration test every SDK shares: it drives that SDK's example
publisher against the local stack, runs the processor until the group has
no lag, and checks the outcome with `auditchain verify --json` and
`auditchain quarantine replay --dry-run` (which counts quarantined records
by reason).

    sdk/integration/run.py --sdk NAME [--events N] -- PUBLISHER-COMMAND...

The publisher is configured from the environment (see any SDK's
examples/publish* file) and prints one JSON line with its publish rate.
Scenario, on topics of its own:
  1. N events signed with a trusted key, round-robin over three tenants, one
     of them non-ASCII ("zürich-ä"), plain idempotent publishing;
  2. 30 more for the same tenants inside one Kafka transaction;
  3. one event signed with a key the processor does not know.
Then every good event must be chained (per-tenant chain lengths add up),
the bad one quarantined UNKNOWN_KEY and never chained, verify OK with
completeness against the input.

Needs KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL (scripts/stack env) and
the processor binary (AUDITCHAIN_BIN, default target/debug/auditchain).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TENANTS = ["acme", "globex", "zürich-ä"]
TXN_EVENTS = 30


def fail(msg: str) -> None:
    print(f"sdk-integration: FAIL: {msg}", file=sys.stderr)
    print("0 passed, 1 failed")
    sys.exit(1)


def run(cmd, **kw) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        fail(f"{' '.join(map(str, cmd))} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def wait_caught_up(bin_, config, proc, address_file, limit=180.0) -> None:
    """Waits until the processor answers /readyz, then until its group has no
    lag (`auditchain status --wait-caught-up`). A status call that fails
    while the group is still forming (coordinator not ready) is retried."""
    import urllib.request
    deadline = time.monotonic() + limit
    last = ""

    def check_alive():
        if proc.poll() is not None:
            fail(f"the processor exited {proc.returncode} before catching up")
        if time.monotonic() > deadline:
            fail(f"the processor did not catch up within {limit} s {last}")

    while True:
        check_alive()
        address = address_file.read_text().strip() if address_file.exists() else ""
        if address:
            try:
                with urllib.request.urlopen(f"http://{address}/readyz", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
        time.sleep(0.2)  # polling interval, not a synchronisation
    while True:
        check_alive()
        left = max(1, int(deadline - time.monotonic()))
        p = subprocess.run([bin_, "status", "--config", str(config), "--wait-caught-up", str(left)],
                           capture_output=True, text=True)
        if p.returncode == 0:
            return
        last = p.stderr.strip()
        if "still lags" in last:
            fail(f"the processor did not catch up: {last}")
        time.sleep(0.5)  # polling interval while the group forms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sdk", required=True)
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("publisher", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    publisher = args.publisher[1:] if args.publisher[:1] == ["--"] else args.publisher
    if not publisher:
        ap.error("give the publisher command after --")
    bin_ = os.environ.get("AUDITCHAIN_BIN", str(ROOT / "target/debug/auditchain"))
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    registry = os.environ["SCHEMA_REGISTRY_URL"]

    work = Path(tempfile.mkdtemp(prefix=f"sdk-it-{args.sdk}-", dir=os.environ.get("TMPDIR")))
    keys = work / "keys"
    producer_id, intruder_id = f"{args.sdk}-producer", f"{args.sdk}-intruder"
    for key_id in ("processor-1", producer_id, intruder_id):
        run([bin_, "keygen", "--dir", str(keys), "--key-id", key_id])
    # The intruder's key is valid Ed25519 but not in the key set.
    (keys / "producers.toml").write_text(
        f'[[keys]]\nkey_id = "{producer_id}"\npublic_key = "{(keys / f"{producer_id}.pub").read_text().strip()}"\n'
        'tenants = ["*"]\n'
    )
    prefix = f"sdk-{args.sdk}-{int(time.time() * 1000)}"
    config = work / "auditchain.toml"
    config.write_text(
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ngroup_id = "{prefix}"\ninstance_id = "{prefix}-1"\n'
        "session_timeout_ms = 6000\n"
        f'[topics]\ninput = "{prefix}.events"\nchained = "{prefix}.chained"\nanchors = "{prefix}.anchors"\n'
        f'quarantine = "{prefix}.quarantine"\nstate = "{prefix}.state"\n'
        f'[schema_registry]\nurl = "{registry}"\n'
        f'[signing]\nkey_file = "{keys / "processor-1.secret"}"\nkey_id = "processor-1"\n'
        f'[producer_keys]\nfile = "{keys / "producers.toml"}"\n'
        "[processing]\ncommit_interval_ms = 300\n"
        '[http]\nbind = "127.0.0.1:0"\n'
    )
    run([bin_, "topics", "--config", str(config), "--create-input", "3"])

    def publish(key_id: str, events: int, tenants, txn: bool) -> dict:
        env = dict(os.environ)
        env.update({
            "AUDITCHAIN_TOPIC": f"{prefix}.events",
            "AUDITCHAIN_KEY_FILE": str(keys / f"{key_id}.secret"),
            "AUDITCHAIN_KEY_ID": key_id,
            "AUDITCHAIN_TENANTS": ",".join(tenants),
            "AUDITCHAIN_EVENTS": str(events),
        })
        env.pop("AUDITCHAIN_TRANSACTIONAL_ID", None)
        if txn:
            env["AUDITCHAIN_TRANSACTIONAL_ID"] = f"{prefix}-txn"
        out = run(publisher, env=env)
        lines = [l for l in out.splitlines() if l.startswith("{")]
        if not lines:
            fail(f"the publisher printed no JSON result line:\n{out}")
        result = json.loads(lines[-1])
        if result.get("published") != events:
            fail(f"the publisher reports {result.get('published')} events published, expected {events}")
        return result

    plain = publish(producer_id, args.events, TENANTS, False)
    txn = publish(producer_id, TXN_EVENTS, TENANTS, True)
    publish(intruder_id, 1, ["acme"], False)
    print(f"sdk-integration[{args.sdk}]: published {args.events} events at {plain['events_per_second']} events/s "
          f"({plain['seconds']} s), {TXN_EVENTS} in a transaction, 1 with an unknown key", file=sys.stderr)

    log = open(work / "processor.log", "w")
    address_file = work / "http-address"
    proc = subprocess.Popen([bin_, "run", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "AUDITCHAIN_HTTP_ADDRESS_FILE": str(address_file)})
    try:
        wait_caught_up(bin_, config, proc, address_file)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            fail(f"the processor did not stop within 60 s of SIGTERM; log {work / 'processor.log'}")
    if code != 0:
        fail(f"the processor exited {code}; log {work / 'processor.log'}")

    report = json.loads(run([bin_, "verify", "--config", str(config), "--processor-key",
                             f"processor-1={keys / 'processor-1.pub'}", "--json"]))
    good = args.events + TXN_EVENTS
    if not report["ok"]:
        fail(f"verify found problems: {report['problems'][:5]}")
    if report["chained"] != good:
        fail(f"verify: {report['chained']} chained, expected {good}")
    if report["quarantined"] != 1:
        fail(f"verify: {report['quarantined']} quarantined, expected 1")
    if report["input_records"] != good + 1:
        fail(f"verify compared {report['input_records']} input records, expected {good + 1} (completeness)")
    per_tenant = {}
    for c in report["chains"]:
        per_tenant[c["tenant_id"]] = per_tenant.get(c["tenant_id"], 0) + c["length"]
    want = {t: sum(1 for i in range(args.events) if i % len(TENANTS) == n)
               + sum(1 for i in range(TXN_EVENTS) if i % len(TENANTS) == n) for n, t in enumerate(TENANTS)}
    if per_tenant != want:
        fail(f"chain lengths per tenant {per_tenant}, expected {want}")
    if len(report["chains"]) != len(TENANTS):
        fail(f"expected one chain per tenant (every SDK partitions with murmur2), got {report['chains']}")
    replay = run([bin_, "quarantine", "replay", "--config", str(config), "--dry-run"])
    if "quarantine replay: 1 matching records" not in replay or "UNKNOWN_KEY: 1" not in replay:
        fail(f"expected exactly one record quarantined UNKNOWN_KEY, got:\n{replay}")
    print(f"sdk-integration[{args.sdk}]: verify OK: {good} chained in {len(report['chains'])} chains "
          f"({', '.join(f'{t}={n}' for t, n in per_tenant.items())}), 1 quarantined UNKNOWN_KEY, "
          f"{report['input_records']} input records compared", file=sys.stderr)
    print(json.dumps({"sdk": args.sdk, "events_per_second": plain["events_per_second"], "events": args.events}))
    if not args.keep:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
