"""The whole chain: `agent-dispatch init` registers our server with the real Claude Code, and a
real Claude Code session calls our `dispatch` tool, whose agent (another real `claude`) answers."""

from __future__ import annotations

import json

import pytest
from standin import Reply

pytestmark = pytest.mark.e2e

TOOL = "mcp__agent-dispatch__dispatch"


def test_claude_code_calls_dispatch_and_gets_the_agent_answer(e2e):
    init = e2e.agent_dispatch("init")
    assert init.returncode == 0, init.stdout + init.stderr
    assert e2e.config.exists()
    registered = json.loads((e2e.home / ".claude.json").read_text())["mcpServers"]
    assert "agent-dispatch" in registered, registered

    listed = e2e.claude("mcp", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith("agent-dispatch:"))
    assert "Connected" in line, listed.stdout

    project = e2e.root / "projects" / "infra"
    project.mkdir(parents=True)
    added = e2e.agent_dispatch("add", "infra", str(project), "-d", "Infrastructure agent")
    assert added.returncode == 0, added.stdout + added.stderr

    caller_dir = e2e.root / "projects" / "caller"
    caller_dir.mkdir()
    (project / "CLAUDE.md").write_text("Infra project memory: marker-infra-7.\n")
    (caller_dir / "CLAUDE.md").write_text("Caller project memory: marker-caller-3.\n")
    e2e.standin.script(
        # Listed first: the caller's second request (the tool result) must not reach the agent's reply.
        Reply(text="The infra agent says the disks are fine.", after_tool=True, match="answer from infra"),
        Reply(text="", tool_name=TOOL, tool_input={"agent": "infra", "task": "inner task: check disks"},
              match="outer task: ask infra"),
        Reply(text="answer from infra: 3 disks healthy", match="inner task: check disks"),
    )
    proc = e2e.claude("-p", "--output-format", "json", "--allowedTools", TOOL,
                      prompt="outer task: ask infra", cwd=caller_dir, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["is_error"] is False and out["permission_denials"] == [], out
    assert out["result"] == "The infra agent says the disks are fine."

    caller_request = e2e.standin.requests_mentioning("outer task: ask infra")[0]
    agent_request = e2e.standin.requests_mentioning("inner task: check disks")[0]
    # The agent is its own Claude Code session in its own project, not a part of the caller's.
    assert f"Primary working directory: {project}" in agent_request.all_text()
    assert "marker-infra-7" in agent_request.all_text() and "marker-caller-3" not in agent_request.all_text()
    assert "marker-caller-3" in caller_request.all_text()
    assert agent_request.headers["X-Claude-Code-Session-Id"] != caller_request.headers["X-Claude-Code-Session-Id"]
    final = e2e.standin.scripted_requests()[-1]
    assert final.reply is not None and final.reply.after_tool
    # What the caller's model was given as the tool result: our dispatch answer, the agent's text inside.
    answer = json.loads(final.newest_user_text())
    assert answer["success"] is True and answer["agent"] == "infra", answer
    assert answer["result"] == "answer from infra: 3 disks healthy"
