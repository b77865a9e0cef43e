"""A CLI command that starts an agent ends the agent's whole process tree when it is stopped.

A closed terminal (SIGHUP), `timeout 5 agent-dispatch test ...` or `kill` (SIGTERM) and Ctrl-C
(SIGINT) all used to be different: only Ctrl-C cleaned up. Tested with the console script in a
subprocess and a fake `claude` that starts a child of its own in another session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "agent-dispatch"

LINGERING = """
import os, subprocess, time
prompt = read_prompt()
record(prompt)
helper = subprocess.Popen(["sleep", "120"], start_new_session=True)  # like a shell's background job
with open(os.environ["FAKE_CHILD_PIDS"], "a") as fh:
    fh.write(f"{helper.pid}\\n")
time.sleep(120)
emit_result("too late")
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_stopping_agent_dispatch_test_ends_the_agents_process_tree(write_config, project, fake_claude, tmp_path,
                                                                  monkeypatch, signum):
    write_config(f"agents:\n  slow: {{directory: {project('slow')}, timeout: 300}}\n")
    fake = fake_claude(LINGERING)
    child_pids = tmp_path / "child-pids"
    monkeypatch.setenv("FAKE_CHILD_PIDS", str(child_pids))
    cli = subprocess.Popen([str(SCRIPT), "test", "slow", "take your time"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=os.environ)
    try:
        wait_for(lambda: child_pids.exists() and child_pids.read_text().strip() and fake.runs())
        pids = [fake.runs()[0]["pid"], int(child_pids.read_text().split()[0])]
        assert all(alive(pid) for pid in pids)
        cli.send_signal(signum)
        _, stderr = cli.communicate(timeout=20)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    survivors = [pid for pid in pids if alive(pid)]
    for pid in survivors:  # clean up before failing, so nothing outlives the test
        os.kill(pid, signal.SIGKILL)
    assert survivors == [], f"processes left running after {signum.name}: {survivors}"
    assert cli.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    assert signum.name in stderr, stderr
