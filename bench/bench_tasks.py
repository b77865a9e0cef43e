"""MCP tasks and progress as a client sees them over stdio (issue 9 figures).

    .venv/bin/python bench/bench_tasks.py [--tasks 20] [--silence 16]

Runs the installed `agent-dispatch serve` in a temporary HOME with a `/bin/sh` fake `claude`
that prints one tool use, stays silent for a while, then answers. A raw JSON-RPC client (the
tests' `raw_mcp`, declaring the tasks extension like interactive Claude Code) measures:

1. `tasks/get` latency while `--tasks` dispatches run at once as tasks (every poll of every task);
2. how long after the agent finished a client polling at `pollIntervalMs` sees `completed`;
3. the time to the task handle (the grace window, `task_grace_seconds: 1`);
4. the interval between progress notifications (heartbeats) a plain client sees while the agent
   is silent for `--silence` seconds.

Prints the figures; asserts nothing (CI does not run it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from raw_mcp import raw_server  # noqa: E402

FAKE = """#!/bin/sh
cat > /dev/null
printf '%s\\n' '{event}'
sleep "${{FAKE_SLEEP:-{sleep}}}"
printf '%s\\n' '{result}'
"""
EVENT = json.dumps({"type": "assistant", "message": {"content": [{"type": "tool_use", "name": "Bash",
                                                                   "input": {"command": "make"}}]}})
RESULT = json.dumps({"type": "result", "subtype": "success", "is_error": False, "result": "ok",
                     "session_id": "00000000-0000-4000-8000-000000000000", "total_cost_usd": 0.001,
                     "duration_ms": 1, "num_turns": 1, "permission_denials": []})


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "home").mkdir()
        (root / "proj").mkdir()
        fake = root / "claude"
        fake.write_text(FAKE.format(sleep=8, event=EVENT, result=RESULT))
        fake.chmod(0o755)
        config = root / "home" / "agents.yaml"
        config.write_text(f"agents:\n  worker: {{directory: {root / 'proj'}, timeout: 120}}\n"
                          f"settings: {{max_concurrency: {args.tasks + 5}, task_grace_seconds: 1}}\n")
        os.environ.update(HOME=str(root / "home"), AGENT_DISPATCH_CONFIG=str(config), AGENT_DISPATCH_CLAUDE=str(fake))
        jobs_dir = root / "home" / "jobs"

        async with raw_server() as client:
            handle_times: list[float] = []
            handles: list[dict] = []

            async def start(n: int) -> None:  # the calls go out at once, as parallel tool calls do
                started = time.perf_counter()
                handles.append(await client.call("dispatch", {"agent": "worker", "task": f"job {n}"}))
                handle_times.append(time.perf_counter() - started)

            async with anyio.create_task_group() as tg:
                for n in range(args.tasks):
                    tg.start_soon(start, n)
            ids = [h["taskId"] for h in handles]
            poll_ms = handles[0]["pollIntervalMs"]
            latencies: list[float] = []
            seen_done: dict[str, float] = {}
            while len(seen_done) < len(ids):
                for task_id in ids:
                    if task_id in seen_done:
                        continue
                    started = time.perf_counter()
                    state = await client.request("tasks/get", {"taskId": task_id})
                    latencies.append(time.perf_counter() - started)
                    if state["status"] == "completed":
                        seen_done[task_id] = time.time()
                await anyio.sleep(poll_ms / 1000)
            lags = []
            for task_id, seen in seen_done.items():
                record = json.loads((jobs_dir / f"{task_id}.json").read_text())
                lags.append(seen - record["completed_at"])

        os.environ["FAKE_SLEEP"] = str(args.silence)
        async with raw_server(tasks=False) as client:
            await client.call("dispatch", {"agent": "worker", "task": "quiet"}, progress="hb",
                              timeout=args.silence + 60)
            times = [at for at, _ in client.progress_for("hb")]
            gaps = [b - a for a, b in zip(times, times[1:], strict=False)]

    print(f"1. tasks/get with {args.tasks} tasks running: {len(latencies)} polls, "
          f"p50 {statistics.median(latencies) * 1000:.2f} ms, p95 {pct(latencies, 0.95) * 1000:.2f} ms, "
          f"max {max(latencies) * 1000:.2f} ms (target: each under 20 ms)")
    print(f"2. agent finished -> completed seen, polling every {poll_ms} ms: median "
          f"{statistics.median(lags):.3f} s, max {max(lags):.3f} s (target: about a second)")
    print(f"3. tools/call -> task handle: median {statistics.median(handle_times):.3f} s, "
          f"max {max(handle_times):.3f} s (grace window 1 s)")
    print(f"4. progress notifications during {args.silence} s of silence: {len(times)} sent, gaps "
          f"{', '.join(f'{g:.1f}' for g in gaps)} s (max {max(gaps):.1f} s; target: at least every 10 s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--silence", type=float, default=16)
    anyio.run(main, parser.parse_args())
