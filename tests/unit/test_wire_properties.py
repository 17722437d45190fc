"""Properties of the wire decoder (SPEC section 7: no malformed entry stops a worker). No Redis.

* `decode` is total: any bytes give a message or `MalformedMessage`, never another
  exception, a crash or an unbounded wait, whatever their size;
* an envelope-shaped document with any field present, missing or of any type decodes to
  a message whose fields have their declared types, or to `MalformedMessage`;
* what `decode` returns, `encode` can send again (a worker dead-letters what it decoded);
* well-formed messages round-trip field by field (exceptions by type name and message).

Hypothesis runs derandomized and without an example database, so every run of the
suite tries the same examples.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import random
import struct
import subprocess
import sys
import time
import tracemalloc
import uuid
from decimal import Decimal
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st

from graflow_async import exceptions as errors
from graflow_async.plan.directives import AddTasks, Cancel, Iterate, Terminate
from graflow_async.wire.codec import packb
from graflow_async.wire.envelope import MAX_NESTING, MalformedMessage, decode, encode
from graflow_async.wire.messages import ContextReply, ContextRequest, RetryDue, TaskMessage, TaskReply

ROOT = Path(__file__).resolve().parents[2]
MiB = 2**20
FUZZ = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ROUND_TRIP = settings(FUZZ, max_examples=150)


# --- values ---------------------------------------------------------------------------------------------
BIG_INTS = st.sampled_from([2**63, -(2**63) - 1, 2**64, 2**100, -(2**200), 10**400])
INTS = st.integers() | BIG_INTS
TEXT = st.text(max_size=12)
SCALARS = st.none() | st.booleans() | INTS | st.floats() | TEXT | st.binary(max_size=12)
# the extension types of the codec (see codec.py), exactly as they round-trip
OFFSETS = st.builds(dt.timezone, st.timedeltas(min_value=dt.timedelta(hours=-23), max_value=dt.timedelta(hours=23)))
CODEC_LEAVES = (
    st.datetimes(timezones=st.none() | OFFSETS)
    | st.dates()
    | st.times(timezones=st.none() | OFFSETS)
    | st.timedeltas()
    | st.uuids()
    | st.decimals(allow_nan=False)
    | st.builds(Path, TEXT)
    | st.builds(PurePosixPath, TEXT)
    | st.builds(PureWindowsPath, TEXT)
)
# keys and set members: hashable, no NaN (NaN is never equal to itself, not even after a round trip)
KEYS = st.recursive(
    st.none() | st.booleans() | INTS | st.floats(allow_nan=False) | TEXT | st.binary(max_size=8) | CODEC_LEAVES,
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=4,
)


def nested(leaves: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(keys, inner, max_size=4)
            | st.lists(inner, max_size=3).map(tuple)
            | st.sets(keys, max_size=3)
            | st.frozensets(keys, max_size=3)
        ),
        max_leaves=12,
    )


VALUES = nested(SCALARS.filter(lambda v: not (isinstance(v, float) and math.isnan(v))) | CODEC_LEAVES, KEYS)
NEAR_MISSES = st.sampled_from(
    [
        "5",
        "",
        "x",
        -1,
        0,
        1.5,
        2**64,
        10**400,
        -(10**400),
        math.nan,
        math.inf,
        -math.inf,
        True,
        False,
        None,
        [],
        {},
        {1: 2},
        {"a": [1, {"b": None}]},
        [1, [2, [3, [4]]]],
        b"5",
        (5,),
        {5},
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("1e999999"),
        dt.timedelta(seconds=5),
        uuid.UUID(int=5),
        Path("/etc/passwd"),
    ]
)
# anything the codec can carry, NaN and near misses included: what a field holds when it is wrong
ANYTHING = nested(SCALARS | CODEC_LEAVES | NEAR_MISSES, KEYS)

# --- envelopes: every field valid, missing or wrong -----------------------------------------------------
NODES = st.integers(min_value=0, max_value=2**70)
COUNTS = st.integers(min_value=1, max_value=2**70)
SECONDS = st.floats(min_value=1e-9, max_value=1e9) | st.integers(min_value=1, max_value=10**6)
STR_DICTS = st.dictionaries(TEXT, VALUES, max_size=4)
ERROR_INFOS = st.fixed_dictionaries(
    {"type": TEXT, "message": TEXT}, optional={"traceback": TEXT, "task_id": TEXT, "timeout": SECONDS}
)
CONTEXT_ERROR_INFOS = st.fixed_dictionaries(
    {"type": st.sampled_from(["KeyError", "TransportError", "FeedbackValidationError", "Oddity"]), "message": TEXT},
    optional={"field": st.none() | TEXT, "traceback": TEXT, "task_id": TEXT},
)
DIRECTIVE_DOCS = (
    st.tuples(st.just("add"), st.dictionaries(TEXT, VALUES, max_size=3), ANYTHING)
    | st.tuples(st.just("iterate"), VALUES)
    | st.tuples(st.sampled_from(["cancel", "terminate"]), TEXT)
).map(list)
FIELDS: dict[Any, dict[str, st.SearchStrategy[Any]]] = {
    "task": {
        "run_id": TEXT,
        "task_id": TEXT,
        "node": NODES,
        "attempt": COUNTS,
        "reply_to": TEXT,
        "kwargs": STR_DICTS,
        "timeout": st.none() | SECONDS,
        "task_ref": st.none() | TEXT,
        "lease_timeout": st.none() | SECONDS,
        "max_deliveries": st.none() | COUNTS,
        "inject_context": ANYTHING,
        "cycle": COUNTS,
        "max_cycles": COUNTS,
        "resumed_metadata": st.none() | st.dictionaries(KEYS, VALUES, max_size=3),
        "epoch": NODES,
    },
    "reply": {
        "run_id": TEXT,
        "node": NODES,
        "attempt": COUNTS,
        "ok": ANYTHING,
        "value": VALUES,
        "error": st.none() | ERROR_INFOS,
        "duration": st.floats(min_value=0, max_value=1e9),
        "directives": st.lists(DIRECTIVE_DOCS, max_size=3),
        "retryable": ANYTHING,
        "suspended": ANYTHING,
        "cycle": COUNTS,
        "task_id": TEXT,
        "epoch": NODES,
    },
    "ctx": {
        "run_id": TEXT,
        "node": NODES,
        "cycle": COUNTS,
        "attempt": COUNTS,
        "request_id": TEXT,
        "op": TEXT,
        "args": STR_DICTS,
        "reply_to": TEXT,
        "epoch": NODES,
    },
    "ctx-reply": {"request_id": TEXT, "ok": ANYTHING, "value": VALUES, "error": st.none() | CONTEXT_ERROR_INFOS},
    "retry": {"node": NODES},
    "raw": {"v": ANYTHING},
}
MISSING = object()


@st.composite
def envelopes(draw: st.DrawFn) -> dict[Any, Any]:
    """An envelope of any kind (or none) with up to three fields missing or wrong, and stray fields."""
    kind = draw(st.sampled_from([*FIELDS, "task", "task", "task", "reply", "other", None, 1, b"task", ["task"]]))
    fields = FIELDS.get(kind, {}) if isinstance(kind, str) else {}
    doc: dict[Any, Any] = {name: draw(strategy) for name, strategy in fields.items()}
    intact = draw(st.booleans())
    for name in set() if intact else draw(st.sets(st.sampled_from(sorted(fields) or ["t"]), min_size=1, max_size=3)):
        value = draw(st.just(MISSING) | NEAR_MISSES | ANYTHING)
        if value is MISSING:
            doc.pop(name, None)
        else:
            doc[name] = value
    stray = draw(st.dictionaries(KEYS, ANYTHING, max_size=2))
    return {**stray, **doc, "t": kind} if draw(st.integers(0, 9)) else {**stray, **doc}


# --- what a decoded message must look like --------------------------------------------------------------
def is_int(value: Any, minimum: int) -> bool:
    return type(value) is int and value >= minimum


def is_seconds(value: Any) -> bool:
    return value is None or (type(value) in (int, float) and 0 < value < math.inf)


def str_keyed(value: Any) -> bool:
    return type(value) is dict and all(type(k) is str for k in value)


def check_task_message(m: TaskMessage) -> None:
    assert all(type(v) is str for v in (m.run_id, m.task_id, m.reply_to)), m
    assert is_int(m.node, 0) and all(is_int(v, 1) for v in (m.attempt, m.cycle, m.max_cycles)), m
    assert str_keyed(m.kwargs), m.kwargs
    assert is_seconds(m.timeout) and is_seconds(m.lease_timeout), m
    assert m.max_deliveries is None or is_int(m.max_deliveries, 1), m.max_deliveries
    assert m.task_ref is None or type(m.task_ref) is str
    assert m.task is None and type(m.inject_context) is bool
    assert m.resumed_metadata is None or type(m.resumed_metadata) is dict
    assert is_int(m.epoch, 0), m.epoch


def check_error(error: Any) -> None:
    assert error is None or isinstance(error, (errors.RemoteTaskError, errors.TaskTimeoutError)), error
    if isinstance(error, errors.RemoteTaskError):
        assert all(type(v) is str for v in (error.task_id, error.type_name, error.remote_message, error.traceback))
    if isinstance(error, errors.TaskTimeoutError):
        assert type(error.task_id) is str and type(error.timeout) is float and 0 < error.timeout < math.inf


def check_task_reply(r: TaskReply) -> None:
    assert type(r.run_id) is str and type(r.task_id) is str, r
    assert is_int(r.node, 0) and is_int(r.attempt, 1) and is_int(r.cycle, 1) and is_int(r.epoch, 0), r
    assert all(type(v) is bool for v in (r.ok, r.retryable, r.suspended)), r
    assert type(r.duration) is float and 0 <= r.duration < math.inf, r.duration
    check_error(r.error)
    assert type(r.directives) is tuple
    for d in r.directives:
        assert type(d) in (AddTasks, Iterate, Cancel, Terminate), d
        if type(d) is AddTasks:
            assert type(d.component) is dict and type(d.goto) is bool
        if type(d) in (Cancel, Terminate):
            assert type(d.reason) is str


def check_context_request(r: ContextRequest) -> None:
    assert all(type(v) is str for v in (r.run_id, r.request_id, r.op, r.reply_to)), r
    assert is_int(r.node, 0) and is_int(r.cycle, 1) and is_int(r.attempt, 1) and is_int(r.epoch, 0), r
    assert str_keyed(r.args), r.args


def check_context_reply(r: ContextReply) -> None:
    assert type(r.request_id) is str and type(r.ok) is bool, r
    assert r.error is None or isinstance(r.error, Exception), r.error
    if isinstance(r.error, errors.FeedbackValidationError):
        assert r.error.field is None or type(r.error.field) is str


CHECKS = {
    TaskMessage: check_task_message,
    TaskReply: check_task_reply,
    ContextRequest: check_context_request,
    ContextReply: check_context_reply,
    RetryDue: lambda m: is_int(m.node, 0) or pytest.fail(repr(m)),
}
KIND_OF = {TaskMessage: "task", TaskReply: "reply", ContextRequest: "ctx", ContextReply: "ctx-reply", RetryDue: "retry"}


def note(what: str) -> None:
    """Count outcomes in hypothesis' statistics (pytest --hypothesis-show-statistics)."""
    if currently_in_test_context():
        event(what)


def decoded_or_malformed(data: bytes) -> Any:
    """decode(data), checked; MISSING when it is malformed. Any other exception fails the test."""
    try:
        message = decode(data)
    except MalformedMessage:
        note("malformed")
        return MISSING
    note(f"decoded to a {type(message).__name__}")
    CHECKS.get(type(message), lambda m: None)(message)
    again = decode(encode(message))  # a worker can always send back (dead-letter) what it decoded
    assert type(again) is type(message)
    return message


# --- decode is total ---------------------------------------------------------------------------------
def mutations() -> st.SearchStrategy[bytes]:
    """Envelope bytes cut short, with bytes flipped or spliced in (msgpack headers among them)."""
    headers = st.sampled_from(
        [
            b"\xc1",
            b"\xc7\x05\x01",
            b"\xc9\xff\xff\xff\xff\x0b",
            b"\xd4\x01",
            b"\xd7\xff",
            b"\xdd\xff\xff\xff\xff",
            b"\xdb\x7f\xff\xff\xff",
            b"\xde\x00\x10",
            b"\x91" * 64,
        ]
    )

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        data = bytearray(packb(draw(envelopes())))
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data)))
            how = draw(st.sampled_from(["flip", "cut", "splice"]))
            if how == "flip" and at < len(data):
                data[at] ^= draw(st.integers(1, 255))
            elif how == "cut":
                del data[at:]
            else:
                data[at:at] = draw(headers | st.binary(min_size=1, max_size=8))
        return bytes(data)

    return mutated()


PLAIN_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | TEXT | st.binary(max_size=12)
)
RAW_MSGPACK = st.recursive(  # msgpack the codec never writes: unknown extension types, timestamps
    PLAIN_SCALARS
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=16))
    | st.builds(msgpack.Timestamp, st.integers(0, 2**33), st.integers(0, 999_999_999)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(PLAIN_SCALARS, inner, max_size=4),
    max_leaves=10,
).map(lambda v: msgpack.packb(v, use_bin_type=True))


@FUZZ
@given(st.binary(max_size=512) | mutations() | RAW_MSGPACK)
@example(b"")
@example(b"\x80")  # an empty map
@example(b"\x81\xa1t\xa4task")  # a task with no fields
@example(packb({"t": "reply", "error": "x"}))
@example(b"\x82\xa1t\xa3raw\xa1v" + b"\x91" * 1023 + b"\x00")  # as deep as msgpack goes
def test_decode_of_any_bytes_returns_a_message_or_raises_malformed(data: bytes) -> None:
    decoded_or_malformed(data)


@FUZZ
@given(envelopes())
@example({"t": "task", **{name: 1 for name in FIELDS["task"]}})
def test_an_envelope_with_any_field_of_any_type_decodes_well_typed_or_not_at_all(doc: dict[Any, Any]) -> None:
    message = decoded_or_malformed(packb(doc))
    if message is MISSING:
        return
    kind = doc.get("t")
    assert kind in FIELDS, f"{kind!r} is no envelope kind, yet it decoded to {message!r}"
    if kind == "raw":
        return  # a raw value is any value
    assert KIND_OF[type(message)] == kind
    for name, value in doc.items():  # what was read is what was sent (bools: read as bool)
        if name in message._fields and name not in (
            "error",
            "directives",
            "inject_context",
            "ok",
            "retryable",
            "suspended",
            "duration",
        ):
            assert same(getattr(message, name), value), name


VALID: dict[str, dict[str, Any]] = {
    "task": {
        "t": "task",
        "run_id": "r",
        "task_id": "t",
        "node": 0,
        "attempt": 1,
        "reply_to": "run:r:replies",
        "kwargs": {},
        "timeout": None,
        "task_ref": "remote_faults:pid",
        "lease_timeout": 30.0,
        "max_deliveries": 5,
        "inject_context": False,
        "cycle": 1,
        "max_cycles": 100,
        "resumed_metadata": None,
    },
    "reply": {
        "t": "reply",
        "run_id": "r",
        "node": 0,
        "attempt": 1,
        "ok": False,
        "value": None,
        "error": None,
        "duration": 0.0,
        "directives": [],
        "retryable": True,
        "suspended": False,
        "cycle": 1,
        "task_id": "t",
    },
    "ctx": {
        "t": "ctx",
        "run_id": "r",
        "node": 0,
        "cycle": 1,
        "attempt": 1,
        "request_id": "q",
        "op": "channel.get",
        "args": {},
        "reply_to": "worker:w:context",
    },
    "ctx-reply": {"t": "ctx-reply", "request_id": "q", "ok": False, "value": None, "error": None},
    "retry": {"t": "retry", "node": 0},
}


def task_doc(**fields: Any) -> bytes:
    return packb({**VALID["task"], **fields})


def wrong(kind: str, **fields: Any) -> Any:
    """A valid `kind` envelope but for `fields` (MISSING: left out), as a case named after them."""
    doc = {**VALID[kind], **fields}
    for name in [name for name, value in fields.items() if value is MISSING]:
        del doc[name]
    label = ",".join(f"{name}={short(value)}" for name, value in fields.items())
    return pytest.param(packb(doc), id=f"{kind}:{label}")


def short(value: Any) -> str:
    if value is MISSING:
        return "missing"
    if type(value) is int and value.bit_length() > 64:
        return f"int({value.bit_length()} bits)"
    try:
        return repr(value)[:24]
    except ValueError:  # an int of more than 4300 digits inside
        return type(value).__name__


@pytest.mark.parametrize(
    "data",
    [
        wrong("task", max_deliveries="5"),
        wrong("task", max_deliveries=5.0),
        wrong("task", max_deliveries=0),
        wrong("task", max_deliveries=-1),
        wrong("task", max_deliveries=True),
        wrong("task", max_deliveries=[5]),
        wrong("task", node=-1),
        wrong("task", node="0"),
        wrong("task", node=None),
        wrong("task", attempt=0),
        wrong("task", cycle=0),
        wrong("task", epoch=-1),
        wrong("task", epoch="1"),
        wrong("reply", epoch=-1),
        wrong("ctx", epoch=1.5),
        wrong("task", max_cycles=0),
        wrong("task", kwargs={1: "x"}),
        wrong("task", kwargs=[("a", 1)]),
        wrong("task", kwargs={("a",): 1}),
        wrong("task", kwargs=None),
        wrong("task", reply_to=123),
        wrong("task", reply_to=None),
        wrong("task", reply_to=MISSING),
        wrong("task", run_id=b"r"),
        wrong("task", task_id=MISSING),
        wrong("task", timeout=-1),
        wrong("task", timeout=0),
        wrong("task", timeout=math.nan),
        wrong("task", timeout=math.inf),
        wrong("task", timeout="5"),
        wrong("task", timeout=10**400),
        wrong("task", timeout=Decimal(5)),
        wrong("task", lease_timeout=10**400),
        wrong("task", lease_timeout=-1),
        wrong("task", lease_timeout=True),
        wrong("task", lease_timeout={"s": 1}),
        wrong("task", task_ref=1),
        wrong("task", resumed_metadata=[]),
        wrong("reply", error="boom"),
        wrong("reply", error=["boom"]),
        wrong("reply", error={"type": 1, "message": "m"}),
        wrong("reply", error={"message": "m"}),
        wrong("reply", error={"type": "E", "message": "m", "timeout": 10**400}),
        wrong("reply", error={"type": "E", "message": "m", "timeout": -1}),
        wrong("reply", error={"type": "E", "message": ["m"]}),
        wrong("reply", error={"type": "E", "message": "m", "task_id": 7}),
        wrong("reply", duration=10**400),
        wrong("reply", duration="1"),
        wrong("reply", duration=-1.0),
        wrong("reply", duration=math.nan),
        wrong("reply", run_id=5),
        wrong("reply", directives="ab"),
        wrong("reply", directives={"add": 1}),
        wrong("reply", directives=[["add", [], True]]),
        wrong("reply", directives=[["cancel", 5]]),
        wrong("reply", directives=[[]]),
        wrong("reply", directives=[[["add"]]]),
        wrong("reply", node=-1),
        wrong("reply", cycle=0),
        wrong("reply", value=MISSING),
        wrong("retry", node="x"),
        wrong("retry", node=-1),
        wrong("retry", node=MISSING),
        wrong("ctx-reply", error="x"),
        wrong("ctx-reply", error={"type": 10**5000, "message": "m"}),
        wrong("ctx-reply", error={"type": "FeedbackValidationError", "message": "m", "field": [1]}),
        wrong("ctx-reply", request_id=1),
        wrong("ctx", args={1: 2}),
        wrong("ctx", node=-1),
        wrong("ctx", op=None),
    ],
)
def test_named_wrong_fields_are_malformed(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode(data)


# --- round trips ----------------------------------------------------------------------------------------
def same(got: Any, sent: Any) -> bool:
    """Equal in type and value, all the way down (NaN equals NaN)."""
    if type(got) is not type(sent):
        return False
    if isinstance(got, float | Decimal):
        return bool(got == sent) or (
            (got.is_nan() if isinstance(got, Decimal) else math.isnan(got))
            and (sent.is_nan() if isinstance(sent, Decimal) else math.isnan(sent))
        )
    if isinstance(got, list | tuple):
        return len(got) == len(sent) and all(map(same, got, sent))
    if isinstance(got, dict):
        return len(got) == len(sent) and all(k in got and same(got[k], v) for k, v in sent.items())
    return bool(got == sent)


class Oddity(Exception):
    """An exception type the run has never heard of."""


MESSAGES = st.text(max_size=30)
TASK_ERRORS = (
    st.builds(ValueError, MESSAGES)
    | st.builds(Oddity, MESSAGES)
    | st.builds(KeyError, MESSAGES)
    | st.builds(errors.TaskTimeoutError, TEXT, SECONDS)
    | st.builds(errors.RemoteTaskError, TEXT, TEXT, MESSAGES, MESSAGES)
    | st.builds(errors.TaskFailedError, TEXT, st.none(), MESSAGES)
)
CONTEXT_ERRORS = (
    st.builds(KeyError, MESSAGES)
    | st.builds(TypeError, MESSAGES)
    | st.builds(errors.TransportError, MESSAGES)
    | st.builds(errors.FeedbackValidationError, MESSAGES, st.none() | TEXT)
    | st.builds(Oddity, MESSAGES)
    | st.builds(errors.FeedbackTimeoutError, MESSAGES)
)
TASK_MESSAGES = st.builds(
    TaskMessage,
    TEXT,
    TEXT,
    NODES,
    COUNTS,
    TEXT,
    STR_DICTS,
    st.none() | SECONDS,
    st.none() | TEXT,
    st.none(),
    st.none() | SECONDS,
    st.none() | COUNTS,
    st.booleans(),
    COUNTS,
    COUNTS,
    st.none() | st.dictionaries(KEYS, VALUES, max_size=3),
    epoch=NODES,
)
DIRECTIVES = (
    st.builds(AddTasks, st.dictionaries(TEXT, VALUES, max_size=3), st.booleans())
    | st.builds(Iterate, VALUES)
    | st.builds(Cancel, TEXT)
    | st.builds(Terminate, TEXT)
)
TASK_REPLIES = st.builds(
    TaskReply,
    TEXT,
    NODES,
    COUNTS,
    st.booleans(),
    VALUES,
    st.none() | TASK_ERRORS,
    st.floats(min_value=0, max_value=1e9),
    st.lists(DIRECTIVES, max_size=3).map(tuple),
    st.booleans(),
    st.booleans(),
    COUNTS,
    TEXT,
    NODES,
)
CONTEXT_REQUESTS = st.builds(ContextRequest, TEXT, NODES, COUNTS, COUNTS, TEXT, TEXT, STR_DICTS, TEXT, NODES)
CONTEXT_REPLIES = st.builds(ContextReply, TEXT, st.booleans(), VALUES, st.none() | CONTEXT_ERRORS)
WELL_FORMED = (
    TASK_MESSAGES
    | TASK_REPLIES
    | CONTEXT_REQUESTS
    | CONTEXT_REPLIES
    | st.builds(RetryDue, NODES)
    | VALUES.filter(lambda v: type(v) not in KIND_OF)
)


def same_task_error(got: Any, sent: BaseException | None, task_id: str) -> bool:
    """A task's error comes back as RemoteTaskError with its type name and message (a timeout as itself)."""
    if sent is None:
        return got is None
    named = getattr(sent, "task_id", "") or task_id
    if isinstance(sent, errors.TaskTimeoutError):
        return type(got) is errors.TaskTimeoutError and (got.task_id, got.timeout) == (named, sent.timeout)
    if isinstance(sent, errors.RemoteTaskError):
        facts = (sent.type_name, sent.remote_message, sent.traceback)
    else:
        facts = (type(sent).__name__, str(sent), got.traceback)
    return type(got) is errors.RemoteTaskError and (got.task_id, got.type_name, got.remote_message, got.traceback) == (
        named,
        *facts,
    )


def same_context_error(got: Any, sent: BaseException | None) -> bool:
    """A run's error comes back as itself when the task can catch it by name, else as GraflowError;
    its message (str) travels as the first argument."""
    if sent is None:
        return got is None
    name = type(sent).__name__
    if name == "Oddity":
        return type(got) is errors.GraflowError and got.args == (f"Oddity: {sent}",)
    if type(got) is not type(sent) or got.args != (str(sent),):
        return False
    return not isinstance(sent, errors.FeedbackValidationError) or got.field == sent.field


@ROUND_TRIP
@given(WELL_FORMED)
@example(TaskMessage("r", "t", 0, 1, "q", {"pair": (1, (2, (3,))), "n": 2**80}, 2.5, "m:f", None, 30.0, 5))
@example(TaskReply("r", 0, 1, False, None, errors.TaskTimeoutError("t", 1.5), 0.1, task_id="t"))
@example(ContextReply("q", False, None, KeyError("missing")))
@example(("a",) * 3)
def test_well_formed_messages_round_trip_field_by_field(message: Any) -> None:
    got = decode(encode(message))
    assert type(got) is type(message)
    if type(message) not in KIND_OF:
        assert same(got, message)
        return
    for name in message._fields:
        sent, back = getattr(message, name), getattr(got, name)
        if name == "error" and type(message) is TaskReply:
            assert same_task_error(back, sent, message.task_id), (back, sent)
        elif name == "error":
            assert same_context_error(back, sent), (back, sent)
        else:
            assert same(back, sent), (name, back, sent)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def made(kind: type[BaseException], args: list[Any]) -> BaseException:
    """kind(*args), or the exception its constructor raised (an exception all the same)."""
    try:
        return kind(*args)
    except Exception as exc:
        return exc


ANY_ERRORS = st.builds(
    made,
    st.sampled_from(
        [
            errors.TaskTimeoutError,
            errors.TaskFailedError,
            errors.RemoteTaskError,
            errors.FeedbackValidationError,
            errors.TransportError,
            KeyError,
            ValueError,
            Oddity,
            Unprintable,
        ]
    ),
    st.lists(ANYTHING | st.builds(pow, st.just(10), st.just(5000)), min_size=1, max_size=4),
)


@FUZZ
@given(ANY_ERRORS)
@example(ValueError(10**5000))  # str() raises: a worker died encoding the reply once
@example(errors.TaskTimeoutError("t", 0))
@example(errors.FeedbackValidationError("m", field=5))  # type: ignore[arg-type]
def test_whatever_an_exception_holds_its_reply_travels(error: BaseException) -> None:
    """A reply the run would drop as malformed leaves it waiting for ever: encode never makes one."""
    assert type(decode(encode(TaskReply("r", 0, 1, False, None, error, 0.5, task_id="t")))) is TaskReply
    assert type(decode(encode(ContextReply("q", False, None, error)))) is ContextReply


# --- size and nesting --------------------------------------------------------------------------------------
def ext(code: int, payload: bytes) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, payload))


def tuples_inside_each_other(depth: int, lists: int = 0) -> bytes:
    """A tuple in a tuple ... `depth` deep, each holding the next inside `lists` lists; built
    inside out in linear time."""
    parts, size = [b"\x00"], 1
    for _ in range(depth):
        prefix = b"\x91" * (1 + lists)  # the tuple's document: a one-item array, then the lists
        payload = len(prefix) + size
        head = (
            b"\xc7" + struct.pack(">BB", payload, 1)
            if payload <= 0xFF
            else b"\xc8" + struct.pack(">HB", payload, 1)
            if payload <= 0xFFFF
            else b"\xc9" + struct.pack(">IB", payload, 1)
        )
        parts += [prefix, head]
        size = len(head) + payload
    return b"".join(reversed(parts))


def raw(inner: bytes) -> bytes:
    return b"\x82\xa1t\xa3raw\xa1v" + inner


def big_inputs() -> dict[str, bytes]:
    count = struct.pack(">I", MiB // 4)
    return {
        "random": random.Random(7).randbytes(MiB),
        "deep arrays": b"\x91" * MiB,
        "array32 claiming 4G items": b"\xdd\xff\xff\xff\xff" + b"\x00" * 64,
        "str32 claiming 4 GB": b"\xdb\xff\xff\xff\xff" + b"a" * 64,
        "ext32 claiming 4 GB": b"\xc9\xff\xff\xff\xff\x0b",
        "256k empty lists": raw(b"\xdd" + count + b"\x90" * (MiB // 4)),
        "256k empty maps": raw(b"\xdd" + count + b"\x80" * (MiB // 4)),
        "256k nils": raw(b"\xdd" + count + b"\xc0" * (MiB // 4)),
        "a 1 MiB int as timeout": task_doc(timeout=int.from_bytes(b"\x7f" * MiB, "big")),
        "a 1 MiB str as run_id": task_doc(run_id="r" * MiB),
        "a 1 MiB Decimal as kwarg": task_doc(kwargs={"x": Decimal("9" * MiB)}),
        "100k kwargs": task_doc(kwargs={f"k{i}": i for i in range(100_000)}),
    }


# Measured: empty lists and maps cost ~64-72 bytes each, so decoding costs at most ~80x the input.
MEMORY_FACTOR = 80


def c_decode_seconds(data: bytes) -> float:
    """CPU seconds msgpack's C decoder alone takes over `data` (the yardstick of "quickly")."""
    started = time.process_time()
    with contextlib.suppress(Exception):
        msgpack.unpackb(data, strict_map_key=False)
    return time.process_time() - started


@pytest.mark.parametrize(("name", "data"), big_inputs().items(), ids=list(big_inputs()))
def test_large_inputs_decode_or_fail_quickly_within_bounded_memory(name: str, data: bytes) -> None:
    """Quickly: within 20x the C decoder's own time on the same bytes in the same process
    (measured: 2-9x, and 90x for a tiny absolute time), plus 0.25 s; a bound relative to
    this machine's speed, so it catches a decode gone quadratic, not a slow machine."""
    yardstick = c_decode_seconds(data)
    started = time.process_time()
    decoded_or_malformed(data)
    took = time.process_time() - started
    assert took < 20 * yardstick + 0.25, f"{name} took {took:.2f}s, msgpack's decoder alone {yardstick:.2f}s"
    tracemalloc.start()
    try:
        with contextlib.suppress(MalformedMessage):
            decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= MEMORY_FACTOR * len(data) + MiB, f"{name}: {peak / MiB:.1f} MiB for {len(data) / MiB:.2f} MiB"


NESTING_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from graflow_async.wire.envelope import MAX_NESTING, MalformedMessage, decode, encode
from tests.unit.test_wire_properties import raw, tuples_inside_each_other
deepest = raw(tuples_inside_each_other(MAX_NESTING, lists=1000))
encode(decode(deepest))  # the deepest that travels: it decodes and encodes again
for depth in (MAX_NESTING + 1, 200, 400, 150_000):  # 150k: 1 MiB
    try:
        decode(raw(tuples_inside_each_other(depth)))
    except MalformedMessage:
        continue
    sys.exit(f"{{depth}} tuples inside each other decoded")
value = 0
for _ in range(MAX_NESTING + 1):
    value = (value,)
try:
    encode(value)
except TypeError:
    pass
else:
    sys.exit("a value nested deeper than decode accepts was encoded")
for depth in (400, 5000):
    value = 0
    for _ in range(depth):
        value = (value,)
    try:
        encode(value)
    except TypeError:
        continue
    sys.exit(f"{{depth}} tuples inside each other encoded")
print("ok")
"""


def test_tuples_nested_deep_are_malformed_instead_of_crashing_the_process() -> None:
    """The codec decodes a tuple, set or frozenset with a nested unpack of ~40 KiB of C stack: ~200
    inside each other overflowed the stack and killed the process (SIGSEGV), so an entry of a few
    KiB killed every worker of a fleet in turn. Run apart: a regression shows as a failure, not a crash."""
    done = subprocess.run(
        [sys.executable, "-c", NESTING_SCRIPT.format(root=str(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr[-2000:]
    deep: Any = frozenset({"x"})  # tuples of sets of ... as deep as real data goes still travel
    for _ in range(MAX_NESTING - 1):
        deep = (deep, [{"k": 1}])
    assert decode(encode(TaskMessage("r", "t", 0, 1, "q", {"x": deep}))).kwargs["x"] == deep
