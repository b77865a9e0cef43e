"""The real Claude Code CLI as a remote agent: installed on the lab's "remote host" (a network
namespace with its own sshd, see tests/netlab.py), talking to the stand-in API through a relay,
dispatched to from our MCP server over a real ssh connection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from standin import Reply

from netlab import Lab, missing_requirements, wait_until

pytestmark = pytest.mark.e2e

LAUNCHER = """#!/bin/sh
# The remote host's `claude`: the pinned CLI, logged in to the stand-in (as a user would be there).
export ANTHROPIC_BASE_URL=http://127.0.0.1:{port} ANTHROPIC_API_KEY=test
export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_TELEMETRY=1 DISABLE_AUTOUPDATER=1
export NO_PROXY=127.0.0.1,localhost
exec {cli} "$@"
"""


@pytest.fixture(scope="module")
def cli_lab(claude_cli):
    reason = missing_requirements()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the remote-agent e2e tier cannot run under CI: {reason}")
        pytest.skip(reason)
    install = Path(claude_cli).resolve().parent  # the CLI's own directory, bound into the remote
    lab = Lab(expose={"cli": install}).start()
    yield lab, lab.exposed("cli") / Path(claude_cli).resolve().name
    lab.close()


@pytest.fixture
def remote_e2e(e2e, cli_lab, monkeypatch):
    lab, cli = cli_lab
    lab.install_remote_cli(LAUNCHER.format(port=lab.relay(int(e2e.standin.url.rsplit(":", 1)[1])), cli=cli))
    for key, value in lab.env().items():
        monkeypatch.setenv(key, value)
    project = lab.dir / "projects" / e2e.root.name
    project.mkdir(parents=True)
    (project / "CLAUDE.md").write_text("Marker from the remote project's CLAUDE.md: heron-17.\n")
    e2e.config.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    e2e.config.write_text(yaml.safe_dump({"agents": {"far": {"directory": str(project), "host": "remote-box",
                                                             "timeout": 60}}}))
    e2e.config.chmod(0o600)
    yield e2e, lab, project
    lab.install_remote_cli(lab.launcher)


async def test_real_cli_on_the_remote_dispatches_resumes_and_streams(remote_e2e):
    e2e, lab, project = remote_e2e
    e2e.standin.script(Reply(text="the far disks are fine", match="check the far disks"),
                       Reply(text="still the same session", match="and now"),
                       Reply(text="streamed from afar", match="stream it"))
    progress: list[str] = []

    async def on_progress(p, total, message):
        progress.append(message or "")

    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch", agent="far", task="check the far disks", timeout=120)
        assert out["success"] is True, out
        assert out["result"] == "the far disks are fine" and out["host"] == "remote-box"
        [first] = e2e.standin.scripted_requests()
        assert f"Primary working directory: {project}" in first.all_text()
        assert "heron-17" in first.all_text()  # the remote project's CLAUDE.md reached the agent

        again = await e2e.call(client, "dispatch_session", agent="far", task="and now",
                               session_id=out["session_id"], timeout=120)
        assert again["success"] is True and again["session_id"] == out["session_id"], again
        assert "check the far disks" in e2e.standin.scripted_requests()[-1].all_text()

        streamed = await e2e.call(client, "dispatch_stream", agent="far", task="stream it", timeout=120,
                                  progress=on_progress)
        assert streamed["success"] is True and streamed["result"] == "streamed from afar", streamed
        assert any("streamed from afar" in text for text in progress), progress
    assert wait_until(lambda: not lab.remote_processes("claude"), timeout=20)


async def test_real_cli_timeout_on_the_remote_leaves_nothing_there(remote_e2e):
    e2e, lab, project = remote_e2e
    config = yaml.safe_load(e2e.config.read_text())
    config["agents"]["far"]["timeout"] = 4
    e2e.config.write_text(yaml.safe_dump(config))
    e2e.standin.script(Reply(text="too late", match="slow far task", delay=60))
    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch", agent="far", task="slow far task", timeout=120)
    assert out["success"] is False and out["error_type"] == "timeout", out
    assert out.get("session_id") and out["host"] == "remote-box"
    assert wait_until(lambda: not lab.remote_processes("claude"), timeout=20), lab.remote_processes("claude")
