"""Reading what `claude -p` prints: the json result object and stream-json events.

Output is decoded with replacement (invalid UTF-8 never fails a run) and parsed line by line;
malformed lines are skipped. Only a JSON object with `"type": "result"` counts as a result.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from agent_dispatch.runner.prompt import clean_text

EventKind = Literal["init", "text", "tool_use", "result"]

TEXT_MAX = 4000  # characters of assistant text kept per event
TOOL_INPUT_MAX = 200  # characters of a tool's input shown in a tool_use event
RAW_MAX = 256 * 1024 * 1024  # json mode keeps at most this much output for a whole-output parse
_INPUT_KEYS = ("command", "file_path", "path", "pattern", "url", "query", "description", "prompt")


@dataclass(frozen=True)
class StreamEvent:
    """One thing the agent did, from a stream-json line.

    kind `init` (session_id set), `text` (assistant text), `tool_use` (tool = name, text = a
    short rendering of its input), `result` (text = the answer, is_error).
    """

    kind: EventKind
    text: str = ""
    tool: str = ""
    session_id: str | None = None
    is_error: bool = False

    def describe(self, max_chars: int = 200) -> str:
        """A one-line summary for progress messages."""
        if self.kind == "init":
            line = "session started"
        elif self.kind == "tool_use":
            line = f"{self.tool}: {self.text}" if self.text else self.tool
        elif self.kind == "result":
            line = ("error: " if self.is_error else "done: ") + self.text
        else:
            line = self.text
        line = " ".join(line.split())
        return line if len(line) <= max_chars else line[: max(0, max_chars - 1)] + "…"


def _short(text: str, limit: int) -> str:
    return clean_text(text if len(text) <= limit else text[: limit - 1] + "…")


def _tool_input(value: Any) -> str:
    if isinstance(value, dict):
        for key in _INPUT_KEYS:
            if isinstance(value.get(key), str) and value[key]:
                return _short(value[key], TOOL_INPUT_MAX)
    if value in (None, {}, [], ""):
        return ""
    try:
        return _short(json.dumps(value, ensure_ascii=False, default=str), TOOL_INPUT_MAX)
    except (TypeError, ValueError):
        return ""


def events_from(obj: dict[str, Any]) -> list[StreamEvent]:
    """The events carried by one parsed stream-json object (often none)."""
    kind = obj.get("type")
    session = obj.get("session_id") if isinstance(obj.get("session_id"), str) else None
    if kind == "system" and obj.get("subtype") == "init":
        return [StreamEvent("init", session_id=session)]
    if kind == "result":
        text = obj.get("result") if isinstance(obj.get("result"), str) else ""
        return [StreamEvent("result", _short(text, TEXT_MAX), session_id=session, is_error=obj.get("is_error") is True)]
    if kind != "assistant":
        return []
    message = obj.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return []
    events = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str) and block["text"].strip():
            events.append(StreamEvent("text", _short(block["text"], TEXT_MAX), session_id=session))
        elif block.get("type") == "tool_use":
            name = block.get("name") if isinstance(block.get("name"), str) else "?"
            events.append(StreamEvent("tool_use", _tool_input(block.get("input")), tool=_short(name, 200)))
    return events


def load_object(line: bytes | bytearray | str) -> dict[str, Any] | None:
    """One output line as a JSON object, or None when it is not one."""
    if isinstance(line, (bytes, bytearray)):
        line = line.decode("utf-8", errors="replace")
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def is_result(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("type") == "result"


def find_result(data: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The result object in a whole output (json or stream-json) and the session id seen.

    The whole text is tried first (a pretty-printed json result), then each line from the end.
    """
    result = load_object(data)
    if result is not None and not is_result(result):
        result = None
    session = None
    lines = data.splitlines()
    if result is None:
        for line in reversed(lines):
            obj = load_object(line)
            if is_result(obj):
                result = obj
                break
    for line in lines[:5]:
        obj = load_object(line)
        if obj is not None and obj.get("type") == "system" and isinstance(obj.get("session_id"), str):
            session = obj["session_id"]
            break
    return result, session


class OutputReader:
    """Consumes stdout as it arrives: splits lines, finds the result, emits stream events.

    `keep_raw` (json mode) also keeps the whole output, up to RAW_MAX, for `finish()` to parse
    a result printed over several lines.
    """

    def __init__(
        self,
        *,
        keep_raw: bool,
        on_event: Callable[[StreamEvent], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._pending = bytearray()
        self._raw: bytearray | None = bytearray() if keep_raw else None
        self._on_event = on_event
        self._on_change = on_change
        self.result: dict[str, Any] | None = None
        self.session_id: str | None = None
        self.last_text = ""
        self.size = 0
        self.eof = False

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._raw is not None and len(self._raw) + len(chunk) <= RAW_MAX:
            self._raw += chunk
        start = 0
        if b"\n" in chunk:
            data = self._pending + chunk if self._pending else chunk
            end = data.rfind(b"\n")
            for line in data[:end].split(b"\n"):
                self._line(line)
            start = end + 1
            self._pending = bytearray(data[start:])
        else:
            self._pending += chunk

    def finish(self) -> None:
        """End of output: parse the last unterminated line, then (json mode) the whole output."""
        if self._pending:
            self._line(bytes(self._pending))
            self._pending = bytearray()
        if self.result is None and self._raw:
            result, session = find_result(bytes(self._raw))
            self.session_id = self.session_id or session
            if result is not None:
                self._found(result)
        self._raw = None
        self.eof = True
        self._changed()

    def _line(self, line: bytes) -> None:
        obj = load_object(line)
        if obj is None:
            return
        if obj.get("type") == "system" and isinstance(obj.get("session_id"), str):
            self.session_id = self.session_id or obj["session_id"]
        if self._on_event is not None or obj.get("type") == "assistant":
            for event in events_from(obj):
                if event.kind == "text":
                    self.last_text = event.text
                if self._on_event is not None:
                    self._on_event(event)
        if is_result(obj):
            self._found(obj)

    def _found(self, result: dict[str, Any]) -> None:
        self.result = result
        if isinstance(result.get("session_id"), str):
            self.session_id = result["session_id"]
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
