"""How graflow-async logs: through structlog, the application's configuration when it
has one, else WARNING and above to stderr (``GRAFLOW_LOG_LEVEL`` changes the level).
`Outage` says once that something stopped answering and once that it is back; `as_text`
turns whatever a log line or an error message shows (bytes from Redis, an exception) into
text."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import structlog


def library_logger() -> Any:
    """The structlog logger graflow-async logs through.

    When the application configured structlog, its configuration is used. When not,
    graflow-async does not print every step: it logs at WARNING and above to stderr
    (``GRAFLOW_LOG_LEVEL=info`` or ``debug`` shows more).
    """
    if structlog.is_configured():
        return structlog.get_logger("graflow_async")
    level = logging.getLevelName(os.environ.get("GRAFLOW_LOG_LEVEL", "WARNING").upper())
    if not isinstance(level, int):
        level = logging.WARNING
    return structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            # plain tracebacks: rich's (the default when rich is installed) shows local
            # variables, which may hold secrets and request bodies and take long to render
            structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback),
        ],
        logger_name="graflow_async",
    )


class LibraryLog:
    """A module-level logger that follows `library_logger` at each call, so the
    application's structlog configuration (or ``GRAFLOW_LOG_LEVEL``) applies even to
    loggers made at import time."""

    def __getattr__(self, name: str) -> Any:
        return getattr(library_logger(), name)


class Outage:
    """One log line when something we depend on stops answering, one when it is back:
    not a line per retry. `begin` on each failure, `end` on each success."""

    __slots__ = ("_log", "_since", "attempts", "what")

    def __init__(self, log: Any, what: str) -> None:
        self._log = log
        self.what = what
        self._since: float | None = None
        self.attempts = 0

    @property
    def active(self) -> bool:
        return self._since is not None

    def begin(self, error: BaseException, **facts: Any) -> None:
        self.attempts += 1
        if self._since is None:
            self._since = time.monotonic()
            self._log.warning(f"{self.what} unavailable; waiting and retrying", error=_short(error), **facts)

    def end(self, **facts: Any) -> None:
        if self._since is not None:
            waited = time.monotonic() - self._since
            self._log.warning(f"{self.what} is back", after_s=round(waited, 3), attempts=self.attempts, **facts)
            self._since, self.attempts = None, 0


def as_text(value: object) -> str:
    """`value` as text to show: a str as it is, bytes decoded as UTF-8 (undecodable bytes
    replaced), anything else through ``str``; never raises (a ``__str__`` that raises, an
    int too long to print, shows as a placeholder naming the type)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    try:
        return str(value)
    except Exception as failure:
        return f"<{type(value).__name__} that cannot be shown: {type(failure).__name__}>"


def _short(error: BaseException, most: int = 300) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= most else text[:most] + "..."
