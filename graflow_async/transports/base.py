"""The transport contract: named queues of messages between a run and its executors.

A run's actor sends `TaskMessage`s to a task queue and receives `TaskReply`s and
`ContextRequest`s on its own reply queue; executors (in-process for the memory
transport, worker processes for Redis Streams) receive from the task queue, run the
task, send the reply and ack, and take `ContextReply`s on a queue of their own. The
run actor never knows which transport it talks to.

Every method the runtime calls is declared here. The abstract ones are the core
(`send`, `receive`, `ack`, `aclose`, `closed`); the others have defaults that are
right for a transport without leases or dead letters, and a transport overrides what
it can do better. `graflow_async.transports.conformance.TransportSuite` checks an
implementation against all of it.

Delivery is at-least-once: a message received but not acked may be delivered
again (after a worker dies, say), so receivers drop duplicates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple

from graflow_async.actors.actor import Inbox
from graflow_async.actors.mailbox import MailboxClosed
from graflow_async.exceptions import TransportError
from graflow_async.transports.limits import Limits, local_limits
from graflow_async.wire.messages import StreamItem


@dataclass(frozen=True, slots=True)
class Delivery:
    """A received message and what `ack` needs to settle it."""

    id: str
    message: Any
    delivery_count: int = 1
    priority: int = 5  # of the queue's priority level it came from (SPEC 11)

    @property
    def key(self) -> tuple[str, int]:
        """What tells it apart from any other delivery of its queue."""
        return (self.id, self.priority)


class Transport(ABC):
    """Named FIFO queues. Implementations: `MemoryTransport`, `RedisStreamsTransport`."""

    #: True when executors for its task queues run inside the sending process (the
    #: run actor then starts one, on queues private to the run); False when separate
    #: worker processes consume a shared task queue (tasks must then be importable).
    in_process: bool = False
    #: True when a durable run keeps its journal on this transport's server (Redis): runs
    #: on it are durable unless told otherwise (SPEC 10).
    keeps_journals: bool = False
    #: True when the streams of its runs (SPEC 12) live on its server (`stream_append`,
    #: `read_stream`); False: a run's stream lives in memory with the run
    keeps_streams: bool = False

    @property
    @abstractmethod
    def closed(self) -> bool:
        """Whether `aclose` was called."""

    @abstractmethod
    async def send(self, queue: str, messages: Sequence[Any]) -> None:
        """Append `messages`, in order, to `queue` (created on first use).

        A transport may instead drop replies (`TaskReply`, `ContextRequest`,
        `ContextReply`) sent to a queue that does not exist, so that a reply whose reader
        has gone leaves nothing behind: a reader makes its queue first, with `open_queue`
        or by receiving from it. May wait while the queue is full (backpressure).
        Raises `TransportError` when the transport is closed or unreachable. A transport
        may fill in its own defaults for a `TaskMessage`'s `lease_timeout` and
        `max_deliveries` when they are None. Raises `TypeError`, sending nothing, when a
        message cannot be serialized (a task's result the wire format cannot carry).
        """

    @abstractmethod
    async def receive(self, queue: str, *, max_messages: int = 0, timeout: float | None = None) -> list[Delivery]:
        """Wait for messages on `queue` and return those available, in order (at most
        `max_messages` when > 0). Returns ``[]`` after `timeout` seconds without any
        (None: wait as long as it takes). Raises `TransportError` once closed."""

    @abstractmethod
    async def ack(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        """Settle `deliveries`: they will not be delivered again."""

    async def send_and_ack(
        self, queue: str, messages: Sequence[Any], ack_queue: str, deliveries: Sequence[Delivery]
    ) -> None:
        """`send` then `ack`, in that order; a transport may do both in one round trip."""
        await self.send(queue, messages)
        await self.ack(ack_queue, deliveries)

    def attach(self, queue: str, consumer: Callable[[Sequence[Any]], None]) -> Callable[[], None] | None:
        """Optional: hand `queue`'s messages straight to `consumer`, for a queue with one
        reader (a run's replies, an executor's context answers, the task queue of a run's
        in-process executor; never a task queue that workers share).

        In-process transports hand them over as they are sent, in the sender's turn (and
        skip a scheduling round trip); a transport that reads for its consumers hands them
        over as they arrive. Messages handed over this way are settled on delivery (there
        is nothing to ack). Returns a function that detaches the consumer, or None when the
        transport only supports pulling (`receive`, `inbox`). `consumer` must not block: it
        only takes the messages in.
        """
        return None

    def send_nowait(self, queue: str, messages: Sequence[Any]) -> bool:
        """Optional: hand `messages` to `queue`'s attached consumer now, without waiting,
        and return True; False (the default) when the transport cannot (nothing attached,
        or not in this process), and `send` must be awaited instead. Lets a loop callback
        deliver a reply in-process."""
        return False

    def inbox(self, queue: str) -> Inbox[Any]:
        """`queue` as the inbox of its only reader: batches of messages, acked on
        receipt; closed when the transport is."""
        return TransportInbox(self, queue)

    async def open_queue(self, queue: str) -> None:
        """Make `queue` exist before anything is sent to it, so that replies to its reader
        land (an executor's context queue). Default: queues need no making."""

    async def discard(self, queue: str) -> None:
        """Forget `queue` and whatever it still holds (a run's reply queue when it ends).
        Default: nothing to forget."""

    async def touch(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        """Extend this consumer's claim on `deliveries` while their tasks run (a heartbeat).
        Default: claims do not lapse, nothing to extend."""

    async def dead_letter(self, queue: str, delivery: Delivery, reason: str) -> None:
        """Settle `delivery` without running it, keeping it and `reason` where an operator
        can see them. Default: acks it (the reason is logged by the caller)."""
        await self.ack(queue, (delivery,))

    async def release(self, queue: str, deliveries: Sequence[Delivery]) -> None:
        """Hand `deliveries` back unsettled, for another consumer to take at once (a worker
        stopped their tasks). Default: nothing; they come back when their claim lapses."""

    async def leave(self, queue: str) -> None:
        """This consumer stops reading `queue` for good (a worker's clean exit), so queue
        figures stop counting it; a queue it never read is fine. Default: nothing to do."""

    async def ended(self, runs: Collection[Incarnation]) -> set[Incarnation]:
        """Of `runs` (the run incarnations task messages name), those that have ended:
        executors skip (settle, never run) their tasks. Default: none is known to have
        ended."""
        return set()

    async def begin_run(self, run_id: str, lease: float) -> int:
        """A run starts (or starts again) on this transport: its epoch, the incarnation its
        messages carry, with a lease of `lease` seconds its driver renews. Default: 0, a
        transport whose runs need no incarnations (in-process)."""
        return 0

    async def renew_run(self, run_id: str, epoch: int, lease: float) -> bool:
        """Renew the driver's lease; False once another incarnation took the run over."""
        return True

    async def end_run(self, run_id: str, epoch: int) -> None:
        """The incarnation `epoch` of the run has ended: its tasks still queued are skipped."""

    async def stream_append(self, run_id: str, items: Sequence[tuple[str, int, Any]]) -> None:
        """Append `(task_id, attempt, chunk)` items to the stream of run `run_id` (a
        worker's tasks'); only for a transport that `keeps_streams`."""
        raise TransportError(f"{type(self).__name__} keeps no run streams")

    async def stream_end(self, run_id: str) -> None:
        """The run has ended: its stream's readers stop at its end. Default: nothing kept."""

    def read_stream(self, run_id: str, after: str | None) -> AsyncIterator[StreamItem]:
        """The items of run `run_id`'s stream after `after`, until the run ends."""
        raise TransportError(f"{type(self).__name__} keeps no run streams")

    def limits(self) -> Limits:
        """Where attempts of this transport's tasks wait for their `Concurrency` and
        `RateLimit` (SPEC 11). Default: in this process, shared by the runs of the running
        event loop."""
        return local_limits()

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections; pending `receive` calls raise `TransportError` (and an
        `inbox`'s `receive_batch` raises `MailboxClosed`). Calling it again does nothing."""

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class Incarnation(NamedTuple):
    """A run as a task message names it: which run, which incarnation (its epoch), and
    where its replies go."""

    run_id: str
    epoch: int
    reply_to: str


class TransportInbox:
    """Adapts a transport queue to the actor kernel's `Inbox` protocol, for a queue whose
    only reader is the actor (a run's reply queue): it yields the messages themselves and
    acks them on receipt, since there is no one else to redeliver them to."""

    __slots__ = ("_closed", "queue", "transport")

    def __init__(self, transport: Transport, queue: str) -> None:
        self.transport = transport
        self.queue = queue
        self._closed = False

    async def receive_batch(self, max_items: int = 0) -> list[Any]:
        if self._closed:
            raise MailboxClosed
        try:
            batch = await self.transport.receive(self.queue, max_messages=max_items)
        except TransportError:
            if self.transport.closed:
                raise MailboxClosed from None
            raise
        if batch:
            await self.transport.ack(self.queue, batch)
        return [d.message for d in batch]

    def close(self) -> None:
        self._closed = True
