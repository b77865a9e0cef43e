"""Building blocks for fake `codex exec --json` and `gemini -o stream-json` executables.

A fake (see the `fake_cli` fixture in tests/test_runtime_runs.py) imports this module. Like the
real CLIs it reads the prompt from stdin until EOF (an open, silent pipe makes it wait), prints
JSON-line events in the shapes of ../shared/spec/other-clis.md, and records what it was given
(argv, cwd, environment, stdin) as JSON lines in $FAKE_AGENT_RECORD.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

ARGV = sys.argv[1:]


def option(name: str) -> str | None:
    if name in ARGV:
        index = ARGV.index(name)
        if index + 1 < len(ARGV):
            return ARGV[index + 1]
    return None


def read_prompt() -> str:
    return sys.stdin.buffer.read().decode("utf-8", errors="replace")


def record(prompt: str) -> None:
    path = os.environ.get("FAKE_AGENT_RECORD")
    if path:
        entry = {"argv": ARGV, "cwd": os.getcwd(), "env": dict(os.environ), "stdin": prompt, "pid": os.getpid()}
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# ---- codex ------------------------------------------------------------------------------------


def codex_thread() -> str:
    return ARGV[ARGV.index("resume") + 1] if "resume" in ARGV else str(uuid.uuid4())


def codex_start(thread: str | None = None) -> str:
    thread = thread or codex_thread()
    emit({"type": "thread.started", "thread_id": thread})
    emit({"type": "turn.started"})
    return thread


def codex_command(command: str, output: str = "", exit_code: int = 0) -> None:
    item = {"id": "item_1", "type": "command_execution", "command": command, "aggregated_output": "",
            "exit_code": None, "status": "in_progress"}
    emit({"type": "item.started", "item": item})
    emit({"type": "item.completed", "item": {**item, "aggregated_output": output, "exit_code": exit_code,
                                              "status": "completed"}})


def codex_answer(text: str) -> None:
    emit({"type": "item.completed", "item": {"id": "item_2", "type": "agent_message", "text": text}})
    emit({"type": "turn.completed", "usage": {"input_tokens": 120, "cached_input_tokens": 20,
                                              "output_tokens": 7, "reasoning_output_tokens": 0}})


def codex_api_error(message: str) -> None:
    emit({"type": "error", "message": message})
    emit({"type": "turn.failed", "error": {"message": message}})
    sys.exit(1)


def codex_main() -> None:
    prompt = read_prompt()
    record(prompt)
    codex_start()
    codex_answer(os.environ.get("FAKE_REPLY", "codex: " + prompt))


# ---- gemini -----------------------------------------------------------------------------------


def gemini_session() -> str:
    return option("--resume") or option("--session-id") or str(uuid.uuid4())


def gemini_start(prompt: str) -> str:
    session = gemini_session()
    emit({"type": "init", "timestamp": "t", "session_id": session, "model": option("-m") or "gemini-x"})
    emit({"type": "message", "timestamp": "t", "role": "user", "content": prompt})
    return session


def gemini_say(text: str, pieces: int = 3) -> None:
    step = max(1, len(text) // pieces)
    for start in range(0, len(text), step):
        emit({"type": "message", "role": "assistant", "content": text[start : start + step], "delta": True})


def gemini_tool(name: str, params: dict, status: str = "success", output: str = "") -> None:
    emit({"type": "tool_use", "tool_name": name, "tool_id": name + "-1", "parameters": params})
    emit({"type": "tool_result", "tool_id": name + "-1", "status": status, "output": output})


def gemini_result(status: str = "success", error: dict | None = None) -> None:
    obj = {"type": "result", "status": status,
           "stats": {"total_tokens": 130, "input_tokens": 100, "output_tokens": 30, "cached": 0,
                     "duration_ms": 1234, "tool_calls": 0}}
    if error:
        obj["error"] = error
    emit(obj)


def gemini_main() -> None:
    prompt = read_prompt()
    record(prompt)
    gemini_start(prompt)
    gemini_say(os.environ.get("FAKE_REPLY", "gemini: " + prompt))
    gemini_result()


def sleep_forever() -> None:
    time.sleep(600)
