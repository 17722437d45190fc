"""No entry stops a worker (SPEC section 7): hypothesis-made entries, XADDed straight into the task
stream of a real fleet (two worker processes on a redis-server of their own).

Design: the fleet is started once for the module by a sync fixture. One test calls a hypothesis
property (`@given` over batches of 50 entries, a few batches, derandomized, no example database, no
shrinking: a failure names the entry) that XADDs each batch with redis-py and waits until the task
stream has settled; after the batches a real run goes through the same fleet. What each entry must
come to is decided by `outcome` (the wire decoder, property-tested in unit/test_wire_properties.py, says
what is malformed; an entry made broken on purpose is checked to be malformed):

    DEAD      malformed, or not a task: in <ns>:dead with a reason, never run
    REFUSED   a task the workers may not run: in <ns>:dead ("refused: ..."), failed back to its run
    SKIPPED   a task of a run that has ended (its reply stream does not exist): acked, never run
    RUN       a task workers run: run (with whatever arguments) and its reply, ok or failed, sent

Malformed replies are also sent to the workers' own context streams, where they must be dropped.
Two tests at the end keep bugs found outside the wire fixed (the executor's replies and heartbeats).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import pickle
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import remote_faults as rf
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from redis_server import RedisServer
from worker_processes import RUN_TIMEOUT, Workers, queue_settled, wait_for

from graflow_async import run, workflow
from graflow_async.transports.keys import is_reply_queue
from graflow_async.transports.redis import RedisStreamsTransport
from graflow_async.wire.codec import packb
from graflow_async.wire.envelope import MalformedMessage, decode
from graflow_async.wire.messages import TaskMessage, TaskReply

TASKS, DEAD = "graflow:tasks", "graflow:dead"
REPLIES = "run:fuzz:replies"  # the reply queue of a run in progress (its stream exists)
GONE = "run:gone:replies"  # the reply queue of a run that has ended (no stream)
WORKER_QUEUE, MARKERS = "@worker", "@markers"  # stand-ins for a worker's context queue, a marker directory
BATCH, BATCHES = 50, 8
SETTLE_TIMEOUT = 20.0


# A failing example of a whole fleet's entries has a large repr: hypothesis warns about it, and
# the warning (an error under filterwarnings=error) would hide the failure itself.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


# --- the entries -------------------------------------------------------------------------------------
SMALL = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.sampled_from([2**64, 10**400, Decimal("1e999999"), Decimal("sNaN")])
    | st.builds(pow, st.just(2), st.just(20_000)),  # an int too long to print (str() raises)
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
        | st.lists(inner, max_size=2).map(tuple)
    ),
    max_leaves=6,
)
NAP = st.sampled_from([0, 0.01, -1, "x", None, [0.01]])  # never long: any value a task would sleep on is short
RUNNABLE: dict[str, st.SearchStrategy[dict[str, Any]]] = {  # tasks the workers import, arguments of any type
    "remote_faults:count_and_nap": st.fixed_dictionaries(
        {"marker_dir": st.sampled_from([MARKERS, 5, None, "/nonexistent-graflow-fuzz"])},
        optional={"index": SMALL, "seconds": NAP},
    ),
    "remote_faults:pid": st.just({}) | st.dictionaries(st.text(max_size=4), SMALL, max_size=2),
    "remote_faults:fail_fast": st.just({}),
    "remote_faults:unserializable": st.just({}),
    "remote_flows:where": st.just({}),
    "remote_flows:square": st.fixed_dictionaries({"start": SMALL}),
    "remote_flows:boom": st.fixed_dictionaries({"message": SMALL}),
    "remote_flows:sync_boom": st.fixed_dictionaries({"message": SMALL}),
    "remote_dynamic:square_it": st.fixed_dictionaries({}, optional={"n": SMALL}),
}
REFUSED_REFS = [
    "os:system",
    "remote_faults:not_a_task",
    "remote_faults:os.system",
    "remote_flows.os:system",
    "shutil:rmtree",
    "remote_faults",
    "remote_faults:",
    ":pid",
    "remote_faults:pid:x",
    "",
    "remote_faults.nope:pid",
    "builtins:eval",
    "remote_faults:__builtins__",
]
SECONDS = st.sampled_from([None, 0.001, 0.5, 5.0, 30.0, 1e300, 1e-9])
WRONG: dict[str, st.SearchStrategy[Any]] = {  # for each task field, values that are not one
    **dict.fromkeys(["run_id", "task_id", "reply_to"], st.sampled_from([123, None, b"q", ["q"], 10**400, 1.5])),
    **dict.fromkeys(["node"], st.sampled_from([-1, "0", None, 1.5, True, [0], -(2**70)])),
    **dict.fromkeys(["attempt", "cycle", "max_cycles"], st.sampled_from([0, -5, "1", 1.0, None, True])),
    "kwargs": st.sampled_from([[], "x", None, {1: 2}, {("a",): 1}, {None: 1}, {b"index": 1}]),
    **dict.fromkeys(
        ["timeout", "lease_timeout"],
        st.sampled_from([-1, 0, math.nan, math.inf, -math.inf, "5", 10**400, True, [1], Decimal(5)]),
    ),
    "max_deliveries": st.sampled_from(["5", 5.0, 0, -1, True, [5], -(10**400), "many"]),
    "task_ref": st.sampled_from([1, [], b"remote_faults:pid", True, {"ref": "x"}]),
    "resumed_metadata": st.sampled_from([[], "x", 1, b"m"]),
}
MISSING = object()


@dataclass(frozen=True)
class Entry:
    """One stream entry: `doc` packed (or `raw` bytes as they are) under b"m" (unless `no_m`), and
    `extra` fields; `broken` names the fields made wrong on purpose; `to_context`: sent to a worker's
    own context stream instead of the task stream."""

    doc: Any = None
    raw: bytes | None = None
    extra: dict[bytes, bytes] = field(default_factory=dict)
    broken: tuple[str, ...] = ()
    no_m: bool = False
    to_context: bool = False
    crashes: bool = False  # decoding it killed the process once: the test never decodes it itself

    def __repr__(self) -> str:
        try:
            what = repr(self.doc if self.raw is None else self.raw)
        except ValueError:  # an int of more than 4300 digits
            what = "<a doc holding an int too long to print>"
        return f"Entry({what[:300]}, extra={self.extra!r:.100}, broken={self.broken}, no_m={self.no_m})"

    def fields(self, task_id: str, worker_queue: str, markers: str) -> dict[bytes, bytes]:
        out = dict(self.extra)
        if not self.no_m:
            out[b"m"] = self.raw if self.raw is not None else packb(self._filled(task_id, worker_queue, markers))
        return out or {b"nothing": b""}

    def _filled(self, task_id: str, worker_queue: str, markers: str) -> Any:
        doc = self.doc
        if not (isinstance(doc, dict) and doc.get("t") == "task"):
            return doc
        doc = dict(doc)
        if "task_id" not in self.broken:
            doc["task_id"] = task_id  # unique: its reply and log lines can be found
        if doc.get("reply_to") == WORKER_QUEUE:
            doc["reply_to"] = worker_queue
        kwargs = doc.get("kwargs")
        if isinstance(kwargs, dict) and kwargs.get("marker_dir") == MARKERS:
            doc["kwargs"] = {**kwargs, "marker_dir": markers}
        return doc


@st.composite
def task_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A task envelope as a run would send it, naming a task workers run or refuse."""
    if draw(st.sampled_from([True, True, True, False])):  # mostly tasks the workers run
        ref = draw(st.sampled_from(sorted(RUNNABLE)))
        kwargs = draw(RUNNABLE[ref])
    else:
        ref = draw(st.sampled_from(REFUSED_REFS) | st.text(max_size=12))
        kwargs = draw(st.dictionaries(st.text(max_size=6), SMALL, max_size=3))
    return {
        "t": "task",
        "run_id": draw(st.text(max_size=8)),
        "task_id": "",
        "node": draw(st.integers(0, 2**70)),
        "attempt": draw(st.integers(1, 5)),
        "reply_to": draw(st.sampled_from([REPLIES, REPLIES, GONE, WORKER_QUEUE, "tasks"])),
        "kwargs": kwargs,
        "timeout": draw(st.sampled_from([None, None, 0.001, 2.0])),
        "task_ref": ref,
        "lease_timeout": draw(SECONDS),
        "max_deliveries": draw(st.none() | st.integers(1, 10) | st.just(2**70)),
        "inject_context": draw(SMALL),
        "cycle": draw(st.integers(1, 3)),
        "max_cycles": draw(st.integers(1, 2**64)),
        "resumed_metadata": draw(st.none() | st.dictionaries(st.text(max_size=4), SMALL, max_size=2)),
    }


@st.composite
def broken_task_docs(draw: st.DrawFn) -> Entry:
    """A task envelope with one to three fields missing or of a wrong type or value."""
    doc = draw(task_docs())
    names = draw(st.sets(st.sampled_from(sorted(WRONG)), min_size=1, max_size=3))
    for name in names:
        value = draw(st.just(MISSING) | WRONG[name])
        if value is MISSING:
            del doc[name]
        else:
            doc[name] = value
    return Entry(doc, broken=tuple(sorted(names)))


OTHER_DOCS = st.sampled_from(
    [
        {
            "t": "reply",
            "run_id": "r",
            "node": 0,
            "attempt": 1,
            "ok": True,
            "value": 1,
            "error": None,
            "duration": 0.0,
            "directives": [],
            "retryable": True,
            "suspended": False,
            "cycle": 1,
            "task_id": "t",
        },
        {"t": "ctx-reply", "request_id": "q", "ok": True, "value": None, "error": None},
        {
            "t": "ctx",
            "run_id": "r",
            "node": 0,
            "cycle": 1,
            "attempt": 1,
            "request_id": "q",
            "op": "channel.get",
            "args": {},
            "reply_to": "tasks",
        },
        {"t": "retry", "node": 0},
        {"t": "raw", "v": [1, 2]},
        {"t": "nope"},
        {"t": None},
        [1, 2],
        "task",
        None,
    ]
)
GARBAGE = st.binary(max_size=64) | st.sampled_from(
    [
        b"",
        b"\x80",
        b"\xc1",
        b"\x81\xa1t\xa4task",
        b"\x93\x01\x02",
        b"\xdd\xff\xff\xff\xff",
        pickle.dumps({"t": "task"}),
        b"\x82\xa1t\xa3raw\xa1v" + b"\x91" * 1023 + b"\x00",
    ]
)
EXTRA = st.dictionaries(st.sampled_from([b"s", b"m2", b"queue", b"\xff", b"id"]), st.binary(max_size=16), max_size=2)
STR_ERROR = {
    "t": "reply",
    "run_id": "r",
    "node": 0,
    "attempt": 1,
    "ok": False,
    "value": None,
    "error": "boom",
    "duration": 0.0,
    "directives": [],
    "retryable": True,
    "suspended": False,
    "cycle": 1,
}
REPLY_GARBAGE = st.sampled_from(
    [  # replies a worker's context stream must drop, or ignore
        STR_ERROR,
        {"t": "ctx-reply", "request_id": "q", "ok": False, "value": None, "error": ["x"]},
        {"t": "ctx-reply", "request_id": 5, "ok": True, "value": None, "error": None},
        {"t": "ctx-reply", "request_id": "q", "ok": False, "value": None, "error": {"type": "KeyError"}},
        {"t": "ctx-reply", "request_id": "never-asked", "ok": True, "value": 1, "error": None},
        {
            "t": "ctx-reply",
            "request_id": "q",
            "ok": False,
            "value": None,
            "error": {"type": "FeedbackValidationError", "message": "m", "field": 1},
        },
        {"t": "retry", "node": "x"},
    ]
)
ENTRIES = st.one_of(
    st.builds(Entry, task_docs()),
    st.builds(Entry, task_docs()),
    broken_task_docs(),
    broken_task_docs(),
    st.builds(Entry, OTHER_DOCS, extra=EXTRA),
    st.builds(Entry, raw=GARBAGE, extra=EXTRA),
    st.builds(Entry, extra=EXTRA, no_m=st.just(True)),
    st.builds(Entry, REPLY_GARBAGE, to_context=st.just(True)),
    st.builds(Entry, raw=GARBAGE, to_context=st.just(True)),
)


def named_entries() -> list[Entry]:
    """Every field wrong by name once, and what killed workers before it was fixed."""
    task = {
        "t": "task",
        "run_id": "r",
        "task_id": "",
        "node": 0,
        "attempt": 1,
        "reply_to": REPLIES,
        "kwargs": {},
        "timeout": None,
        "task_ref": "remote_faults:pid",
        "lease_timeout": 30.0,
        "max_deliveries": 5,
        "inject_context": False,
        "cycle": 1,
        "max_cycles": 100,
        "resumed_metadata": None,
    }
    nap = {"task_ref": "remote_faults:count_and_nap", "kwargs": {"marker_dir": MARKERS, "index": 0, "seconds": 0}}
    return [
        Entry({**task, "max_deliveries": "5"}, broken=("max_deliveries",)),  # crashed on `count > "5"` once
        Entry(
            {**task, **nap, "kwargs": {**nap["kwargs"], "index": "x"}, "max_deliveries": "5"},
            broken=("max_deliveries",),
        ),
        Entry({**task, **nap, "kwargs": {**nap["kwargs"], "index": "x"}}),  # runs: index is any value
        Entry({**task, **nap, "lease_timeout": -1}, broken=("lease_timeout",)),
        Entry({**task, "reply_to": 123}, broken=("reply_to",)),
        Entry({**task, "node": -1}, broken=("node",)),
        Entry({**task, "kwargs": {1: "x"}}, broken=("kwargs",)),
        Entry({**task, "timeout": 10**400}, broken=("timeout",)),  # OverflowError in decode: every worker died
        Entry({**task, "lease_timeout": 10**400}, broken=("lease_timeout",)),
        Entry({**task, "task_ref": "remote_flows:boom", "kwargs": {"message": 10**5000}}),  # str(error) raised
        Entry({**task, "reply_to": GONE}),  # a valid task of a run that has ended
        Entry({**task, "reply_to": GONE, "task_ref": "os:system", "kwargs": {"command": "true"}}),
        Entry({**task, "task_ref": "os:system", "kwargs": {"command": "true"}}),
        Entry(raw=packb({"t": "raw", "v": 0})[:-1] + nested_tuples(400), crashes=True),  # SIGSEGV: all died
        Entry(raw=b"\x00" * 2**20),  # 1 MiB
        Entry({**task, "kwargs": {"blob": "x" * 2**20}}),
        Entry(no_m=True, extra={b"junk": b"1"}),
        Entry(STR_ERROR, to_context=True),  # AttributeError in a worker's context inbox: every worker died
        Entry(raw=packb({"t": "raw", "v": 0})[:-1] + nested_tuples(400), to_context=True, crashes=True),
    ]


def nested_tuples(depth: int) -> bytes:
    data = b"\x00"
    for _ in range(depth):
        data = bytes([0xC8]) + (len(data) + 1).to_bytes(2, "big") + b"\x01\x91" + data
    return data


# --- what must become of an entry --------------------------------------------------------------------
DEAD_, REFUSED, SKIPPED, RUN = "dead", "refused", "skipped", "run"
CONTEXT = "sent to a worker's context stream"
SKIP_LINE = re.compile(r"skipped a task of a run that has ended.*task_id=(fz\d+-\d+)")


def outcome(fields: dict[bytes, bytes], live_queues: set[str]) -> tuple[str, Any]:
    try:
        message = decode(fields.get(b"m", b""))
    except MalformedMessage:
        return DEAD_, None
    if not isinstance(message, TaskMessage):
        return DEAD_, message
    if message.task_ref not in RUNNABLE or not is_reply_queue(message.reply_to):  # trust before revocation
        return REFUSED, message
    if message.reply_to not in live_queues:
        return SKIPPED, message
    return RUN, message


@dataclass
class Fleet:
    url: str
    workers: Workers
    client: redis.Redis
    markers: Path
    tally: collections.Counter[str] = field(default_factory=collections.Counter)
    batches: int = 0

    @property
    def context_queues(self) -> list[str]:
        return [f"worker:{w.worker_id}:context" for w in self.workers.all]

    def alive(self) -> None:
        for w in self.workers.all:
            assert w.process.poll() is None, f"worker {w.worker_id} exited {w.process.returncode}:\n{w.output()}"
            assert "Traceback" not in w.log.read_text(errors="replace"), w.output()

    def log_text(self) -> str:
        return "".join(w.log.read_text(errors="replace") for w in self.workers.all)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    server = RedisServer()
    workers = Workers(server.url, tmp_path_factory.mktemp("fuzz-logs"))
    try:
        server.start()
        workers.start(2, "--concurrency", "8")
        client = redis.Redis.from_url(server.url)
        client.xgroup_create(f"graflow:{REPLIES}", "run", id="0", mkstream=True)  # a run in progress
        try:
            yield Fleet(server.url, workers, client, tmp_path_factory.mktemp("fuzz-markers"))
        finally:
            client.close()
    finally:
        workers.close()
        server.cleanup()


# --- the property --------------------------------------------------------------------------------------
def settle(fleet: Fleet, replies_wanted: set[str], dead_wanted: set[str]) -> None:
    """Until the task stream is empty with nothing pending, and the replies and dead letters are in."""
    client, deadline = fleet.client, time.monotonic() + SETTLE_TIMEOUT
    while True:
        pending = client.xpending(TASKS, "graflow:workers")["pending"]
        if (
            client.xlen(TASKS) == 0
            and pending == 0
            and replies_wanted <= set(replies(fleet))
            and dead_wanted <= set(dead_letters(fleet))
        ):
            return
        if time.monotonic() > deadline:
            fleet.alive()
            raise AssertionError(
                f"not settled in {SETTLE_TIMEOUT}s: {client.xlen(TASKS)} entries, {pending} pending, missing "
                f"replies {sorted(replies_wanted - set(replies(fleet)))[:5]}, dead "
                f"{sorted(dead_wanted - set(dead_letters(fleet)))[:5]}"
            )
        time.sleep(0.05)


def replies(fleet: Fleet) -> dict[str, TaskReply]:
    out = {}
    for _, fields in fleet.client.xrange(f"graflow:{REPLIES}"):
        reply = decode(fields[b"m"])  # a worker's reply is never malformed
        assert isinstance(reply, TaskReply), reply
        out[reply.task_id] = reply
    return out


def dead_letters(fleet: Fleet) -> dict[str, bytes]:
    return {fields[b"id"].decode(): fields[b"reason"] for _, fields in fleet.client.xrange(DEAD)}


def send_and_check(fleet: Fleet, batch: list[Entry]) -> None:
    client, number = fleet.client, fleet.batches
    fleet.batches += 1
    live = {REPLIES, "tasks", *fleet.context_queues}
    sent: list[tuple[str, Entry, str, Any, str]] = []  # id, entry, outcome, message, task id
    dropped_before = fleet.log_text().count("dropped a reply")
    malformed_replies = 0
    for i, entry in enumerate(batch):
        task_id, worker_queue = f"fz{number:02d}-{i:03d}", fleet.context_queues[i % 2]
        fields = entry.fields(task_id, worker_queue, str(fleet.markers))
        if entry.to_context:
            client.xadd(f"graflow:{worker_queue}", fields)
            malformed_replies += entry.crashes or outcome(fields, live)[1] is None
            fleet.tally[CONTEXT] += 1
            continue
        ident = client.xadd(TASKS, fields).decode()
        what, message = (DEAD_, None) if entry.crashes else outcome(fields, live)
        if entry.broken:
            assert what == DEAD_, f"{entry.broken} made wrong, yet it decodes: {message!r:.300}"
        sent.append((ident, entry, what, message, task_id))
    answered = {tid for _, _, what, m, tid in sent if what in (RUN, REFUSED) and m.reply_to == REPLIES}
    settle(fleet, answered, {ident for ident, _, what, _, _ in sent if what in (DEAD_, REFUSED)})

    dead, got = dead_letters(fleet), replies(fleet)
    skipped = set(SKIP_LINE.findall(fleet.log_text()))
    for ident, entry, what, _, task_id in sent:
        fleet.tally[what] += 1
        if what in (DEAD_, REFUSED):
            reason = dead[ident].decode(errors="replace")
            assert reason and (what == DEAD_ or reason.startswith("refused: ")), (reason, entry)
        else:
            assert ident not in dead, (dead[ident], entry)
        if what == SKIPPED:
            assert task_id in skipped, f"{task_id} was not skipped: {entry}"
        if task_id in answered:  # run, or refused: its run hears how it went
            reply = got[task_id]
            assert reply.ok or reply.error is not None, reply
            assert what == RUN or (not reply.ok and not reply.retryable and "TaskNotFound" in str(reply.error))
            fleet.tally["ran ok" if reply.ok else "failed cleanly" if what == RUN else "refusal replied"] += 1
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while (dropped := fleet.log_text().count("dropped a reply") - dropped_before) < malformed_replies:
        assert time.monotonic() < deadline, f"{malformed_replies} malformed replies sent, {dropped} dropped"
        time.sleep(0.05)
    fleet.tally["context replies dropped"] += dropped
    fleet.alive()
    consumers = {c["name"].decode() for c in client.xinfo_consumers(TASKS, "graflow:workers")}
    assert {w.worker_id for w in fleet.workers.all} <= consumers


@settings(
    max_examples=BATCHES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each try costs a second of a live fleet
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(batch=st.lists(ENTRIES, min_size=BATCH, max_size=BATCH))
def fuzz_the_fleet(fleet: Fleet, batch: list[Entry]) -> None:
    send_and_check(fleet, batch)


def test_no_entry_stops_a_worker_of_a_fleet(fleet: Fleet) -> None:
    """Every field of every type and size: malformed entries are dead-lettered with a reason, tasks with
    wrong arguments fail cleanly, both workers stay up; then a real run completes on the same fleet."""
    started = time.monotonic()
    send_and_check(fleet, named_entries())
    fuzz_the_fleet(fleet)
    dead_total = fleet.client.xlen(DEAD)
    result = asyncio.run(real_run(fleet.url))
    assert result in {w.pid for w in fleet.workers.all}
    fleet.alive()
    tally = fleet.tally
    fuzzed = tally[DEAD_] + tally[REFUSED] + tally[SKIPPED] + tally[RUN]
    print(
        f"\nworker fuzz: {fuzzed} task-stream entries in {fleet.batches} batches "
        f"+ {tally[CONTEXT]} context-stream entries; "
        f"dead-lettered {tally[DEAD_]} malformed/not a task + {tally[REFUSED]} refused "
        f"(dead stream: {dead_total}, the rest replies sent into the task stream); skipped {tally[SKIPPED]}; "
        f"ran {tally[RUN]} ({tally['ran ok']} ok, {tally['failed cleanly']} failed cleanly, others replied "
        f"elsewhere); context replies dropped {tally['context replies dropped']}; "
        f"workers alive {sum(w.process.poll() is None for w in fleet.workers.all)}/2; "
        f"{time.monotonic() - started:.1f}s"
    )
    assert fuzzed + tally[CONTEXT] == BATCH * BATCHES + len(named_entries())
    assert tally[DEAD_] >= fuzzed // 3 and tally[RUN] >= 30 and tally[REFUSED] >= 5 and tally[SKIPPED] >= 5


async def real_run(url: str) -> Any:
    with workflow("after-the-fuzz") as wf:
        wf.add(rf.pid)
    async with RedisStreamsTransport(url, connect_timeout=2) as transport:
        async with asyncio.timeout(RUN_TIMEOUT):
            return (await run(wf, transport=transport)).output


# --- reproducers of bugs outside the wire ---------------------------------------------------------------
def forged(reply_to: str, ref: str, kwargs: dict[str, Any], lease: float) -> bytes:
    return packb(
        {
            "t": "task",
            "run_id": "r",
            "task_id": ref,
            "node": 0,
            "attempt": 1,
            "reply_to": reply_to,
            "kwargs": kwargs,
            "timeout": None,
            "task_ref": ref,
            "lease_timeout": lease,
            "max_deliveries": 5,
            "inject_context": False,
            "cycle": 1,
            "max_cycles": 100,
            "resumed_metadata": None,
        }
    )


async def test_a_reply_queue_that_is_not_a_stream_does_not_stop_the_worker(
    workers: Workers, redis_url: str, client: Any
) -> None:
    """reply_to naming a key that is not a run's reply stream: a name of another kind (a run's
    channel) is refused before anything runs; a reply-queue name that another
    writer made a hash of makes the reply's XADD answer WRONGTYPE, which the worker logs and
    outlives (it once left the executor, and the worker exited 1)."""
    [worker] = workers.start(1)
    await client.hset("graflow:run:fz:channel", "k", "v")
    await client.hset("graflow:run:fz2:replies", "k", "v")
    await client.xadd(TASKS, {b"m": forged("run:fz:channel", "remote_faults:pid", {}, 30.0)})
    await client.xadd(TASKS, {b"m": forged("run:fz2:replies", "remote_faults:pid", {}, 30.0)})
    await wait_for(lambda: queue_settled(client), 10, "the entries to be settled")
    [(_, dead)] = await client.xrange("graflow:dead")
    assert b"not a run's reply queue" in dead[b"reason"]
    with contextlib.suppress(AssertionError):
        await wait_for(lambda: worker.process.poll() is not None, 1.5, "the worker to exit")
    assert worker.process.poll() is None, worker.output()[-600:]
    assert "WRONGTYPE" in worker.output()


async def test_a_task_with_a_huge_lease_does_not_stop_the_heartbeats_of_the_others(
    workers: Workers, redis_url: str, client: Any, tmp_path: Path
) -> None:
    """Heartbeats once slept min(leases in flight) / 3: with only a task of lease 1e300 in flight they
    slept for ever, so a later task of lease 1 s was never touched, was reclaimed and ran twice."""
    workers.start(1, "--concurrency", "4")
    await client.xgroup_create(f"graflow:{REPLIES}", "run", id="0", mkstream=True)
    nap = "remote_faults:count_and_nap"
    await client.xadd(
        TASKS, {b"m": forged(REPLIES, nap, {"marker_dir": str(tmp_path), "index": 0, "seconds": 1.5}, 1e300)}
    )
    await wait_for(lambda: list(tmp_path.glob("ran-0-*")), 10, "the huge-lease task to start")
    # The scenario's timing, not a wait for something to see: the heartbeat loop inside the worker
    # process must go to sleep while this task is alone in flight (with the bug, for ever).
    await asyncio.sleep(1.6)
    await client.xadd(TASKS, {b"m": forged(REPLIES, nap, {"marker_dir": str(tmp_path), "index": 1, "seconds": 3}, 1.0)})
    await wait_for(lambda: queue_settled(client), 15, "the tasks to be settled")
    assert len(list(tmp_path.glob("ran-1-*"))) == 1, "the lease-1s task ran more than once"
