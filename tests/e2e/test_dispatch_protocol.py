"""The dispatch protocol with the real CLI: the protocol reaches the model, STATUS becomes
`outcome`, and a blocked agent's question either comes back to a `claude -p` caller (which
cancels every elicitation) or, in the interactive UI under tmux, is put to the human as a form
whose answer resumes the agent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from standin import Reply

pytestmark = pytest.mark.e2e

AGENT_DISPATCH = Path(sys.executable).with_name("agent-dispatch")

TOOL = "mcp__agent-dispatch__dispatch"
PROTOCOL_MARK = "# You were dispatched by another agent"


def _mcp_config(e2e) -> Path:
    path = e2e.root / "mcp.json"
    server = {"command": str(AGENT_DISPATCH), "args": ["serve"], "env": {"AGENT_DISPATCH_CONFIG": str(e2e.config)}}
    path.write_text(json.dumps({"mcpServers": {"agent-dispatch": server}}))
    return path


async def test_the_protocol_reaches_the_model_once_per_session_and_status_becomes_outcome(e2e):
    e2e.add_agent("infra", instructions="Marker-instructions-5: stay read-only.")
    e2e.standin.script(Reply(text="Disk at 40%.\n\n**STATUS: done**", match="first task"),
                       Reply(text="Checked half.\nSTATUS: partial", match="second task"))
    async with e2e.mcp() as client:
        first = await e2e.call(client, "dispatch_session", agent="infra", task="first task")
        second = await e2e.call(client, "dispatch_session", agent="infra", task="second task",
                                session_id=first["session_id"])
    assert first["outcome"] == "done" and first["result"] == "Disk at 40%.", first
    assert second["outcome"] == "partial" and second["result"] == "Checked half.", second
    assert f"session_id='{first['session_id']}'" in second["hint"]
    start = e2e.standin.requests_mentioning("first task")[0]
    system = json.dumps(start.body.get("system"))
    assert PROTOCOL_MARK in system and "STATUS: blocked" in system
    assert system.index(PROTOCOL_MARK) < system.index("Marker-instructions-5")
    resumed = [r for r in e2e.standin.scripted_requests() if "second task" in r.newest_user_text()][0]
    assert resumed.all_text().count(PROTOCOL_MARK) == 1  # the session keeps it; it is not sent twice
    assert PROTOCOL_MARK in json.dumps(resumed.body.get("system"))


# Claude Code speaks 2026-07-28 to our server (an input_required round it retries with cancel);
# MCP_PROTOCOL_NEGOTIATION=legacy makes it 2025-11-25 (an elicitation/create it answers cancel).
@pytest.mark.parametrize("negotiation", ["", "legacy"])
def test_a_blocked_question_under_a_print_mode_caller_comes_back_with_the_hint(e2e, monkeypatch, negotiation):
    if negotiation:
        monkeypatch.setenv("MCP_PROTOCOL_NEGOTIATION", negotiation)
    e2e.add_agent("infra")
    caller = e2e.root / "projects" / "caller"
    caller.mkdir(parents=True)
    e2e.standin.script(
        Reply(text="The agent needs a region.", after_tool=True, match="blocked"),
        Reply(text="", tool_name=TOOL, tool_input={"agent": "infra", "task": "inner task: deploy"},
              match="outer task"),
        Reply(text="I need input.\nQUESTION: Which region, eu or us?\nSTATUS: blocked", match="inner task"),
    )
    proc = e2e.claude("-p", "--output-format", "json", "--mcp-config", str(_mcp_config(e2e)), "--strict-mcp-config",
                      "--allowedTools", TOOL, prompt="outer task: ask infra", cwd=caller, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["result"] == "The agent needs a region."
    answer = json.loads(e2e.standin.scripted_requests()[-1].newest_user_text())
    assert answer["outcome"] == "blocked" and answer["question"] == "Which region, eu or us?", answer
    assert answer["result"] == "I need input." and "clarifications" not in answer
    assert f"session_id='{answer['session_id']}'" in answer["hint"]
    assert len(e2e.standin.requests_mentioning("Their answer")) == 0  # nobody answered: nothing resumed


def _plain_calls_only(e2e) -> None:
    """settings.mcp_tasks: false, so the interactive UI's calls are plain calls, not MCP tasks."""
    data = yaml.safe_load(e2e.config.read_text())
    data.setdefault("settings", {})["mcp_tasks"] = False
    e2e.config.write_text(yaml.safe_dump(data))


@pytest.fixture
def tmux() -> str:
    path = shutil.which("tmux")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is missing: scripts/test installs it for the interactive e2e test", pytrace=False)
        pytest.skip("tmux is not installed (scripts/test installs it)")
    return path


class _Pane:
    """An interactive Claude Code in a tmux server of its own (its own socket: nothing shared)."""

    def __init__(self, tmux: str) -> None:
        self.tmux = tmux
        self.socket = f"agent-dispatch-test-{uuid.uuid4().hex[:12]}"

    def run(self, *args: str) -> str:
        return subprocess.run([self.tmux, "-L", self.socket, *args], capture_output=True, text=True,
                              timeout=30).stdout

    def start(self, cwd: Path, env: dict[str, str], argv: list[str]) -> None:
        pairs = [item for key, value in env.items() for item in ("-e", f"{key}={value}")]
        subprocess.run([self.tmux, "-L", self.socket, "new-session", "-d", "-s", "ui", "-x", "160", "-y", "50",
                        "-c", str(cwd), *pairs, *argv], check=True, timeout=30)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "ui")

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.5)
        raise AssertionError(f"{text!r} did not appear within {timeout} s; the screen:\n{self.screen()}")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", "ui", *(["-l"] if literal else []), *keys)

    def stop(self) -> None:
        self.run("kill-server")


def test_the_interactive_ui_asks_the_human_and_the_answer_resumes_the_agent(e2e, tmux):
    e2e.add_agent("infra")
    _plain_calls_only(e2e)  # the elicitation of a plain call (a task asks through input_required)
    caller = e2e.root / "projects" / "caller"
    caller.mkdir(parents=True)
    (e2e.home / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True,
        "customApiKeyResponses": {"approved": ["x"], "rejected": []},
        "projects": {str(caller): {"hasTrustDialogAccepted": True}},
    }))
    e2e.standin.script(
        Reply(text="FINAL: infra deployed", after_tool=True, match="clarifications"),
        Reply(text="", tool_name=TOOL, tool_input={"agent": "infra", "task": "inner task: deploy"},
              match="outer task"),
        Reply(text="Deployed to the region I was told.\nSTATUS: done", match="Their answer"),
        Reply(text="I need input.\nQUESTION: Which region, eu or us?\nSTATUS: blocked", match="inner task"),
    )
    env = {key: value for key, value in e2e.env().items() if not key.startswith(("TMUX",))}
    env.update(ANTHROPIC_API_KEY="x", TERM="xterm-256color")
    pane = _Pane(tmux)
    pane.start(caller, env, [str(e2e.cli), "--mcp-config", str(_mcp_config(e2e)), "--strict-mcp-config",
                             "--allowedTools", TOOL, "--", "outer task: ask infra"])
    try:
        form = pane.wait_for("requests your input", timeout=120)
        assert "Agent 'infra' is blocked and asks:" in form and "Which region, eu or us?" in form
        pane.keys("eu-west-3", literal=True)
        pane.wait_for("Answer: eu-west-3", timeout=30)
        pane.keys("Enter")  # to the Accept button
        time.sleep(1)
        pane.keys("Enter")  # accept
        pane.wait_for("FINAL: infra deployed", timeout=120)
    finally:
        pane.stop()
    resumed = e2e.standin.requests_mentioning("Their answer")
    assert resumed and "eu-west-3" in resumed[0].newest_user_text()  # the typed answer reached the agent
    final = [r for r in e2e.standin.scripted_requests() if r.reply and r.reply.text.startswith("FINAL")][0]
    answer = json.loads(final.newest_user_text())  # what the caller's model was given
    assert answer["outcome"] == "done" and answer["result"] == "Deployed to the region I was told."
    assert answer["clarifications"] == [{"question": "Which region, eu or us?", "answer": "eu-west-3"}]
    first = e2e.standin.requests_mentioning("inner task")[0]
    assert resumed[0].headers.get("X-Claude-Code-Session-Id") == first.headers.get("X-Claude-Code-Session-Id")
