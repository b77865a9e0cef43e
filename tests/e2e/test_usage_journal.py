"""The usage journal with the real CLI: what it reported, as it reported it, and stats on it."""

from __future__ import annotations

import json

import pytest
from standin import Reply

pytestmark = pytest.mark.e2e


async def test_the_journal_keeps_the_real_clis_cost_and_stats_add_it_up(e2e):
    e2e.add_agent("infra")
    e2e.standin.script(Reply(text="disk is fine", match="check disk"), Reply(text="site is up", match="check site"))
    async with e2e.mcp() as client:
        first = await e2e.call(client, "dispatch", agent="infra", task="check disk", caller="ops")
        second = await e2e.call(client, "dispatch_session", agent="infra", task="check site")
        stats = await e2e.call(client, "usage_stats", days=1)
    records = [json.loads(line) for line in (e2e.config.parent / "usage.jsonl").read_text().splitlines()]
    assert [r["tool"] for r in records] == ["dispatch", "dispatch_session"]
    assert [r["cost_usd"] for r in records] == [first["cost_usd"], second["cost_usd"]]  # not rounded
    assert records[0]["session_id"] == first["session_id"] and records[0]["caller"] == "ops"
    assert all(r["cost_usd"] > 0 and r["duration_ms"] > 0 and r["num_turns"] >= 1 for r in records)
    assert stats["dispatches"] == 2
    assert stats["spend_usd"] == pytest.approx(first["cost_usd"] + second["cost_usd"], abs=1e-6)
