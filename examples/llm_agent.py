"""A research agent on the official `openai` client, built on the whole runtime.

    plan >> answer          (plan fans out its tool calls at runtime: run_tool x N)

- `plan` asks the model (``AsyncOpenAI``, streaming, with tools) what to do: its words
  are streamed to the run as they come (`context.stream`), and each tool call it
  returns becomes a task of the run (`context.next_task`), all at once;
- `run_tool` runs one tool call under ``RateLimit(5, per=1.0)`` shared by every run of
  the process (or of the Redis namespace); the risky one, ``send_email``, asks a person
  first (`context.request_approval`): nobody answering within ``--approval-timeout``
  seconds suspends the run to a checkpoint, and the answer given later resumes it;
- `answer` streams the final answer from what the tools found (the run's channel);
- both model calls record the OpenTelemetry GenAI attributes on their spans
  (`context.set_attributes`: ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``,
  ``gen_ai.usage.output_tokens``).

With ``--durable DIR`` the run journals every fact: killed after `plan` returned, it is
carried on by ``PYTHONPATH=examples graflow-async recover RUN_ID --checkpoint-store DIR``, and the model is
not asked again for the plan it already gave (a finished call is a journaled result).

It talks to any OpenAI-compatible endpoint: ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``
(and ``OPENAI_MODEL``, default gpt-4o-mini) as the client reads them.

    pip install 'graflow-async[llm]'
    OPENAI_API_KEY=sk-... python examples/llm_agent.py "what makes a workflow runtime durable?" --approve
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import uuid
from typing import Any

from graflow_async import RateLimit, TaskContext, WorkflowResult, run, run_stream, task, workflow
from graflow_async.feedback import FeedbackStore, FileFeedbackStore

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web; returns a few findings.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "send_email",
            "description": "Email the findings to someone (needs a person's approval).",
            "parameters": {
                "type": "object",
                "properties": {"to": {"type": "string"}, "subject": {"type": "string"}},
                "required": ["to", "subject"],
            },
        },
    },
]


async def ask_model(context: TaskContext, messages: list[dict[str, str]], tools: list[Any] | None) -> dict[str, Any]:
    """One streamed chat completion: its text (streamed to the run as it comes) and its
    tool calls (assembled from their pieces); the span gets the GenAI attributes."""
    from openai import AsyncOpenAI

    extra: dict[str, Any] = {"tools": tools} if tools else {}
    async with AsyncOpenAI() as client:
        stream = await client.chat.completions.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}, **extra
        )
        text, calls, usage = [], {}, None
        async for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:
                if choice.delta.content:
                    text.append(choice.delta.content)
                    await context.stream(choice.delta.content)
                for piece in choice.delta.tool_calls or []:
                    call = calls.setdefault(piece.index, {"name": "", "arguments": ""})
                    if piece.function and piece.function.name:
                        call["name"] = piece.function.name
                    if piece.function and piece.function.arguments:
                        call["arguments"] += piece.function.arguments
    attributes: dict[str, Any] = {"gen_ai.request.model": MODEL, "gen_ai.operation.name": "chat"}
    if usage is not None:
        attributes |= {
            "gen_ai.usage.input_tokens": usage.prompt_tokens,
            "gen_ai.usage.output_tokens": usage.completion_tokens,
        }
    context.set_attributes(**attributes)
    return {"text": "".join(text), "tool_calls": [calls[i] for i in sorted(calls)]}


@task(inject_context=True)
async def plan(context: TaskContext, question: str) -> dict[str, Any]:
    system = "You are a research agent. Use the tools to research the question, then email a summary."
    reply = await ask_model(
        context, [{"role": "system", "content": system}, {"role": "user", "content": question}], TOOLS
    )
    for i, call in enumerate(reply["tool_calls"]):  # each tool call: a task of the run, all at once
        context.next_task(run_tool(task_id=f"tool{i}-{call['name']}", name=call["name"], arguments=call["arguments"]))
    return reply


@task(inject_context=True, limits=[RateLimit(5, per=1.0, name="tool-calls")], max_retries=2)
async def run_tool(context: TaskContext, name: str, arguments: str) -> dict[str, Any]:
    args = json.loads(arguments)
    if name == "send_email":  # risky: a person says yes first
        timeout = float(await context.channel.get("approval_timeout", 600))
        approved = await context.request_approval(
            f"Send an email to {args['to']} ({args['subject']})?", timeout=timeout
        )
        found = f"email to {args['to']}: {'sent' if approved else 'not sent (declined)'}"
    elif name == "search":
        found = f"{args['query']}: journal the facts, replay them, no determinism rules"  # a stand-in search
    else:
        found = f"unknown tool {name}"
    await context.channel.append("findings", found)
    return {"tool": name, "found": found}


@task(inject_context=True)
async def answer(context: TaskContext, question: str, plan: dict[str, Any]) -> str:
    findings = await context.channel.get("findings", [])
    prompt = f"Question: {question}\nFindings: " + " ".join(findings)
    reply = await ask_model(
        context, [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": prompt}], None
    )
    return str(reply["text"])


with workflow("research-agent") as agent:
    plan >> answer


async def approve_all(store: FeedbackStore, run_id: str) -> None:
    """A stand-in for the person who approves (``--approve``): answers yes to every
    request of the run as it comes."""
    while True:
        for request in await store.list_pending(run_id):
            await store.respond(request.feedback_id, {"approved": True, "responded_by": "llm_agent.py --approve"})
        await asyncio.sleep(0.05)


async def print_stream(run_id: str) -> None:
    """What the model says, as it says it (a line per task)."""
    last, current = None, None
    while True:  # the stream exists once the run started
        try:
            async for item in run_stream(run_id, after=last):
                if current is not None and item.task_id != current:
                    print(flush=True)
                current, last = item.task_id, item.id
                print(item.data, end="", flush=True)
            return
        except LookupError:
            await asyncio.sleep(0.01)


async def main(
    question: str,
    *,
    approve: bool,
    approval_timeout: float,
    durable: str | None,
    run_id: str,
    owner_lease: float = 10.0,
) -> WorkflowResult:
    store = FileFeedbackStore(".graflow/feedback")
    options: dict[str, Any] = {}
    if durable:
        options = {"durable": True, "checkpoint_store": durable, "owner_lease": owner_lease}
    helpers = [asyncio.ensure_future(print_stream(run_id))]
    if approve:
        helpers.append(asyncio.ensure_future(approve_all(store, run_id)))
    try:
        return await run(
            agent,
            run_id=run_id,
            feedback_store=store,
            initial_channel={"question": question, "approval_timeout": approval_timeout},
            **options,
        )
    finally:
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", default="What makes a workflow runtime durable?")
    parser.add_argument(
        "--approve", action="store_true", help="approve the risky tool call at once (a stand-in person)"
    )
    parser.add_argument("--approval-timeout", type=float, default=600.0, help="seconds before the run suspends")
    parser.add_argument("--durable", metavar="DIR", help="journal the run beside checkpoints in DIR")
    parser.add_argument("--run-id", default=f"agent-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--owner-lease", type=float, default=10.0, help="seconds a dead driver's hold lasts (durable)")
    args = parser.parse_args()
    # the workflow as imported by name (llm_agent:...), not this __main__ copy: a journal
    # names the tasks it added by import path, which `recover` in another process imports
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    this = importlib.import_module("llm_agent")
    result = asyncio.run(
        this.main(
            args.question,
            approve=args.approve,
            approval_timeout=args.approval_timeout,
            durable=args.durable,
            run_id=args.run_id,
            owner_lease=args.owner_lease,
        )
    )
    print(
        f"\n[{result.status}] run {result.run_id}" + (f", checkpoint {result.checkpoint}" if result.checkpoint else "")
    )
    sys.exit(0 if result.status == "completed" else 3)
