"""The Codex and Gemini runtimes: reading their event streams, and what the runner adds to a run.

    .venv/bin/python bench/bench_runtimes.py [--runs 5] [--events 200000]

1. Parse throughput of each runtime's reader (MB/s) on a prebuilt stream of command and
   message events, fed in 1 MiB chunks as the runner reads them, with an on_event consumer.
2. With the pinned CLIs installed (scripts/install-agent-cli codex|gemini), against the e2e
   stand-in APIs: the median wall time of a bare CLI run (prompt on stdin) and of the same run
   through agent-dispatch's runner, and their difference (our overhead: spawn, reading, tree kill).
Prints medians; asserts nothing.
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

from agent_dispatch.models import EffectiveAgent
from agent_dispatch.runner import RunSpec, run_claude
from agent_dispatch.runtimes import get_runtime

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))


def codex_stream(events: int) -> bytes:
    lines = [json.dumps({"type": "thread.started", "thread_id": "t"})]
    for n in range(events // 2):
        item = {"id": f"i{n}", "type": "command_execution", "command": f"ls {n}", "status": "in_progress"}
        lines.append(json.dumps({"type": "item.started", "item": item}))
        lines.append(json.dumps({"type": "item.completed", "item": {"id": f"m{n}", "type": "agent_message",
                                                                     "text": "x" * 200}}))
    lines.append(json.dumps({"type": "turn.completed", "usage": {"input_tokens": 1, "output_tokens": 1}}))
    return ("\n".join(lines) + "\n").encode()


def gemini_stream(events: int) -> bytes:
    lines = [json.dumps({"type": "init", "session_id": "s"})]
    for n in range(events // 2):
        lines.append(json.dumps({"type": "tool_use", "tool_name": "run_shell_command", "tool_id": f"t{n}",
                                 "parameters": {"command": f"ls {n}"}}))
        lines.append(json.dumps({"type": "message", "role": "assistant", "content": "y" * 200, "delta": True}))
    lines.append(json.dumps({"type": "result", "status": "success", "stats": {"total_tokens": 2}}))
    return ("\n".join(lines) + "\n").encode()


def parse_rate(runtime: str, data: bytes, runs: int) -> float:
    rates = []
    for _ in range(runs):
        seen = []
        reader = get_runtime(runtime).reader(stream=True, on_event=seen.append, on_change=None)
        began = time.perf_counter()
        for start in range(0, len(data), 1 << 20):
            reader.feed(data[start : start + (1 << 20)])
        reader.finish()
        rates.append(len(data) / (time.perf_counter() - began) / 1e6)
        assert reader.result is not None
    return statistics.median(rates)


def cli_path(runtime: str) -> str:
    return subprocess.run([str(REPO / "scripts" / "install-agent-cli"), runtime, "--print-path"],
                          capture_output=True, text=True).stdout.strip()


def real_runs(runtime: str, path: str, runs: int) -> tuple[float, float] | None:
    if not os.access(path, os.X_OK):
        print(f"  {runtime}: not installed ({path}); skipped")
        return None
    from standin_apis import Answer, GeminiStandIn, ResponsesStandIn

    with tempfile.TemporaryDirectory() as tmp, (ResponsesStandIn() if runtime == "codex" else GeminiStandIn()) as api:
        home, project = Path(tmp, "home"), Path(tmp, "project")
        home.mkdir()
        project.mkdir()
        env = dict(os.environ, HOME=str(home), NO_PROXY="127.0.0.1")
        if runtime == "codex":
            (home / "config.toml").write_text(
                f'model = "m"\nmodel_provider = "s"\n[model_providers.s]\nname = "s"\n'
                f'base_url = "http://127.0.0.1:{api.port}/v1"\nwire_api = "responses"\nenv_key = "K"\n'
                "request_max_retries = 0\nstream_max_retries = 0\n")
            env.update(CODEX_HOME=str(home), K="k")
            bare = [path, "exec", "--json", "--skip-git-repo-check", "-C", str(project), "-s", "read-only", "-"]
        else:
            (home / ".gemini").mkdir()
            (home / ".gemini" / "settings.json").write_text('{"security":{"auth":{"selectedType":"gemini-api-key"}}}')
            env.update(GEMINI_API_KEY="k", GOOGLE_GEMINI_BASE_URL=f"http://127.0.0.1:{api.port}")
            bare = [path, "--skip-trust", "-o", "stream-json", "-m", "gemini-2.5-flash"]
        api.script(Answer(text="hi", times=None))
        os.environ.update(env)
        agent = EffectiveAgent(name="b", directory=str(project), timeout=300, runtime=runtime,
                               model="gemini-2.5-flash" if runtime == "gemini" else None)
        bare_times, ours = [], []
        for _ in range(runs):
            began = time.perf_counter()
            subprocess.run(bare, input=b"hello", cwd=project, env=env, capture_output=True, check=False)
            bare_times.append(time.perf_counter() - began)
            began = time.perf_counter()
            result = anyio.run(lambda: run_claude(RunSpec(agent=agent, prompt="hello", claude=path)))
            ours.append(time.perf_counter() - began)
            assert result.success, result
        return statistics.median(bare_times), statistics.median(ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    print("1. reader throughput (median of 5, 1 MiB chunks, on_event consumer)")
    for runtime, data in (("codex", codex_stream(args.events)), ("gemini", gemini_stream(args.events))):
        print(f"  {runtime}: {len(data) / 1e6:.0f} MB, {parse_rate(runtime, data, 5):.0f} MB/s")
    print(f"2. real CLI against the stand-in (median of {args.runs}): bare run, through the runner, overhead")
    paths = {runtime: cli_path(runtime) for runtime in ("codex", "gemini")}  # before HOME changes
    for runtime, path in paths.items():
        times = real_runs(runtime, path, args.runs)
        if times:
            bare, ours = times
            print(f"  {runtime}: bare {bare:.2f} s, runner {ours:.2f} s, overhead {ours - bare:+.2f} s")


if __name__ == "__main__":
    main()
