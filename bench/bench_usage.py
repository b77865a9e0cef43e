"""Usage journal and per-user limit costs (issue 11 targets).

    .venv/bin/python bench/bench_usage.py [--records 100000] [--agents 50] [--runs 9]

Prints medians in milliseconds, each with its target:
  1. stats over N records: `agent-dispatch stats --json`'s work (Dispatcher.usage_stats) in a
     fresh process, after N dispatches were appended through the writers' path (Usage.record +
     housekeep, as every dispatch does: rotation at 16 MiB, the summary file caught up every
     256 KiB), and again with 1,000 raw lines appended since; target < 500 ms. Also, without a
     target: the rebuild when the summary file was deleted (every raw line parsed, once), and
     what one summary catch-up costs (off the dispatch path, once per ~1,000 dispatches).
  2. list_agents with 50 agents and the N-record journal, through the MCP tool in-process
     (MCPServer.call_tool); also the `typical` part alone; target < 5 ms per call.
  3. what the user-wide limiter adds to a dispatch: acquiring and releasing a slot plus
     registering the run for `ps`, uncontended (Dispatcher._user_slot + Registry); target < 2 ms.
     Also the journal append per dispatch.
  4. a year of use, 1,000 runs a day over 50 agents (365,000 runs folded straight into a
     summary): the summary file's size with days past 92 merged into months (and what it would
     be without), and loading it plus `stats --days 365` in this process. No target.
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


def records(count: int, agents: int):
    now = time.time()
    rng = random.Random(7)  # noqa: S311 - planted data, not secrets
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
        yield rec


def plant(path: Path, count: int, agents: int) -> list[float]:
    """Append the records as dispatches do (one write each, housekeeping when due); returns the
    milliseconds each housekeeping step took."""
    from agent_dispatch.usage import Usage

    usage = Usage(path)
    steps = []
    for rec in records(count, agents):
        due = usage.record(rec)
        if due:
            start = time.perf_counter()
            usage.housekeep(due)
            steps.append((time.perf_counter() - start) * 1000)
    return steps


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


def note(label: str, value: float, what: str) -> None:
    print(f"{label:<62} {value:9.3f} ms   ({what})")


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
        steps = plant(journal, args.records, args.agents)
        env = dict(os.environ)
        sizes = sum(p.stat().st_size for p in cfg_dir.glob("usage.jsonl*"))
        print(f"journal: {args.records} records through the writers' path, {sizes / 1e6:.1f} MB on disk "
              f"(live, .1, summary), {args.agents} agents")

        # 1. stats, fresh process
        kept = [fresh_stats(env) for _ in range(args.runs)]
        report("1. stats, fresh process, summary kept by the writers", statistics.median(kept), 500)
        with open(journal, "a") as fh:
            for n in range(1000):
                fh.write(json.dumps({"ts": time.time(), "agent": "agent00", "tool": "dispatch", "success": True,
                                     "cached": False, "duration_ms": 1000 + n, "cost_usd": 0.01}) + "\n")
        warm = [fresh_stats(env) for _ in range(args.runs)]
        report("1. stats, fresh process, summary + 1,000 raw lines since", statistics.median(warm), 500)
        summary = cfg_dir / "usage.jsonl.summary"
        saved = summary.read_bytes()
        cold = []
        for _ in range(3):
            summary.unlink()
            cold.append(fresh_stats(env))
        summary.write_bytes(saved)
        note("   rebuild after the summary file was deleted (recovery, once)", statistics.median(cold),
             "every raw line of .1 and the live journal parsed; no target")
        note("   summary catch-up or rotation, off the dispatch path", statistics.median(steps),
             f"median of {len(steps)}, max {max(steps):.0f} ms; once per ~1,000 dispatches")

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
        report("2. ... of which typical for 50 agents", median_ms(lambda: dispatcher.usage().typicals(names), 200), 5)

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

        year_of_use(root)


def year_of_use(root: Path) -> None:
    from agent_dispatch.usage import Journal, Summary, usage_stats
    from agent_dispatch.usage.summary import DayOf, fold

    path = root / "year" / "usage.jsonl"
    path.parent.mkdir()
    summary = Summary(Journal(path))
    now = time.time()
    day_of = DayOf()
    rng = random.Random(11)  # noqa: S311 - planted data, not secrets
    runs = 365_000
    for n in range(runs):
        fold(summary.days, {"ts": now - (runs - n) * 86400 / 1000, "agent": f"agent{n % 50:02d}", "success": True,
                            "duration_ms": rng.randint(500, 300_000), "cost_usd": round(rng.random() / 5, 6),
                            "caller": f"session-{n % 13}", "outcome": "done"}, day_of)
    raw = len(json.dumps(summary.days, separators=(",", ":")))
    summary.source = {"ino": 0, "dev": 0, "offset": 0, "ts": now}
    summary.save()
    size = summary.path.stat().st_size
    print(f"4. a year, {runs:,} runs: summary {size / 1e6:.2f} MB on disk (uncompacted it would be {raw / 1e6:.2f} MB)")
    start = time.perf_counter()
    fresh = Summary(Journal(path))
    fresh._load()  # noqa: SLF001 - what a fresh process's first refresh does with the file
    usage_stats(fresh, 365)
    note("4. load that summary + stats --days 365", (time.perf_counter() - start) * 1000, "no target")


if __name__ == "__main__":
    main()
