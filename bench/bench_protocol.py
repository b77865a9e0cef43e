"""What reading an agent's STATUS / QUESTION back costs, by answer size (the runner does it once
per finished run, on every path).

    .venv/bin/python bench/bench_protocol.py [--runs 21]

Prints the median microseconds of `protocol.apply_outcome` on a result of 1 KB, 1 MB and 50 MB,
each without a STATUS line, ending `STATUS: done`, and ending blocked on a question.
"""

from __future__ import annotations

import argparse
import statistics
import time

from agent_dispatch.models import DispatchResult
from agent_dispatch.protocol import apply_outcome

SIZES = {"1 KB": 1 << 10, "1 MB": 1 << 20, "50 MB": 50 << 20}
ENDINGS = {
    "no STATUS": "",
    "STATUS: done": "\n\n**STATUS: done**",
    "blocked": "\n\nQUESTION: Which region, eu or us?\nSTATUS: blocked",
}


def answer(size: int) -> str:
    line = "The service answered within its budget; nothing unusual in the logs.\n"
    return (line * (size // len(line) + 1))[:size]


def median_us(text: str, runs: int) -> float:
    result = DispatchResult(agent="infra", success=True, result=text, session_id="s")
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        apply_outcome(result)
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    print(f"{'answer':>7}  " + "  ".join(f"{name:>14}" for name in ENDINGS) + "   (median us per result)")
    for label, size in SIZES.items():
        body = answer(size)
        cells = [f"{median_us(body + ending, args.runs):>14.1f}" for ending in ENDINGS.values()]
        print(f"{label:>7}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
