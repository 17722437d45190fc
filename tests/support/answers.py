"""Answering a run's feedback requests as a person would, for the HITL tests."""

from __future__ import annotations

import asyncio

from graflow_async.feedback import FeedbackStore


async def answer_when_asked(store: FeedbackStore, answer: dict, count: int = 1) -> list[str]:
    """Answers `count` requests with `answer` as they appear in `store`; their ids."""
    answered: list[str] = []
    while len(answered) < count:
        pending = [r for r in await store.list_pending() if r.feedback_id not in answered]
        for request in pending:
            await store.respond(request.feedback_id, answer)
            answered.append(request.feedback_id)
        await asyncio.sleep(0.005)  # a poll interval: the store has no "request added" event to wait on
    return answered
