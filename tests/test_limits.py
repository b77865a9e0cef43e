"""The per-user concurrency limit and the running registry, across real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from agent_dispatch.limits import Registry, UserSlots
from mcp_client import call, connect

CLI = str(Path(sys.executable).parent / "agent-dispatch")
SRC = str(Path(__file__).resolve().parent.parent / "src")

# Logs its own start and end (one O_APPEND line each) to $RUN_LOG, then answers.
LOGGING_BODY = """
import json, os, time
prompt = read_prompt()
def note(what):
    with open(os.environ["RUN_LOG"], "a") as fh:
        fh.write(json.dumps({"what": what, "t": time.time(), "pid": os.getpid()}) + "\\n")
note("start")
time.sleep(float(os.environ.get("RUN_SECONDS", "0.5")))
note("end")
emit_result("done " + prompt[-20:])
"""

# A process that takes a slot, says so on stdout, holds it, and records when it got it.
HOLDER = """
import os, sys, time
sys.path.insert(0, {src!r})
import anyio
from agent_dispatch.limits import UserSlots

async def main():
    slots = UserSlots({runtime!r})
    held = await slots.acquire({cap})
    with open({order!r}, "a") as fh:
        fh.write(f"{{sys.argv[1]}} {{time.time()}}\\n")
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    held.release()

anyio.run(main)
"""


def max_overlap(log: Path) -> tuple[int, int]:
    """The most runs alive at once, from the fake CLI's own start/end lines; and how many ran."""
    events = [json.loads(line) for line in log.read_text().splitlines()]
    changes = sorted((e["t"], 1 if e["what"] == "start" else -1) for e in events)
    alive = peak = 0
    for _, delta in sorted(changes, key=lambda c: (c[0], c[1])):
        alive += delta
        peak = max(peak, alive)
    return peak, sum(1 for e in events if e["what"] == "start")


def holder(tmp_path: Path, name: str, cap: int = 1, hold: float = 60.0) -> subprocess.Popen:
    code = HOLDER.format(src=SRC, runtime=os.environ["AGENT_DISPATCH_RUNTIME_DIR"], cap=cap,
                         order=str(tmp_path / "order"))
    return subprocess.Popen([sys.executable, "-c", code, name, str(hold)], stdout=subprocess.PIPE, text=True)


def queued(runtime: Path) -> int:
    queue = runtime / "queue"
    return len([n for n in os.listdir(queue) if not n.startswith(".")]) if queue.is_dir() else 0


def test_three_servers_and_a_cli_run_never_exceed_the_user_cap(write_config, project, fake_claude, tmp_path,
                                                               monkeypatch):
    write_config(f"""
        agents:
          infra:
            directory: {project('infra')}
            timeout: 120
        settings:
          max_concurrency: 4
          max_concurrency_user: 2
    """)
    fake_claude(LOGGING_BODY)
    log = tmp_path / "runs.log"
    monkeypatch.setenv("RUN_LOG", str(log))
    monkeypatch.setenv("RUN_SECONDS", "0.4")
    answers: list = []

    async def server(index: int) -> None:
        async with connect() as client:
            items = [{"agent": "infra", "task": f"server {index} item {n}"} for n in range(3)]
            answers.extend(await call(client, "dispatch_parallel", dispatches=json.dumps(items)))

    async def main() -> None:
        cli = await anyio.open_process([CLI, "test", "infra", "from the terminal"])
        async with anyio.create_task_group() as tg:
            for index in range(3):
                tg.start_soon(server, index)
        assert await cli.wait() == 0

    anyio.run(main)
    assert len(answers) == 9 and all(a["success"] for a in answers)
    peak, ran = max_overlap(log)
    assert ran == 10
    assert peak <= 2, f"{peak} agent processes ran at once with max_concurrency_user: 2"
    assert peak == 2  # and the cap is used, not serialised below it


def test_a_sigkilled_holder_frees_its_slot_within_a_second(tmp_path):
    runtime = Path(os.environ["AGENT_DISPATCH_RUNTIME_DIR"])
    proc = holder(tmp_path, "victim")
    assert proc.stdout.readline().strip() == "held"
    slots = UserSlots(runtime)
    assert slots.holders(1) == 1
    proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    proc.wait()

    async def take() -> float:
        held = await slots.acquire(1)
        held.release()
        return time.monotonic() - killed

    waited = anyio.run(take)
    assert waited < 1.0, f"the dead holder's slot took {waited:.2f} s to free"


def test_waiters_are_served_in_arrival_order_and_a_greedy_process_cannot_starve_one(tmp_path):
    runtime = Path(os.environ["AGENT_DISPATCH_RUNTIME_DIR"])
    first = holder(tmp_path, "first")
    assert first.stdout.readline().strip() == "held"
    waiters = []
    for index in range(4):
        waiters.append(holder(tmp_path, f"w{index}", hold=0.05))
        deadline = time.monotonic() + 30
        while queued(runtime) < index + 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the next one arrives only once this one is queued
    assert queued(runtime) == 4
    first.kill()  # its slot goes to the oldest waiter
    for proc in waiters:
        assert proc.wait(timeout=60) == 0
    order = [line.split()[0] for line in (tmp_path / "order").read_text().splitlines()]
    assert order == ["first", "w0", "w1", "w2", "w3"]


GREEDY = """
import sys, time
sys.path.insert(0, {src!r})
import anyio
from agent_dispatch.limits import UserSlots

async def main():
    slots = UserSlots({runtime!r})
    end = time.monotonic() + 6
    rounds = 0
    while time.monotonic() < end:
        held = await slots.acquire(1)
        rounds += 1
        held.release()
    print(rounds, time.time(), flush=True)

anyio.run(main)
"""


def test_no_waiter_starves_behind_processes_that_take_the_slot_again_and_again(tmp_path):
    runtime = os.environ["AGENT_DISPATCH_RUNTIME_DIR"]
    greedy = [subprocess.Popen([sys.executable, "-c", GREEDY.format(src=SRC, runtime=runtime)],
                               stdout=subprocess.PIPE, text=True) for _ in range(3)]
    time.sleep(1.0)  # they are hammering the slot now
    patient = holder(tmp_path, "patient", hold=0.0)
    assert patient.wait(timeout=60) == 0
    got_it = float((tmp_path / "order").read_text().split()[1])
    ends = [float(proc.communicate(timeout=60)[0].split()[1]) for proc in greedy]
    assert got_it < min(ends), "the waiter only got a slot once the greedy processes had stopped"


# Runs until the file $RELEASE exists (at most 30 s).
WAITING_BODY = """
import os, time
read_prompt()
end = time.monotonic() + 30
while not os.path.exists(os.environ["RELEASE"]) and time.monotonic() < end:
    time.sleep(0.05)
emit_result("released")
"""

NESTING_BODY = """
import os, subprocess, sys
prompt = read_prompt()
depth = int(os.environ.get("AGENT_DISPATCH_DEPTH", "0"))
if depth < 3:
    out = subprocess.run([os.environ["AD_CLI"], "test", "abc"[depth], f"level {depth}", "--json"],
                         capture_output=True, text=True, timeout=90)
    inner = json.loads(out.stdout)["result"] if out.stdout else "failed: " + out.stderr
    emit_result(f"depth {depth} <- " + inner)
else:
    emit_result(f"leaf at depth {depth}")
"""


def test_a_nested_chain_at_the_cap_completes(write_config, project, fake_claude, monkeypatch):
    write_config(f"""
        agents:
          a:
            directory: {project('a')}
            timeout: 100
          b:
            directory: {project('b')}
            timeout: 100
          c:
            directory: {project('c')}
            timeout: 100
        settings:
          max_concurrency_user: 1
          max_dispatch_depth: 3
    """)
    fake_claude(NESTING_BODY)
    monkeypatch.setenv("AD_CLI", CLI)
    out = subprocess.run([CLI, "test", "a", "go", "--json"], capture_output=True, text=True, timeout=120)
    result = json.loads(out.stdout)
    assert result["success"] is True, result
    # three agent processes nested at a cap of one: each nested run borrowed its caller's slot
    assert result["result"] == "depth 1 <- depth 2 <- leaf at depth 3"


async def test_ps_shows_runs_of_every_server_and_never_a_dead_ones(write_config, project, fake_claude, tmp_path,
                                                                   monkeypatch):
    write_config(f"""
        agents:
          infra:
            directory: {project('infra')}
            timeout: 60
    """)
    fake_claude(WAITING_BODY)
    release = tmp_path / "release"
    monkeypatch.setenv("RELEASE", str(release))
    cli = subprocess.Popen([CLI, "test", "infra", "terminal run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        async with connect() as client:
            job = await call(client, "dispatch_async", agent="infra", task="background", caller="me")
            running: list = []
            for _ in range(200):
                running = await call(client, "list_running")
                if len(running) == 2:
                    break
                await anyio.sleep(0.05)
            assert len(running) == 2, running
            by_tool = {item["tool"]: item for item in running}
            assert set(by_tool) == {"dispatch_async", "test"}
            assert by_tool["dispatch_async"]["job_id"] == job["job_id"] and by_tool["dispatch_async"]["caller"] == "me"
            assert by_tool["test"]["server_pid"] == cli.pid
            assert by_tool["dispatch_async"]["server_pid"] != cli.pid
            assert all(item["agent"] == "infra" and item["started_at"] <= time.time() for item in running)
            listed = json.loads(subprocess.run([CLI, "ps", "--json"], capture_output=True, text=True,
                                               timeout=60).stdout)
            assert sorted(i["tool"] for i in listed) == ["dispatch_async", "test"]
            cli.send_signal(signal.SIGKILL)
            cli.wait()
            after = await call(client, "list_running")
            assert [item["tool"] for item in after] == ["dispatch_async"]
            text = subprocess.run([CLI, "ps"], capture_output=True, text=True, timeout=60).stdout
            assert "dispatch_async" in text and "infra" in text and " test " not in text
            release.write_text("go")
            await call(client, "dispatch_wait", job_id=job["job_id"], timeout_seconds=60)
        assert Registry(Path(os.environ["AGENT_DISPATCH_RUNTIME_DIR"])).running() == []
    finally:
        if cli.poll() is None:
            cli.kill()


QUIET_BODY = """
import os, time
read_prompt()
emit({"type": "assistant", "message": {"content": [{"type": "text", "text": "warming up"}]}})
emit({"type": "assistant", "message": {"content": [{"type": "text", "text": "checking the disks"}]}})
end = time.monotonic() + 30
while not os.path.exists(os.environ["RELEASE"]) and time.monotonic() < end:
    time.sleep(0.05)
emit_result("released")
"""


def test_ps_shows_what_a_quiet_run_said_last(write_config, project, fake_claude, tmp_path, monkeypatch):
    write_config(f"agents:\n  infra:\n    directory: {project('infra')}\n    timeout: 60\n")
    fake_claude(QUIET_BODY)
    release = tmp_path / "release"
    monkeypatch.setenv("RELEASE", str(release))
    cli = subprocess.Popen([CLI, "test", "infra", "look", "--stream"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Two messages in one burst, then silence: the last one shows within about a second.
        deadline = time.monotonic() + 20
        listed: list = []
        while time.monotonic() < deadline:
            listed = json.loads(subprocess.run([CLI, "ps", "--json"], capture_output=True, text=True,
                                               timeout=60).stdout)
            if listed and "checking the disks" in (listed[0].get("last_progress") or ""):
                break
            time.sleep(0.2)
        assert listed and "checking the disks" in listed[0]["last_progress"], listed
        text = subprocess.run([CLI, "ps"], capture_output=True, text=True, timeout=60).stdout
        assert "checking the disks" in text
        release.write_text("go")
        assert cli.wait(timeout=60) == 0
    finally:
        if cli.poll() is None:
            cli.kill()


def test_no_user_cap_means_no_slot_files(write_config, project, fake_claude):
    write_config(f"""
        agents:
          infra:
            directory: {project('infra')}
        settings:
          max_concurrency_user: null
    """)
    fake_claude()
    out = subprocess.run([CLI, "test", "infra", "hi"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    slots = Path(os.environ["AGENT_DISPATCH_RUNTIME_DIR"]) / "slots"
    assert not slots.exists() or os.listdir(slots) == []


@pytest.mark.parametrize("bad", ["0", "-1", "true", "'x'"])
def test_a_bad_user_cap_is_a_readable_config_error(write_config, project, bad):
    write_config(f"""
        agents:
          infra:
            directory: {project('infra')}
        settings:
          max_concurrency_user: {bad}
    """)
    out = subprocess.run([CLI, "list"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "max_concurrency_user" in out.stderr and "Traceback" not in out.stderr


def test_init_registers_the_server_with_the_runtime_dir_and_journal_chosen_here(monkeypatch, tmp_path):
    from agent_dispatch.cli.doctor import registration_args

    monkeypatch.setenv("AGENT_DISPATCH_USAGE_LOG", str(tmp_path / "u.jsonl"))
    args = registration_args(["agent-dispatch", "serve"])
    assert f"AGENT_DISPATCH_RUNTIME_DIR={os.environ['AGENT_DISPATCH_RUNTIME_DIR']}" in args
    assert f"AGENT_DISPATCH_USAGE_LOG={tmp_path / 'u.jsonl'}" in args
