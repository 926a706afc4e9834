#!/usr/bin/env python3
"""An independent check of chain-v1.json, written from DESIGN.md section 4
alone (no code shared with the Rust implementation): every hash, Merkle
root, anchor message and signature in the file is recomputed and compared.

    pip install blake3 cryptography
    python3 schemas/test-vectors/check_vectors.py [path/to/chain-v1.json]
"""
import json
import struct
import sys
from pathlib import Path

from blake3 import blake3
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)


def H(b: bytes) -> bytes:
    return blake3(b).digest()


def lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def u32(n): return struct.pack(">I", n)
def u64(n): return struct.pack(">Q", n)
def x(s): return bytes.fromhex(s)


def mth(leaves):
    if len(leaves) == 1:
        return H(b"\x00" + leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return H(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def check(v):
    failures = []

    def expect(what, got, want):
        if got != want:
            failures.append(what)

    for role in ("producer", "processor"):
        sk = Ed25519PrivateKey.from_private_bytes(x(v[f"{role}_seed"]))
        pub = sk.public_key().public_bytes_raw()
        expect(f"{role}_public_key", pub.hex(), v[f"{role}_public_key"])
    producer = Ed25519PublicKey.from_public_bytes(x(v["producer_public_key"]))
    processor = Ed25519PublicKey.from_public_bytes(x(v["processor_public_key"]))

    for i, e in enumerate(v["events"]):
        msg = b"auditchain/v1/event\0" + lp(e["tenant_id"].encode()) + lp(x(e["value"]))
        expect(f"events[{i}].event_msg", msg.hex(), e["event_msg"])
        try:
            producer.verify(x(e["signature"]), msg)
        except Exception:
            failures.append(f"events[{i}].signature")

    for i, e in enumerate(v["entries"]):
        digest = H(x(e["value"]))
        expect(f"entries[{i}].event_digest", digest.hex(), e["event_digest"])
        msg = (b"auditchain/v1/entry\0" + lp(e["tenant_id"].encode()) + u64(e["seq"])
               + x(e["prev_hash"]) + digest + lp(e["source_topic"].encode())
               + u32(e["source_partition"]) + u64(e["source_offset"]))
        expect(f"entries[{i}].entry_hash", H(msg).hex(), e["entry_hash"])

    for i, q in enumerate(v["quarantine"]):
        msg = (b"auditchain/v1/quarantine\0" + lp(q["source_topic"].encode())
               + u32(q["source_partition"]) + u64(q["source_offset"])
               + H(x(q["raw_key"])) + H(x(q["raw_value"])) + lp(q["reason_code"].encode()))
        expect(f"quarantine[{i}].quarantine_hash", H(msg).hex(), q["quarantine_hash"])

    for i, m in enumerate(v["merkle"]):
        expect(f"merkle[{i}].root", mth([x(l) for l in m["leaves"]]).hex(), m["root"])

    prev = None
    for i, a in enumerate(v["anchors"]):
        heads = b"".join(lp(t["tenant_id"].encode()) + u64(t["seq"]) + x(t["entry_hash"])
                         for t in a["tenant_heads"])
        msg = (b"auditchain/v1/anchor\0" + lp(a["source_topic"].encode())
               + u32(a["source_partition"]) + u64(a["anchor_seq"]) + x(a["prev_anchor_hash"])
               + u64(a["first_offset"]) + u64(a["last_offset"])
               + u64(a["chained_count"]) + u64(a["quarantined_count"])
               + x(a["merkle_root"]) + u32(len(a["tenant_heads"])) + heads
               + u64(a["created_at_us"]) + lp(a["signer_key_id"].encode()))
        expect(f"anchors[{i}].anchor_msg", msg.hex(), a["anchor_msg"])
        expect(f"anchors[{i}].anchor_hash", H(msg).hex(), a["anchor_hash"])
        if prev is not None:
            expect(f"anchors[{i}].prev_anchor_hash", a["prev_anchor_hash"], prev)
        prev = a["anchor_hash"]
        try:
            processor.verify(x(a["signature"]), msg)
        except Exception:
            failures.append(f"anchors[{i}].signature")
    return failures


def main():
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("chain-v1.json")
    v = json.loads(path.read_text(encoding="utf-8"))
    failures = check(v)
    n = sum(len(v[k]) for k in ("events", "entries", "quarantine", "merkle", "anchors"))
    if failures:
        for f in failures:
            print(f"MISMATCH {f}")
        print(f"{n - len(failures)} passed, {len(failures)} failed")
        sys.exit(1)
    print(f"check_vectors: {n} vectors agree with DESIGN.md section 4")


if __name__ == "__main__":
    main()
