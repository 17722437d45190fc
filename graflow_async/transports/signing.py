"""Signing Redis entries with a shared secret (HMAC-SHA256).

Every entry a transport with a secret writes carries ``s``, the HMAC of its stream's
name and its payload under the first secret; a reader checks it against every secret
it knows before anything of the payload is decoded. Knowing several lets a fleet
rotate: accept the new secret everywhere, then sign with it, then drop the old one.

Secrets come from ``RedisStreamsTransport(secret=...)`` (one, or a list: the first
signs), a worker's ``--secret-file`` (one per line: the first signs), or the
environment: ``GRAFLOW_SECRET`` signs and ``GRAFLOW_SECRET_PREVIOUS`` (one or more,
one per line) is accepted too.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from pathlib import Path

SIGNATURE = b"s"  # the entry field holding the signature
ENV, ENV_PREVIOUS = "GRAFLOW_SECRET", "GRAFLOW_SECRET_PREVIOUS"
MIN_LENGTH = 16  # bytes: a shorter secret is a configuration mistake


class Signer:
    """Signs with the first of `secrets`, accepts any of them."""

    __slots__ = ("_keys",)

    def __init__(self, secrets: Sequence[bytes]) -> None:
        if not secrets:
            raise ValueError("a signer needs at least one secret")
        for s in secrets:
            if len(s) < MIN_LENGTH:
                raise ValueError(f"a secret must be at least {MIN_LENGTH} bytes long")
        self._keys = tuple(secrets)

    def sign(self, stream: str, data: bytes) -> bytes:
        return _mac(self._keys[0], stream, data)

    def verify(self, stream: str, data: bytes, signature: object) -> bool:
        if not isinstance(signature, bytes):
            return False
        return any(hmac.compare_digest(_mac(key, stream, data), signature) for key in self._keys)


def _mac(key: bytes, stream: str, data: bytes) -> bytes:
    return hmac.new(key, stream.encode() + b"\n" + data, hashlib.sha256).digest()


def signer_for(secret: str | bytes | Sequence[str | bytes] | None) -> Signer | None:
    """The signer for `secret`, or for the environment when it is None (no secret: None)."""
    if secret is None:
        current = os.environ.get(ENV)
        if not current:
            return None
        previous = [line for line in os.environ.get(ENV_PREVIOUS, "").splitlines() if line.strip()]
        return Signer([_bytes(current), *(_bytes(p) for p in previous)])
    if isinstance(secret, str | bytes):
        return Signer([_bytes(secret)])
    return Signer([_bytes(s) for s in secret])


def read_secret_file(path: str | os.PathLike[str]) -> list[bytes]:
    """The secrets in `path`, one per line (blank lines ignored): the first signs."""
    lines = [line.strip() for line in Path(path).read_bytes().splitlines()]
    secrets = [line for line in lines if line]
    if not secrets:
        raise ValueError(f"{path} holds no secret")
    return secrets


def _bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)
