"""Usage journal and per-user limit costs (issue 11 targets).

    .venv/bin/python bench/bench_usage.py [--records 100000] [--agents 50] [--runs 9]

Prints medians in milliseconds, each with its target:
  1. stats over N records: `agent-dispatch stats --json`'s work (Dispatcher.usage_stats) in a
     fresh process, cold (no summary file yet: every line parsed) and warm (the summary file
     written by an earlier reader, plus 1,000 lines appended since); target < 500 ms.
  2. list_agents with 50 agents and the N-record journal, through the MCP tool in-process
     (MCPServer.call_tool); also the `typical` part alone; target < 5 ms per call.
  3. what the user-wide limiter adds to a dispatch: acquiring and releasing a slot plus
     registering the run for `ps`, uncontended (Dispatcher._user_slot + Registry); target < 2 ms.
     Also the journal append per dispatch.
Everything lives in a temporary directory (its own HOME, config, journal and runtime dir).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

FRESH = """
import sys, time, json
t0 = time.perf_counter()
from agent_dispatch.dispatcher import Dispatcher
t1 = time.perf_counter()
Dispatcher().usage_stats(30)
t2 = time.perf_counter()
print(json.dumps({"import": (t1 - t0) * 1000, "stats": (t2 - t1) * 1000}))
"""


def plant(path: Path, count: int, agents: int) -> None:
    now = time.time()
    rng = random.Random(7)  # noqa: S311 - planted data, not secrets
    with open(path, "w") as fh:
        for n in range(count):
            cached = n % 7 == 0
            rec = {"ts": round(now - (count - n) * (30 * 86400 / count), 3), "agent": f"agent{n % agents:02d}",
                   "tool": rng.choice(["dispatch", "dispatch_parallel", "dispatch_async"]), "success": n % 11 != 0,
                   "cached": cached, "duration_ms": 0 if cached else rng.randint(500, 300_000),
                   "num_turns": rng.randint(1, 30), "caller": f"session-{n % 13}",
                   "session_id": "5b7f3e0c-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "outcome": "done"}
            rec["saved_usd" if cached else "cost_usd"] = round(rng.random() / 5, 6)
            if n % 11 == 0:
                rec["error_type"] = "timeout"
            fh.write(json.dumps(rec, separators=(",", ":")) + "\n")


def fresh_stats(env: dict[str, str]) -> float:
    out = subprocess.run([sys.executable, "-c", FRESH], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["stats"]


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def report(label: str, value: float, target: float) -> None:
    verdict = "PASS" if value < target else "FAIL"
    print(f"{label:<62} {value:9.3f} ms   target < {target:g} ms   {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        home = root / "home"
        cfg_dir = home / ".config" / "agent-dispatch"
        cfg_dir.mkdir(parents=True)
        lines = ["agents:"]
        for n in range(args.agents):
            project = root / "projects" / f"agent{n:02d}"
            project.mkdir(parents=True)
            (project / "CLAUDE.md").write_text(f"# Agent {n}\n\nDoes things for project {n}.\n")
            lines += [f"  agent{n:02d}:", f"    directory: {project}", f"    description: agent {n}"]
        (cfg_dir / "agents.yaml").write_text("\n".join(lines) + "\n")
        os.environ.update(HOME=str(home), AGENT_DISPATCH_CONFIG=str(cfg_dir / "agents.yaml"),
                          AGENT_DISPATCH_RUNTIME_DIR=str(root / "run"))
        os.environ.pop("AGENT_DISPATCH_USAGE_LOG", None)
        journal = cfg_dir / "usage.jsonl"
        plant(journal, args.records, args.agents)
        env = dict(os.environ)
        print(f"journal: {args.records} records, {journal.stat().st_size / 1e6:.1f} MB, {args.agents} agents")

        # 1. stats, fresh process
        cold = []
        for _ in range(max(3, args.runs // 3)):
            for extra in cfg_dir.glob("usage.jsonl.summary*"):
                extra.unlink()
            cold.append(fresh_stats(env))
        report("1. stats over the journal, fresh process, cold (no summary)", statistics.median(cold), 500)
        fresh_stats(env)  # writes the summary
        with open(journal, "a") as fh:
            for n in range(1000):
                fh.write(json.dumps({"ts": time.time(), "agent": "agent00", "tool": "dispatch", "success": True,
                                     "cached": False, "duration_ms": 1000 + n, "cost_usd": 0.01}) + "\n")
        warm = [fresh_stats(env) for _ in range(args.runs)]
        report("1. stats, fresh process, warm (summary + 1,000 new lines)", statistics.median(warm), 500)

        from agent_dispatch.dispatcher import Dispatcher
        from agent_dispatch.server import build_server

        dispatcher = Dispatcher()
        dispatcher.usage_stats(30)
        report("1. stats in a running server (summary in memory)", median_ms(lambda: dispatcher.usage_stats(30),
                                                                             args.runs), 500)

        # 2. list_agents with typical
        server = build_server(dispatcher)
        state = server.agent_dispatch_state  # type: ignore[attr-defined]
        state.dispatcher = dispatcher

        async def listing() -> None:
            result = await server.call_tool("list_agents", {})
            assert "typical" in result.content[0].text

        def one_listing() -> None:
            anyio.run(listing)

        one_listing()
        calls = []

        async def timed() -> None:
            for _ in range(200):
                start = time.perf_counter()
                await server.call_tool("list_agents", {})
                calls.append((time.perf_counter() - start) * 1000)

        anyio.run(timed)
        report("2. list_agents tool, 50 agents + journal (in-process)", statistics.median(calls), 5)
        names = [f"agent{n:02d}" for n in range(args.agents)]
        report("2. ... of which typical for 50 agents", median_ms(lambda: [dispatcher.typical(n) for n in names],
                                                                  200), 5)

        # 3. the user-wide limiter per dispatch
        cfg = dispatcher.config()
        registry = dispatcher.registry()

        async def limiter_rounds() -> list[float]:
            out = []
            for _ in range(2000):
                start = time.perf_counter()
                async with dispatcher._user_slot(cfg):  # noqa: SLF001 - the exact code a run goes through
                    entry = registry.register(agent="agent00", tool="dispatch", caller="bench")
                    entry.close()
                out.append((time.perf_counter() - start) * 1000)
            return out

        rounds = anyio.run(limiter_rounds)
        report("3. user-wide slot + running entry, per dispatch", statistics.median(rounds), 2)
        print(f"   (p90 {sorted(rounds)[int(len(rounds) * 0.9)]:.3f} ms over {len(rounds)} rounds)")
        from agent_dispatch.models import DispatchResult

        result = DispatchResult(agent="agent00", success=True, result="x", cost_usd=0.01, duration_ms=10)
        report("3. journal append per dispatch", median_ms(lambda: dispatcher.journal(result, cfg, tool="dispatch"),
                                                           2000), 2)


if __name__ == "__main__":
    main()
