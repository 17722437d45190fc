"""How a message sits in a stream entry: its msgpack envelope under ``m``, signed under
``s`` when a secret is set, and how an entry read back is judged before it is decoded.
"""

from __future__ import annotations

from typing import Any

from graflow_async.transports.signing import SIGNATURE, Signer
from graflow_async.wire.envelope import MalformedMessage, decode, encode
from graflow_async.wire.messages import ContextReply, ContextRequest, TaskMessage, TaskReply

PAYLOAD = b"m"
_REPLIES = (TaskReply, ContextRequest, ContextReply)  # sent only to streams that exist


class Entries:
    """Makes and opens the entries of one transport (its secret, its size limit and the
    defaults it stamps on the tasks it sends)."""

    __slots__ = ("lease_timeout", "max_deliveries", "max_message_bytes", "signer")

    def __init__(
        self, signer: Signer | None, max_message_bytes: int, lease_timeout: float, max_deliveries: int
    ) -> None:
        self.signer = signer
        self.max_message_bytes = max_message_bytes
        self.lease_timeout = lease_timeout
        self.max_deliveries = max_deliveries

    def xadd(self, stream: str, message: Any) -> tuple[Any, ...]:
        """The XADD of `message` to `stream`. A reply never makes its stream: one whose
        reader has gone (and deleted the stream) is dropped rather than left behind.
        `TypeError` when the message cannot travel."""
        return self.xadd_raw(stream, self.stamp(message), isinstance(message, _REPLIES))

    def xadd_raw(self, stream: str, data: bytes, reply: bool, *extra: Any) -> tuple[Any, ...]:
        head: tuple[Any, ...] = ("XADD", stream, "NOMKSTREAM", "*") if reply else ("XADD", stream, "*")
        if self.signer is None:
            return (*head, PAYLOAD, data, *extra)
        return (*head, PAYLOAD, data, SIGNATURE, self.signer.sign(stream, data), *extra)

    def stamp(self, message: Any) -> bytes:
        """`message` encoded, a task stamped with this transport's lease and deliveries
        when it carries none."""
        if isinstance(message, TaskMessage) and message.lease_timeout is None:
            message = message._replace(lease_timeout=self.lease_timeout, max_deliveries=self.max_deliveries)
        data = encode(message)
        if len(data) > self.max_message_bytes:
            raise TypeError(
                f"a {type(message).__name__} of {len(data)} bytes cannot be sent: over "
                f"max_message_bytes={self.max_message_bytes} (keep large data in a store, pass its key)"
            )
        return data

    def forged(self, stream: str, fields: dict[bytes, Any]) -> str | None:
        """Why an entry of `stream` is not to be trusted (a missing or wrong signature), or
        None. Checked before anything of the entry is decoded."""
        if self.signer is None:
            return None
        signature = fields.get(SIGNATURE)
        if signature is None:
            return "missing signature"
        payload = fields.get(PAYLOAD, b"")
        if not isinstance(payload, bytes) or not isinstance(signature, bytes):
            return "wrong signature"
        if not self.signer.verify(stream, payload, signature):
            return "wrong signature"
        return None

    def opened(self, stream: str, fields: dict[bytes, Any]) -> Any:
        """The message an entry of `stream` holds, once it is shown trustworthy: signed (with
        a secret), within the size limit, and well formed. `MalformedMessage` otherwise,
        nothing decoded before."""
        forged = self.forged(stream, fields)
        if forged is not None:
            raise MalformedMessage(forged)
        raw = fields.get(PAYLOAD, b"")
        if not isinstance(raw, bytes) or len(raw) > self.max_message_bytes:
            raise MalformedMessage(
                f"an entry of {len(raw) if isinstance(raw, bytes) else '?'} bytes, over "
                f"max_message_bytes={self.max_message_bytes}"
            )
        return decode(raw)

    def lease_of(self, fields: dict[bytes, Any]) -> float:
        """The lease a trusted entry's task carries, else this transport's."""
        raw = fields.get(PAYLOAD)
        if not isinstance(raw, bytes) or len(raw) > self.max_message_bytes:
            return self.lease_timeout
        try:
            message = decode(raw)
        except MalformedMessage:
            return self.lease_timeout
        lease = message.lease_timeout if isinstance(message, TaskMessage) else None
        return float(lease) if lease else self.lease_timeout


def safe_encode(message: Any) -> bytes:
    """`message` as bytes for a dead letter, whatever it is."""
    try:
        return encode(message)
    except Exception:
        try:
            return repr(message).encode(errors="replace")
        except Exception:
            return f"<{type(message).__name__}>".encode()
