"""A long answer costs the server a few copies of itself, not a dozen (issue 8, point 16).

The real server over stdio, a fake `claude` printing a 20 MB answer, and the server's peak
resident memory (VmHWM, reset through /proc/<pid>/clear_refs before the call) compared with
its resident memory before the call. bench/bench_server.py figure 8 prints the same figures for
30 MB and the other paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mcp_client import connect

ANSWER = 20 * 2**20
LIMIT = 4.0  # peak growth, in answer sizes

PRINT_FILE = """
import os, sys
read_prompt()
if "--output-format" in ARGV and option("--output-format") == "stream-json":
    path = os.environ["FAKE_BIG_STREAM"]
else:
    path = os.environ["FAKE_BIG_JSON"]
with open(path, "rb") as fh:
    sys.stdout.buffer.write(fh.read())
"""


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def server_pid() -> int:
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[stat.rfind(")") + 2:].split()[1]) == me and b"serve" in cmdline:
            return int(entry)
    raise AssertionError("the server process was not found")


@pytest.fixture
def big_answer(write_config, project, fake_claude, tmp_path, monkeypatch):
    write_config(f"agents:\n  big: {{directory: {project('big')}, timeout: 120}}\nsettings:\n"
                 "  cache: {enabled: false}\n")
    line = 'Finding {n}: the "cache" layer re-reads agents.yaml on each call; see notes.\n'
    text = "".join(line.format(n=n) for n in range(ANSWER // 70))[:ANSWER]
    session = "00000000-0000-4000-8000-000000000000"
    result = {"type": "result", "subtype": "success", "is_error": False, "result": text, "session_id": session,
              "total_cost_usd": 0.5, "num_turns": 1}
    (tmp_path / "big.json").write_text(json.dumps(result) + "\n")
    assistant = {"type": "assistant", "message": {"content": [{"type": "text", "text": text}]}}
    (tmp_path / "big.jsonl").write_text(json.dumps(assistant) + "\n" + json.dumps(result) + "\n")
    monkeypatch.setenv("FAKE_BIG_JSON", str(tmp_path / "big.json"))
    monkeypatch.setenv("FAKE_BIG_STREAM", str(tmp_path / "big.jsonl"))
    fake_claude(PRINT_FILE)
    return text


@pytest.mark.parametrize("tool", ["dispatch", "dispatch_stream"])
async def test_a_long_answer_raises_the_servers_peak_memory_by_under_4x_its_size(big_answer, tool):
    async with connect() as client:
        await client.call_tool("list_agents", {})
        pid = server_pid()
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        before = memory_kb(pid)["VmRSS"]
        answer = await client.call_tool(tool, {"agent": "big", "task": "the long report"})
        peak = memory_kb(pid)["VmHWM"]
    assert answer.structured_content["result"] == big_answer
    assert json.loads(answer.content[0].text)["success"] is True
    growth = (peak - before) * 1024 / ANSWER
    assert growth < LIMIT, f"{tool}: the server's peak grew by {growth:.1f}x the answer's size"
