"""Spend caps: the fan-out's max_total_usd, the user's daily budget across servers, budget_exceeded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcp_client import call, connect

CLI = str(Path(sys.executable).parent / "agent-dispatch")

# Costs what its task says ("cost=0.1"), after sleeping what it says ("sleep=2").
PRICED = """
import re, time
prompt = read_prompt()
record(prompt)
cost = float(re.search(r"cost=([0-9.]+)", prompt).group(1))
pause = re.search(r"sleep=([0-9.]+)", prompt)
time.sleep(float(pause.group(1)) if pause else 0)
emit_result("spent " + str(cost), total_cost_usd=cost)
"""


def _config(write_config, project, settings: str = "") -> None:
    write_config(f"""
        agents:
          infra:
            directory: {project('infra')}
            timeout: 60
        settings:
          cache:
            enabled: false
{settings}
    """)


def _cap_of(run: dict) -> float | None:
    argv = run["argv"]
    return float(argv[argv.index("--max-budget-usd") + 1]) if "--max-budget-usd" in argv else None


def _task(run: dict) -> str:
    return run["stdin"].rsplit("item ", 1)[-1].split()[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ", 1)[1].split()[0] != "Z"


async def test_a_fanout_cap_stops_starting_items_and_passes_what_is_left(write_config, project, fake_claude):
    _config(write_config, project, "          max_concurrency: 1")
    fake = fake_claude(PRICED)
    items = [{"agent": "infra", "task": f"item {n} cost=0.1"} for n in range(5)]
    async with connect() as client:
        answers = await call(client, "dispatch_parallel", dispatches=json.dumps(items), max_total_usd=0.25)
        bad = await call(client, "dispatch_parallel", dispatches=json.dumps(items), max_total_usd=-1)
    assert "error" in bad and "max_total_usd" in bad["error"]
    ran = [a for a in answers if a["success"]]
    refused = [a for a in answers if not a["success"]]
    assert len(ran) == 3 and len(fake.runs()) == 3  # 0.1 + 0.1 + 0.1 reached 0.25: the rest never started
    assert all(a["error_type"] == "budget" and "not started" in a["error"] and a["hint"] for a in refused)
    # each item's own cap was no more than what was left of the fan-out's
    assert sorted(_cap_of(run) for run in fake.runs()) == pytest.approx([0.05, 0.15, 0.25])
    spent = sum(a["cost_usd"] for a in ran)
    assert spent <= 0.25 + 0.1  # overshoot bounded by what was in flight (one item here)


async def test_a_fanout_cap_cancels_running_items_and_keeps_their_sessions(write_config, project, fake_claude):
    _config(write_config, project, "          max_concurrency: 3")
    fake = fake_claude(PRICED)
    items = [
        {"agent": "infra", "task": "item A cost=0.3 sleep=2"},
        {"agent": "infra", "task": "item B cost=0.1 sleep=40"},
        {"agent": "infra", "task": "item C cost=0.1 sleep=40"},
    ]
    started = time.monotonic()
    async with connect() as client:
        answers = await call(client, "dispatch_parallel", dispatches=json.dumps(items), max_total_usd=0.2)
    assert time.monotonic() - started < 30
    assert answers[0]["success"] is True
    runs = {_task(run): run for run in fake.runs()}
    for answer, name in ((answers[1], "B"), (answers[2], "C")):
        assert answer["success"] is False and answer["error_type"] == "budget" and "cancelled" in answer["error"]
        argv = runs[name]["argv"]
        assert answer["session_id"] == argv[argv.index("--session-id") + 1]  # resumable
        assert not _alive(runs[name]["pid"])  # its process was killed


async def test_the_daily_budget_holds_across_two_servers_and_the_cli(write_config, project, fake_claude,
                                                                     config_path):
    _config(write_config, project, "          daily_budget_usd: 0.05")
    fake = fake_claude(PRICED)
    async with connect() as one, connect() as two:
        first = await call(one, "dispatch", agent="infra", task="a cost=0.03")
        second = await call(two, "dispatch", agent="infra", task="b cost=0.03")
        assert first["success"] and second["success"]
        assert _cap_of(fake.runs()[1]) == pytest.approx(0.02)  # what was left of the day
        third = await call(one, "dispatch", agent="infra", task="c cost=0.03")
        fourth = await call(two, "dispatch", agent="infra", task="d cost=0.03")
    for refused in (third, fourth):
        assert refused["success"] is False and refused["error_type"] == "budget"
        assert "midnight" in refused["hint"] and "daily_budget_usd" in refused["hint"]
    out = subprocess.run([CLI, "test", "infra", "e cost=0.03", "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and json.loads(out.stdout)["error_type"] == "budget"
    assert len(fake.runs()) == 2  # nothing was started once the day's budget was spent
    records = [json.loads(line) for line in (config_path.parent / "usage.jsonl").read_text().splitlines()]
    assert [r.get("refused", False) for r in records] == [False, False, True, True, True]


async def test_a_run_past_its_cap_says_budget_exceeded_and_is_not_cached(write_config, project, fake_claude):
    write_config(f"""
        agents:
          infra:
            directory: {project('infra')}
            max_budget_usd: 0.01
    """)
    fake = fake_claude(PRICED)
    async with connect() as client:
        first = await call(client, "dispatch", agent="infra", task="x cost=0.0123")
        again = await call(client, "dispatch", agent="infra", task="x cost=0.0123")
    assert first["success"] is True and first["budget_exceeded"] is True
    assert "cached" not in again and len(fake.runs()) == 2
