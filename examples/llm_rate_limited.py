"""200 calls to an LLM API, at most 5 at once and 60 a minute per API key.

    prompts fan out:  ask(prompt 0, key A) | ask(prompt 1, key B) | ... | ask(prompt 199, key B)
                      each under Concurrency(5, key="{api_key}") and RateLimit(60, per=60, key="{api_key}")

A fake OpenAI-style endpoint (started here, on a free port) answers ``POST
/v1/chat/completions`` and, like a real provider, refuses with 429 a key that has more
than 5 requests in flight or more than 60 in a minute. The limits keep the run under
both: it ends with no 429 at all, while the tasks waiting for their key show as
*throttled* on the run page, which the example serves and prints the address of. The
limits hold for every run and worker sharing the key (on Redis: the whole namespace),
not just this run.

    python examples/llm_rate_limited.py [--calls 200] [--keys 2] [--port 8080]

With 2 keys, each key's 100 calls need two minutes' windows: about a minute in all.
``LLM_RATE=12 LLM_WINDOW=2 python examples/llm_rate_limited.py --calls 40`` shows the
same in a few seconds (12 calls per 2 s per key).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import time
from collections import defaultdict, deque
from typing import Any

import aiohttp
from aiohttp import web

from graflow_async import Concurrency, RateLimit, parallel, task, workflow
from graflow_async.web import create_app, get_run, start_run

AT_ONCE = 5
RATE = int(os.environ.get("LLM_RATE", "60"))  # calls per key per window
WINDOW = float(os.environ.get("LLM_WINDOW", "60"))  # seconds
THROTTLED = re.compile(r'data-count-state="throttled"[^>]*>.*?<b>(\d+)</b>')  # the run page's count


# a request reaches the provider a moment after it starts: the window is kept a little wider
@task(
    limits=[Concurrency(AT_ONCE, key="{api_key}"), RateLimit(RATE, per=WINDOW + 0.25, key="{api_key}")], max_retries=2
)
async def ask(prompt: str, api_key: str, endpoint: str) -> str:
    body = {"model": "fake-1", "messages": [{"role": "user", "content": prompt}]}
    headers = {"Authorization": f"Bearer {api_key}"}
    async with aiohttp.ClientSession() as http, http.post(endpoint, json=body, headers=headers) as response:
        response.raise_for_status()  # a 429 would fail the attempt (and be retried)
        answer = await response.json()
    return str(answer["choices"][0]["message"]["content"])


def batch(calls: int, keys: list[str], endpoint: str) -> Any:
    with workflow("llm-batch") as wf:
        parallel(
            *[
                ask(task_id=f"ask{i}", prompt=f"summarize document {i}", api_key=keys[i % len(keys)], endpoint=endpoint)
                for i in range(calls)
            ]
        )
    return wf


class FakeProvider:
    """An OpenAI-style endpoint that enforces a provider's limits per key (429 beyond)."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = defaultdict(int)
        self.starts: dict[str, deque[float]] = defaultdict(deque)
        self.most_at_once: dict[str, int] = defaultdict(int)
        self.refused = 0
        self.answered = 0

    async def completions(self, request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        now, starts = time.monotonic(), self.starts[key]
        while starts and starts[0] <= now - WINDOW:
            starts.popleft()
        if self.in_flight[key] >= AT_ONCE or len(starts) >= RATE:
            self.refused += 1
            return web.json_response({"error": {"message": "rate limit exceeded"}}, status=429)
        starts.append(now)
        self.in_flight[key] += 1
        self.most_at_once[key] = max(self.most_at_once[key], self.in_flight[key])
        try:
            prompt = (await request.json())["messages"][-1]["content"]
            await asyncio.sleep(random.uniform(0.05, 0.2))  # thinking
            self.answered += 1
            return web.json_response({"choices": [{"message": {"role": "assistant", "content": f"ok: {prompt}"}}]})
        finally:
            self.in_flight[key] -= 1


async def serve(app: web.Application, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, runner.addresses[0][1]


async def main(calls: int, keys: int, port: int) -> int:
    provider = FakeProvider()
    api = web.Application()
    api.router.add_post("/v1/chat/completions", provider.completions)
    api_runner, api_port = await serve(api, 0)
    endpoint = f"http://127.0.0.1:{api_port}/v1/chat/completions"
    names = [f"sk-{chr(ord('A') + k)}" for k in range(keys)]
    ui = create_app(workflows={"llm-batch": batch(calls, names, endpoint)})
    ui_runner, ui_port = await serve(ui, port)
    try:
        run_id = await start_run(ui, "llm-batch")
        page = f"http://127.0.0.1:{ui_port}/ui/runs/{run_id}"
        print(f"run page: {page}")
        most_throttled, started = 0, time.monotonic()
        async with aiohttp.ClientSession() as http:
            while True:
                shown = await get_run(ui, run_id)
                assert shown is not None
                async with http.get(page) as response:  # what the run page shows
                    counted = THROTTLED.search(await response.text())
                most_throttled = max(most_throttled, int(counted.group(1)) if counted else 0)
                if shown["status"] != "running":
                    break
                await asyncio.sleep(0.1)
        print(f"status: {shown['status']} after {time.monotonic() - started:.1f}s")
        print(f"calls answered: {provider.answered}; refused with 429: {provider.refused}")
        print(f"most in flight per key: {dict(provider.most_at_once)} (limit {AT_ONCE})")
        print(f"most throttled at once on the run page: {most_throttled}")
        return 0 if shown["status"] == "completed" and provider.refused == 0 else 1
    finally:
        await ui_runner.cleanup()
        await api_runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--keys", type=int, default=2)
    parser.add_argument("--port", type=int, default=0, help="the run page's port (default: any free one)")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.calls, args.keys, args.port)))
