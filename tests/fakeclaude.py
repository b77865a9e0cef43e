"""Building blocks for fake `claude` executables written by the tests.

A fake is a small Python script (see the `fake_claude` fixture) that imports this module.
It behaves like `claude -p`: reads the prompt from stdin, prints a json or stream-json result,
and records what it was given (argv, cwd, environment, stdin) as JSON lines in
$FAKE_CLAUDE_RECORD when that is set.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

ARGV = sys.argv[1:]


def option(name: str) -> str | None:
    """The value after `name` in argv, or None."""
    if name in ARGV:
        index = ARGV.index(name)
        if index + 1 < len(ARGV):
            return ARGV[index + 1]
    return None


def streaming() -> bool:
    return option("--output-format") == "stream-json"


def read_prompt() -> str:
    data = sys.stdin.buffer.read()
    return data.decode("utf-8", errors="replace")


def record(prompt: str) -> None:
    path = os.environ.get("FAKE_CLAUDE_RECORD")
    if not path:
        return
    entry = {
        "argv": ARGV,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "stdin": prompt,
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "time": time.time(),
    }
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def session_id() -> str:
    return option("--resume") or option("--session-id") or str(uuid.uuid4())


def result_object(text: str, *, is_error: bool = False, **extra: object) -> dict:
    obj = {
        "type": "result",
        "subtype": "error_during_execution" if is_error else "success",
        "is_error": is_error,
        "result": text,
        "session_id": session_id(),
        "total_cost_usd": 0.0123,
        "duration_ms": 42,
        "num_turns": 1,
        "permission_denials": [],
    }
    obj.update(extra)
    return obj


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def emit_result(text: str, *, is_error: bool = False, **extra: object) -> None:
    """Print the result the way the requested output format wants it."""
    obj = result_object(text, is_error=is_error, **extra)
    if streaming():
        emit({"type": "system", "subtype": "init", "session_id": obj["session_id"], "tools": [], "cwd": os.getcwd()})
        message = {"content": [{"type": "text", "text": text}]}
        emit({"type": "assistant", "message": message, "session_id": obj["session_id"]})
    emit(obj)


def main() -> None:
    """Default behaviour: echo the prompt, shaped by a few environment variables."""
    prompt = read_prompt()
    record(prompt)
    delay = float(os.environ.get("FAKE_CLAUDE_SLEEP", "0") or 0)
    if delay:
        time.sleep(delay)
    reply = os.environ.get("FAKE_CLAUDE_REPLY")
    if reply is None:
        reply = "echo: " + prompt
    emit_result(reply)
    sys.exit(0)
