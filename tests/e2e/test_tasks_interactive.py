"""MCP tasks with the real Claude Code: the interactive UI (driven under tmux) backgrounds a long
`dispatch`, keeps talking to the model while the agent runs, and hands the model the agent's
answer in a task notification; `claude -p` gets the same call answered inline.

Needs tmux (Debian package `tmux`; scripts/test installs it under CI). Without it the
interactive test is skipped locally with the reason and fails under CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from standin import Reply

pytestmark = pytest.mark.e2e

TOOL = "mcp__agent-dispatch__dispatch"
AGENT_DISPATCH = Path(sys.executable).with_name("agent-dispatch")
AGENT_SECONDS = 8.0
ANSWER = "answer from infra: 3 disks healthy"


def _tmux() -> str:
    path = shutil.which("tmux")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is missing: the interactive Claude Code tests cannot run in CI", pytrace=False)
        pytest.skip("tmux is not installed (Debian package `tmux`; ./scripts/test installs it under CI)")
    return path


def _world(e2e) -> tuple[Path, Path]:
    """The caller's project, an MCP config naming our server, and Claude Code's onboarding state."""
    e2e.add_agent("infra", timeout=120)
    caller = e2e.root / "projects" / "caller"
    caller.mkdir(parents=True)
    mcp_config = e2e.root / "mcp.json"
    mcp_config.write_text(json.dumps({"mcpServers": {"agent-dispatch": {
        "command": str(AGENT_DISPATCH), "args": ["serve"]}}}))
    state = {
        "hasCompletedOnboarding": True,
        "customApiKeyResponses": {"approved": [os.environ["ANTHROPIC_API_KEY"]], "rejected": []},
        "projects": {str(caller): {"hasTrustDialogAccepted": True, "allowedTools": []}},
    }
    (e2e.home / ".claude.json").write_text(json.dumps(state))
    return caller, mcp_config


def _script(e2e) -> None:
    e2e.standin.script(
        Reply(text="The infra agent says the disks are fine.", match=ANSWER, times=None),
        Reply(text="Infra is working in the background; I will report when it is done.", after_tool=True),
        Reply(text="", tool_name=TOOL, tool_input={"agent": "infra", "task": "inner task: check disks"},
              match="outer task: ask infra"),
        Reply(text=ANSWER, match="inner task: check disks", delay=AGENT_SECONDS),
    )


def _jobs(e2e) -> list[dict]:
    directory = e2e.config.parent / "jobs"
    return [json.loads(p.read_text()) for p in directory.glob("*.json")] if directory.is_dir() else []


def test_interactive_claude_code_backgrounds_a_long_dispatch(e2e):
    tmux = _tmux()
    caller, mcp_config = _world(e2e)
    _script(e2e)
    socket = e2e.root / "tmux.sock"
    base = [tmux, "-S", str(socket), "-f", "/dev/null"]
    command = [str(e2e.cli), "--mcp-config", str(mcp_config), "--strict-mcp-config", "--allowedTools", TOOL,
               "--", "outer task: ask infra"]
    subprocess.run([*base, "new-session", "-d", "-x", "160", "-y", "50", "-c", str(caller), *command],
                   check=True, env=e2e.env(), timeout=30)
    screen = ""
    try:
        deadline = time.monotonic() + 120
        notified = []
        while time.monotonic() < deadline:
            notified = [r for r in e2e.standin.message_requests()
                        if ANSWER in r.newest_user_text() and "inner task" not in r.newest_user_text()]
            if notified:
                break
            time.sleep(0.25)
        screen = subprocess.run([*base, "capture-pane", "-p"], capture_output=True, text=True, timeout=30).stdout
        seen = [(round(r.time, 2), r.reply.match if r.reply else None, r.newest_user_text()[:120])
                for r in e2e.standin.message_requests()]
        assert notified, f"the agent's answer never reached the model; requests: {seen}\nscreen:\n{screen.strip()}"
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True, timeout=30)

    agent_request = e2e.standin.requests_mentioning("inner task: check disks")
    agent_request = next(r for r in agent_request if "inner task: check disks" in r.newest_user_text())
    handle_turn = next(r for r in e2e.standin.scripted_requests() if r.reply is not None and r.reply.after_tool)
    (job,) = [j for j in _jobs(e2e) if j.get("kind") == "task"]
    assert job["status"] == "done" and job["tool"] == "dispatch"
    assert job["result"]["result"] == ANSWER
    # The model was asked again while the agent still worked: the call was backgrounded.
    assert handle_turn.time < agent_request.time + AGENT_SECONDS and handle_turn.time < job["completed_at"]
    assert job["started_at"] < handle_turn.time
    # ... and the answer came in a task notification, as the tool's JSON.
    notification = notified[0]
    text = notification.newest_user_text()
    assert "task-notification" in text, text
    assert json.dumps(ANSWER) in text or ANSWER in text, text
    lag = notification.time - job["completed_at"]
    print(f"\nagent finished -> model saw the answer: {lag:.2f} s; the model's next turn came "
          f"{job['completed_at'] - handle_turn.time:.2f} s before the agent finished")
    print("handle turn (what the model was told):", handle_turn.newest_user_text()[:600])
    print("notification turn:", text[:1200])
    assert lag < 10, f"the answer took {lag:.1f} s to reach the model"


def test_claude_p_gets_the_same_call_answered_inline(e2e):
    caller, mcp_config = _world(e2e)
    e2e.standin.script(
        Reply(text="The infra agent says the disks are fine.", after_tool=True),
        Reply(text="", tool_name=TOOL, tool_input={"agent": "infra", "task": "inner task: check disks"},
              match="outer task: ask infra"),
        Reply(text=ANSWER, match="inner task: check disks", delay=AGENT_SECONDS),
    )
    proc = e2e.claude("-p", "--output-format", "json", "--mcp-config", str(mcp_config), "--strict-mcp-config",
                      "--allowedTools", TOOL, prompt="outer task: ask infra", cwd=caller, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["result"] == "The infra agent says the disks are fine."
    final = e2e.standin.scripted_requests()[-1]
    assert final.reply is not None and final.reply.after_tool
    answer = json.loads(final.newest_user_text())
    assert answer["success"] is True and answer["result"] == ANSWER, answer
    assert [j for j in _jobs(e2e) if j.get("kind") == "task"] == [], "a -p caller never gets a task"


def _screen(base: list[str]) -> str:
    return subprocess.run([*base, "capture-pane", "-p"], capture_output=True, text=True, timeout=30).stdout


def _wait_screen(base: list[str], text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = _screen(base)
        if text in screen:
            return screen
        time.sleep(0.5)
    raise AssertionError(f"{text!r} did not appear within {timeout} s; the screen:\n{_screen(base)}")


def test_a_blocked_agent_in_a_task_asks_the_human_through_the_ui(e2e):
    tmux = _tmux()
    caller, mcp_config = _world(e2e)
    e2e.standin.script(
        Reply(text="FINAL: infra deployed", match="clarifications", times=None),
        Reply(text="Infra is on it in the background.", after_tool=True),
        Reply(text="", tool_name=TOOL, tool_input={"agent": "infra", "task": "inner task: deploy"},
              match="outer task: ask infra"),
        Reply(text="Deployed to the region I was told.\nSTATUS: done", match="Their answer"),
        Reply(text="I need input.\nQUESTION: Which region, eu or us?\nSTATUS: blocked", match="inner task",
              delay=2),
    )
    base = [tmux, "-S", str(e2e.root / "tmux.sock"), "-f", "/dev/null"]
    command = [str(e2e.cli), "--mcp-config", str(mcp_config), "--strict-mcp-config", "--allowedTools", TOOL,
               "--", "outer task: ask infra"]
    subprocess.run([*base, "new-session", "-d", "-x", "160", "-y", "50", "-c", str(caller), *command],
                   check=True, env=e2e.env(), timeout=30)
    try:
        form = _wait_screen(base, "requests your input", timeout=120)
        assert "Which region, eu or us?" in form
        job = next(j for j in _jobs(e2e) if j.get("kind") == "task")
        assert job["question"]["message"].startswith("Agent 'infra' is blocked and asks:")
        subprocess.run([*base, "send-keys", "-l", "eu-west-3"], check=True, timeout=30)
        _wait_screen(base, "Answer: eu-west-3", timeout=30)
        subprocess.run([*base, "send-keys", "Enter"], check=True, timeout=30)  # to the Accept button
        time.sleep(1)
        subprocess.run([*base, "send-keys", "Enter"], check=True, timeout=30)  # accept
        deadline = time.monotonic() + 120
        final = []
        while time.monotonic() < deadline and not final:
            final = [r for r in e2e.standin.message_requests() if "clarifications" in r.newest_user_text()
                     and "task-notification" in r.newest_user_text()]
            time.sleep(0.25)
        assert final, f"no task notification with the clarified answer; screen:\n{_screen(base)}"
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True, timeout=30)
    resumed = e2e.standin.requests_mentioning("Their answer")
    assert resumed and "eu-west-3" in resumed[0].newest_user_text()  # the typed answer reached the agent
    text = final[0].newest_user_text()
    assert "Deployed to the region I was told." in text and "eu-west-3" in text, text
    (job,) = [j for j in _jobs(e2e) if j.get("kind") == "task"]
    assert job["status"] == "done" and job["result"]["clarifications"] == [
        {"question": "Which region, eu or us?", "answer": "eu-west-3"}]
