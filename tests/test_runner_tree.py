"""Process trees: timeouts, leftovers, cancellation, and file-backed runs found again from another process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from agent_dispatch.models import EffectiveAgent
from agent_dispatch.runner import RunHandle, RunSpec, collect_output, kill_run, run_alive, run_claude, run_processes

# A fake that starts helpers which try to outlive it, writes their pids to PIDS, then does `after`.
SPAWNER = """
import signal, subprocess
PIDS = {pids!r}
prompt = read_prompt()
record(prompt)
pids = [os.getpid()]
for code in {helpers!r}:
    pids.append(subprocess.Popen([sys.executable, "-c", code]).pid)
with open(PIDS, "w") as fh:
    json.dump(pids, fh)
time.sleep(0.2)  # let the helpers reach their setsid()/signal() calls
{after}
"""
SLEEPER = "import time; time.sleep(60)"
SETSID = "import os, time; os.setsid(); time.sleep(60)"
STUBBORN = "import os, signal, time; os.setpgid(0, 0); signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
HOLD_STDOUT = "import time; time.sleep(60)"  # inherits the fake's stdout pipe


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")


def wait_for_json(path: Path, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.01)
    raise AssertionError(f"{path} was never written")


@pytest.fixture
def agent(project) -> EffectiveAgent:
    return EffectiveAgent(name="infra", directory=str(project("infra")), timeout=30)


def spec(agent: EffectiveAgent, **kw) -> RunSpec:
    return RunSpec(agent=agent, prompt="go", claude=os.environ["AGENT_DISPATCH_CLAUDE"], **kw)


@pytest.fixture
def spawner(fake_claude, tmp_path):
    made: list[list[int]] = []
    pids_file = tmp_path / "pids.json"

    def make(helpers: list[str], after: str) -> Path:
        fake_claude(SPAWNER.format(pids=str(pids_file), helpers=helpers, after=after))
        return pids_file

    yield make
    if pids_file.exists():  # never leave a helper behind, even when a test fails
        for pid in json.loads(pids_file.read_text()):
            if alive(pid):
                os.kill(pid, 9)
    del made


async def test_grandchild_holding_stdout_does_not_hold_the_call(spawner, agent):
    pids_file = spawner([HOLD_STDOUT], "emit_result('done'); open(PIDS + '.t', 'w').write(repr(time.time()))")
    result = await run_claude(spec(agent))
    returned = time.time()
    assert result.success and result.result == "done"
    result_time = float(Path(f"{pids_file}.t").read_text())
    assert 0 < returned - result_time < 2.0
    assert not any(alive(pid) for pid in json.loads(pids_file.read_text()))


async def test_timeout_kills_every_process_even_in_other_groups_and_ignoring_sigterm(spawner, agent):
    said = "emit({'type': 'assistant', 'message': {'content': [{'type': 'text', 'text': 'half way'}]}})"
    pids_file = spawner(
        [SLEEPER, SETSID, STUBBORN], f"{said}; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    )
    started = time.monotonic()
    result = await run_claude(spec(agent, timeout=1.0, stream=True))
    elapsed = time.monotonic() - started
    assert (result.success, result.error_type) == (False, "timeout")
    assert result.session_id  # a timed-out run can still be resumed
    assert result.result == "half way"  # and what it had said is kept
    assert "1 s" in result.error and "--timeout" in result.hint
    assert elapsed < 1.0 + 2.0 + 1.0  # timeout, then SIGKILL within 2 s, then a prompt return
    pids = json.loads(pids_file.read_text())
    assert len(pids) == 4 and not any(alive(pid) for pid in pids)


@pytest.mark.skipif(shutil.which("timeout") is None or shutil.which("pgrep") is None, reason="needs coreutils, pgrep")
async def test_timeout_reaches_gnu_timeout_and_shell_background_jobs(fake_claude, agent, tmp_path):
    marker = f"61.{os.getpid()}{time.monotonic_ns() % 10**6}"  # a sleep argument no one else uses
    pids_file = tmp_path / "shell-pids"
    script = f"timeout 60 sleep {marker} & echo $! >> {pids_file}; (sleep {marker} & echo $! >> {pids_file}); wait"
    fake_claude(
        f"""
        import subprocess
        read_prompt()
        subprocess.Popen(["sh", "-c", {script!r}])
        time.sleep(60)
        """
    )
    result = await run_claude(spec(agent, timeout=1.0))
    assert result.error_type == "timeout"
    survivors = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True).stdout.split()
    for pid in survivors:
        os.kill(int(pid), 9)
    assert survivors == []
    pids = [int(line) for line in pids_file.read_text().split()]
    assert len(pids) == 2 and not any(alive(pid) for pid in pids)


async def test_result_then_hanging_child_returns_soon_and_kills_it(spawner, agent):
    pids_file = spawner([SLEEPER], "emit_result('answered'); time.sleep(60)")
    started = time.monotonic()
    result = await run_claude(spec(agent, timeout=30.0))
    assert result.success and result.result == "answered"
    assert time.monotonic() - started < 5
    assert not any(alive(pid) for pid in json.loads(pids_file.read_text()))


async def test_normal_end_kills_leftover_background_processes(spawner, agent):
    pids_file = spawner([SETSID], "emit_result('bye')")
    result = await run_claude(spec(agent))
    assert result.success
    assert not any(alive(pid) for pid in json.loads(pids_file.read_text()))


async def test_cancellation_kills_the_tree_and_waits_for_it(spawner, agent):
    pids_file = spawner([SETSID, STUBBORN], "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)")
    handles: list[RunHandle] = []
    outcome: list[object] = []
    with anyio.move_on_after(1.0) as scope:
        outcome.append(await run_claude(spec(agent), on_spawn=handles.append))
    assert scope.cancelled_caught and outcome == []  # cancellation propagated, no result
    pids = json.loads(pids_file.read_text())
    assert len(pids) == 3 and not any(alive(pid) for pid in pids)  # already gone when the cancel returns
    assert handles[0].pid == pids[0] and not run_alive(handles[0].to_dict())


async def test_cancellation_right_after_spawn_leaves_nothing(fake_claude, agent):
    fake_claude("read_prompt(); time.sleep(60)\n")
    handles: list[RunHandle] = []
    with anyio.CancelScope() as scope:

        def cancel_now(handle: RunHandle) -> None:
            handles.append(handle)
            scope.cancel()

        await run_claude(spec(agent), on_spawn=cancel_now)
    assert not alive(handles[0].pid)


async def test_on_spawn_handle_identifies_the_child(fake_claude, agent):
    fake = fake_claude()
    handles: list[RunHandle] = []
    await run_claude(spec(agent), on_spawn=handles.append)
    [handle] = handles
    [run] = fake.runs()
    assert handle.pid == run["pid"]
    assert handle.token in run["env"]["AGENT_DISPATCH_RUN_TOKEN"]
    assert RunHandle.from_dict(json.loads(json.dumps(handle.to_dict()))) == handle


# ---- file-backed runs seen from another process ---------------------------------------------

SERVER = """
import json, sys, anyio
from pathlib import Path
from agent_dispatch.models import EffectiveAgent
from agent_dispatch.runner import RunSpec, run_claude, claude_command

agent = EffectiveAgent(name="infra", directory=sys.argv[1], timeout=60)
out = Path(sys.argv[2])

def spawned(handle):
    Path(sys.argv[3]).write_text(json.dumps(handle.to_dict()))

anyio.run(lambda: run_claude(RunSpec(agent=agent, prompt="survive", claude=claude_command(), stream=True,
                                     output_path=out), on_spawn=spawned))
"""


def start_server(agent: EffectiveAgent, out: Path, info: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SERVER, agent.directory, str(out), str(info)])


async def test_file_backed_run_survives_its_server_and_is_collected(fake_claude, agent, tmp_path):
    gate = tmp_path / "gate"
    fake_claude(
        f"""
        prompt = read_prompt()
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.02)
        emit_result("survived: " + prompt, permission_denials=[{{"tool_name": "Bash"}}])
        """
    )
    out, info_file = tmp_path / "job.out", tmp_path / "run.json"
    server = start_server(agent, out, info_file)
    info = wait_for_json(info_file)
    server.kill()  # the server dies while the run goes on
    server.wait()
    assert run_alive(info)
    assert collect_output(out, "infra") is None  # no result yet
    gate.touch()
    deadline = time.monotonic() + 10
    while run_alive(info) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not run_alive(info)
    result = collect_output(out, agent)
    assert result is not None and result.success and result.result == "survived: survive"
    assert result.denied_tools == ["Bash"] and "--allowed-tools Bash" in result.hint
    assert Path(info["error_path"]).exists()


async def test_kill_run_from_another_process_stops_a_file_backed_run(spawner, agent, tmp_path):
    pids_file = spawner([SETSID, STUBBORN], "time.sleep(60)")
    handles: list[RunHandle] = []
    results = []

    async def run() -> None:
        results.append(await run_claude(spec(agent, output_path=tmp_path / "k.out"), on_spawn=handles.append))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        while not pids_file.exists():
            await anyio.sleep(0.02)
        info = handles[0].to_dict()
        code = (
            "import json, sys; from agent_dispatch.runner import run_alive, kill_run; "
            "info = json.loads(sys.argv[1]); print(run_alive(info)); kill_run(info); print(run_alive(info))"
        )
        proc = await anyio.run_process([sys.executable, "-c", code, json.dumps(info)])
        assert proc.stdout.decode().split() == ["True", "False"]
    [result] = results
    assert result.success is False and result.error_type == "cli_error"
    assert not any(alive(pid) for pid in json.loads(pids_file.read_text()))
    assert run_processes(info) == []


def test_recorded_info_is_verified_before_trusting_a_pid(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        with open(f"/proc/{proc.pid}/stat", "rb") as fh:
            start = int(fh.read().rsplit(b")", 1)[1].split()[19])
        token = "ab" * 16
        real = RunHandle(pid=proc.pid, start_time=start, token=token).to_dict()
        # The sleeper does not carry the token: a recorded run with this pid must not be "alive" ...
        assert run_alive(real) is False
        # ... and neither a wrong token nor a recorded start time that differs (a recycled pid) is signalled.
        kill_run(real, grace=0.1)
        kill_run({**real, "start_time": start + 1}, grace=0.1)
        kill_run({**real, "boot_id": "another-boot"}, grace=0.1)
        for bad in ({}, {"pid": proc.pid}, {**real, "token": ""}, {**real, "pid": True}, {**real, "token": "x" * 32}):
            assert run_alive(bad) is False
            kill_run(bad)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


async def test_detach_on_cancel_leaves_a_file_backed_run_to_finish_alone(fake_claude, agent, tmp_path):
    gate = tmp_path / "gate"
    fake = fake_claude(
        f"""
        prompt = read_prompt()
        record(prompt)
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.02)
        emit_result("finished alone")
        """
    )
    handles: list[RunHandle] = []
    prompt = "big " * (1024 * 1024)
    run_spec = RunSpec(
        agent=agent, prompt=prompt, claude=os.environ["AGENT_DISPATCH_CLAUDE"], output_path=tmp_path / "d.out"
    )
    with anyio.move_on_after(0.5) as scope:
        await run_claude(run_spec, on_spawn=handles.append, detach_on_cancel=True)
    assert scope.cancelled_caught
    info = handles[0].to_dict()
    try:
        assert run_alive(info)
        gate.touch()
        deadline = time.monotonic() + 10
        while run_alive(info) and time.monotonic() < deadline:
            await anyio.sleep(0.02)
        result = collect_output(tmp_path / "d.out", agent)
        assert result is not None and result.success and result.result == "finished alone"
        assert fake.runs()[0]["stdin"] == prompt  # read from the private prompt file, not from us
        assert not any(p.name.startswith("tmp") for p in tmp_path.iterdir())  # the prompt file is unlinked
    finally:
        kill_run(info)


async def test_detach_on_cancel_does_not_apply_to_piped_runs(fake_claude, agent):
    fake_claude("read_prompt(); time.sleep(60)\n")
    handles: list[RunHandle] = []
    with anyio.move_on_after(0.5):
        await run_claude(spec(agent), on_spawn=handles.append, detach_on_cancel=True)
    assert not alive(handles[0].pid)


def test_kill_run_without_a_start_time_still_finds_token_carriers(tmp_path):
    token = "cd" * 16
    env = {**os.environ, "AGENT_DISPATCH_RUN_TOKEN": f"{'ef' * 16}:{token}"}
    carrier = subprocess.Popen([sys.executable, "-c", SETSID], env=env)
    bystander = subprocess.Popen([sys.executable, "-c", SLEEPER], start_new_session=True)
    try:
        # The main process was gone before its start time could be read: its pid means nothing.
        info = RunHandle(pid=bystander.pid, start_time=None, token=token).to_dict()
        deadline = time.monotonic() + 5
        while carrier.pid not in run_processes(info) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert run_processes(info) == [carrier.pid]
        kill_run(info, grace=0.2)
        assert carrier.wait(timeout=5) != 0
        assert bystander.poll() is None
    finally:
        for proc in (carrier, bystander):
            proc.kill()
            proc.wait()
