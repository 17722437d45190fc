"""Every Redis key and stream name graflow-async uses, in one place.

    <ns>:tasks                      the task stream workers consume (group <ns>:workers): the
                                    tasks of priority 5, the default
    <ns>:tasks:p<n>                 the tasks of priority n (0-9 but 5), read highest first
    <ns>:run:{<run_id>}:replies     a run's reply stream (deleted when the run ends; a durable
                                    run trims the replies it journaled)
    <ns>:run:<run_id>:channel       a run's channel, a hash (expires after the run)
    <ns>:run:{<run_id>}:owner       a run's owner record, a hash: epoch (its incarnation),
                                    state (running, ended), owner (the driver); kept for a
                                    while after the run ends
    <ns>:run:{<run_id>}:lease       the current driver's lease: the epoch, expiring unless
                                    the driver renews it
    <ns>:run:{<run_id>}:journal     a durable run's facts, a stream: an entry per append (id: its first seq + 1)
    <ns>:run:{<run_id>}:snapshot    its compacted state, a hash: upto, data
    <ns>:run:{<run_id>}:header      what a durable run was started with (msgpack)
    <ns>:run:{<run_id>}:outcome     how a durable run ended (msgpack), kept `retention` seconds
    <ns>:durable                    sorted set of running durable runs by lease expiry (ms):
                                    where adopters look for runs whose driver died
    <ns>:worker:<id>:context        a worker's stream of answers from runs to its tasks
    <ns>:worker:<id>:alive          set by a live worker every few seconds, expiring soon after
    <ns>:dead                       dead letters: poison messages, too many deliveries
    <ns>:probe                      never exists: a run XADDs to it (NOMKSTREAM) to learn
                                    whether Redis takes writes
    <ns>:schedule:<name>:last       the last tick of schedule <name> a scheduler started, in
                                    milliseconds since the Unix epoch (only ever raised; kept)

The stores on the same server (`feedback.redis`, `records.redis`)::

    <ns>:feedback:request:<id>      a feedback request, a hash: request, response (JSON), status
    <ns>:feedback:index             sorted set of feedback ids by created_at
    <ns>:feedback:suspension:<run>  how to resume a suspended run (JSON)
    <ns>:feedback:settled           pub/sub channel: ids just answered or cancelled
    <ns>:runs:record:<run_id>       the web app's record of a run (JSON)
    <ns>:runs:index                 sorted set of run ids by started_at
    <ns>:runs:cancel:<run_id>       set once the run was asked to stop
"""

from __future__ import annotations

import re

DEFAULT_NAMESPACE = "graflow"
TASK_QUEUE = "tasks"
PRIORITIES = tuple(range(9, -1, -1))  # task priorities, highest first (SPEC 11)
_REPLY_QUEUE = re.compile(r"run:\S{1,256}:replies")


def is_reply_queue(queue: object) -> bool:
    """Whether `queue` names a run's reply queue (where a task's reply may go)."""
    return isinstance(queue, str) and _REPLY_QUEUE.fullmatch(queue) is not None


def reply_queue(run_id: str) -> str:
    """A run's reply queue, hash-tagged ``{run_id}`` as every key of the run is."""
    return f"run:{{{run_id}}}:replies"


def worker_queue(worker_id: str) -> str:
    """Where a worker takes the answers to its tasks' context requests."""
    return f"worker:{worker_id}:context"


class Keys:
    """The names for one namespace."""

    __slots__ = ("dead", "group", "namespace", "probe")

    def __init__(self, namespace: str = DEFAULT_NAMESPACE) -> None:
        if not namespace or any(c.isspace() for c in namespace):
            raise ValueError(f"invalid namespace {namespace!r}")
        self.namespace = namespace
        self.group = f"{namespace}:workers"
        self.dead = f"{namespace}:dead"
        self.probe = f"{namespace}:probe"

    def stream(self, queue: str) -> str:
        return f"{self.namespace}:{queue}"

    def stream_at(self, queue: str, priority: int) -> str:
        """The stream of `queue`'s tasks of `priority` (0-9): the queue's own stream for
        the default 5, ``<stream>:p<n>`` for the others."""
        return f"{self.namespace}:{queue}" if priority == 5 else f"{self.namespace}:{queue}:p{priority}"

    def priority_streams(self, queue: str) -> list[str]:
        """`queue`'s streams, highest priority first (`PRIORITIES`)."""
        return [self.stream_at(queue, p) for p in PRIORITIES]

    def owner(self, run_id: str) -> str:
        return f"{self.namespace}:run:{{{run_id}}}:owner"

    def lease(self, run_id: str) -> str:
        return f"{self.namespace}:run:{{{run_id}}}:lease"

    def journal(self, run_id: str) -> str:
        return f"{self.namespace}:run:{{{run_id}}}:journal"

    def snapshot(self, run_id: str) -> str:
        return f"{self.namespace}:run:{{{run_id}}}:snapshot"

    def header(self, run_id: str) -> str:
        return f"{self.namespace}:run:{{{run_id}}}:header"

    def outcome(self, run_id: str) -> str:
        return f"{self.namespace}:run:{{{run_id}}}:outcome"

    @property
    def durable_index(self) -> str:
        return f"{self.namespace}:durable"

    def schedule_last(self, name: str) -> str:
        return f"{self.namespace}:schedule:{name}:last"

    def alive(self, consumer: str) -> str:
        return f"{self.namespace}:worker:{consumer}:alive"

    def queue_of(self, stream: str) -> str:
        return stream[len(self.namespace) + 1 :]

    # --- the stores --------------------------------------------------------------------
    def feedback_request(self, feedback_id: str) -> str:
        return f"{self.namespace}:feedback:request:{feedback_id}"

    @property
    def feedback_index(self) -> str:
        return f"{self.namespace}:feedback:index"

    @property
    def feedback_settled(self) -> str:
        """The pub/sub channel of settled feedback ids."""
        return f"{self.namespace}:feedback:settled"

    def suspension(self, run_id: str) -> str:
        return f"{self.namespace}:feedback:suspension:{run_id}"

    def run_record(self, run_id: str) -> str:
        return f"{self.namespace}:runs:record:{run_id}"

    @property
    def run_index(self) -> str:
        return f"{self.namespace}:runs:index"

    def run_cancel(self, run_id: str) -> str:
        return f"{self.namespace}:runs:cancel:{run_id}"
