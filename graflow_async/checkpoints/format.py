"""The checkpoint file format: one msgpack document behind a checked header.

Layout (all integers big-endian)::

    offset  size  field
    0       8     magic b"GFLWCKPT"
    8       2     format version (uint16), currently 1
    10      2     flags (uint16): bit 0 = signed; other bits must be 0
    12      8     payload length in bytes (uint64)
    20      4     checksum: CRC-32 of header + signature + payload
    24      32    signature, only when signed: HMAC-SHA256(key, header + payload)
    24|56   n     payload: the document packed with `graflow_async.wire.codec`

The checksum catches accidental damage anywhere in the file without needing a key
(CRC-32: every burst of up to 32 flipped bits, and all but 1 in 4 billion others; a
cryptographic hash would cost 3-4 times as much per save and guard against nothing
more, since tampering is what the signature is for); the signature, when a key is
given, proves the file was written by a key holder.
Every problem is reported as `CheckpointError` with a message saying what is wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import zlib
from typing import Any

from graflow_async.exceptions import CheckpointError
from graflow_async.wire.codec import packb, unpackb

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "SIGNING_KEY_ENV",
    "decode_checkpoint",
    "encode_checkpoint",
    "signing_key_from_env",
]

MAGIC = b"GFLWCKPT"
FORMAT_VERSION = 1
SIGNING_KEY_ENV = "GRAFLOW_CHECKPOINT_KEY"

_HEADER = struct.Struct(">8sHHQ")
_CHECKSUM_SIZE = 4
_SIGNATURE_SIZE = hashlib.sha256().digest_size
_FLAG_SIGNED = 0x0001
_KNOWN_FLAGS = _FLAG_SIGNED
# Sections whose items are named in serialization errors: section -> how to name an item.
_SECTIONS = {"results": "the result of task {!r}", "channel": "channel key {!r}"}
_PACK_ERRORS = (TypeError, ValueError, OverflowError, RecursionError)


def signing_key_from_env() -> bytes | None:
    """The signing key from ``GRAFLOW_CHECKPOINT_KEY`` (UTF-8 encoded), or None if unset."""
    value = os.environ.get(SIGNING_KEY_ENV)
    return value.encode() if value else None


def encode_checkpoint(doc: dict[str, Any], *, key: bytes | None = None) -> bytes:
    """Serialize checkpoint document `doc`, signed with HMAC-SHA256 when `key` is given.

    Raises `CheckpointError` if `doc` is not a dict or holds a value the codec cannot
    serialize; the message names the task id (``results``), channel key (``channel``) or
    field holding it, and the unsupported type.
    """
    return b"".join(encode_checkpoint_parts(doc, key=key))


def encode_checkpoint_parts(doc: dict[str, Any], *, key: bytes | None = None) -> tuple[bytes, bytes]:
    """`encode_checkpoint` as (everything before the payload, the payload), so a writer
    can write both without first copying a large payload into one buffer."""
    if not isinstance(doc, dict):
        raise CheckpointError(f"a checkpoint document must be a dict, not {type(doc).__name__}")
    _check_key(key)
    try:
        payload = packb(doc)
    except _PACK_ERRORS as exc:
        raise _find_unserializable(doc, exc) from exc
    flags = _FLAG_SIGNED if key is not None else 0
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, flags, len(payload))
    signature = _sign(key, header, payload) if key is not None else b""
    checksum = _checksum(header, signature, payload)
    return b"".join((header, checksum, signature)), payload


def decode_checkpoint(data: bytes, *, key: bytes | None = None, source: str | None = None) -> dict[str, Any]:
    """Verify and deserialize checkpoint bytes made by `encode_checkpoint`.

    With `key`, the file must be signed with that key; without, it must be unsigned.
    `source` (a location) is only used in error messages. Raises `CheckpointError` if
    the data is empty, truncated, foreign, of an unsupported version, corrupted, signed
    or unsigned against expectations, or signed with another key.
    """
    what = f"checkpoint {source!r}" if source else "checkpoint"
    _check_key(key)
    view = memoryview(data)
    flags, length = _read_header(view, what)
    signed = bool(flags & _FLAG_SIGNED)
    body_start = _HEADER.size + _CHECKSUM_SIZE + (_SIGNATURE_SIZE if signed else 0)
    _check_length(len(view), body_start + length, what)
    header = view[: _HEADER.size]
    checksum = view[_HEADER.size : _HEADER.size + _CHECKSUM_SIZE]
    signature = view[_HEADER.size + _CHECKSUM_SIZE : body_start]
    payload = view[body_start:]
    if not hmac.compare_digest(_checksum(header, signature, payload), checksum):
        raise CheckpointError(f"{what} is corrupted: checksum mismatch")
    if flags & ~_KNOWN_FLAGS:
        raise CheckpointError(f"{what} uses unsupported flags 0x{flags:04x}")
    _verify_signature(what, key, signed, header, signature, payload)
    return _unpack_document(payload, what)


def _check_key(key: bytes | None) -> None:
    if key is not None and (not isinstance(key, bytes) or not key):
        raise CheckpointError("a checkpoint signing key must be non-empty bytes")


def _sign(key: bytes, header: bytes | memoryview, payload: bytes | memoryview) -> bytes:
    mac = hmac.new(key, header, hashlib.sha256)
    mac.update(payload)
    return mac.digest()


def _checksum(*parts: bytes | memoryview) -> bytes:
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc.to_bytes(_CHECKSUM_SIZE, "big")


def _read_header(view: memoryview, what: str) -> tuple[int, int]:
    """Check magic, size and version; return (flags, payload length)."""
    size = len(view)
    if size == 0:
        raise CheckpointError(f"{what} is empty (0 bytes): not a graflow-async checkpoint")
    head = bytes(view[: len(MAGIC)])
    if not MAGIC.startswith(head):  # a strict prefix of MAGIC is a truncated checkpoint
        raise CheckpointError(f"{what} is not a graflow-async checkpoint{_guess_kind(head)}")
    if size < _HEADER.size + _CHECKSUM_SIZE:
        raise CheckpointError(
            f"{what} is truncated: {size} bytes, shorter than the {_HEADER.size + _CHECKSUM_SIZE}-byte header"
        )
    _, version, flags, length = _HEADER.unpack_from(view)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{what} has unsupported format version {version}; this graflow-async reads "
            f"version {FORMAT_VERSION} (was it written by a newer release?)"
        )
    return flags, length


def _guess_kind(head: bytes) -> str:
    if head[:1] == b"\x80":
        return " (it looks like a Python pickle; pickles are never loaded)"
    if head[:1] in (b"{", b"["):
        return " (it looks like JSON)"
    return f" (bad magic bytes {head!r}, expected {MAGIC!r})"


def _check_length(actual: int, expected: int, what: str) -> None:
    if actual < expected:
        raise CheckpointError(
            f"{what} is truncated (or its header is damaged): the header announces "
            f"{expected} bytes, the data has {actual}"
        )
    if actual > expected:
        raise CheckpointError(f"{what} is corrupted: {actual - expected} unexpected bytes after the payload")


def _verify_signature(
    what: str,
    key: bytes | None,
    signed: bool,
    header: memoryview,
    signature: memoryview,
    payload: memoryview,
) -> None:
    if signed and key is None:
        raise CheckpointError(
            f"{what} is signed but no signing key was given: set {SIGNING_KEY_ENV} or pass the store's signing_key"
        )
    if not signed and key is not None:
        raise CheckpointError(
            f"{what} is not signed, but a signing key is configured: refusing to load an unsigned checkpoint"
        )
    if key is not None and not hmac.compare_digest(_sign(key, header, payload), signature):
        raise CheckpointError(f"{what}: signature does not verify (wrong signing key, or the file was altered)")


def _unpack_document(payload: memoryview, what: str) -> dict[str, Any]:
    try:
        doc = unpackb(payload)
    except Exception as exc:  # msgpack raises many types; the checksum passed, so say so
        raise CheckpointError(
            f"{what} is corrupted: its checksum matches but its payload cannot be decoded ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(doc, dict):
        raise CheckpointError(f"{what} is corrupted: its payload is a {type(doc).__name__}, not a document")
    return doc


def _find_unserializable(doc: dict[str, Any], exc: BaseException) -> CheckpointError:
    """Name the item that made packing `doc` fail; only called on failure."""
    for section, label in _SECTIONS.items():
        items = doc.get(section)
        if isinstance(items, dict):
            for name, value in items.items():
                problem = _pack_problem({name: value})
                if problem is not None:
                    return CheckpointError(f"cannot serialize {label.format(name)}: {problem}")
    for field, value in doc.items():
        if field in _SECTIONS and isinstance(value, dict):
            continue
        problem = _pack_problem({field: value})
        if problem is not None:
            return CheckpointError(f"cannot serialize checkpoint field {field!r}: {problem}")
    return CheckpointError(f"cannot serialize the checkpoint: {exc}")


def _pack_problem(value: Any) -> str | None:
    try:
        packb(value)
    except _PACK_ERRORS as exc:
        return str(exc) or type(exc).__name__
    return None
