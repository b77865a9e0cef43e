"""The real Codex and Gemini CLIs behind agent-dispatch's MCP server, against stand-in APIs."""

from __future__ import annotations

import time

import pytest
from runtime_world import codex_cli, codex_world, gemini_cli, gemini_world, processes_in  # noqa: F401
from standin_apis import Answer

pytestmark = pytest.mark.e2e

CONTEXT_FILE = {"codex": "AGENTS.md", "gemini": "GEMINI.md"}
RUNTIMES = ["codex", "gemini"]


@pytest.fixture(params=RUNTIMES)
def world(request):
    world = request.getfixturevalue(f"{request.param}_world")
    world.runtime = request.param
    return world


def add(world, name: str, **fields):
    model = {"gemini": {"model": "gemini-2.5-flash"}}.get(world.runtime, {})
    return world.add_agent(name, runtime=world.runtime, **model, **fields)


async def test_dispatch_reads_the_context_file_takes_a_dash_task_as_text_and_resumes(world):
    project = add(world, "proj")
    (project / CONTEXT_FILE[world.runtime]).write_text("House rule: the marker is okapi-77.\n")
    task = "--help is not an option here, answer please"
    world.standin.script(Answer(text="first answer", match="answer please"),
                         Answer(text="second answer", match="and now continue"))
    async with world.mcp() as client:
        out = await world.call(client, "dispatch", agent="proj", task=task, timeout=180)
        assert out["success"] is True, out
        assert out["result"] == "first answer" and out["runtime"] == world.runtime
        assert out["usage"]["output_tokens"] > 0 and "cost_usd" not in out
        (seen,) = world.standin.seen("answer please")
        assert task in seen.raw and "okapi-77" in seen.raw  # the task as text, with the project's file
        again = await world.call(client, "dispatch_session", agent="proj", task="and now continue",
                                 session_id=out["session_id"], timeout=180)
        assert again["success"] is True and again["result"] == "second answer", again
        assert again["session_id"] == out["session_id"]
        (resumed,) = world.standin.seen("and now continue")
        assert task in resumed.raw and "first answer" in resumed.raw  # the earlier turn came along
    assert processes_in(project) == []


async def test_stream_reports_progress(world):
    add(world, "streamer")
    world.standin.script(Answer(text="streamed answer " * 4, match="stream this"))
    messages: list[str] = []

    async def progress(value, total, message):
        messages.append(message or "")

    async with world.mcp() as client:
        out = await world.call(client, "dispatch_stream", agent="streamer", task="stream this",
                               progress=progress, timeout=180)
    assert out["success"] is True and out["result"].startswith("streamed answer"), out
    assert messages and any("streamed answer" in m or "session started" in m for m in messages), messages


async def test_api_error_is_classified_and_keeps_the_session(world):
    add(world, "refused")
    world.standin.script(Answer(status=400, error_message="scripted refusal xyz", times=None))
    async with world.mcp() as client:
        out = await world.call(client, "dispatch", agent="refused", task="do something", timeout=240)
    assert out["success"] is False and out["error_type"] == "cli_error", out
    assert "scripted refusal xyz" in out["error"] and out.get("hint"), out
    assert out["runtime"] == world.runtime and out.get("session_id")


async def test_timeout_leaves_no_process_behind(world):
    project = add(world, "slow", timeout=5)
    world.standin.script(Answer(text="too late", delay=120, times=None))
    async with world.mcp() as client:
        began = time.monotonic()
        out = await world.call(client, "dispatch", agent="slow", task="take your time", timeout=120)
        elapsed = time.monotonic() - began
    assert out["success"] is False and out["error_type"] == "timeout", out
    assert elapsed < 5 + 15, elapsed
    assert processes_in(project) == []


async def test_codex_async_job_and_ref(codex_world):  # noqa: F811 - the fixture imported above
    codex_world.runtime = "codex"
    add(codex_world, "bg")
    codex_world.standin.script(Answer(text="background answer", match="in the background"),
                               Answer(text="ref answer", match="by ref"))
    async with codex_world.mcp() as client:
        job = await codex_world.call(client, "dispatch_async", agent="bg", task="in the background")
        done = await codex_world.call(client, "dispatch_wait", job_id=job["job_id"], timeout_seconds=120, timeout=150)
        assert done["status"] == "done" and done["result"]["result"] == "background answer", done
        ref = await codex_world.call(client, "dispatch", agent="bg", task="by ref", return_ref=True, timeout=120)
        full = await codex_world.call(client, "fetch_result", ref=ref["ref"])
    assert full["result"] == "ref answer" and full["runtime"] == "codex", full
