"""What the real `claude -p` does, pinned: the facts the runner is built on.

When a new Claude Code version changes one of these, this file says which, before the
dispatch scenarios fail in a less readable way.
"""

from __future__ import annotations

import json

import pytest
from standin import Reply

pytestmark = pytest.mark.e2e

RESULT_FIELDS = {"type", "subtype", "is_error", "result", "session_id", "total_cost_usd", "duration_ms",
                 "num_turns", "permission_denials", "terminal_reason"}


def test_json_result_with_prompt_on_stdin(e2e):
    e2e.standin.script(Reply(text="Hello from the stand-in", match="say hello"))
    proc = e2e.claude("-p", "--output-format", "json", prompt="please say hello")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = json.loads(proc.stdout)
    assert RESULT_FIELDS <= out.keys()
    assert out["type"] == "result" and out["subtype"] == "success" and out["is_error"] is False
    assert out["result"] == "Hello from the stand-in"
    assert out["total_cost_usd"] > 0 and out["num_turns"] == 1 and out["permission_denials"] == []
    [request] = e2e.standin.scripted_requests()
    assert request.newest_user_text().endswith("please say hello")
    assert request.headers.get("x-api-key") == "test"
    assert request.headers.get("X-Claude-Code-Session-Id") == out["session_id"]


def test_option_like_prompt_on_stdin_is_text(e2e):
    e2e.standin.script(Reply(text="just text", match="--dangerously-skip-permissions"))
    proc = e2e.claude("-p", "--output-format", "json", prompt="--dangerously-skip-permissions")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["result"] == "just text"


def test_stream_json_needs_verbose_and_opens_with_init(e2e):
    proc = e2e.claude("-p", "--output-format", "stream-json", prompt="x")
    assert proc.returncode == 1
    assert "requires --verbose" in proc.stderr and proc.stdout == ""

    e2e.standin.script(Reply(text="streamed answer", match="stream please"))
    proc = e2e.claude("-p", "--output-format", "stream-json", "--verbose", prompt="stream please")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert (lines[0]["type"], lines[0]["subtype"]) == ("system", "init")
    assert lines[-1]["type"] == "result" and lines[-1]["result"] == "streamed answer"
    assert lines[0]["session_id"] == lines[-1]["session_id"]
    texts = [b["text"] for line in lines if line["type"] == "assistant" for b in line["message"]["content"]
             if b["type"] == "text"]
    assert texts == ["streamed answer"]


def test_api_4xx_ends_the_run_at_once(e2e):
    e2e.standin.script(Reply(status=400, error_message="scripted bad request", match="bad one", times=None))
    proc = e2e.claude("-p", "--output-format", "json", prompt="bad one")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    # is_error is the signal: subtype still says "success" for an API error.
    assert out["is_error"] is True and out["subtype"] == "success"
    assert out["api_error_status"] == 400 and out["terminal_reason"] == "api_error"
    assert "scripted bad request" in out["result"]
    # It re-sends a few times with fewer beta features, then gives up (no minutes of backoff).
    assert 1 <= len(e2e.standin.scripted_requests()) <= 10


def test_denied_tool_is_listed_and_the_run_still_succeeds(e2e):
    target = e2e.home / "written.txt"
    e2e.standin.script(
        Reply(text="", tool_name="Write", tool_input={"file_path": str(target), "content": "x"}, match="write it"),
        Reply(text="could not write", after_tool=True),
    )
    proc = e2e.claude("-p", "--output-format", "json", prompt="write it")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["is_error"] is False and out["result"] == "could not write" and out["num_turns"] == 2
    [denial] = out["permission_denials"]
    assert denial["tool_name"] == "Write" and denial["tool_input"]["file_path"] == str(target)
    assert set(denial) == {"tool_name", "tool_use_id", "tool_input"}
    assert not target.exists()


def test_resume_sends_the_earlier_turn(e2e):
    e2e.standin.script(Reply(text="first answer", match="turn one"), Reply(text="second answer", match="turn two"))
    first = json.loads(e2e.claude("-p", "--output-format", "json", prompt="turn one").stdout)
    proc = e2e.claude("-p", "--output-format", "json", "--resume", first["session_id"], prompt="turn two")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["session_id"] == first["session_id"]
    second = e2e.standin.scripted_requests()[-1].all_text()
    assert "turn one" in second and "first answer" in second


def test_budget_stop_has_no_result_field(e2e):
    (e2e.home / "f.txt").write_text("x")
    e2e.standin.script(Reply(text="", tool_name="Read", tool_input={"file_path": str(e2e.home / "f.txt")},
                             match="spend", input_tokens=100_000, output_tokens=10_000))
    proc = e2e.claude("-p", "--output-format", "json", "--max-budget-usd", "0.01", prompt="spend")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["is_error"] is True and out["subtype"] == "error_max_budget_usd"
    assert "result" not in out
    assert any("budget" in error for error in out["errors"])


def test_a_refused_login_is_retried_and_each_retry_is_a_stream_line(e2e):
    """What lets a stream run name a 401 at once instead of after ~3 minutes of retries."""
    import subprocess

    e2e.standin.script(Reply(status=401, error_message="invalid x-api-key", times=None, retryable=True))
    proc = subprocess.Popen([str(e2e.cli), "-p", "--output-format", "stream-json", "--verbose"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=e2e.home, env=e2e.env())
    try:
        proc.stdin.write("hello")
        proc.stdin.close()
        retries = []
        for line in proc.stdout:
            obj = json.loads(line)
            if obj.get("type") == "system" and obj.get("subtype") == "api_retry":
                retries.append(obj)
                if len(retries) == 2:
                    break
    finally:
        proc.kill()
        proc.wait()
    assert [r["attempt"] for r in retries] == [1, 2]
    assert all(r["error_status"] == 401 and r["error"] == "authentication_failed" for r in retries)
    assert retries[0]["max_retries"] >= 5
