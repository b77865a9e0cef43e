"""Every job listing tells the truth: jobs of dead servers are settled first, and records
without their index marker are found (the record is the truth, the index a hint).

Through the real paths: the installed server over stdio and the console script in a subprocess,
with records planted in the jobs directory the way a dead server or a copy would leave them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from agent_dispatch.config import jobs_dir
from agent_dispatch.jobs import JobStore
from agent_dispatch.models import DispatchResult, Job
from mcp_client import call, connect

SCRIPT = Path(sys.executable).parent / "agent-dispatch"
DEAD_OWNER = {"pid": os.getpid(), "start": 0}  # a pid whose start time does not match: that server is gone
PAID = "the paid answer"


@pytest.fixture
def agent(write_config, project):
    write_config(f"agents:\n  worker: {{directory: {project('worker')}, timeout: 30}}\n")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=os.environ)


def orphan(status: str, *, marked: bool = True) -> str:
    """Plant a job that a dead server left `status` ("running" with a finished run, or "pending")."""
    directory = jobs_dir()
    job_id = uuid.uuid4().hex
    run = None
    if status == "running":
        line = {"type": "result", "subtype": "success", "is_error": False, "result": PAID,
                "session_id": str(uuid.uuid4()), "total_cost_usd": 0.5, "num_turns": 1}
        (directory / f"{job_id}.out").write_text(json.dumps(line) + "\n")
        run = {"pid": os.getpid(), "start_time": 0, "token": "0" * 32}  # that run has ended
    job = Job(id=job_id, status=status, agent="worker", task=f"{status} of a dead server", created_at=time.time(),
              started_at=time.time() if run else None, owner=DEAD_OWNER, run=run)
    if marked:
        JobStore(directory).create(job)
    else:
        write_record(job)
    return job_id


def write_record(job: Job) -> None:
    """A record written straight into the directory, without its index marker (a copy, a restore)."""
    path = jobs_dir() / f"{job.id}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w") as fh:
        fh.write(job.model_dump_json())


def finished(n: int) -> Job:
    now = time.time() - 3600 + n
    return Job(id=uuid.uuid4().hex, status="done", agent="worker", task=f"copied job {n}", created_at=now,
               started_at=now, completed_at=now, result=DispatchResult(agent="worker", success=True, result="ok"))


def states(listed: list[dict]) -> dict[str, str]:
    return {job["id"]: job["status"] for job in listed}


# -- dead owners ------------------------------------------------------------------------------------


def test_cli_jobs_settles_a_dead_servers_jobs(agent):
    JobStore(jobs_dir())
    running, pending = orphan("running"), orphan("pending")
    out = cli("jobs", "--json")
    assert out.returncode == 0, out.stderr
    assert states(json.loads(out.stdout)) == {running: "done", pending: "failed"}
    assert JobStore(jobs_dir()).get(running).result.result == PAID


def test_cli_gc_dry_run_counts_a_dead_servers_jobs_as_finished(agent):
    JobStore(jobs_dir())
    running, pending = orphan("running"), orphan("pending")
    out = cli("gc", "--all", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "Would delete 2 job records" in out.stdout
    store = JobStore(jobs_dir())
    assert store.get(running).status == "done" and store.get(pending).status == "failed"


async def test_dispatch_jobs_settles_jobs_of_a_server_that_died_after_this_one_started(agent):
    async with connect() as client:
        assert await call(client, "dispatch_jobs") == []  # start-up recovery is behind us
        running, pending = orphan("running"), orphan("pending")
        listed = await call(client, "dispatch_jobs")
        assert states(listed) == {running: "done", pending: "failed"}
        assert await call(client, "dispatch_gc", max_age_days=1) == {"deleted": 0}  # just finished: kept


async def test_dispatch_gc_settles_before_it_counts(agent):
    async with connect() as client:
        await call(client, "dispatch_jobs")
        running = orphan("running")
        old = finished(0)
        JobStore(jobs_dir()).create(old.model_copy(update={"created_at": 0.0, "completed_at": 1.0}))
        assert await call(client, "dispatch_gc", max_age_days=1) == {"deleted": 1}
        assert JobStore(jobs_dir()).get(running).status == "done"


# -- records without their marker ------------------------------------------------------------------


async def test_records_written_into_a_running_servers_directory_are_all_listed(agent):
    async with connect() as client:
        assert await call(client, "dispatch_jobs") == []
        copied = [finished(n) for n in range(300)]
        for job in copied:
            write_record(job)
        stray = orphan("running", marked=False)
        listed = await call(client, "dispatch_jobs", limit=1000)
        assert len(listed) == 301
        assert states(listed) == {**{job.id: "done" for job in copied}, stray: "done"}
        assert [job["id"] for job in await call(client, "dispatch_jobs", limit=3)] == [
            stray, copied[-1].id, copied[-2].id]
        assert len(await call(client, "dispatch_jobs", status="done", limit=1000)) == 301


def test_cli_listings_find_records_without_markers(agent):
    JobStore(jobs_dir())
    copied = [finished(n) for n in range(20)]
    for job in copied:
        write_record(job)
    out = cli("jobs", "--json", "--limit", "1000")
    assert out.returncode == 0, out.stderr
    assert set(states(json.loads(out.stdout))) == {job.id for job in copied}
    for job in copied[:5]:
        write_record(finished(100 + int(job.created_at) % 7).model_copy(update={"id": uuid.uuid4().hex}))
    out = cli("gc", "--all", "--dry-run")
    assert "Would delete 25 job records" in out.stdout, out.stdout


def test_store_reconcile_indexes_each_missing_record_once(tmp_path):
    store = JobStore(tmp_path / "jobs")
    job = finished(1)
    write_record_at(tmp_path / "jobs", job)
    (tmp_path / "jobs" / f"{'a' * 32}.json").write_text("{not json")  # unreadable: listed as a problem
    assert store.reconcile() == 2
    assert store.reconcile() == 0
    problems: list = []
    assert [j.id for j in store.list(problems=problems)] == [job.id]
    assert [p.job_id for p in problems] == ["a" * 32]
    assert len(os.listdir(tmp_path / "jobs" / ".index")) == 2


def write_record_at(directory: Path, job: Job) -> None:
    (directory / f"{job.id}.json").write_text(job.model_dump_json())
