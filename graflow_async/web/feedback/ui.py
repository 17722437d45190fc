"""The feedback UI: list pending requests, answer one with a form fitting its type.

Pages are jinja2 templates with autoescaping on: prompts, options and metadata are
user data and always escaped. Forms carry a CSRF token tied to the session.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined
from multidict import MultiDictProxy

from graflow_async.exceptions import (
    CorruptRecordError,
    FeedbackAlreadyAnsweredError,
    FeedbackNotFoundError,
    FeedbackValidationError,
)
from graflow_async.feedback.contracts import FeedbackRequests
from graflow_async.feedback.models import FeedbackRequest, FeedbackResponse, FeedbackType
from graflow_async.records.corrupt import skipped_count
from graflow_async.web.auth import Auth, Session
from graflow_async.web.http import MAX_BODY, ApiError, TooDeep, parse_json, read_form
from graflow_async.web.runs.manager import RunManager

# No scripts at all; inline styles only; forms post to this origin; no framing.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
Form = MultiDictProxy[Any]


def _age(created_at: float) -> str:
    seconds = max(time.time() - created_at, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def _pretty(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)


def make_environment() -> Environment:
    env = Environment(
        loader=PackageLoader("graflow_async.web", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(age=_age, pretty=_pretty, pathquote=lambda s: quote(str(s), safe=""))
    return env


def _field(form: Form, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def form_values(form: Form | None) -> dict[str, Any]:
    """What the visitor typed, to show again when the form comes back with an error."""
    names = ("reason", "text", "selected", "custom_data", "responded_by")
    if form is None:
        return {**dict.fromkeys(names, ""), "selected_multiple": []}
    chosen = [v for v in form.getall("selected_multiple", []) if isinstance(v, str)]
    return {**{n: _field(form, n) for n in names}, "selected_multiple": chosen}


def answer_from_form(request: FeedbackRequest, form: Form) -> dict[str, Any]:
    """The form's answer as a response dict; FeedbackValidationError when it cannot be one."""
    answer: dict[str, Any] = {}
    kind = request.feedback_type
    if kind is FeedbackType.APPROVAL:
        decision = _field(form, "decision")
        if decision not in ("approve", "reject"):
            raise FeedbackValidationError("choose Approve or Reject", field="approved")
        answer["approved"] = decision == "approve"
        if _field(form, "reason").strip():
            answer["reason"] = _field(form, "reason").strip()
    elif kind is FeedbackType.TEXT:
        answer["text"] = _field(form, "text")
    elif kind is FeedbackType.SELECTION:
        if "selected" not in form:
            raise FeedbackValidationError("choose one of the options", field="selected")
        answer["selected"] = _field(form, "selected")
    elif kind is FeedbackType.MULTI_SELECTION:
        answer["selected_multiple"] = form_values(form)["selected_multiple"]
    else:
        answer["custom_data"] = _parse_custom(_field(form, "custom_data"))
    if _field(form, "responded_by").strip():
        answer["responded_by"] = _field(form, "responded_by").strip()
    return answer


def _parse_custom(raw: str) -> dict[str, Any]:
    try:
        data = parse_json(raw)
    except TooDeep as exc:
        raise FeedbackValidationError(f"the answer is refused: {exc}", field="custom_data") from None
    except ValueError as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise FeedbackValidationError(f"the answer is not valid JSON: {message}{where}", field="custom_data") from None
    if not isinstance(data, dict):
        raise FeedbackValidationError(
            f"the answer must be a JSON object {{...}}, not {type(data).__name__}", field="custom_data"
        )
    return data


def answer_rows(answer: FeedbackResponse) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if answer.approved is not None:
        rows.append(("Decision", "Approved" if answer.approved else "Rejected"))
    if answer.reason:
        rows.append(("Reason", answer.reason))
    if answer.text is not None:
        rows.append(("Answer", answer.text))
    if answer.selected is not None:
        rows.append(("Selected", answer.selected))
    if answer.selected_multiple is not None:
        rows.append(("Selected", ", ".join(answer.selected_multiple) or "(none)"))
    if answer.custom_data is not None:
        rows.append(("Data", _pretty(answer.custom_data)))
    if answer.responded_by:
        rows.append(("Answered by", answer.responded_by))
    rows.append(("Answered at", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(answer.responded_at))))
    return rows


class FeedbackUi:
    """UI handlers over one store's feedback requests."""

    def __init__(self, store: FeedbackRequests, runs: RunManager, auth: Auth, prefix: str) -> None:
        self.store = store
        self.runs = runs
        self.auth = auth
        self.prefix = prefix
        self.env = make_environment()

    def render(self, template: str, session: Session | None, status: int = 200, **values: Any) -> web.Response:
        logout = session is not None and self.auth.required and not session.bearer
        html = self.env.get_template(template).render(
            prefix=self.prefix, csrf=self.auth.csrf_token(session) if session else "", logout=logout, **values
        )
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8", headers=HEADERS)

    def error_page(self, session: Session | None, status: int, title: str, message: str) -> web.Response:
        return self.render("error.html", session, status, title=title, message=message)

    def unreadable_page(self, session: Session | None, exc: CorruptRecordError) -> web.Response:
        """A record that exists but cannot be read back: 422, as the API answers."""
        return self.error_page(
            session,
            422,
            "Unreadable",
            f"The {exc.kind} {exc.record_id!r} cannot be read: {exc.reason}. The server's log names it.",
        )

    def detail(
        self,
        session: Session,
        feedback: FeedbackRequest,
        answer: FeedbackResponse | None,
        *,
        status: int = 200,
        error: str | None = None,
        form: Form | None = None,
    ) -> web.Response:
        rows = answer_rows(answer) if answer is not None else []
        return self.render(
            "feedback.html",
            session,
            status,
            feedback=feedback,
            answer=answer,
            rows=rows,
            error=error,
            values=form_values(form),
        )

    async def home(self, request: web.Request, session: Session) -> web.StreamResponse:
        raise web.HTTPSeeOther(f"{self.prefix}/ui/feedback/")

    async def list(self, request: web.Request, session: Session) -> web.StreamResponse:
        pending = await self.store.list_pending(request.query.get("run_id") or None)
        return self.render("list.html", session, requests=pending, unreadable=skipped_count(pending))

    async def show(self, request: web.Request, session: Session) -> web.StreamResponse:
        feedback_id = request.match_info["feedback_id"]
        try:
            feedback, answer = await self.store.get(feedback_id)
        except FeedbackNotFoundError:
            return self.error_page(session, 404, "Not found", f"There is no feedback request {feedback_id!r}.")
        except CorruptRecordError as exc:
            return self.unreadable_page(session, exc)
        return self.detail(session, feedback, answer)

    async def submit(self, request: web.Request, session: Session) -> web.StreamResponse:
        feedback_id = request.match_info["feedback_id"]
        form = await self._form(request)
        if form is None:
            return self.error_page(session, 413, "Too large", f"The form is larger than {MAX_BODY} bytes.")
        try:
            feedback, answer = await self.store.get(feedback_id)
        except FeedbackNotFoundError:
            return self.error_page(session, 404, "Not found", f"There is no feedback request {feedback_id!r}.")
        except CorruptRecordError as exc:
            return self.unreadable_page(session, exc)
        if not self.auth.csrf_ok(session, form.get("csrf_token")):
            return self.detail(
                session,
                feedback,
                answer,
                status=403,
                form=form,
                error="This form expired or did not come from this page: please submit it again.",
            )
        try:
            answer = await self.store.respond(feedback_id, answer_from_form(feedback, form))
        except FeedbackValidationError as exc:
            return self.detail(session, feedback, None, status=400, error=str(exc), form=form)
        except CorruptRecordError as exc:  # it became unreadable since
            return self.unreadable_page(session, exc)
        except FeedbackAlreadyAnsweredError:
            feedback, answer = await self.store.get(feedback_id)
            return self.detail(
                session,
                feedback,
                answer,
                status=409,
                error=f"This request was {feedback.status} already; your answer was not recorded.",
            )
        await self.runs.after_answer(feedback.run_id)
        return self.render("done.html", session, feedback=feedback, rows=answer_rows(answer))

    # --- login ----------------------------------------------------------------------------
    async def login_page(self, request: web.Request) -> web.StreamResponse:
        target = self.auth.safe_next(request.query.get("next"))
        if not self.auth.required or self.auth.session_id(request) is not None:
            raise web.HTTPSeeOther(target)
        return self.render("login.html", None, next=target, error=None)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await self._form(request)
        if form is None:
            return self.error_page(None, 413, "Too large", "The form is too large.")
        target = self.auth.safe_next(form.get("next"))
        if not self.auth.required:
            raise web.HTTPSeeOther(target)
        if not self.auth.token_matches(_field(form, "token")):
            return self.render("login.html", None, 401, next=target, error="That token is not valid.")
        response = web.Response(status=303, headers={"Location": target})
        session = self.auth.new_session()
        assert session.cookie is not None
        self.auth.set_cookie(response, request, session.cookie)
        return response

    async def logout(self, request: web.Request, session: Session) -> web.StreamResponse:
        form = await self._form(request)
        response = web.Response(status=303, headers={"Location": self.auth.login_url()})
        if form is not None and self.auth.csrf_ok(session, form.get("csrf_token")):
            self.auth.clear_cookie(response)
        return response

    async def _form(self, request: web.Request) -> Form | None:
        """The posted form, or None when it is larger than MAX_BODY; a form that takes
        longer than REQUEST_TIMEOUT to arrive gets a 408 and the connection closes."""
        if request.content_length is not None and request.content_length > MAX_BODY:
            return None
        try:
            form: Form = await read_form(request)
        except web.HTTPRequestEntityTooLarge:
            return None
        except ApiError as exc:
            too_slow = web.HTTPRequestTimeout(text=exc.message, headers=HEADERS)
            too_slow.force_close()
            raise too_slow from None
        return form
