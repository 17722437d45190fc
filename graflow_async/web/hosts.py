"""Which names the app answers to: the guard against DNS rebinding and cross-site requests.

A page of ``http://attacker.example`` whose name the attacker points at 127.0.0.1 (DNS
rebinding) reaches a server on this machine as its own origin: the browser lets it
read every answer, and the requests carry ``Host: attacker.example``. Checking `Host`
ends that; checking `Origin` ends the simpler case of a foreign page posting to the app
(a form posting to ``/api/runs/{id}/cancel`` needs no preflight).

- `Host` must name the app: ``localhost``, an IP address (a browser sends one only for a
  URL that holds it, which no rebinding can produce), the host of ``public_url``, or a
  name of ``allowed_hosts`` (``.example.com`` also allows its subdomains). The port is
  not compared: a browser always sends the port it connected to. A request without
  `Host` (HTTP/1.0) comes from no browser and passes. Others get 421 and a JSON error.
- `Origin`, when sent, must be the request's own (scheme and `Host`), the origin of
  ``public_url``, or have a host in ``allowed_hosts``; ``null`` and other origins get 403.
- When it applies: always with ``allowed_hosts`` given (``["*"]`` turns it off, for a
  proxy that rewrites `Host` to names nobody can list); without it, only when the app
  has no ``auth_token``. A token already defeats both attacks (a foreign page can
  neither send the bearer header nor get the session cookie, which is bound to the
  app's own name), so an app embedded with a token keeps answering under whatever names
  its owner serves it; a token-less app must be told its public names.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import web

from graflow_async.web.auth import ApiHandler
from graflow_async.web.http import json_error

ANY = "*"
LOOPBACK_NAME = "localhost"
WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})
DEFAULT_PORTS = {"http": "80", "https": "443"}


def split_host(value: str) -> tuple[str, str] | None:
    """``(name, port)`` of a `Host` value (port "" when absent; the name in lower case,
    without a trailing dot, an IPv6 address without brackets), or None when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    name = name.removesuffix(".")  # the fully qualified form of the same name
    if not name or any(c.isspace() or c in "/\\@?#[]" for c in name) or (":" in name and not is_ip(name)):
        return None
    return name, port


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_names(values: Iterable[str]) -> list[str]:
    """`allowed_hosts` checked and normalized: names (``".example.com"`` for a domain and
    its subdomains), IP addresses, or ``"*"``; ValueError naming a bad one."""
    if isinstance(values, str | bytes):
        raise ValueError(f"allowed_hosts must be a list of host names, not the string {values!r}")
    names = []
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"allowed_hosts holds {value!r}: host names are strings")
        if value.strip() == ANY:
            names.append(ANY)
            continue
        found = split_host(value.removeprefix("."))
        if found is None or found[1] or (value.startswith(".") and is_ip(found[0])):
            raise ValueError(
                f"allowed_hosts holds {value!r}: a host name (no scheme, port or path), "
                "'.example.com' for a domain and its subdomains, or '*'"
            )
        names.append("." + found[0] if value.startswith(".") else found[0])
    return names


def served_names(bound: str) -> list[str]:
    """The names a server listening on `bound` is reached by besides ``localhost`` and
    IP addresses: the machine's host name when it listens on every interface, the name
    it was given when that is not an address."""
    if bound.strip().lower() in WILDCARDS:
        return [socket.gethostname().lower()]
    return [] if is_ip(bound.strip("[]")) else [bound]


class HostCheck:
    """The `Host` and `Origin` check of one app (see the module's docstring)."""

    def __init__(self, allowed_hosts: Iterable[str] | None, public_url: str | None, *, token: bool) -> None:
        names = host_names(allowed_hosts) if allowed_hosts is not None else []
        self.enabled = ANY not in names and (allowed_hosts is not None or not token)
        self.trusted = frozenset(n for n in names if not n.startswith("."))  # allowed_hosts alone
        self.domains = tuple(n for n in names if n.startswith("."))
        self.names = self.trusted | {LOOPBACK_NAME}
        self.origins: frozenset[str] = frozenset()
        if public_url is not None:
            parts = urlsplit(public_url)
            public = split_host(parts.netloc)
            if public is not None:
                self.names |= {public[0]}
                self.origins = frozenset({_origin(parts.scheme, *public)})

    def host_ok(self, name: str) -> bool:
        return name in self.names or is_ip(name) or self._in_domains(name)

    def _in_domains(self, name: str) -> bool:
        return any(name.endswith(d) or name == d[1:] for d in self.domains)

    def refusal(self, request: web.Request) -> web.Response | None:
        """The answer to a request for a name the app does not serve, or None."""
        if not self.enabled:
            return None
        raw_host = request.headers.get("Host")
        host = None if raw_host is None else split_host(raw_host)
        if raw_host is not None and (host is None or not self.host_ok(host[0])):
            return json_error(
                421,
                f"this server does not answer to the host {raw_host[:100]!r} "
                "(the app's allowed_hosts and public_url name those it does)",
            )
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_ok(origin, host):
            return json_error(403, f"cross-origin request refused (origin {origin[:100]!r})")
        return None

    def _origin_ok(self, origin: str, host: tuple[str, str] | None) -> bool:
        parts = urlsplit(origin.strip())
        found = split_host(parts.netloc) if parts.scheme in DEFAULT_PORTS and not parts.path else None
        if found is None:
            return False  # "null" (a sandboxed frame, a file), or not an origin at all
        mine = _origin(parts.scheme, *found)
        if host is not None and mine == _origin(parts.scheme, *host):
            return True  # same origin (the scheme as the page saw it: a proxy may end TLS)
        return mine in self.origins or found[0] in self.trusted or self._in_domains(found[0])

    def guard(self, handler: ApiHandler) -> ApiHandler:
        """`handler` behind the check."""
        if not self.enabled:
            return handler

        async def guarded(request: web.Request) -> web.StreamResponse:
            refused = self.refusal(request)
            return refused if refused is not None else await handler(request)

        return guarded


def _origin(scheme: str, name: str, port: str) -> str:
    return f"{scheme}://{name}:{port or DEFAULT_PORTS[scheme]}"
