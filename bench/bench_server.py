"""The server's own costs with a fake `claude` that answers at once (issue 3 and issue 4 targets).

    .venv/bin/python bench/bench_server.py [--quick] [--runs N] [--records 10000] [--only 1,5]

Everything runs in a temporary directory: its own HOME, agents.yaml (50 agents), jobs
directories and one `/bin/sh` fake `claude` whose behaviour depends on the agent's directory
name (`${PWD##*/}`): most agents answer at once, `sleepy` sleeps 500 ms first, `streamer` first
`cat`s a prebuilt 50 MB file of stream-json assistant events. A sh script keeps the child's own
cost small and steady, so what is measured is ours.

Prints medians over repeated runs, each figure with its target and PASS/FAIL, then exits 0
(it measures; CI does not run it). "in-process" figures call the service or the server's tool
functions directly (what our code costs); "stdio" figures go through a real MCP client and the
installed `agent-dispatch serve` (what a caller sees, JSON-RPC and pipes included).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

BENCH = Path(__file__).resolve().parent
SERVER = Path(sys.executable).with_name("agent-dispatch")
AGENTS = 50
SLEEP_SECONDS = 0.5
PARALLEL_ITEMS = 40
PARALLEL_CONCURRENCY = 5
STREAM_BYTES = 50 * 1024 * 1024
ASYNC_JOBS = 100
BIG_ANSWER = 30 * 2**20  # characters of the answer in figure 8

RESULT_LINE = json.dumps({
    "type": "result", "subtype": "success", "is_error": False, "result": "ok",
    "session_id": "00000000-0000-4000-8000-000000000000", "total_cost_usd": 0.001, "duration_ms": 1,
    "num_turns": 1, "permission_denials": [],
})
FAKE = """#!/bin/sh
# A fake `claude -p`: the behaviour is chosen by the agent directory's name.
case "${{PWD##*/}}" in
  sleepy) sleep {sleep} ;;
  streamer) cat '{events}' ;;
  big) exec cat '{big}' ;;
  bigstream) exec cat '{bigstream}' ;;
esac
printf '%s\\n' '{result}'
"""

# Printed rows: (label, value with its unit, target text, passed; None = for information only).
Row = tuple[str, str, str, bool | None]
ROWS: list[Row] = []


def report(label: str, value: str, target: str = "", passed: bool | None = None) -> None:
    ROWS.append((label, value, target, passed))
    verdict = "" if passed is None else ("PASS" if passed else "FAIL")
    print(f"  {label:<58} {value:>22}  {target:<18} {verdict}", flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# -- the world the bench runs in ------------------------------------------------------------------


class World:
    """Temp HOME, configs, agent projects, the fake and its 50 MB event file."""

    def __init__(self, root: Path, records: int) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir()
        self.events = root / "events.jsonl"
        self.fake = root / "claude"
        self.cfg_off = root / "config" / "off.yaml"  # cache disabled
        self.cfg_on = root / "config" / "on.yaml"  # cache enabled
        self.jobs_empty = root / "jobs-empty"
        self.jobs_full = root / "jobs-full"
        self.jobs_async = root / "jobs-async"
        self.records = records
        self.big = root / "big.json"  # a `--output-format json` answer of BIG_ANSWER characters
        self.bigstream = root / "bigstream.jsonl"  # the same answer as stream-json: assistant + result
        self.names = [f"agent{n:02d}" for n in range(AGENTS - 4)] + ["sleepy", "streamer", "big", "bigstream"]

    def build(self) -> None:
        began = time.perf_counter()
        self._write_events()
        self._write_big()
        self.fake.write_text(FAKE.format(sleep=SLEEP_SECONDS, events=self.events, result=RESULT_LINE,
                                         big=self.big, bigstream=self.bigstream))
        self.fake.chmod(0o700)
        projects = self.root / "projects"
        for name in self.names:
            _make_project(projects / name, name)
        agents = {name: {"directory": str(projects / name), "timeout": 120} for name in self.names}
        for path, cache in ((self.cfg_off, False), (self.cfg_on, True)):
            path.parent.mkdir(mode=0o700, exist_ok=True)
            settings = {"max_concurrency": PARALLEL_CONCURRENCY, "cache": {"enabled": cache, "ttl": 3600}}
            path.write_text(json.dumps({"agents": agents, "settings": settings}, indent=1))  # JSON is YAML
            path.chmod(0o600)
        for directory in (self.jobs_empty, self.jobs_async):
            directory.mkdir(mode=0o700)
        self._build_jobs()
        os.environ.update(self.env())
        for key in ("AGENT_DISPATCH_DEPTH", "CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"):
            os.environ.pop(key, None)
        print(f"setup: 50 MB of events, {AGENTS} agents, {self.records} job records "
              f"in {time.perf_counter() - began:.1f} s", flush=True)

    def env(self, *, config: Path | None = None, jobs: Path | None = None) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "AGENT_DISPATCH_CONFIG": str(config or self.cfg_off),
            "AGENT_DISPATCH_JOBS_DIR": str(jobs or self.jobs_empty),
            "AGENT_DISPATCH_CLAUDE": str(self.fake),
        }

    def server_env(self, **kw: Any) -> dict[str, str]:
        """The environment of a server (and of the bare import it is compared with).

        Bytecode is cached under the temp dir, as an installed wheel has it compiled: without
        this, PYTHONDONTWRITEBYTECODE (set in some dev shells) recompiles our modules each start.
        """
        drop = ("AGENT_DISPATCH_DEPTH", "CLAUDECODE", "PYTHONDONTWRITEBYTECODE")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        env.update(self.env(**kw), PYTHONPYCACHEPREFIX=str(self.root / "pycache"))
        return env

    def _write_events(self) -> None:
        """~1 KB assistant events, text and tool_use alternating, as `claude --verbose` streams them."""
        session = "00000000-0000-4000-8000-000000000000"
        lines = [json.dumps({"type": "system", "subtype": "init", "session_id": session, "tools": [], "cwd": "/"})]
        filler = "lorem ipsum dolor sit amet " * 34
        for n in range(64):
            text = {"type": "text", "text": f"step {n}: {filler}"}
            tool = {"type": "tool_use", "id": f"toolu_{n:04d}", "name": "Read",
                    "input": {"file_path": f"/src/module_{n}.py", "note": filler[:800]}}
            for block in (text, tool):
                lines.append(json.dumps({"type": "assistant", "session_id": session,
                                         "message": {"role": "assistant", "content": [block]}}))
        block = ("\n".join(lines[1:]) + "\n").encode()
        with open(self.events, "wb") as fh:
            fh.write((lines[0] + "\n").encode())
            written = len(lines[0]) + 1
            while written < STREAM_BYTES:
                fh.write(block)
                written += len(block)

    def _write_big(self) -> None:
        """Prose lines with quotes (escaped in JSON), as a long report would read."""
        line = 'Finding {n}: the "cache" layer re-reads agents.yaml on each call; see notes.\n'
        parts, size, n = [], 0, 0
        while size < BIG_ANSWER:
            parts.append(line.format(n=n))
            size += len(parts[-1])
            n += 1
        text = "".join(parts)[:BIG_ANSWER]
        session = "00000000-0000-4000-8000-000000000000"
        result = {"type": "result", "subtype": "success", "is_error": False, "result": text, "session_id": session,
                  "total_cost_usd": 0.5, "duration_ms": 1, "num_turns": 1, "permission_denials": []}
        self.big.write_text(json.dumps(result) + "\n")
        init = {"type": "system", "subtype": "init", "session_id": session, "tools": [], "cwd": "/"}
        assistant = {"type": "assistant", "session_id": session,
                     "message": {"role": "assistant", "content": [{"type": "text", "text": text}]}}
        with open(self.bigstream, "w") as fh:
            for obj in (init, assistant, result):
                fh.write(json.dumps(obj) + "\n")

    def _build_jobs(self) -> None:
        sys.path.insert(0, str(BENCH))
        from bench_jobs import build  # the job store bench's realistic records (2 KB results)

        self.jobs_full.mkdir(mode=0o700)
        build(self.jobs_full, self.records, 0)  # all terminal: a long-used directory at rest


def _make_project(path: Path, name: str) -> None:
    path.mkdir(parents=True)
    (path / "CLAUDE.md").write_text(f"# {name}\n\nThe {name} project: services, scripts and their docs.\n\n" * 3)
    (path / "README.md").write_text(f"# {name}\n\nRead CLAUDE.md first.\n")
    (path / "pyproject.toml").write_text(f'[project]\nname = "{name}"\ndescription = "The {name} service"\n')
    (path / ".mcp.json").write_text(json.dumps({"mcpServers": {"db": {"command": "x"}, "git": {"command": "y"}}}))
    (path / "migrations").mkdir()


# -- the stdio server ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far (clock-tick resolution)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# `agent-dispatch serve` as its console script runs it, after importing the mcp server module and
# noting the time (CLOCK_MONOTONIC, the clock of time.perf_counter here) in the file $BENCH_T0.
AFTER_IMPORT = (
    "import os, sys, time; import mcp.server.mcpserver; "
    "open(os.environ['BENCH_T0'], 'w').write(repr(time.monotonic())); "
    "from agent_dispatch.cli import main; sys.argv = ['agent-dispatch', 'serve']; main()"
)


def start_to_tools_list(env: dict[str, str], *, after_import: bool = False) -> tuple[float, float]:
    """(wall, CPU) seconds from spawning `agent-dispatch serve` to its tools/list answer (raw JSON-RPC).

    `after_import`: (seconds from the end of the server's own `import mcp.server.mcpserver` to the
    answer, 0.0): what the server adds to the bare import, measured inside one process, so the
    noise of a busy machine scales with ~0.1 s of work instead of ~1 s.
    """
    began = time.perf_counter()
    argv = [sys.executable, "-c", AFTER_IMPORT] if after_import else [str(SERVER), "serve"]
    marker = Path(env["HOME"], "t0")
    env = {**env, "BENCH_T0": str(marker)}
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env, cwd=env["HOME"])
    assert proc.stdin is not None and proc.stdout is not None

    def send(message: dict[str, Any]) -> None:
        proc.stdin.write((json.dumps(message) + "\n").encode())  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]

    try:
        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
        assert json.loads(proc.stdout.readline())["id"] == 1
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        answer = json.loads(proc.stdout.readline())
        elapsed = time.perf_counter() - began
        cpu = cpu_seconds(proc.pid)
        assert len(answer["result"]["tools"]) >= 19, answer
        if after_import:
            return began + elapsed - float(marker.read_text()), 0.0
        return elapsed, cpu
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


BARE = "import mcp.server.mcpserver, os, sys; os.write(1, b'.'); sys.stdin.read()"


def bare_import(env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of `python -c "import mcp.server.mcpserver"` up to the end of the import.

    Like the server's figure, this stops at the answer: the interpreter's teardown (tens of ms
    with these modules loaded) is not counted.
    """
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", BARE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=env, cwd=env["HOME"])
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.read(1) == b"."
    elapsed = time.perf_counter() - began
    cpu = cpu_seconds(proc.pid)
    proc.stdin.close()
    assert proc.wait(10) == 0
    return elapsed, cpu


def bare_import_whole(env: dict[str, str]) -> float:
    """Wall seconds of the whole `python -c "import mcp.server.mcpserver"`, teardown included."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import mcp.server.mcpserver"], env=env, cwd=env["HOME"], check=True)
    return time.perf_counter() - began


@asynccontextmanager
async def connect(env: dict[str, str]) -> AsyncIterator[Any]:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(command=str(SERVER), args=["serve"], env=env, cwd=env["HOME"])
    async with Client(params, read_timeout_seconds=120) as client:
        yield client


async def call(client: Any, tool: str, progress: Any = None, **args: Any) -> Any:
    result = await client.call_tool(tool, args, progress_callback=progress)
    value = json.loads(result.content[0].text)
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {value}")
    return value


def server_pid() -> int:
    """The pid of our `agent-dispatch serve` child (the client spawns it directly)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        if ppid == me and b"serve" in cmdline:
            return int(entry)
    raise RuntimeError("cannot find the server process")


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs '5'); False when not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- figures -------------------------------------------------------------------------------------------


def fig_start(world: World, runs: int) -> None:
    print("\n1 / 8. server start to the first tools/list answer", flush=True)
    empty = world.server_env(jobs=world.jobs_empty)
    full = world.server_env(jobs=world.jobs_full)
    probes = {
        "bare": lambda: bare_import(empty),
        "empty": lambda: start_to_tools_list(empty),
        "full": lambda: start_to_tools_list(full),
    }
    for probe in probes.values():
        probe()  # compiles the bytecode cache and warms the page cache
    wall: dict[str, list[float]] = {name: [] for name in probes}
    cpu: dict[str, list[float]] = {name: [] for name in probes}
    names = list(probes)
    for round_no in range(runs):  # interleaved rounds, so a busy moment hits all three alike
        for name in names[round_no % 3:] + names[: round_no % 3]:  # rotated: no probe always follows another
            w, c = probes[name]()
            wall[name].append(w)
            cpu[name].append(c)
    inside: dict[str, list[float]] = {"empty": [], "full": []}
    for _ in range(runs):
        for name, env in (("empty", empty), ("full", full)):
            inside[name].append(start_to_tools_list(env, after_import=True)[0])

    def paired(a: str, b: str, series: dict[str, list[float]]) -> float:
        return median([x - y for x, y in zip(series[a], series[b], strict=True)])

    whole = median([bare_import_whole(empty) for _ in range(3)])
    report("bare `python -c 'import mcp.server.mcpserver'` (info: whole run)", ms(whole))
    report("bare import of mcp.server.mcpserver, to its end", ms(median(wall["bare"])))
    report("server start -> tools/list, empty jobs dir", ms(median(wall["empty"])))
    over = paired("empty", "bare", wall)
    report("  start minus bare import (whole processes, paired rounds)", ms(over), "<= 100 ms", over <= 0.100)
    report("  same in CPU time (info)", ms(paired("empty", "bare", cpu)))
    added = median(inside["empty"])
    report("  start minus bare import (one process: after the import)", ms(added), "<= 100 ms", added <= 0.100)
    report(f"server start -> tools/list, {world.records} job records", ms(median(wall["full"])))
    over = paired("full", "empty", wall)
    report(f"  {world.records} records minus empty (whole processes)", ms(over), "<= 50 ms", over <= 0.050)
    added = median(inside["full"]) - median(inside["empty"])
    report(f"  {world.records} records minus empty (after the import)", ms(added), "<= 50 ms", added <= 0.050)


async def fig_dispatch(world: World, runs: int) -> None:
    from agent_dispatch.config import ConfigStore
    from agent_dispatch.dispatcher import Dispatcher, make_request
    from agent_dispatch.runner import build_argv, child_env
    from agent_dispatch.runner.tree import new_token

    print("\n2 / 8. dispatch overhead over the child's own run time (cache off)", flush=True)
    d = Dispatcher(ConfigStore(world.cfg_off), claude=str(world.fake))
    cfg = d.config()
    agent = d.agent("agent00", cfg)
    spec = d.spec(agent, make_request(agent="agent00", task="measure me"))
    argv = build_argv(spec, session_id="00000000-0000-4000-8000-000000000001")
    argv[0] = str(world.fake)
    prompt = spec.prompt.encode()
    env = child_env(0, new_token())

    def direct() -> float:
        began = time.perf_counter()
        out = subprocess.run(argv, input=prompt, capture_output=True, cwd=agent.directory, env=env,
                             start_new_session=True, check=True)
        elapsed = time.perf_counter() - began
        assert b'"result"' in out.stdout
        return elapsed

    async def via_service(n: int) -> float:
        req = make_request(agent="agent00", task=f"measure me {n}")
        began = time.perf_counter()
        result = await d.dispatch(req)
        elapsed = time.perf_counter() - began
        assert result.success, result
        return elapsed

    for n in range(5):
        direct()
        await via_service(-n)
    child, ours, paired = [], [], []
    for n in range(runs * 10):
        c = direct()
        o = await via_service(n)
        child.append(c)
        ours.append(o)
        paired.append(o - c)
    report("fake claude run alone (subprocess, prompt on stdin)", ms(median(child)))
    report("Dispatcher.dispatch, in-process", ms(median(ours)))
    over = median(paired)
    report("  overhead (median of paired differences)", ms(over), "< 5 ms", over < 0.005)

    async with connect(world.server_env(config=world.cfg_off)) as client:
        stdio = []
        for n in range(5):
            await call(client, "dispatch", agent="agent00", task=f"warm {n}")
        for n in range(runs * 10):
            c = direct()
            began = time.perf_counter()
            answer = await call(client, "dispatch", agent="agent00", task=f"over stdio {n}")
            stdio.append(time.perf_counter() - began - c)
            assert answer["success"], answer
        report("  overhead over stdio (info: + JSON-RPC, pipes)", ms(median(stdio)))


async def fig_cache(world: World, runs: int) -> None:
    from agent_dispatch.config import ConfigStore
    from agent_dispatch.dispatcher import Dispatcher, make_request

    print("\n3 / 8. cache-hit latency", flush=True)
    d = Dispatcher(ConfigStore(world.cfg_on), claude=str(world.fake))
    req = make_request(agent="agent00", task="cached task", context="some context " * 50)
    first = await d.dispatch(req)
    assert first.success and not first.cached
    times = []
    for _ in range(runs * 100):
        began = time.perf_counter()
        hit = await d.dispatch(req)
        times.append(time.perf_counter() - began)
        assert hit.cached
    value = median(times)
    report("Dispatcher.dispatch on a hit, in-process", ms(value), "< 1 ms", value < 0.001)

    async with connect(world.server_env(config=world.cfg_on)) as client:
        args = {"agent": "agent00", "task": "cached task", "context": "some context " * 50}
        await call(client, "dispatch", **args)
        stdio = []
        for _ in range(runs * 10):
            began = time.perf_counter()
            answer = await call(client, "dispatch", **args)
            stdio.append(time.perf_counter() - began)
            assert answer["cached"] is True
        report("  cache hit over stdio (info: round trip)", ms(median(stdio)))


async def fig_list_agents(world: World, runs: int) -> None:
    from agent_dispatch.config import ConfigStore
    from agent_dispatch.dispatcher import Dispatcher
    from agent_dispatch.server import build_server

    print(f"\n4 / 8. list_agents with {AGENTS} agents", flush=True)
    d = Dispatcher(ConfigStore(world.cfg_off), claude=str(world.fake))
    server = build_server(d)
    server.agent_dispatch_state.dispatcher = d  # type: ignore[attr-defined]  # what the lifespan does

    async def tool() -> float:
        began = time.perf_counter()
        result = await server.call_tool("list_agents", {})
        elapsed = time.perf_counter() - began
        assert not result.is_error and len(json.loads(result.content[0].text)) == AGENTS
        return elapsed

    first = await tool()
    times = [await tool() for _ in range(runs * 20)]
    value = median(times)
    report("list_agents tool, in-process (MCPServer.call_tool)", ms(value), "< 3 ms", value < 0.003)
    report("  first call (detection not yet cached; info)", ms(first))

    async with connect(world.server_env(config=world.cfg_off)) as client:
        await call(client, "list_agents")
        stdio = []
        for _ in range(runs * 10):
            began = time.perf_counter()
            listed = await call(client, "list_agents")
            stdio.append(time.perf_counter() - began)
            assert len(listed) == AGENTS
        report("  list_agents over stdio (info: round trip)", ms(median(stdio)))


async def fig_parallel(world: World, runs: int) -> None:
    from agent_dispatch.config import ConfigStore
    from agent_dispatch.dispatcher import Dispatcher, multi

    ideal = PARALLEL_ITEMS / PARALLEL_CONCURRENCY * SLEEP_SECONDS
    print(f"\n5 / 8. dispatch_parallel: {PARALLEL_ITEMS} items of {SLEEP_SECONDS * 1000:.0f} ms, "
          f"max_concurrency {PARALLEL_CONCURRENCY}, ideal {ideal:.1f} s", flush=True)
    d = Dispatcher(ConfigStore(world.cfg_off), claude=str(world.fake))

    def items(tag: str) -> str:
        return json.dumps([{"agent": "sleepy", "task": f"{tag} item {n}"} for n in range(PARALLEL_ITEMS)])

    walls = []
    for n in range(runs):
        requests = multi.parse_parallel(d, items(f"run {n}"))
        began = time.perf_counter()
        results = await multi.dispatch_parallel(d, requests)
        walls.append(time.perf_counter() - began)
        assert all(r["success"] for r in results), results
    wall = median(walls)
    eff = ideal / wall
    report("wall, in-process (dispatcher.multi.dispatch_parallel)", f"{wall:.3f} s")
    report("  efficiency = ideal / wall", f"{eff:.3f}", ">= 0.98", eff >= 0.98)
    sleepy = Path(world.root, "projects", "sleepy")
    alone = []
    for _ in range(5):
        began = time.perf_counter()
        subprocess.run([str(world.fake)], cwd=sleepy, stdin=subprocess.DEVNULL, capture_output=True, check=True)
        alone.append(time.perf_counter() - began)
    waves = PARALLEL_ITEMS / PARALLEL_CONCURRENCY
    report("  the sleepy fake run alone (info: sh + sleep 0.5)", ms(median(alone)))
    report("  efficiency against waves x that (info: ours only)", f"{waves * median(alone) / wall:.3f}")

    async with connect(world.server_env(config=world.cfg_off)) as client:
        began = time.perf_counter()
        results = await call(client, "dispatch_parallel", dispatches=items("stdio"))
        wall = time.perf_counter() - began
        assert all(r["success"] for r in results)
        report("  efficiency over stdio, one run (info)", f"{ideal / wall:.3f}")


async def fig_stream(world: World, runs: int) -> None:
    size = world.events.stat().st_size
    print(f"\n6 / 8. dispatch_stream of {size / 2**20:.0f} MB of stream-json events (stdio server)", flush=True)
    async with connect(world.server_env(config=world.cfg_off)) as client:
        pid = server_pid()
        notes: list[str] = []

        async def on_progress(_p: float, _total: float | None, message: str | None) -> None:
            notes.append(message or "")

        warm = await call(client, "dispatch_stream", on_progress, agent="agent00", task="warm up")
        assert warm["success"]
        rates, growth, peaks, counts = [], [], [], []
        can_reset = True
        for _ in range(runs):
            can_reset = reset_peak(pid) and can_reset
            before = memory_kb(pid)
            notes.clear()
            began = time.perf_counter()
            answer = await call(client, "dispatch_stream", on_progress, agent="streamer", task="stream 50 MB")
            elapsed = time.perf_counter() - began
            after = memory_kb(pid)
            assert answer["success"] and answer["result"] == "ok", answer
            rates.append(size / elapsed)
            growth.append(after["VmHWM"] - before["VmRSS"])
            peaks.append(after["VmHWM"])
            counts.append(len(notes))
        rate = median(rates) / 2**20
        report("throughput (bytes / call time)", f"{rate:.0f} MB/s", ">= 150 MB/s", rate >= 150)
        grow = median(growth) / 1024
        note = "" if can_reset else " (VmHWM not resettable: growth vs the first run's peak)"
        report("server peak memory growth (VmHWM - VmRSS before)" + note, f"{grow:.1f} MB", "< 20 MB", grow < 20)
        report("  worst run's growth (info)", f"{max(growth) / 1024:.1f} MB")
        report("  server peak RSS (info)", f"{median(peaks) / 1024:.1f} MB")
        report("  progress notifications per call (info)", f"{median(counts):.0f}")


async def fig_jobs(world: World, runs: int) -> None:
    from agent_dispatch.background import JobManager
    from agent_dispatch.config import ConfigStore
    from agent_dispatch.dispatcher import Dispatcher
    from agent_dispatch.jobs import JobStore
    from agent_dispatch.server import build_server

    print(f"\n7 / 8. issue 4 scale: {world.records} job records, {ASYNC_JOBS} async jobs", flush=True)
    d = Dispatcher(ConfigStore(world.cfg_off), claude=str(world.fake))
    server = build_server(d)
    state = server.agent_dispatch_state  # type: ignore[attr-defined]
    state.dispatcher = d
    state.jobs = JobManager(d, None, JobStore(world.jobs_full))

    async def tool() -> float:
        began = time.perf_counter()
        result = await server.call_tool("dispatch_jobs", {"limit": 50})
        elapsed = time.perf_counter() - began
        assert not result.is_error and len(json.loads(result.content[0].text)) == 50
        return elapsed

    first = await tool()
    value = median([await tool() for _ in range(runs * 10)])
    report("dispatch_jobs(limit=50) tool, in-process", ms(value), "< 20 ms", value < 0.020)
    report("  first call (info)", ms(first))

    accepted, done = [], []
    async with connect(world.server_env(config=world.cfg_off, jobs=world.jobs_async)) as client:
        warm = await call(client, "dispatch_async", agent="agent00", task="warm up")
        await call(client, "dispatch_wait", job_id=warm["job_id"], timeout_seconds=30)
        for run in range(runs):
            ids: list[str] = []
            began_wall, began = time.time(), time.perf_counter()

            async def start(n: int, run: int = run, ids: list[str] = ids) -> None:
                job = await call(client, "dispatch_async", agent=f"agent{n % 40:02d}", task=f"run {run} job {n}")
                ids.append(job["job_id"])

            async with anyio.create_task_group() as tg:
                for n in range(ASYNC_JOBS):
                    tg.start_soon(start, n)
            accepted.append(time.perf_counter() - began)
            records: list[dict[str, Any]] = []

            async def wait(job_id: str, records: list[dict[str, Any]] = records) -> None:
                records.append(await call(client, "dispatch_wait", job_id=job_id, timeout_seconds=60))

            async with anyio.create_task_group() as tg:
                for job_id in ids:
                    tg.start_soon(wait, job_id)
            assert len(records) == ASYNC_JOBS and all(r["status"] == "done" for r in records), records[:3]
            done.append(max(r["completed_at"] for r in records) - began_wall)
    value = median(done)
    report(f"{ASYNC_JOBS} dispatch_async over stdio: all accepted (info)", ms(median(accepted)))
    report(f"{ASYNC_JOBS} dispatch_async over stdio: first call -> last done", ms(value), "< 1 s", value < 1.0)


class RawServer:
    """`agent-dispatch serve` driven with raw JSON-RPC lines (the SDK's client takes minutes to read
    a 60 MB message, and its memory is not what is measured)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([str(SERVER), "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, cwd=env["HOME"])
        self.calls = 0
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "bench", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message: dict[str, Any]) -> None:
        self.proc.stdin.write((json.dumps(message) + "\n").encode())  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        self.send({"jsonrpc": "2.0", "id": self.calls, "method": method, "params": params})
        answer = json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]
        assert answer.get("id") == self.calls, answer
        return answer["result"]

    def tool(self, name: str, **args: Any) -> dict[str, Any]:
        return self.request("tools/call", {"name": name, "arguments": args})["structuredContent"]

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(30)


def fig_big_answer(world: World, runs: int) -> None:
    mb = BIG_ANSWER / 2**20
    print(f"\n8 / 8. a {mb:.0f} MB answer: the server's peak memory growth (a fresh stdio server per call)",
          flush=True)
    env = world.server_env(config=world.cfg_off, jobs=world.jobs_async)
    target = 4 * mb
    refs: list[str] = []
    cases = [
        ("dispatch", lambda s: s.tool("dispatch", agent="big", task="the long report")),
        ("dispatch_stream", lambda s: s.tool("dispatch_stream", agent="bigstream", task="the long report")),
        ("dispatch return_ref (the record written)",
         lambda s: s.tool("dispatch", agent="big", task="the long report", return_ref=True)),
        ("fetch_result of that ref", lambda s: s.tool("fetch_result", ref=refs[-1])),
    ]
    for label, probe in cases:
        growth, peaks, walls = [], [], []
        for _ in range(runs):
            server = RawServer(env)
            try:
                server.request("tools/call", {"name": "list_agents", "arguments": {}})
                pid = server.proc.pid
                can_reset = reset_peak(pid)
                before = memory_kb(pid)
                began = time.perf_counter()
                answer = probe(server)
                walls.append(time.perf_counter() - began)
                after = memory_kb(pid)
            finally:
                server.close()
            if "ref" in answer and "summary" in answer:
                refs.append(answer["ref"])
                assert answer["size"] == BIG_ANSWER, answer
            else:
                assert answer["success"] and len(answer["result"]) == BIG_ANSWER, (label, answer.get("error"))
            del answer
            growth.append((after["VmHWM"] - before["VmRSS"]) / 1024)
            peaks.append(after["VmHWM"] / 1024)
        grow = median(growth)
        note = "" if can_reset else " (VmHWM not resettable)"
        report(f"{label}: peak growth{note}", f"{grow:.0f} MB = {grow / mb:.1f}x", f"< {target:.0f} MB (4x)",
               grow < target)
        report("  server peak RSS, call time (info)", f"{median(peaks):.0f} MB, {median(walls):.2f} s")


def _table() -> None:
    print("\nsummary")
    print(f"  {'figure':<58} {'median':>22}  {'target':<18} verdict")
    for label, value, target, passed in ROWS:
        if passed is not None:
            print(f"  {label.strip():<58} {value:>22}  {target:<18} {'PASS' if passed else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about a third of the time)")
    parser.add_argument("--runs", type=int, default=0, help="repetitions per figure (default 9, quick 3)")
    parser.add_argument("--records", type=int, default=10_000, help="job records for the issue 4 figures")
    parser.add_argument("--only", default="", help="comma-separated figure numbers to run, e.g. 5,6")
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 9)
    chosen = {int(n) for n in args.only.split(",") if n.strip()} or set(range(1, 9))
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        world = World(Path(tmp), args.records)
        world.build()
        if 1 in chosen:
            fig_start(world, runs)
        steps: dict[int, Callable[[World, int], Awaitable[None]]] = {
            2: fig_dispatch, 3: fig_cache, 4: fig_list_agents, 5: fig_parallel, 6: fig_stream, 7: fig_jobs,
        }

        async def run_all() -> None:
            for number, step in steps.items():
                if number in chosen:
                    await step(world, runs if step is not fig_parallel else max(1, runs // 3))

        anyio.run(run_all)
        if 8 in chosen:
            fig_big_answer(world, runs)
    _table()


if __name__ == "__main__":
    main()
