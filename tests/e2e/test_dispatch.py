"""Dispatch scenarios through our MCP server (`agent-dispatch serve`, a real MCP client over
stdio), whose agents are the real `claude` talking to the stand-in API."""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import pytest
from standin import Reply

pytestmark = pytest.mark.e2e

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def processes_in(directory: Path) -> list[int]:
    """Pids of processes whose working directory is `directory` (what a dispatch left running)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == directory:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def test_dispatch_returns_result_session_and_cost(e2e):
    project = e2e.add_agent("infra")
    (project / "CLAUDE.md").write_text("Marker from the infra project's CLAUDE.md: zebra-42.\n")
    e2e.standin.script(Reply(text="disks are fine", match="check the disks"))
    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch", agent="infra", task="check the disks")
        assert out["success"] is True, out
        assert out["agent"] == "infra" and out["result"] == "disks are fine"
        assert UUID_RE.fullmatch(out["session_id"])
        assert out["cost_usd"] > 0 and isinstance(out["duration_ms"], int) and out["num_turns"] == 1
        assert not out.get("cached") and not out.get("denied_tools")
        [request] = e2e.standin.scripted_requests()
        # The agent ran in its project and inherited its CLAUDE.md.
        assert f"Primary working directory: {project}" in request.all_text()
        assert "zebra-42" in request.all_text()
        assert request.headers.get("X-Claude-Code-Session-Id") == out["session_id"]

        again = await e2e.call(client, "dispatch", agent="infra", task="check the disks")
        assert again["cached"] is True and again["result"] == "disks are fine"
        assert len(e2e.standin.scripted_requests()) == 1
    assert processes_in(project) == []


async def test_structured_prompt_and_json_answer(e2e):
    e2e.add_agent("infra")
    e2e.standin.script(Reply(text='```json\n{"status": "ok", "disks": 3}\n```', match="report disks"))
    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch", agent="infra", task="report disks", caller="ops-session",
                         goal="plan the upgrade", context="three disks in the rack", response_format="json")
    assert out["success"] is True, out
    assert out["parsed_result"] == {"status": "ok", "disks": 3}
    prompt = e2e.standin.scripted_requests()[0].newest_user_text()
    sections = [prompt.index(s) for s in ("## Goal", "## Dispatched by", "## Context", "## Task")]
    assert sections == sorted(sections), prompt
    for text in ("plan the upgrade", "ops-session", "three disks in the rack", "report disks"):
        assert text in prompt


async def test_dispatch_session_resumes_the_conversation(e2e):
    e2e.add_agent("infra")
    e2e.standin.script(Reply(text="noted: kiwi", match="remember the word kiwi"),
                       Reply(text="the word was kiwi", match="which word"))
    async with e2e.mcp() as client:
        first = await e2e.call(client, "dispatch_session", agent="infra", task="remember the word kiwi")
        assert first["success"] is True, first
        second = await e2e.call(client, "dispatch_session", agent="infra", task="which word",
                            session_id=first["session_id"])
    assert second["success"] is True, second
    assert second["session_id"] == first["session_id"] and second["result"] == "the word was kiwi"
    resumed = e2e.standin.scripted_requests()[-1].all_text()
    assert "remember the word kiwi" in resumed and "noted: kiwi" in resumed


async def test_dispatch_stream_sends_progress(e2e):
    project = e2e.add_agent("infra")
    (project / "notes.txt").write_text("rack layout\n")
    e2e.standin.script(
        Reply(text="Reading the notes.", tool_name="Read", tool_input={"file_path": str(project / "notes.txt")},
              match="summarise the notes"),
        Reply(text="the notes describe the rack", after_tool=True),
    )
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch_stream", progress=on_progress, agent="infra", task="summarise the notes")
    assert out["success"] is True, out
    assert out["result"] == "the notes describe the rack" and out["num_turns"] == 2
    assert progress, "no progress notification arrived"
    messages = " | ".join(m or "" for _, _, m in progress)
    assert "Read" in messages, messages
    assert [v for v, _, _ in progress] == sorted(v for v, _, _ in progress)


async def test_dispatch_async_then_wait(e2e):
    e2e.add_agent("infra")
    e2e.standin.script(Reply(text="background work done", match="do it later", delay=0.5))
    async with e2e.mcp() as client:
        started = await e2e.call(client, "dispatch_async", agent="infra", task="do it later")
        assert started["status"] == "pending" and started["agent"] == "infra"
        assert re.fullmatch(r"[0-9a-f]{32}", started["job_id"])
        job = await e2e.call(client, "dispatch_wait", job_id=started["job_id"], timeout_seconds=30)
    assert job["status"] == "done", job
    assert job["id"] == started["job_id"] and job["result"]["result"] == "background work done"
    assert job["result"]["success"] is True and UUID_RE.fullmatch(job["result"]["session_id"])
    assert job["created_at"] <= job["started_at"] <= job["completed_at"]
    record = e2e.config.parent / "jobs" / f"{started['job_id']}.json"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600


async def test_agent_timeout_kills_the_run_and_keeps_the_session(e2e):
    # 6 s: under load the CLI may need seconds to start and store its session before it is killed.
    project = e2e.add_agent("slow", timeout=6)
    e2e.standin.script(Reply(text="too late", match="slow task", delay=60),
                       Reply(text="picked up again", match="carry on"))
    async with e2e.mcp() as client:
        began = time.monotonic()
        out = await e2e.call(client, "dispatch", agent="slow", task="slow task")
        elapsed = time.monotonic() - began
        assert out["success"] is False and out["error_type"] == "timeout", out
        assert elapsed < 12, f"timeout of 6 s took {elapsed:.1f} s to come back"
        assert processes_in(project) == []
        assert UUID_RE.fullmatch(out.get("session_id") or ""), out
        e2e.add_agent("slow", directory=project, timeout=60)  # the resume must not race the clock
        resumed = await e2e.call(client, "dispatch_session", agent="slow", task="carry on",
                                 session_id=out["session_id"])
    assert resumed["success"] is True, resumed
    assert "slow task" in e2e.standin.scripted_requests()[-1].all_text()


async def test_api_400_is_a_cli_error_with_the_message(e2e):
    e2e.add_agent("infra")
    e2e.standin.script(Reply(status=400, error_message="scripted invalid request", match="bad", times=None))
    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch", agent="infra", task="bad")
    assert out["success"] is False and out["error_type"] == "cli_error", out
    assert "(success)" not in out["error"], out
    assert "scripted invalid request" in out["error"]
    assert UUID_RE.fullmatch(out.get("session_id") or ""), out


async def test_api_429_is_a_usage_limit(e2e):
    e2e.add_agent("infra")
    e2e.standin.script(Reply(status=429, error_message="rate limit reached", match="busy", times=None))
    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch", agent="infra", task="busy")
    assert out["success"] is False and out["error_type"] == "usage_limit", out
    assert "rate limit reached" in out["error"]


async def test_denied_tool_is_named_with_the_command_that_grants_it(e2e):
    project = e2e.add_agent("infra")
    target = project / "out.txt"
    e2e.standin.script(
        Reply(text="", tool_name="Write", tool_input={"file_path": str(target), "content": "x"},
              match="write the file", times=2),
        Reply(text="I was not allowed to write", after_tool=True, times=2),
    )
    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch", agent="infra", task="write the file")
        assert out["success"] is True, out
        assert out["denied_tools"] == ["Write"] and out["result"] == "I was not allowed to write"
        assert "agent-dispatch update infra" in out["hint"] and "Write" in out["hint"], out["hint"]
        again = await e2e.call(client, "dispatch", agent="infra", task="write the file")
        assert not again.get("cached") and again["denied_tools"] == ["Write"]
    assert not target.exists()


async def test_option_like_task_reaches_the_model_as_text(e2e):
    project = e2e.add_agent("infra")
    target = project / "pwned.txt"
    # Were the task read as the option, permissions would be skipped and this write would happen.
    e2e.standin.script(
        Reply(text="", tool_name="Write", tool_input={"file_path": str(target), "content": "x"},
              match="--dangerously-skip-permissions"),
        Reply(text="only text here", after_tool=True),
    )
    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch", agent="infra", task="--dangerously-skip-permissions")
    assert out["success"] is True, out
    assert "--dangerously-skip-permissions" in e2e.standin.scripted_requests()[0].newest_user_text()
    assert out["denied_tools"] == ["Write"]
    assert not target.exists()


async def test_agent_tools_do_not_see_the_callers_project(e2e):
    # Claude Code starts our server with CLAUDE_PROJECT_DIR (and other per-session variables) set to
    # the caller's; the agent's claude must not inherit it, or its Bash commands would see the caller's.
    project = e2e.add_agent("infra", allowed_tools=["Bash"])
    caller = e2e.root / "projects" / "caller"
    caller.mkdir(parents=True)
    e2e.standin.script(
        Reply(text="", tool_name="Bash", tool_input={"command": "env > env.txt", "description": "env"}, match="dump"),
        Reply(text="dumped", after_tool=True),
    )
    async with e2e.mcp(CLAUDE_PROJECT_DIR=str(caller), CLAUDECODE="1", CLAUDE_CODE_ENTRYPOINT="sdk-cli") as client:
        out = await e2e.call(client, "dispatch", agent="infra", task="dump")
    assert out["success"] is True and not out.get("denied_tools"), out
    seen = dict(line.split("=", 1) for line in (project / "env.txt").read_text().splitlines() if "=" in line)
    assert seen.get("AGENT_DISPATCH_DEPTH") == "1"
    assert seen.get("CLAUDE_PROJECT_DIR") in (None, str(project))


async def test_context_past_the_argv_limit_reaches_the_agent(e2e):
    e2e.add_agent("infra")
    context = "".join(f"line {n:06d} of a long log\n" for n in range(40_000)) + "END-OF-CONTEXT"  # ~1 MB
    e2e.standin.script(Reply(text="read it all", match="END-OF-CONTEXT"))
    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch", agent="infra", task="summarise the log", context=context)
    assert out["success"] is True and out["result"] == "read it all", out
    prompt = e2e.standin.scripted_requests()[0].newest_user_text()
    assert "line 000000 of a long log" in prompt and "line 039999 of a long log" in prompt


async def test_prompt_too_long_for_the_model_fails_without_calling_the_api(e2e):
    # The real CLI refuses a prompt beyond the model's context window itself; nothing is sent.
    e2e.add_agent("infra")
    context = "lorem ipsum dolor sit amet " * 150_000  # ~4 MB
    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch", agent="infra", task="summarise", context=context)
    assert out["success"] is False and out["error_type"] == "cli_error", out
    assert "too long" in out["error"].lower() and "shorten" in out["hint"]
    assert e2e.standin.message_requests() == []
