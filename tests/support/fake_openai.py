"""A fake OpenAI-compatible chat completions endpoint for the tests (aiohttp): it streams
``chat.completion.chunk`` server-sent events the way the real API does (content deltas,
tool calls whose arguments arrive in pieces, a usage chunk when asked, ``[DONE]``) and
counts the calls it answered, by kind.

A request that offers tools is the agent's planning call: it answers a few words and
three tool calls (two searches and one risky ``send_email``). One without tools is the
final answer: it streams a short answer built from the tool results it was given.

    python tests/support/fake_openai.py PORT     # serve until killed (prints its URL)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from typing import Any

from aiohttp import web

PLAN_WORDS = ["I ", "will ", "search ", "twice ", "and ", "send ", "the ", "summary."]
TOOL_CALLS = [
    ("search", {"query": "durable workflow runtimes"}),
    ("search", {"query": "rate limits for LLM APIs"}),
    ("send_email", {"to": "team@example.com", "subject": "research summary"}),
]


def _chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "fake-1",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


class FakeOpenAI:
    def __init__(self, delay: float = 0.01) -> None:
        self.calls: Counter[str] = Counter()
        self.delay = delay
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.completions)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.json_response({"error": {"message": "this fake only streams"}}, status=400)
        kind = "plan" if body.get("tools") else "answer"
        self.calls[kind] += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_chunk({"role": "assistant", "content": ""}))
        if kind == "plan":
            await self._words(response, PLAN_WORDS)
            for index, (name, arguments) in enumerate(TOOL_CALLS):
                text = json.dumps(arguments)
                head = {"index": index, "id": f"call_{index}", "type": "function"}
                await response.write(_chunk({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]}))
                for start in range(0, len(text), 7):  # the arguments arrive in pieces
                    piece = {"index": index, "function": {"arguments": text[start : start + 7]}}
                    await response.write(_chunk({"tool_calls": [piece]}))
            await response.write(_chunk({}, "tool_calls"))
            usage = {"prompt_tokens": 42, "completion_tokens": 30, "total_tokens": 72}
        else:
            found = [m["content"] for m in body["messages"] if m.get("role") == "user"][-1]
            words = ["Summary: ", *[f"{w} " for w in str(found).split()[:12]], "(done)"]
            await self._words(response, words)
            await response.write(_chunk({}, "stop"))
            usage = {"prompt_tokens": 120, "completion_tokens": len(words), "total_tokens": 120 + len(words)}
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(_chunk(None, usage=usage))
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _words(self, response: web.StreamResponse, words: list[str]) -> None:
        for word in words:
            await response.write(_chunk({"content": word}))
            await asyncio.sleep(self.delay)

    async def start(self, port: int = 0) -> tuple[web.AppRunner, str]:
        runner = web.AppRunner(self.app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"


async def _serve(port: int) -> None:
    fake = FakeOpenAI()
    _runner, url = await fake.start(port)
    print(url, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
