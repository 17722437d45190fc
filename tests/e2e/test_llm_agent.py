"""examples/llm_agent.py against a fake OpenAI-compatible server (SPEC 12): the model's
words are streamed as they come, its tool calls fan out as tasks, the risky one waits for
a person; a durable run whose driver was killed after the plan is carried on by
`recover`, and the fake server counts that the finished planning call is not made again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_openai import PLAN_WORDS, FakeOpenAI

from graflow_async import recover
from graflow_async.feedback import FileFeedbackStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "llm_agent.py"


@pytest.fixture
async def fake() -> Any:
    server = FakeOpenAI()
    runner, url = await server.start()
    server.url = url  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        await runner.cleanup()


async def example(fake: Any, cwd: Path, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "OPENAI_BASE_URL": fake.url, "OPENAI_API_KEY": "sk-test", "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_the_agent_streams_its_words_fans_out_its_tools_and_answers(fake: Any, tmp_path: Path) -> None:
    proc = await example(fake, tmp_path, "what makes a runtime durable?", "--approve")
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 0, text + err.decode()
    assert text.splitlines()[0] == "".join(PLAN_WORDS)  # the plan's words, streamed as they came
    assert "Summary: Question: what makes a runtime durable?" in text  # the answer, streamed
    assert "[completed] run agent-" in text
    assert fake.calls == {"plan": 1, "answer": 1}


async def test_a_durable_agent_killed_after_its_plan_never_asks_the_model_for_it_again(
    fake: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileFeedbackStore(tmp_path / ".graflow" / "feedback")
    driver = await example(
        fake, tmp_path, "--durable", str(tmp_path / "ckpt"), "--run-id", "agent-kill", "--owner-lease", "1"
    )
    try:
        async with asyncio.timeout(30):  # the plan is done and journaled; send_email waits for a person
            while not await store.list_pending("agent-kill"):
                assert driver.returncode is None
                await asyncio.sleep(0.05)
    finally:
        driver.send_signal(signal.SIGKILL)
        await driver.wait()
    assert fake.calls == {"plan": 1}
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.syspath_prepend(str(ROOT / "examples"))  # the journal names its tasks llm_agent:...
    monkeypatch.chdir(tmp_path)

    async def approve() -> None:  # the person answers the request asked again (the same one)
        while True:
            for request in await store.list_pending("agent-kill"):
                await store.respond(request.feedback_id, {"approved": True})
            await asyncio.sleep(0.05)

    approving = asyncio.ensure_future(approve())
    try:
        import llm_agent

        result = await asyncio.wait_for(
            recover("agent-kill", workflow=llm_agent.agent, checkpoint_store=tmp_path / "ckpt", feedback_store=store),
            60,
        )
    finally:
        approving.cancel()
    assert result.status == "completed" and result.output.startswith("Summary:")
    assert sorted(f.split(":")[0] for f in result.channel["findings"]) == [
        "durable workflow runtimes",
        "email to team@example.com",
        "rate limits for LLM APIs",
    ]
    assert "sent" in next(f for f in result.channel["findings"] if f.startswith("email"))
    assert fake.calls == {"plan": 1, "answer": 1}  # the finished plan call was not made again


async def test_nobody_approving_the_risky_tool_spills_the_run_to_a_checkpoint(fake: Any, tmp_path: Path) -> None:
    proc = await example(fake, tmp_path, "--approval-timeout", "0.2")
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode == 3, text + err.decode()  # suspended
    assert "[suspended] run agent-" in text and ", checkpoint " in text
    assert fake.calls == {"plan": 1}  # no answer yet: the run waits for the person
    assert list((tmp_path / ".graflow" / "checkpoints").rglob("*.ckpt"))
