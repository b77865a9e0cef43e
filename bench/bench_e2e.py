"""What a dispatch through our MCP server adds to a bare `claude -p` run (real CLI, stand-in API).

Usage: .venv/bin/python bench/bench_e2e.py [--runs N]

Runs the same one-turn task N times each way, interleaved: `claude -p --output-format json`
alone (prompt on stdin, in the agent's directory), and `dispatch` through one long-lived
`agent-dispatch serve` session (an MCP client over stdio; server start-up not counted). Each
task text is unique, so nothing is answered from the cache. Prints the medians, their
difference and the median of the paired differences (less sensitive to a busy machine); the
target is that a dispatch adds <= 50 ms. Measures, asserts nothing.
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
from pathlib import Path

import anyio
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from standin import StandIn  # noqa: E402

AGENT_DISPATCH = Path(sys.executable).with_name("agent-dispatch")


def find_cli() -> str:
    override = os.environ.get("AGENT_DISPATCH_E2E_CLAUDE")
    if override:
        return override
    out = subprocess.run([str(REPO / "scripts" / "install-claude-cli")], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def environment(home: Path, standin: StandIn, cli: str, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE", "AGENT_DISPATCH_"))}
    env.update(
        HOME=str(home),
        ANTHROPIC_BASE_URL=standin.url,
        ANTHROPIC_API_KEY="test",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        AGENT_DISPATCH_CONFIG=str(config),
        AGENT_DISPATCH_CLAUDE=cli,
    )
    return env


def run_direct(cli: str, env: dict[str, str], project: Path, task: str) -> float:
    began = time.perf_counter()
    proc = subprocess.run([cli, "-p", "--output-format", "json"], input=task, capture_output=True, text=True,
                          cwd=project, env=env, check=False)
    elapsed = time.perf_counter() - began
    if proc.returncode != 0 or json.loads(proc.stdout).get("is_error"):
        raise RuntimeError(f"direct run failed: {proc.stdout[:300]} {proc.stderr[:300]}")
    return elapsed


async def bench(runs: int) -> None:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    cli = find_cli()
    with tempfile.TemporaryDirectory() as tmp, StandIn() as standin:
        root = Path(tmp)
        home = root / "home"
        project = root / "projects" / "bench"
        project.mkdir(parents=True)
        home.mkdir()
        config = home / ".config" / "agent-dispatch" / "agents.yaml"
        config.parent.mkdir(parents=True, mode=0o700)
        config.write_text(yaml.safe_dump({"agents": {"bench": {"directory": str(project), "description": "bench"}},
                                          "settings": {"cache": {"enabled": False}}}))
        config.chmod(0o600)
        env = environment(home, standin, cli, config)
        params = StdioServerParameters(command=str(AGENT_DISPATCH), args=["serve"], env=env, cwd=str(home))
        direct: list[float] = []
        dispatched: list[float] = []
        async with Client(params) as client:
            for i in range(runs + 1):  # the first round warms caches and is dropped
                direct_time = await anyio.to_thread.run_sync(run_direct, cli, env, project, f"bench direct {i}")
                began = time.perf_counter()
                result = await client.call_tool("dispatch", {"agent": "bench", "task": f"bench dispatch {i}"})
                dispatch_time = time.perf_counter() - began
                answer = json.loads(result.content[0].text)
                if not answer.get("success"):
                    raise RuntimeError(f"dispatch failed: {answer}")
                if i:
                    direct.append(direct_time)
                    dispatched.append(dispatch_time)
        med_direct = statistics.median(direct) * 1000
        med_dispatch = statistics.median(dispatched) * 1000
        print(f"claude CLI: {cli}")
        print(f"runs: {runs} each (interleaved, after one warm-up)")
        print(f"claude -p alone:      median {med_direct:7.1f} ms  (min {min(direct) * 1000:.1f}, "
              f"max {max(direct) * 1000:.1f})")
        print(f"dispatch via server:  median {med_dispatch:7.1f} ms  (min {min(dispatched) * 1000:.1f}, "
              f"max {max(dispatched) * 1000:.1f})")
        paired = statistics.median(b - a for a, b in zip(direct, dispatched, strict=True)) * 1000
        print(f"overhead of dispatch: {med_dispatch - med_direct:+7.1f} ms difference of medians, "
              f"{paired:+.1f} ms median of paired differences  (target <= 50 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    anyio.run(bench, args.runs)


if __name__ == "__main__":
    main()
