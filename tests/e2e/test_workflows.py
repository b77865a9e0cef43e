"""Parallel, dialogue and the `test` command with the real CLI: several real runs per call."""

from __future__ import annotations

import json

import pytest
from standin import Reply

pytestmark = pytest.mark.e2e


async def test_parallel_with_aggregate(e2e):
    e2e.add_agent("infra")
    e2e.add_agent("web")
    e2e.standin.script(
        Reply(text="disk 80% full", match="check disk"),
        Reply(text="site is up", match="check site"),
        Reply(text="all fine but the disk", match="Combine the results"),
    )
    items = [{"agent": "infra", "task": "check disk"}, {"agent": "web", "task": "check site", "return_ref": True}]
    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch_parallel", dispatches=json.dumps(items), aggregate="web")
        [infra, web] = out["individual_results"]
        assert infra["result"] == "disk 80% full" and web["summary"] == "site is up"
        assert out["aggregated"]["result"] == "all fine but the disk"
        fetched = await e2e.call(client, "fetch_result", ref=web["ref"])
        assert fetched["result"] == "site is up" and fetched["session_id"]
    combine = e2e.standin.requests_mentioning("Combine the results")[0].newest_user_text()
    assert "disk 80% full" in combine and "site is up" in combine


async def test_dialogue_continues_each_agents_own_session(e2e):
    e2e.add_agent("infra")
    e2e.add_agent("web")
    e2e.standin.script(
        Reply(text="which port do you need?", match="open a port"),
        Reply(text="port 8443, please", match="which port do you need?"),
        Reply(text="8443 is open [RESOLVED]", match="port 8443, please"),
    )
    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch_dialogue", requester="web", responder="infra",
                             topic="open a port for the web app", max_rounds=3)
    assert out["resolved"] is True and out["rounds"] == 2, out
    assert [m["role"] for m in out["conversation"]] == ["responder", "requester", "responder"]
    assert out["final_answer"] == "8443 is open"
    assert out["total_cost_usd"] > 0
    # The responder's second turn resumed its first session: the stand-in sees the earlier turn.
    last = e2e.standin.requests_mentioning("port 8443, please")[-1]
    assert "which port do you need?" in last.all_text()


def test_cli_test_command_runs_one_dispatch(e2e):
    e2e.add_agent("infra")
    e2e.standin.script(Reply(text="I am the infra agent", match="who are you"))
    proc = e2e.agent_dispatch("test", "infra", "who are you")
    assert proc.returncode == 0, proc.stderr
    assert "I am the infra agent" in proc.stdout


def test_cli_test_names_a_refused_login_within_seconds(e2e):
    """claude retries a 401 for about three minutes; `test` stops it and says to log in."""
    import time

    e2e.add_agent("infra")
    e2e.standin.script(Reply(status=401, error_message="invalid x-api-key", times=None, retryable=True))
    began = time.monotonic()
    proc = e2e.agent_dispatch("test", "infra", "who are you", timeout=120)
    elapsed = time.monotonic() - began
    assert proc.returncode == 1, proc
    assert "failed (cli_error): claude is not logged in, or the API refused its key (HTTP 401)" in proc.stderr
    assert "/login" in proc.stderr and "ANTHROPIC_API_KEY" in proc.stderr
    assert elapsed < 60, f"took {elapsed:.0f} s"
    assert 2 <= len(e2e.standin.scripted_requests()) <= 6
