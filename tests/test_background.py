"""Async jobs, refs and recovery, through the real stdio server: a paid result is never lost."""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import asynccontextmanager, suppress

import anyio
import pytest

from agent_dispatch.jobs import JobStore
from mcp_client import call, connect

SLOW_BODY = """
import os, time
prompt = read_prompt()
record(prompt)
for n in range(int(os.environ.get("FAKE_STEPS", "1"))):
    if streaming():
        emit({"type": "assistant", "message": {"content": [{"type": "text", "text": f"step {n}"}]}})
    time.sleep(float(os.environ.get("FAKE_CLAUDE_SLEEP", "0")))
emit_result("paid: " + prompt)
"""


@pytest.fixture
def agent(write_config, project):
    def make(max_concurrency: int = 5, timeout: int = 60) -> None:
        write_config(f"""
            agents:
              worker: {{directory: {project("worker")}, timeout: {timeout}}}
            settings:
              max_concurrency: {max_concurrency}
        """)

    return make


def store() -> JobStore:
    from agent_dispatch.config import jobs_dir

    return JobStore(jobs_dir())


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def until(predicate, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await anyio.sleep(step)
    raise AssertionError("condition not met in time")


@asynccontextmanager
async def doomed_server(**env: str):
    """A server that the test may SIGKILL; leaving the context tolerates the dead connection."""
    with suppress(Exception):
        async with connect(**env) as client:
            yield client


def kill_owner(job_id: str) -> None:
    owner = store().get(job_id).owner
    os.kill(owner["pid"], signal.SIGKILL)


async def test_sigkilled_server_finished_run_is_collected(agent, fake_claude, monkeypatch):
    agent()
    fake_claude(SLOW_BODY)
    monkeypatch.setenv("FAKE_CLAUDE_SLEEP", "1.0")
    async with doomed_server() as client:
        job_id = (await call(client, "dispatch_async", agent="worker", task="precious"))["job_id"]
        await until(lambda: store().get(job_id).status == "running")
        kill_owner(job_id)
    run_pid = store().get(job_id).run["pid"]
    await until(lambda: not pid_alive(run_pid), timeout=10)
    assert store().get(job_id).status == "running"  # nobody has looked yet
    async with connect() as client:
        job = await call(client, "dispatch_wait", job_id=job_id, timeout_seconds=5)
    assert job["status"] == "done"
    assert job["result"]["result"] == "paid: precious" and job["result"]["cost_usd"] > 0


async def test_sigkilled_server_live_run_is_adopted(agent, fake_claude, monkeypatch):
    agent()
    fake_claude(SLOW_BODY)
    monkeypatch.setenv("FAKE_CLAUDE_SLEEP", "2.0")
    async with doomed_server() as client:
        job_id = (await call(client, "dispatch_async", agent="worker", task="long"))["job_id"]
        await until(lambda: store().get(job_id).status == "running")
        kill_owner(job_id)
    assert pid_alive(store().get(job_id).run["pid"]), "the run must outlive its server"
    async with connect() as client:
        job = await call(client, "dispatch_wait", job_id=job_id, timeout_seconds=15)
    assert job["status"] == "done" and job["result"]["result"] == "paid: long"


async def test_sigkilled_server_pending_job_fails_fast_with_reason(agent, fake_claude, monkeypatch):
    agent(max_concurrency=1)
    fake_claude(SLOW_BODY)
    monkeypatch.setenv("FAKE_CLAUDE_SLEEP", "1.5")
    async with doomed_server() as client:
        first = (await call(client, "dispatch_async", agent="worker", task="first"))["job_id"]
        second = (await call(client, "dispatch_async", agent="worker", task="second"))["job_id"]
        await until(lambda: store().get(first).status == "running")
        assert store().get(second).status == "pending"
        kill_owner(first)
    started = time.monotonic()
    async with connect() as client:
        # Settled by the next server's start, not by a timeout (the agent's is 60 s). The bound
        # includes starting that server, which takes seconds on a loaded 2-core machine.
        await until(lambda: store().get(second).status == "failed", timeout=15)
        assert time.monotonic() - started < 15
        assert "exited before it started" in store().get(second).error
        done = await call(client, "dispatch_wait", job_id=first, timeout_seconds=15)
        assert done["status"] == "done"


async def test_stdin_closing_fails_queued_jobs_and_keeps_the_running_one(agent, fake_claude, monkeypatch):
    agent(max_concurrency=1)
    fake = fake_claude(SLOW_BODY)
    monkeypatch.setenv("FAKE_CLAUDE_SLEEP", "1.5")
    async with connect() as client:
        first = (await call(client, "dispatch_async", agent="worker", task="first"))["job_id"]
        second = (await call(client, "dispatch_async", agent="worker", task="second"))["job_id"]
        await until(lambda: store().get(first).status == "running")
    queued = store().get(second)
    assert queued.status == "failed" and "stopped" in queued.error
    async with connect() as client:
        done = await call(client, "dispatch_wait", job_id=first, timeout_seconds=15)
    assert done["status"] == "done" and done["result"]["result"] == "paid: first"
    assert [run["stdin"] for run in fake.runs()] == ["first"], "the failed queued job never ran"


async def test_sigterm_is_an_orderly_stop(agent, fake_claude, monkeypatch):
    agent(max_concurrency=1)
    fake_claude(SLOW_BODY)
    monkeypatch.setenv("FAKE_CLAUDE_SLEEP", "1.0")
    async with doomed_server() as client:
        first = (await call(client, "dispatch_async", agent="worker", task="first"))["job_id"]
        second = (await call(client, "dispatch_async", agent="worker", task="second"))["job_id"]
        await until(lambda: store().get(first).status == "running")
        os.kill(store().get(first).owner["pid"], signal.SIGTERM)
        await until(lambda: store().get(second).status == "failed", timeout=5)
    assert "stopped" in (store().get(second).error or ""), store().get(second)
    async with connect() as client:
        assert (await call(client, "dispatch_wait", job_id=first, timeout_seconds=15))["status"] == "done"


async def test_a_live_servers_job_is_left_alone(agent, fake_claude, monkeypatch):
    agent()
    fake_claude(SLOW_BODY)
    monkeypatch.setenv("FAKE_CLAUDE_SLEEP", "1.5")
    async with connect() as one, connect() as two:
        job_id = (await call(one, "dispatch_async", agent="worker", task="mine"))["job_id"]
        await until(lambda: store().get(job_id).status == "running")
        seen = await call(two, "dispatch_status", job_id=job_id)
        assert seen["status"] == "running"
        finished = await call(two, "dispatch_wait", job_id=job_id, timeout_seconds=15)
        assert finished["status"] == "done" and finished["result"]["result"] == "paid: mine"


async def test_cancel_pending_and_running(agent, fake_claude, monkeypatch):
    agent(max_concurrency=1)
    fake = fake_claude(SLOW_BODY + "\n")
    monkeypatch.setenv("FAKE_CLAUDE_SLEEP", "30")
    async with connect() as client:
        running = (await call(client, "dispatch_async", agent="worker", task="run"))["job_id"]
        pending = (await call(client, "dispatch_async", agent="worker", task="queued"))["job_id"]
        await until(lambda: store().get(running).status == "running" and fake.runs())
        assert (await call(client, "dispatch_cancel", job_id=pending))["outcome"] == "cancelled"
        pid = store().get(running).run["pid"]
        started = time.monotonic()
        answer = await call(client, "dispatch_cancel", job_id=running)
        assert answer["outcome"] == "cancelled_running" and time.monotonic() - started < 5
        assert not pid_alive(pid)
        assert (await call(client, "dispatch_status", job_id=running))["status"] == "cancelled"
        assert (await call(client, "dispatch_cancel", job_id=running))["outcome"] == "already_terminal"
        await anyio.sleep(0.5)
        assert (await call(client, "dispatch_status", job_id=pending))["status"] == "cancelled"
    assert [run["stdin"] for run in fake.runs()] == ["run"], "a cancelled pending job never runs"


async def test_progress_tail_and_refs(agent, fake_claude, monkeypatch):
    agent()
    fake_claude(SLOW_BODY)
    monkeypatch.setenv("FAKE_CLAUDE_SLEEP", "0.4")
    monkeypatch.setenv("FAKE_STEPS", "5")
    async with connect() as client:
        job_id = (await call(client, "dispatch_async", agent="worker", task="steps"))["job_id"]
        await until(lambda: store().get(job_id).progress, timeout=10)
        status = await call(client, "dispatch_status", job_id=job_id)
        assert status["progress"] and status["progress"][-1].startswith("step")
        listed = await call(client, "dispatch_jobs", status="running")
        assert listed[0]["id"] == job_id and listed[0]["last_progress"].startswith("step")
        done = await call(client, "dispatch_wait", job_id=job_id, timeout_seconds=15)
        assert done["status"] == "done"
        fetched = await call(client, "fetch_result", ref=job_id)
        assert fetched["result"] == "paid: steps"

        monkeypatch.setenv("FAKE_STEPS", "1")
        ref = await call(client, "dispatch", agent="worker", task="big answer", return_ref=True, summary_chars=4)
        assert ref["summary"] == "paid" and ref["size"] == len("paid: big answer") and ref["success"]
        again = await call(client, "dispatch", agent="worker", task="big answer", return_ref=True, summary_chars=4)
        assert again["cached"] is True and again["ref"] != ref["ref"] and again["summary"] == "paid"
        record = store().path_for(ref["ref"])
        assert oct(record.stat().st_mode & 0o777) == "0o600"
        assert oct(record.parent.stat().st_mode & 0o777) == "0o700"
        assert json.loads(record.read_text())["result"]["result"] == "paid: big answer"
