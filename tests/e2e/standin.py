"""A stand-in for the Anthropic Messages API, for driving the real `claude` CLI in tests.

It listens on 127.0.0.1 only, answers `POST /v1/messages` (streaming server-sent events, or one
JSON message when the request does not ask to stream) and `POST /v1/messages/count_tokens`, and
records every request so a test can read what the model was sent.

Replies are scripted per test with `StandIn.script(Reply(...))`. A request takes the first
scripted reply whose `match` is a substring of its newest user message (any request when
`match` is None; with `after_tool` only a request that carries a tool result); a reply is used
`times` times (None = forever). The CLI re-sends a request that got a 4xx a few times (with
fewer beta features) before giving up, so script an error with `times=None`. A request that no scripted
reply fits gets a harmless text answer, so background calls of the CLI (title generation and
the like) never consume a test's script.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TEXT = "ok"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class Reply:
    """One scripted answer.

    `text`: the assistant's text (may be empty when only a tool is used).
    `tool_name` / `tool_input`: add a tool_use block (stop_reason becomes "tool_use").
    `status`: answer with this HTTP error status and `error_message` instead of a message.
    `delay`: seconds to wait before answering (interrupted when the stand-in stops).
    `match`: only for requests whose newest user message contains this text.
    `after_tool`: only for requests whose newest user message carries a tool_result.
    `times`: how many requests it answers (None = every matching request).
    `retryable`: send an error without `x-should-retry: false`, so the CLI retries it as it
    would a real API's (a 401 for minutes).
    """

    text: str = DEFAULT_TEXT
    tool_name: str | None = None
    tool_input: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    error_message: str = "scripted error"
    delay: float = 0.0
    match: str | None = None
    after_tool: bool = False
    times: int | None = 1
    input_tokens: int = 100
    output_tokens: int = 20
    retryable: bool = False


@dataclass
class Request:
    """One recorded request: its path, headers and parsed JSON body."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    time: float
    reply: Reply | None = None

    @property
    def is_messages(self) -> bool:
        return self.path.split("?", 1)[0] == "/v1/messages"

    def newest_user_text(self) -> str:
        return newest_user_text(self.body)

    def all_text(self) -> str:
        """Every text the request carries (system prompt, messages, tool results), joined."""
        return json.dumps(self.body, ensure_ascii=False)


def _content_text(content: Any) -> str:
    """Text of a message content: a string, or blocks (text, tool_result, nested content)."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                parts.append(block["text"])
            if "content" in block:
                parts.append(_content_text(block["content"]))
    return "\n".join(parts)


def _newest_user(body: dict[str, Any]) -> dict[str, Any]:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return message
    return {}


def newest_user_text(body: dict[str, Any]) -> str:
    """The text of the newest `user` message (a system-role entry may come after it)."""
    return _content_text(_newest_user(body).get("content"))


def has_tool_result(body: dict[str, Any]) -> bool:
    """Whether the newest user message carries a tool_result block."""
    content = _newest_user(body).get("content")
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class StandIn:
    """The server. `start()` it (or use it as a context manager), point `ANTHROPIC_BASE_URL` at
    `url`, `script()` replies, read `requests`, `stop()` it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: list[Reply] = []
        self.requests: list[Request] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> StandIn:
        standin = self

        class Handler(_Handler):
            owner = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "stand-in not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- scripting and records ---------------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    def message_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.is_messages]

    def scripted_requests(self) -> list[Request]:
        """Message requests that a scripted reply answered, in arrival order."""
        return [r for r in self.message_requests() if r.reply is not None]

    def requests_mentioning(self, text: str) -> list[Request]:
        """Message requests whose body (any part) contains `text`."""
        return [r for r in self.message_requests() if text in r.all_text()]

    def _take(self, body: dict[str, Any]) -> Reply | None:
        user = newest_user_text(body)
        tool_result = has_tool_result(body)
        with self._lock:
            for index, reply in enumerate(self._script):
                if reply.after_tool and not tool_result:
                    continue
                if reply.match is None or reply.match in user:
                    if reply.times is not None:
                        reply.times -= 1
                        if reply.times <= 0:
                            del self._script[index]
                    return reply
        return None

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


class _Handler(BaseHTTPRequestHandler):
    owner: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.owner._record(Request(self.path, dict(self.headers), {}, time.time()))
        self._send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "not here"}})

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        request = Request(self.path, dict(self.headers), body, time.time())
        path = self.path.split("?", 1)[0]
        if path == "/v1/messages/count_tokens":
            self.owner._record(request)
            self._send_json(200, {"input_tokens": max(1, len(raw) // 4)})
            return
        if path != "/v1/messages":
            self.owner._record(request)
            self._send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": path}})
            return
        reply = self.owner._take(body)
        request.reply = reply
        self.owner._record(request)
        reply = reply or Reply(text=DEFAULT_TEXT)
        if reply.delay and self.owner._stopping.wait(reply.delay):
            return
        if reply.status != 200:
            kind = ERROR_TYPES.get(reply.status, "api_error")
            # x-should-retry: false keeps the CLI's HTTP client from retrying the scripted error.
            self._send_json(
                reply.status,
                {"type": "error", "error": {"type": kind, "message": reply.error_message}},
                {} if reply.retryable else {"x-should-retry": "false"},
            )
            return
        model = body.get("model") or "claude-sonnet-4-5"
        if body.get("stream"):
            self._stream(reply, model)
        else:
            self._send_json(200, _message(reply, model))

    def _stream(self, reply: Reply, model: str) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.send_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
        self.end_headers()
        self.close_connection = True
        message = _message(reply, model)
        blocks = message["content"]
        start = dict(message, content=[], stop_reason=None)
        start["usage"] = {"input_tokens": reply.input_tokens, "output_tokens": 1}
        chunks = [_sse("message_start", {"type": "message_start", "message": start})]
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                first = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                first = dict(block, input={})
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            chunks.append(_sse("content_block_start", {"type": "content_block_start", "index": index,
                                                       "content_block": first}))
            chunks.append(_sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": delta}))
            chunks.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        chunks.append(_sse("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": reply.output_tokens},
        }))
        chunks.append(_sse("message_stop", {"type": "message_stop"}))
        try:
            self.wfile.write(b"".join(chunks))
            self.wfile.flush()
        except OSError:
            pass


def _message(reply: Reply, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    if reply.tool_name:
        content.append({"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": reply.tool_name,
                        "input": reply.tool_input})
    if not content:
        content.append({"type": "text", "text": ""})
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if reply.tool_name else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }
