"""What a Redis failure means for the one who sent the command.

Every failure of the connection layer is one of three things:

- `Unavailable`: the server cannot answer now but will (a lost connection, a timeout,
  or an error reply Redis gives while it loads its data, fails over or reshards:
  ``LOADING``, ``READONLY``, ``MASTERDOWN``, ``TRYAGAIN``, ``CLUSTERDOWN``, ``BUSY``, too
  many clients). The command did not take effect; the layer waits it out with backoff and
  sends it again. It never leaves the layer, except as "the transport is closed".
- `Refused`: Redis answered and said no (``OOM``, ``NOPERM``, ``WRONGTYPE``, ``NOGROUP``,
  ``ERR``, ...). Sending again would get the same answer, so it goes to the sender,
  a `TransportError` naming the command, the server and Redis's own words.
- `MalformedReply`: the bytes were not a Redis reply (not RESP, a length past any
  bound, a shape the command never answers with). The connection is dropped, never
  read again; the layer tries once more on a fresh one, then gives up with this error.

Error replies are told apart by their first word, as redis-py tells them apart.
"""

from __future__ import annotations

from graflow_async.exceptions import TransportError

#: error replies the server gives while it cannot serve for a while: waited out
RETRYABLE_CODES = frozenset({"LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY", "MAXCLIENTS"})


class ReplyError(Exception):
    """An error reply as the RESP parser hands it over (its text, code first)."""


class Unavailable(Exception):
    """The server cannot answer now (see the module's docstring); internal to the layer."""


class Refused(TransportError):
    """Redis refused `command` with the error reply `code` (its first word)."""

    def __init__(self, message: str, *, code: str, command: str) -> None:
        super().__init__(message)
        self.code = code
        self.command = command


class GroupsLost(Refused):
    """Redis answered NOGROUP: a stream or its consumer group is gone (a restart that lost the data)."""


class MalformedReply(TransportError):
    """What came back is not a Redis reply this layer will read."""


def error_code(text: str) -> str:
    """The code of an error reply's text: its first word ("OOM", "WRONGTYPE", ...), "ERR"
    when it has none, and "MAXCLIENTS" for the server's "max number of clients" refusal."""
    first = text.split(" ", 1)[0]
    if not first.isupper() or not first.isalpha():
        return "ERR"
    if first == "ERR" and "max number of clients" in text:
        return "MAXCLIENTS"
    return first


def refusal(text: str, command: str, url: str) -> Refused:
    """The exception for error reply `text` to `command`: `Refused`, or `GroupsLost` for NOGROUP."""
    code = error_code(text)
    kind = GroupsLost if code == "NOGROUP" else Refused
    return kind(f"Redis at {url} refused {command}: {_bounded(text)}", code=code, command=command)


def is_retryable(text: str) -> bool:
    return error_code(text) in RETRYABLE_CODES


def _bounded(text: str, most: int = 300) -> str:
    return text if len(text) <= most else text[:most] + "..."
