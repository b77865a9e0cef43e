"""A JSON-lines reader shared by the runtimes whose CLIs print one event object per line.

The runtime subclasses `LineReader` and implements `_object`; this class splits lines (a line
may arrive in pieces), decodes with replacement, skips what is not a JSON object, counts
bytes, and delivers StreamEvents to `on_event` (its errors logged, never raised).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from agent_dispatch.runs.events import TEXT_MAX, TOOL_INPUT_MAX, StreamEvent
from agent_dispatch.runs.text import clean_text

log = logging.getLogger(__name__)

LINE_MAX = 64 * 1024 * 1024  # a longer unterminated line is dropped, not kept growing
_INPUT_KEYS = ("command", "cmd", "file_path", "path", "pattern", "url", "query", "description", "prompt")


def short(text: str, limit: int = TEXT_MAX) -> str:
    """`text` cut to `limit` characters (with an ellipsis), always encodable as UTF-8."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text if text.isascii() else clean_text(text)


def tool_input(value: Any) -> str:
    """A short rendering of a tool call's input for progress messages."""
    if isinstance(value, str):
        return short(value, TOOL_INPUT_MAX)
    if isinstance(value, dict):
        for key in _INPUT_KEYS:
            if isinstance(value.get(key), str) and value[key]:
                return short(value[key], TOOL_INPUT_MAX)
    if value in (None, {}, [], ""):
        return ""
    try:
        return short(json.dumps(value, ensure_ascii=False, default=str), TOOL_INPUT_MAX)
    except (TypeError, ValueError):
        return ""


def text_of(value: Any) -> str:
    return clean_text(value) if isinstance(value, str) else ""


class LineReader:
    """Base reader: subclasses set `result` (the final record), `session_id` and `_last_text`."""

    def __init__(
        self,
        *,
        on_event: Callable[[StreamEvent], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._pending = bytearray()
        self._on_event = on_event
        self._on_change = on_change
        self._event_failed = False
        self._last_text = ""
        self.result: dict[str, Any] | None = None
        self.session_id: str | None = None
        self.size = 0
        self.eof = False

    @property
    def last_text(self) -> str:
        """What the agent said last (what a run that never finished had said)."""
        return self._last_text

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        end = chunk.rfind(b"\n")
        if end < 0:
            self._pending += chunk
            if len(self._pending) > LINE_MAX:
                self._pending = bytearray()
            return
        data = bytes(self._pending) + chunk[:end] if self._pending else chunk[:end]
        self._pending = bytearray(chunk[end + 1 :])
        self._lines(data)

    def finish(self) -> None:
        if self._pending:
            self._lines(bytes(self._pending))
            self._pending = bytearray()
        self.eof = True
        self._changed()

    def _lines(self, data: bytes) -> None:
        """Complete lines: parsed as one JSON array when they all are objects (much faster), else one by one."""
        lines = [line for line in data.decode("utf-8", errors="replace").split("\n") if line.lstrip().startswith("{")]
        if not lines:
            return
        try:
            values = json.loads("[" + ",".join(lines) + "]")
            if len(values) != len(lines):
                raise ValueError("a line held more or less than one value")
        except (ValueError, RecursionError):
            values = [_load(line) for line in lines]
        for value in values:
            if isinstance(value, dict):
                self._object(value)

    def _object(self, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    def _emit(self, event: StreamEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            if not self._event_failed:
                log.exception("on_event callback failed; later failures of this run are not logged")
            self._event_failed = True

    def _found(self, result: dict[str, Any]) -> None:
        self.result = result
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()


def _load(line: str) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def read_all(reader: LineReader, data: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Feed a whole output to `reader`: its final record and session id."""
    reader.feed(data)
    reader.finish()
    return reader.result, reader.session_id
