"""Reading what `claude -p` prints: the json result object and stream-json events.

Output is decoded with replacement (invalid UTF-8 never fails a run) and read line by line;
malformed lines are skipped. A result counts only when its own line parses as a JSON object
with `"type": "result"`. A busy stream (tens of MB/s of events) is read in batches: lines the
runner never needs (tool results) are not parsed at all. A long line (a 30 MB answer) is parsed
straight from the bytes it arrived in: never decoded to a str first, never joined with others.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import pydantic_core

from agent_dispatch.runs.events import TEXT_MAX, StreamEvent
from agent_dispatch.runtimes.lines import short as _short
from agent_dispatch.runtimes.lines import tool_input as _tool_input

log = logging.getLogger(__name__)

RAW_MAX = 256 * 1024 * 1024  # json mode keeps at most this much output for a whole-output parse
BIG_LINE = 2 * 1024 * 1024  # longer lines are parsed from their bytes (more than one read's worth)
_HEAD = 40  # the start of a stream-json line, where the CLI puts its "type"
# claude retries a refused login for minutes (10 attempts, about 3 min); a key that was refused
# this many times in a row is not going to work, so a stream run ends there with the reason.
AUTH_RETRIES_BEFORE_STOP = 3


_new_event = functools.partial(tuple.__new__, StreamEvent)  # skips NamedTuple's argument handling


def _block_events(content: Any) -> list[StreamEvent]:
    if content.__class__ is not list:
        return []
    events = []
    for block in content:
        if block.__class__ is not dict:
            continue
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if text.__class__ is str and text and not text.isspace():
                events.append(_new_event(("text", _short(text, TEXT_MAX), "", None, False)))
        elif kind == "tool_use":
            name = block.get("name")
            name = _short(name, 200) if isinstance(name, str) else "?"
            events.append(StreamEvent("tool_use", _tool_input(block.get("input")), name))
    return events


def events_from(obj: dict[str, Any]) -> list[StreamEvent]:
    """The events carried by one parsed stream-json object (often none)."""
    kind = obj.get("type")
    if kind == "assistant":
        message = obj.get("message")
        return _block_events(message.get("content") if message.__class__ is dict else None)
    session = obj.get("session_id") if isinstance(obj.get("session_id"), str) else None
    if kind == "system" and obj.get("subtype") == "init":
        return [StreamEvent("init", session_id=session)]
    if kind == "result":
        text = obj.get("result") if isinstance(obj.get("result"), str) else ""
        return [StreamEvent("result", _short(text, TEXT_MAX), session_id=session, is_error=obj.get("is_error") is True)]
    if kind == "system" and obj.get("subtype") == "api_retry":
        return [StreamEvent("retry", _retry_text(obj), session_id=session)]
    return []


def _retry_text(obj: dict[str, Any]) -> str:
    status = obj.get("error_status")
    error = obj.get("error") if isinstance(obj.get("error"), str) else "error"
    attempt, most = obj.get("attempt"), obj.get("max_retries")
    what = f"HTTP {status} {error}" if isinstance(status, int) else error
    count = f" (attempt {attempt} of {most})" if isinstance(attempt, int) and isinstance(most, int) else ""
    return _short(f"the API refused the request: {what}; claude is retrying{count}", 300)


def is_auth_failure(obj: dict[str, Any]) -> bool:
    """Whether an `api_retry` line says the API refused the login (bad key, no login)."""
    return obj.get("error_status") == 401 or obj.get("error") == "authentication_failed"


def auth_result(obj: dict[str, Any]) -> dict[str, Any]:
    """The result a run refused for its login ends with, when we stop claude's retries."""
    status = obj.get("error_status") if isinstance(obj.get("error_status"), int) else 401
    return {
        "type": "result", "subtype": "error_authentication", "is_error": True, "api_error_status": status,
        "terminal_reason": "authentication_failed", "session_id": obj.get("session_id"),
        "result": f"the API refused claude's credentials (HTTP {status}, "
                  f"{obj.get('error') or 'authentication_failed'}) {obj.get('attempt')} times in a row; "
                  "the run was stopped instead of retrying for minutes",
    }


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


def load_bytes(data: bytes) -> dict[str, Any] | None:
    """One long line as a JSON object, parsed from its bytes (no decoded copy); None when it is not one.

    Bytes, not a bytearray: the parser would copy a mutable buffer first.
    """
    try:
        value = pydantic_core.from_json(data)
    except ValueError:  # lone surrogates, bytes that are not UTF-8: the lenient (copying) parse
        value = load_object(bytes(data))
    return value if isinstance(value, dict) else None


def is_result(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("type") == "result"


def _is_user(head: str) -> bool:
    """Whether a line starts as a `user` (tool result) object: those never matter to us."""
    return '"type":"user"' in head or '"type": "user"' in head


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


EVENT_LINES_MAX = 20  # assistant lines parsed per read when a burst arrives at once


class OutputReader:
    """Consumes stdout as it arrives: splits lines, finds the result, emits stream events.

    A line that may hold the result (or whose type is not at its start) is parsed on its own;
    assistant and system lines are parsed in batches, and only when someone wants events.
    `keep_raw` (json mode) also keeps the whole output, up to RAW_MAX, for `finish()` to parse
    a result printed over several lines. Errors raised by `on_event` are logged, not raised.
    """

    def __init__(
        self,
        *,
        keep_raw: bool,
        on_event: Callable[[StreamEvent], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._pending = bytearray()  # the start of a line not complete yet
        # json mode: the complete lines read so far, up to RAW_MAX, until a result line is found
        self._seen: list[bytes] | None = [] if keep_raw else None
        self._seen_size = 0
        self._on_event = on_event
        self._on_change = on_change
        self._event_failed = False
        self._last_text = ""
        self._last_assistant = ""  # without on_event: the newest assistant line, parsed only if needed
        self.result: dict[str, Any] | None = None
        self.session_id: str | None = None
        self.size = 0
        self.eof = False

    @property
    def last_text(self) -> str:
        """The newest assistant text seen (what a run that never finished had said last)."""
        if self._last_assistant:
            obj = load_object(self._last_assistant)
            self._last_assistant = ""
            texts = [event.text for event in events_from(obj) if event.kind == "text"] if obj else []
            self._last_text = texts[-1] if texts else self._last_text
        return self._last_text

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        end = chunk.rfind(b"\n")
        if end < 0:
            self._pending += chunk
            return
        if self._pending:
            self._pending += chunk[:end]
            complete: Any = self._pending
            self._pending = bytearray(chunk[end + 1 :])
            if len(complete) >= BIG_LINE:
                complete = bytes(complete)  # the bytearray goes: a long line is held once, as bytes
        else:
            complete = memoryview(chunk)[:end]  # decoded straight from the chunk
            self._pending += chunk[end + 1 :]
        self._complete(complete)

    def finish(self) -> None:
        """End of output: parse the last unterminated line, then (json mode) the whole output."""
        if self._pending:
            rest, self._pending = bytes(self._pending), bytearray()
            self._complete(rest)
        if self.result is None and self._seen:
            result, session = find_result(b"\n".join(self._seen))
            self.session_id = self.session_id or session
            if result is not None:
                self._found(result)
        self._seen = None
        self.eof = True
        self._changed()

    def _complete(self, data: Any) -> None:
        """Complete lines of output (bytes, bytearray or memoryview, without the final newline)."""
        if not isinstance(data, bytes) and (len(data) >= BIG_LINE or self._seen is not None):
            data = bytes(data)
        if self._seen is not None:
            self._seen_size += len(data)
            self._seen.append(data)
            if self._seen_size > RAW_MAX:
                self._seen = None
        if len(data) < BIG_LINE:
            self._block(str(data, "utf-8", "replace"))
        else:
            self._long_lines(data)
        if self.result is not None:
            self._seen = None  # a result line was read: the whole output is not needed

    def _long_lines(self, data: bytes) -> None:
        """Lines of a long block: short ones as usual, long ones parsed from their bytes (no decoding)."""
        pos, stop = 0, len(data)
        while pos < stop:
            cut = data.find(b"\n", pos)
            cut = stop if cut < 0 else cut
            if cut - pos < BIG_LINE:
                with memoryview(data) as view:
                    self._block(str(view[pos:cut], "utf-8", "replace"))
            elif pos == 0 and cut == stop:
                self._long_line(data)  # the whole block is one line: parsed where it is
            else:
                with memoryview(data) as view:
                    self._long_line(bytes(view[pos:cut]))
            pos = cut + 1

    def _long_line(self, line: bytes) -> None:
        head = line[: 4 * _HEAD].lstrip()[:_HEAD].decode("utf-8", "replace")
        wanted = (
            '"type"' not in head or '"result"' in head or self._on_event is not None or '"assistant"' in head
            or (self.session_id is None and '"system"' in head)
        )
        if _is_user(head) or not wanted:
            return  # tool results, which can be huge, are never parsed
        obj = load_bytes(line)
        if obj is not None:
            self._object(obj)

    # ---- lines -----------------------------------------------------------------------------

    def _block(self, text: str) -> None:
        """Complete lines of output."""
        events = self._on_event is not None
        batch: list[str] = []
        for line in text.split("\n"):
            head = line[:_HEAD]
            if '"type"' not in head or '"result"' in head:
                if batch:
                    self._batch(batch)
                    batch = []
                self._single(line)
            elif _is_user(head):
                continue
            elif events:
                batch.append(line)
            elif '"assistant"' in head:
                if '"type":"text"' in line or '"type": "text"' in line:
                    self._last_assistant = line
            elif '"system"' in head and (self.session_id is None or '"api_retry"' in line[:120]):
                self._single(line)
        if batch:
            self._batch(batch)

    def _single(self, line: str) -> None:
        obj = load_object(line)
        if obj is not None:
            self._object(obj)

    def _batch(self, lines: list[str]) -> None:
        if len(lines) > EVENT_LINES_MAX:
            # Consumers keep only the newest few events (progress tails), so a flood of assistant
            # lines read in one go is parsed from its newest end; other lines are all kept.
            older = [line for line in lines[:-EVENT_LINES_MAX] if '"assistant"' not in line[:_HEAD]]
            lines = older + lines[-EVENT_LINES_MAX:]
        try:
            values = json.loads("[" + ",".join(lines) + "]")
            if len(values) != len(lines):
                raise ValueError("a line held more or less than one value")
        except (ValueError, RecursionError):
            values = [load_object(line) for line in lines]
        for index, value in enumerate(values):
            if value.__class__ is not dict:
                continue
            kind = value.get("type")
            if kind == "assistant":
                message = value.get("message")
                content = message.get("content") if message.__class__ is dict else None
                for event in _block_events(content):
                    self._deliver(event)
            elif kind == "result":
                self._single(lines[index])  # a result counts only when its own line parses
            else:
                self._object(value)

    def _object(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "system" and self.session_id is None and isinstance(obj.get("session_id"), str):
            self.session_id = obj["session_id"]
        if self._on_event is not None:
            for event in events_from(obj):
                self._deliver(event)
        elif kind == "assistant":
            self._last_assistant = ""
            texts = [event.text for event in events_from(obj) if event.kind == "text"]
            self._last_text = texts[-1] if texts else self._last_text
        if kind == "result":
            self._found(obj)
        elif (kind == "system" and obj.get("subtype") == "api_retry" and self.result is None
              and is_auth_failure(obj) and isinstance(obj.get("attempt"), int)
              and obj["attempt"] >= AUTH_RETRIES_BEFORE_STOP):
            self._found(auth_result(obj))

    def _deliver(self, event: StreamEvent) -> None:
        if event.kind == "text":
            self._last_text = event.text
        try:
            self._on_event(event)  # type: ignore[misc]
        except Exception:
            if not self._event_failed:
                log.exception("on_event callback failed; later failures of this run are not logged")
            self._event_failed = True

    def _found(self, result: dict[str, Any]) -> None:
        self.result = result
        if isinstance(result.get("session_id"), str):
            self.session_id = result["session_id"]
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
