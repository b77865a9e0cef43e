"""Job store at scale: list(limit=50) and unfinished() with 10,000 records vs an empty directory.

    .venv/bin/python bench/bench_jobs.py [--records 10000] [--runs 50]

Prints medians in milliseconds. The records are built through JobStore itself (fsync skipped
while building, to keep setup quick; the measured calls only read). Each record carries a
realistic payload: a 2 KB result, a progress tail and the request.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from agent_dispatch.jobs import JobStore, new_job_id
from agent_dispatch.models import DispatchResult, Job


def build(directory: Path, count: int, active: int) -> None:
    store = JobStore(directory)
    start = time.time() - count
    with mock.patch("agent_dispatch.jobs.os.fsync"):
        for n in range(count):
            job_id = new_job_id()
            status = "running" if n >= count - active else ("done", "done", "failed", "cancelled")[n % 4]
            completed = None if status == "running" else start + n + 1
            result = None
            if status in ("done", "failed"):
                result = DispatchResult(
                    agent="infra", success=status == "done", result="x" * 2000, session_id="s" * 36,
                    cost_usd=0.01, duration_ms=1200, num_turns=3,
                )
            store.create(
                Job(
                    id=job_id, status=status, agent="infra", task=f"task number {n} " * 5,
                    created_at=start + n, started_at=start + n, completed_at=completed,
                    result=result, progress=[f"step {i}" for i in range(10)],
                    request={"agent": "infra", "task": f"task number {n}", "context": "c" * 200},
                )
            )


def median_ms(call: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def measure(directory: Path, runs: int) -> dict[str, float]:
    store = JobStore(directory)
    return {
        "list(limit=50)": median_ms(lambda: store.list(limit=50), runs),
        "list(status=done, limit=50)": median_ms(lambda: store.list(status="done", limit=50), runs),
        "list(status=running)": median_ms(lambda: store.list(status="running"), runs),
        "unfinished()": median_ms(store.unfinished, runs),
        "start: JobStore() + unfinished()": median_ms(lambda: JobStore(directory).unfinished(), runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--active", type=int, default=10, help="how many of them are still running")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        empty, full = Path(root) / "empty", Path(root) / "full"
        JobStore(empty)
        began = time.perf_counter()
        build(full, args.records, args.active)
        print(f"built {args.records} records ({args.active} running) in {time.perf_counter() - began:.1f} s")
        assert len(os.listdir(full / ".index")) == args.records
        base, scaled = measure(empty, args.runs), measure(full, args.runs)
        print(f"{'median ms':<36}{'empty':>10}{args.records:>10}{'delta':>10}")
        for name in base:
            print(f"{name:<36}{base[name]:>10.2f}{scaled[name]:>10.2f}{scaled[name] - base[name]:>10.2f}")
        ok_list = scaled["list(limit=50)"] < 20
        ok_start = scaled["start: JobStore() + unfinished()"] - base["start: JobStore() + unfinished()"] < 50
        print(f"target list(limit=50) < 20 ms: {'met' if ok_list else 'MISSED'}")
        print(f"target server start within 50 ms of empty: {'met' if ok_start else 'MISSED'}")


if __name__ == "__main__":
    main()
