"""A task's context requests from a worker: sent again, with backoff on the run's clock,
until the run answers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from clocks import FastClock

from graflow_async.clock import use_clock
from graflow_async.execute.context_port import RESEND_FIRST, RESEND_MAX, ContextPort
from graflow_async.transports import MemoryTransport
from graflow_async.wire.messages import ContextReply, ContextRequest, TaskMessage


class Lossy(MemoryTransport):
    """Loses every context request sent to the run (its Redis restarted, say), but keeps count."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[ContextRequest] = []

    async def send(self, queue: str, messages: Sequence[Any]) -> None:
        if queue == "run:replies":
            self.requests.extend(messages)
            return
        await super().send(queue, messages)


def message() -> TaskMessage:
    return TaskMessage("run", "t", 0, 1, "run:replies", {}, None, "flows:t", None)


async def test_an_unanswered_remote_request_is_sent_again_with_growing_jittered_waits() -> None:
    transport = Lossy()
    port = ContextPort(transport, "worker:context", remote=True)
    with use_clock(FastClock()) as clock:
        call = asyncio.create_task(port.call(message(), "channel.get", {"key": "k"}))
        while len(transport.requests) < 8:
            await asyncio.sleep(0)  # yield: the fast clock's waits pass, the request is sent again
        port.deliver([ContextReply(transport.requests[0].request_id, True, [True, 7])])
        assert await call == [True, 7]
    assert len({r.request_id for r in transport.requests}) == 1  # one request, sent again: answered once
    waits = clock.delays[:7]
    bases = [min(RESEND_FIRST * 2**i, RESEND_MAX) for i in range(7)]
    assert all(0.5 * b <= w <= min(1.5 * b, RESEND_MAX) for w, b in zip(waits, bases, strict=True)), waits
    assert len(set(waits)) > 1 and waits != bases  # jittered, not in step with every other worker
    assert max(waits) <= RESEND_MAX


async def test_a_request_in_process_is_sent_once_and_waits_for_its_answer() -> None:
    transport = Lossy()
    port = ContextPort(transport, "ctx", remote=False)
    with use_clock(FastClock()) as clock:
        call = asyncio.create_task(port.call(message(), "channel.get", {"key": "k"}))
        for _ in range(100):
            await asyncio.sleep(0)  # a window of loop turns in which nothing may be sent again
        port.deliver([ContextReply(transport.requests[0].request_id, True, [False, None])])
        assert await call == [False, None]
    assert len(transport.requests) == 1 and clock.delays == []
