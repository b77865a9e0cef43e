"""The journal through the real front doors: one record per dispatch on every path, `typical`,
the usage_stats tool (the same object as `stats --json`), a timeout hint from the measured p90,
job retention and gc previews."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest

from agent_dispatch.jobs import JobStore
from agent_dispatch.models import Job
from mcp_client import call, connect

CLI = str(Path(sys.executable).parent / "agent-dispatch")
ECHO = 'prompt = read_prompt(); record(prompt); emit_result("echo " + prompt[-40:].replace("[RESOLVED]", ""))'


def journal(config_path: Path) -> list[dict]:
    path = config_path.parent / "usage.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def two_agents(write_config, project):
    write_config(f"""
        agents:
          infra:
            directory: {project('infra')}
            timeout: 30
          web:
            directory: {project('web')}
            timeout: 30
    """)


async def test_every_dispatch_path_writes_one_record(two_agents, fake_claude, config_path):
    fake_claude(ECHO)
    async with connect() as client:
        await call(client, "dispatch", agent="infra", task="disk", caller="ops")
        cached = await call(client, "dispatch", agent="infra", task="disk", caller="ops")
        assert cached["cached"] is True
        await call(client, "dispatch_session", agent="web", task="hello")
        await call(client, "dispatch_stream", agent="web", task="stream it")
        items = [{"agent": "infra", "task": "one"}, {"agent": "web", "task": "two", "return_ref": True}]
        await call(client, "dispatch_parallel", dispatches=json.dumps(items))
        await call(client, "dispatch_dialogue", requester="infra", responder="web", topic="ports", max_rounds=1)
        job = await call(client, "dispatch_async", agent="infra", task="later", caller="bg")
        done = await call(client, "dispatch_wait", job_id=job["job_id"], timeout_seconds=60)
        assert done["status"] == "done"
    out = subprocess.run([CLI, "test", "web", "from the terminal"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr

    records = journal(config_path)
    assert Counter(r["tool"] for r in records) == {
        "dispatch": 2, "dispatch_session": 1, "dispatch_stream": 1, "dispatch_parallel": 2,
        "dispatch_dialogue": 2, "dispatch_async": 1, "test": 1,
    }
    hit = [r for r in records if r["cached"]]
    assert len(hit) == 1 and "cost_usd" not in hit[0] and hit[0]["saved_usd"] == pytest.approx(0.0123)
    assert hit[0]["caller"] == "ops"
    ran = [r for r in records if not r["cached"]]
    assert all(r["cost_usd"] == 0.0123 and r["success"] is True and r["session_id"] for r in ran)
    assert all(isinstance(r["ts"], float) and isinstance(r["duration_ms"], int) for r in records)
    background = next(r for r in records if r["tool"] == "dispatch_async")
    assert background["job_id"] == job["job_id"] and background["caller"] == "bg"


async def test_typical_appears_after_three_runs_and_stats_match_the_cli(two_agents, fake_claude, config_path):
    fake_claude(ECHO)
    async with connect() as client:
        for index in range(2):
            await call(client, "dispatch", agent="infra", task=f"run {index}")
        listed = {a["name"]: a for a in await call(client, "list_agents")}
        assert "typical" not in listed["infra"]
        await call(client, "dispatch", agent="infra", task="run 3")
        listed = {a["name"]: a for a in await call(client, "list_agents")}
        typical = listed["infra"]["typical"]
        assert typical["dispatches"] == 3 and typical["median_cost_usd"] == pytest.approx(0.0123)
        assert set(typical) == {"dispatches", "median_seconds", "p90_seconds", "median_cost_usd", "failed", "outcomes"}
        assert "typical" not in listed["web"]
        inspected = await call(client, "inspect_agent", name="infra", preview_lines=0)
        assert inspected["typical"] == typical
        stats = await call(client, "usage_stats", days=7)
        bad = await call(client, "usage_stats", days=-1)
        assert "error" in bad and "days" in bad["error"]
    assert stats["dispatches"] == 3 and stats["agents"]["infra"]["spend_usd"] == pytest.approx(0.0369)
    assert {"days", "dispatches", "cached", "spend_usd", "duration_ms", "outcomes", "failures", "agents"} <= set(stats)
    out = subprocess.run([CLI, "stats", "--json"], capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout) == stats
    # The terminal shows the same figures: `list --json` is list_agents, `describe --json` is inspect_agent.
    listed_cli = {a["name"]: a for a in json.loads(subprocess.run([CLI, "list", "--json"], capture_output=True,
                                                                  text=True, timeout=60).stdout)}
    assert listed_cli["infra"]["typical"] == typical and "typical" not in listed_cli["web"]
    described = subprocess.run([CLI, "describe", "infra"], capture_output=True, text=True, timeout=60).stdout
    assert "typical:" in described and "3 runs in 30 days" in described
    described = subprocess.run([CLI, "describe", "web"], capture_output=True, text=True, timeout=60).stdout
    assert "typical:" in described and "not yet" in described


def test_a_timeout_hint_proposes_a_timeout_from_the_measured_p90(write_config, project, fake_claude, config_path):
    write_config(f"""
        agents:
          slow:
            directory: {project('slow')}
            timeout: 1
    """)
    now = time.time()
    with open(config_path.parent / "usage.jsonl", "w") as fh:
        for seconds in (40, 50, 60, 70, 80):
            fh.write(json.dumps({"ts": now - 60, "agent": "slow", "tool": "dispatch", "success": True,
                                 "cached": False, "duration_ms": seconds * 1000, "cost_usd": 0.1}) + "\n")
    fake_claude("import time; read_prompt(); time.sleep(30)")
    out = subprocess.run([CLI, "test", "slow", "--json"], capture_output=True, text=True, timeout=60)
    result = json.loads(out.stdout)
    assert result["error_type"] == "timeout"
    assert "80 s at p90" in result["hint"] and "--timeout 120" in result["hint"]  # ceil10(1.5 * 80)


def _old_job(store: JobStore, status: str, age_days: float) -> Job:
    stamp = time.time() - age_days * 86400
    job = Job(id=os.urandom(16).hex(), status=status, agent="infra", task="t", created_at=stamp,
              started_at=stamp if status != "pending" else None,
              completed_at=stamp if status in ("done", "failed", "cancelled") else None)
    return store.create(job)


async def test_retention_prunes_old_jobs_at_server_start_and_gc_previews(write_config, project, fake_claude,
                                                                       config_path):
    write_config(f"""
        agents:
          infra:
            directory: {project('infra')}
        settings:
          job_retention_days: 5
    """)
    fake_claude(ECHO)
    store = JobStore(config_path.parent / "jobs")
    old = _old_job(store, "done", 10)
    kept_pending = _old_job(store, "failed", 3)
    async with connect() as client:
        for _ in range(100):
            ids = {j["id"] for j in await call(client, "dispatch_jobs")}
            if old.id not in ids:
                break
            await anyio.sleep(0.05)
        assert old.id not in ids and kept_pending.id in ids
        preview = await call(client, "dispatch_gc", max_age_days=1, dry_run=True)
        assert preview == {"deleted": 0, "would_delete": 1, "job_ids": [kept_pending.id]}
        assert (config_path.parent / "jobs" / f"{kept_pending.id}.json").exists()
    out = subprocess.run([CLI, "gc", "--days", "1", "--dry-run"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and kept_pending.id in out.stdout and "Would delete 1" in out.stdout
    assert (config_path.parent / "jobs" / f"{kept_pending.id}.json").exists()


def test_a_gc_dry_run_deletes_nothing(write_config, project, config_path):
    write_config(f"agents:\n  infra:\n    directory: {project('infra')}\n")
    store = JobStore(config_path.parent / "jobs")
    old = _old_job(store, "done", 400)
    out = subprocess.run([CLI, "gc", "--days", "1", "--dry-run"], capture_output=True, text=True, timeout=60)
    assert old.id in out.stdout
    assert (config_path.parent / "jobs" / f"{old.id}.json").exists()


async def test_the_journal_records_outcomes_and_stats_count_them(two_agents, fake_claude, config_path):
    fake_claude('prompt = read_prompt(); emit_result("half of it\\nSTATUS: partial" if "half" in prompt '
                'else "all of it\\nSTATUS: done")')
    async with connect() as client:
        await call(client, "dispatch", agent="infra", task="do half")
        await call(client, "dispatch", agent="infra", task="do all")
        stats = await call(client, "usage_stats", agent="infra")
    assert sorted(r["outcome"] for r in journal(config_path)) == ["done", "partial"]
    assert stats["outcomes"] == {"done": 1, "partial": 1} and stats["agents"]["infra"]["outcomes"] == stats["outcomes"]


async def test_a_journal_that_cannot_be_written_never_fails_a_dispatch(two_agents, fake_claude, tmp_path,
                                                                      monkeypatch):
    fake_claude(ECHO)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the journal's directory should be")
    monkeypatch.setenv("AGENT_DISPATCH_USAGE_LOG", str(blocker / "usage.jsonl"))
    async with connect() as client:
        answer = await call(client, "dispatch", agent="infra", task="still works")
        stats = await call(client, "usage_stats")
    assert answer["success"] is True and "still works" in answer["result"]
    assert stats["dispatches"] == 0 and "error" not in stats
    out = subprocess.run([CLI, "test", "web", "from the terminal"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Traceback" not in out.stderr
    assert blocker.read_text().startswith("a file")
