"""Producer signatures (DESIGN.md §4.1) and secret keys."""
from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import Union

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

from .errors import KeyFileError

KEY_ID_HEADER = "auditchain-key-id"
SIG_HEADER = "auditchain-sig"
_EVENT_DOMAIN = b"auditchain/v1/event\0"


def _lp(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def event_msg(tenant_id: str, value: bytes) -> bytes:
    """``"auditchain/v1/event\\0" || lp(tenant_id) || lp(value)``."""
    return _EVENT_DOMAIN + _lp(tenant_id.encode("utf-8")) + _lp(bytes(value))


class SigningKey:
    """An Ed25519 producer key and its id. The secret is never printed."""

    __slots__ = ("key_id", "_key")

    def __init__(self, seed: bytes, key_id: str):
        if not key_id:
            raise KeyFileError("key_id must not be empty")
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != 32:
            raise KeyFileError("an Ed25519 secret seed is 32 bytes")
        self.key_id = key_id
        self._key = Ed25519PrivateKey.from_private_bytes(bytes(seed))

    @classmethod
    def from_bytes(cls, seed: bytes, key_id: str) -> "SigningKey":
        """A key from the caller's 32-byte seed (a secret manager, say)."""
        return cls(seed, key_id)

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike], key_id: str) -> "SigningKey":
        """Reads the hex seed ``auditchain keygen`` writes, refusing a file
        that group or others can read."""
        p = Path(path)
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
        except OSError as e:
            raise KeyFileError(f"{p}: {e.strerror}") from None
        if mode & 0o077:
            raise KeyFileError(
                f"{p}: is accessible by group or others (mode {mode:03o}); "
                f"a secret key must be private to its owner: chmod 600 {p}"
            )
        try:
            text = p.read_text("ascii").strip()
            seed = bytes.fromhex(text)
        except (OSError, ValueError, UnicodeDecodeError):
            raise KeyFileError(f"{p}: not an Ed25519 secret seed (expected 64 hex characters)") from None
        if len(seed) != 32:
            raise KeyFileError(f"{p}: not an Ed25519 secret seed: expected 32 bytes (64 hex characters), found {len(seed)}")
        return cls(seed, key_id)

    def public_key_hex(self) -> str:
        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return raw.hex()

    def sign(self, tenant_id: str, value: bytes) -> bytes:
        """The 64-byte ``auditchain-sig`` of ``value`` for ``tenant_id``."""
        return self._key.sign(event_msg(tenant_id, value))

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r}, public_key={self.public_key_hex()})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a SigningKey is not picklable (it holds a secret)")
