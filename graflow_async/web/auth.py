"""Who may use the API and UI: bearer tokens, signed session cookies, CSRF tokens.

- With an ``auth_token`` every /api route needs ``Authorization: Bearer <token>``; UI
  routes take the same header or a session cookie issued by ``/ui/login``.
- Secrets are compared with ``hmac.compare_digest``.
- A session cookie is ``<sid>.<issued>.<hmac>``, signed with a key derived from the
  token (so it survives restarts and works across processes sharing the token) or,
  without a token, with a random per-app key. Without a token the cookie only binds
  CSRF tokens; every UI form posts ``csrf_token = hmac(key, sid)``.
- Requests authenticated by the bearer header carry no ambient credential, so they
  need no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from graflow_async.exceptions import CorruptRecordError, FeedbackError
from graflow_async.logs import library_logger
from graflow_async.web.http import ApiError, json_error, store_status, traceback_text

SESSION_COOKIE = "graflow_session"
SESSION_TTL = 12 * 3600  # seconds a UI session stays valid

ApiHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Session:
    """The UI visitor: session id, a new cookie to set (or None), authenticated by header."""

    sid: str
    cookie: str | None = None
    bearer: bool = False


UiHandler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "replace")


class Auth:
    """Checks tokens, issues and verifies sessions and CSRF tokens for one app."""

    def __init__(self, token: str | None, prefix: str = "") -> None:
        if token is not None and not (isinstance(token, str) and token):
            raise ValueError("auth_token must be a non-empty string (or None for no authentication)")
        self.token = token
        self.prefix = prefix
        self._key = (
            hmac.new(_bytes(token), b"graflow-async web session", hashlib.sha256).digest()
            if token
            else secrets.token_bytes(32)
        )
        self.log = library_logger().bind(component="web")

    @property
    def required(self) -> bool:
        return self.token is not None

    # --- tokens --------------------------------------------------------------------------
    def token_matches(self, candidate: str) -> bool:
        if self.token is None:
            return False
        return hmac.compare_digest(_bytes(candidate), _bytes(self.token))

    def bearer_ok(self, request: web.Request) -> bool:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())

    # --- sessions and CSRF ---------------------------------------------------------------------
    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, _bytes(f"{purpose}:{value}"), hashlib.sha256).hexdigest()

    def new_session(self) -> Session:
        sid = secrets.token_urlsafe(18)
        body = f"{sid}.{int(time.time())}"
        return Session(sid, f"{body}.{self._sign('session', body)}")

    def session_id(self, request: web.Request) -> str | None:
        """The sid of a valid, unexpired session cookie, else None."""
        sid, _, rest = request.cookies.get(SESSION_COOKIE, "").partition(".")
        issued, _, signature = rest.partition(".")
        if not sid or not issued.isdigit():
            return None
        if not hmac.compare_digest(_bytes(signature), _bytes(self._sign("session", f"{sid}.{issued}"))):
            return None
        if not 0 <= time.time() - int(issued) < SESSION_TTL:
            return None
        return sid

    def csrf_token(self, session: Session) -> str:
        return self._sign("csrf", session.sid)

    def csrf_ok(self, session: Session, candidate: object) -> bool:
        if session.bearer:
            return True
        return isinstance(candidate, str) and hmac.compare_digest(_bytes(candidate), _bytes(self.csrf_token(session)))

    def ui_session(self, request: web.Request) -> Session | None:
        """The visitor's session, a new one when allowed, or None (not authenticated)."""
        bearer = self.required and self.bearer_ok(request)
        sid = self.session_id(request)
        if sid is not None:
            return Session(sid, None, bearer)
        if self.required and not bearer:
            return None
        fresh = self.new_session()
        return Session(fresh.sid, fresh.cookie, bearer)

    def set_cookie(self, response: web.StreamResponse, request: web.Request, value: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=SESSION_TTL,
            path=f"{self.prefix}/ui",
            httponly=True,
            samesite="Lax",
            secure=request.secure,
        )

    def clear_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(SESSION_COOKIE, path=f"{self.prefix}/ui")

    def login_url(self, next_path: str | None = None) -> str:
        url = f"{self.prefix}/ui/login"
        return f"{url}?next={quote(next_path, safe='')}" if next_path else url

    def safe_next(self, candidate: object) -> str:
        """Where to go after login: a path of this UI only (no open redirect)."""
        home = f"{self.prefix}/ui/feedback/"
        if not isinstance(candidate, str) or not candidate.startswith(f"{self.prefix}/ui/"):
            return home
        if "//" in candidate or "\\" in candidate or any(ord(c) < 0x21 for c in candidate):
            return home
        return candidate

    # --- route guards ----------------------------------------------------------------------------
    def api(self, handler: ApiHandler) -> ApiHandler:
        """Bearer check (when a token is set) and JSON errors for an API handler."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.required and not self.bearer_ok(request):
                return json_error(
                    401, "missing or invalid bearer token", None, **{"WWW-Authenticate": 'Bearer realm="graflow-async"'}
                )
            try:
                return await handler(request)
            except ApiError as exc:
                response = json_error(exc.status, exc.message, exc.field)
                if exc.status == 408:  # the client is too slow: do not wait for more of it
                    response.force_close()
                return response
            except (FeedbackError, CorruptRecordError) as exc:
                status = store_status(exc)
                if status is None:
                    return self._internal(request, exc)
                return json_error(status, str(exc), getattr(exc, "field", None))
            except web.HTTPException:
                raise
            except Exception as exc:
                return self._internal(request, exc)

        return guarded

    def _internal(self, request: web.Request, exc: Exception) -> web.Response:
        # A short traceback as text, never `exc_info`: a renderer showing local variables
        # (rich's default) would print request bodies and can take minutes on a deep one.
        self.log.error(
            "web request failed",
            method=request.method,
            path=request.path,
            error=repr(exc)[:500],
            exception=traceback_text(exc),
        )
        return json_error(500, "internal server error")

    def ui(self, handler: UiHandler) -> ApiHandler:
        """Session check for a UI handler: unauthenticated visitors go to the login page."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            session = self.ui_session(request)
            if session is None:
                raise web.HTTPSeeOther(self.login_url(request.rel_url.path_qs))
            response = await handler(request, session)
            if session.cookie is not None:
                self.set_cookie(response, request, session.cookie)
            return response

        return guarded
