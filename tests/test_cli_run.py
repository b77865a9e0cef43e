"""The run and job commands (test, jobs, job, cancel, gc) through click and the console script."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_dispatch.background import owner_info
from agent_dispatch.cli import cli
from agent_dispatch.config import jobs_dir
from agent_dispatch.jobs import JobStore
from agent_dispatch.models import DispatchResult, Job

SCRIPT = Path(sys.executable).parent / "agent-dispatch"


@pytest.fixture
def agent(write_config, project):
    write_config(f"""
        agents:
          infra: {{directory: {project("infra")}, timeout: 5, allowed_tools: [Read]}}
    """)


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def make_job(status: str, *, age_days: float = 0, text: str = "the answer") -> Job:
    now = time.time() - age_days * 86400
    finished = status in ("done", "failed")
    result = DispatchResult(agent="infra", success=status == "done", result=text) if finished else None
    owner = None if finished else owner_info()  # an unfinished job of a live server (this process) stays as it is
    job = Job(id=uuid.uuid4().hex, status=status, agent="infra", task=f"{status} task", created_at=now,
              completed_at=now if result else None, result=result, owner=owner)
    return JobStore(jobs_dir()).create(job)


def test_test_command_prints_the_answer(agent, fake_claude):
    fake = fake_claude()
    out = run("test", "infra", "--", "--looks-like-a-flag? no, a task")
    assert out.exit_code == 0, out.output
    assert "echo: --looks-like-a-flag? no, a task" in out.output
    assert fake.runs()[0]["stdin"] == "--looks-like-a-flag? no, a task"


def test_a_task_that_looks_like_an_option_gets_told_about_the_double_dash(agent, fake_claude):
    fake = fake_claude()
    out = subprocess.run([str(SCRIPT), "test", "infra", "-rf everything"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "No such option" in out.stderr and "agent-dispatch test NAME -- '-the task'" in out.stderr
    assert fake.runs() == []  # nothing ran


def test_test_command_shows_the_fix_for_a_permission_denial(agent, fake_claude):
    fake_claude("""
prompt = read_prompt()
emit_result("I could not write", permission_denials=[{"tool_name": "Write", "tool_input": {}}])
""")
    out = run("test", "infra", "write a file")
    assert "agent-dispatch update infra --allowed-tools" in out.output
    assert "Write" in out.output


def test_test_command_timeout_exits_1_with_hint(write_config, project, fake_claude, monkeypatch):
    write_config(f"agents:\n  slow: {{directory: {project('slow')}, timeout: 1}}\n")
    fake_claude()
    monkeypatch.setenv("FAKE_CLAUDE_SLEEP", "30")
    started = time.monotonic()
    out = run("test", "slow", "wait")
    assert out.exit_code == 1 and "timeout" in out.output
    assert time.monotonic() - started < 8


def test_test_command_stream_shows_progress(agent, fake_claude):
    fake_claude()
    out = CliRunner().invoke(cli, ["test", "infra", "hello", "--stream"])
    assert out.exit_code == 0, out.output
    assert "… " in out.output and "echo: hello" in out.output


def test_test_unknown_agent_is_one_line(agent):
    out = run("test", "ghost")
    assert out.exit_code == 1 and "ghost" in out.output and "Traceback" not in out.output


def test_jobs_job_gc(agent):
    done = make_job("done")
    old = make_job("failed", age_days=30)
    pending = make_job("pending")
    listing = run("jobs")
    assert listing.exit_code == 0
    header, *rows = listing.output.splitlines()
    assert header.split() == ["ID", "STATUS", "CREATED", "AGENT", "TASK"]
    assert [line.split()[0] for line in rows] == [pending.id, done.id, old.id]
    as_json = json.loads(run("jobs", "--status", "done", "--json").output)
    assert [j["id"] for j in as_json] == [done.id] and as_json[0]["success"] is True

    shown = run("job", done.id)
    assert shown.exit_code == 0 and "the answer" in shown.output and "done" in shown.output
    assert json.loads(run("job", done.id, "--json").output)["result"]["result"] == "the answer"

    assert "Would delete 1" in run("gc", "--dry-run").output
    assert "Deleted 1" in run("gc").output
    assert run("job", old.id).exit_code == 1
    assert "Deleted 1" in run("gc", "--all").output
    assert [j["id"] for j in json.loads(run("jobs", "--json").output)] == [pending.id]


@pytest.mark.parametrize("bad", ["../etc/passwd", "A" * 32, "a" * 3, "a" * 33, "ABCD", "abc-"])
def test_hostile_ids_are_usage_errors(agent, bad):
    for command in ("job", "cancel"):
        out = run(command, bad)
        assert out.exit_code == 2 and "Traceback" not in out.output


def test_gc_rejects_bad_days(agent):
    for days in ("0", "-1", "nan", "inf"):
        out = run("gc", "--days", days)
        assert out.exit_code == 2, (days, out.output)


def test_cancel_pending_from_the_console_script(agent):
    pending = make_job("pending")
    proc = subprocess.run([SCRIPT, "cancel", pending.id], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "never run" in proc.stdout
    assert JobStore(jobs_dir()).get(pending.id).status == "cancelled"
    again = subprocess.run([SCRIPT, "cancel", pending.id], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "already cancelled" in again.stdout


def test_job_of_a_dead_server_is_resolved_by_the_cli(agent):
    job = JobStore(jobs_dir()).create(Job(
        id=uuid.uuid4().hex, status="pending", agent="infra", task="orphan", created_at=time.time(),
        owner={"pid": 999_999_999, "start": 1},
    ))
    proc = subprocess.run([SCRIPT, "job", job.id, "--json"], capture_output=True, text=True, timeout=60)
    record = json.loads(proc.stdout)
    assert record["status"] == "failed" and "exited before it started" in record["error"]


def test_cancel_unknown_job_says_not_found(agent):
    missing = uuid.uuid4().hex
    out = run("cancel", missing)
    assert out.exit_code == 1 and out.stderr.startswith(f"Error: no job {missing}\nHint: Run `agent-dispatch jobs`")
    assert json.loads(run("cancel", missing, "--json").stdout) == {
        "outcome": "not_found", "hint": "No job has this id; dispatch_jobs lists the known ones."}


def test_missing_configured_claude_is_named(agent, monkeypatch):
    monkeypatch.setenv("AGENT_DISPATCH_CLAUDE", "/nonexistent/claude-bin")
    out = run("test", "infra", "hi")
    assert out.exit_code == 1 and "not_found" in out.output and "/nonexistent/claude-bin" in out.output


def test_a_shared_jobs_directory_is_not_locked_down(agent, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setenv("AGENT_DISPATCH_JOBS_DIR", str(shared))
    job = make_job("done")
    assert (shared.stat().st_mode & 0o7777) == 0o1777
    assert (shared / f"{job.id}.json").stat().st_mode & 0o777 == 0o600
