"""agents.yaml reads and writes: what the round-trip write path costs, and that reads did not pay.

Usage: .venv/bin/python bench/bench_config.py [--agents 50] [--runs 15]

In a temporary directory, with a hand-commented agents.yaml of N agents, prints medians of:
  load      ConfigStore().load() in a fresh store (safe loader + schema; what every tool call pays
            when the file changed)
  list      `agent-dispatch list` as a process (the stamp path: no pydantic, no ruamel)
  update    config.update_agent() of one agent's timeout (lock, load, round-trip edit, check, write)
  add       config.add_agent() + remove_agent() of one agent (two writes), per write
Measures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-config-"))
    os.environ["HOME"] = str(root)
    config_file = root / ".config" / "agent-dispatch" / "agents.yaml"
    os.environ["AGENT_DISPATCH_CONFIG"] = str(config_file)
    config_file.parent.mkdir(parents=True, mode=0o700)
    lines = ["# my agents, by hand\n", "agents:\n"]
    for i in range(args.agents):
        project = root / "projects" / f"p{i}"
        project.mkdir(parents=True)
        lines += [f"  # agent number {i}\n", f"  a{i}:\n", f"    directory: {project}   # its home\n",
                  f"    description: 'Agent {i} does things'\n", "    timeout: 300\n",
                  "    allowed_tools: [Read, Grep, \"Bash(git *)\"]\n", "\n"]
    lines += ["settings:\n", "  cache:\n", "    ttl: 60   # a minute\n"]
    config_file.write_text("".join(lines))
    config_file.chmod(0o600)
    extra = root / "projects" / "extra"
    extra.mkdir()

    from agent_dispatch import config

    def timed(fn, runs: int) -> float:
        samples = []
        for _ in range(runs):
            began = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - began)
        return statistics.median(samples) * 1000

    load = timed(lambda: config.ConfigStore().load(), args.runs)
    script = Path(sys.executable).parent / "agent-dispatch"
    subprocess.run([str(script), "list"], capture_output=True, check=True)  # stamp the bytes
    listing = timed(lambda: subprocess.run([str(script), "list"], capture_output=True, check=True), args.runs)
    store = config.ConfigStore()
    counter = iter(range(1, 10**6))
    update = timed(lambda: config.update_agent(store, "a0", config.AgentChanges.from_inputs(
        timeout=300 + next(counter))), args.runs)

    def add_remove() -> None:
        config.add_agent(store, "extra", str(extra), description="x")
        config.remove_agent(store, "extra")

    add = timed(add_remove, args.runs) / 2
    kept = "# agent number 49" in config_file.read_text() and "ttl: 60   # a minute" in config_file.read_text()
    print(f"agents.yaml with {args.agents} agents, {config_file.stat().st_size} bytes; medians of {args.runs} runs")
    print(f"  load (fresh store)          {load:8.1f} ms")
    print(f"  agent-dispatch list         {listing:8.1f} ms   (a process; the stamp path)")
    print(f"  update one agent            {update:8.1f} ms")
    print(f"  add or remove one agent     {add:8.1f} ms   (per write)")
    print(f"  comments kept after {2 * args.runs + args.runs} writes: {kept}")


if __name__ == "__main__":
    main()
