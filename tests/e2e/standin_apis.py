"""Stand-ins for the OpenAI Responses API (what Codex calls) and the Gemini API (what the Gemini
CLI calls), for driving the real CLIs in tests. Loopback only; every request is recorded.

Replies are scripted per test with `script(Answer(...))`: a request takes the first scripted
answer whose `match` is a substring of everything it sent (any request when `match` is None);
an answer is used `times` times (None = forever). A request no answer fits gets a harmless text,
so the CLIs' side calls never consume a test's script.

Codex: `POST /v1/responses` answered with Responses API server-sent events
(`response.created`, `response.output_item.added`, `response.output_text.delta`,
`response.output_item.done`, `response.completed`).
Gemini: `POST /v1beta/models/<model>:streamGenerateContent?alt=sse` answered with SSE chunks of
`GenerateContentResponse`; `:generateContent` and `:countTokens` with one JSON object.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TEXT = "ok"


@dataclass
class Answer:
    text: str = DEFAULT_TEXT
    status: int = 200  # answer this HTTP error instead
    error_message: str = "scripted error"
    delay: float = 0.0  # seconds before answering (cut short when the stand-in stops)
    match: str | None = None
    times: int | None = 1


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: str
    answer: Answer | None


class _Base:
    """A threaded HTTP server on 127.0.0.1 with a script of answers and a record of requests."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._script: list[Answer] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8", errors="replace") if length else ""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {}
                owner._handle(self, raw, body if isinstance(body, dict) else {})

            def do_GET(self) -> None:  # noqa: N802
                owner._send_json(self, 404, {"error": {"message": "not here"}})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def script(self, *answers: Answer) -> None:
        with self._lock:
            self._script.extend(answers)

    def seen(self, text: str) -> list[Seen]:
        """Requests whose body holds `text`."""
        with self._lock:
            return [r for r in self.requests if text in r.raw]

    def _take(self, raw: str) -> Answer | None:
        with self._lock:
            for answer in self._script:
                if answer.match is None or answer.match in raw:
                    if answer.times is not None:
                        answer.times -= 1
                        if answer.times <= 0:
                            self._script.remove(answer)
                    return answer
        return None

    def _handle(self, handler: BaseHTTPRequestHandler, raw: str, body: dict[str, Any]) -> None:
        answer = self._take(raw) if self._scripted(handler.path) else None
        with self._lock:
            self.requests.append(Seen(handler.path, dict(handler.headers), body, raw, answer))
        answer = answer or Answer()
        if answer.delay and self._stopping.wait(answer.delay):
            return
        try:
            self._answer(handler, answer, body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _scripted(self, path: str) -> bool:
        return True

    def _answer(self, handler: BaseHTTPRequestHandler, answer: Answer, body: dict[str, Any]) -> None:
        raise NotImplementedError

    @staticmethod
    def _send_json(handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _start_sse(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True


class ResponsesStandIn(_Base):
    """The OpenAI Responses API, as a Codex `model_providers` entry with wire_api = "responses"."""

    def _scripted(self, path: str) -> bool:
        return path.split("?", 1)[0].endswith("/responses")

    def _answer(self, handler: BaseHTTPRequestHandler, answer: Answer, body: dict[str, Any]) -> None:
        if not self._scripted(handler.path):
            self._send_json(handler, 404, {"error": {"message": f"no {handler.path} here"}})
            return
        if answer.status != 200:
            self._send_json(handler, answer.status, {"error": {"message": answer.error_message,
                                                               "type": "invalid_request_error", "code": None}})
            return
        self._start_sse(handler)
        rid, mid = f"resp_{uuid.uuid4().hex[:12]}", f"msg_{uuid.uuid4().hex[:12]}"

        def event(kind: str, data: dict[str, Any]) -> None:
            handler.wfile.write(f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode())
            handler.wfile.flush()

        event("response.created", {"response": {"id": rid}})
        item = {"type": "message", "id": mid, "role": "assistant", "status": "in_progress", "content": []}
        event("response.output_item.added", {"output_index": 0, "item": item})
        for start in range(0, len(answer.text), 8):
            event("response.output_text.delta", {"item_id": mid, "output_index": 0, "content_index": 0,
                                                 "delta": answer.text[start : start + 8]})
            time.sleep(0.01)
        done = {**item, "status": "completed", "content": [{"type": "output_text", "text": answer.text,
                                                           "annotations": []}]}
        event("response.output_item.done", {"output_index": 0, "item": done})
        event("response.completed", {"response": {"id": rid, "usage": {
            "input_tokens": 42, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 47}}})


class GeminiStandIn(_Base):
    """The Gemini API (`GOOGLE_GEMINI_BASE_URL`), answering streamGenerateContent with SSE."""

    def _scripted(self, path: str) -> bool:
        return ":streamGenerateContent" in path

    def _answer(self, handler: BaseHTTPRequestHandler, answer: Answer, body: dict[str, Any]) -> None:
        path = handler.path
        if answer.status != 200:
            status = {400: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL"}.get(answer.status, "UNKNOWN")
            self._send_json(handler, answer.status, {"error": {"code": answer.status, "message": answer.error_message,
                                                               "status": status}})
            return
        usage = {"promptTokenCount": 40, "candidatesTokenCount": 6, "totalTokenCount": 46}
        if ":countTokens" in path:
            self._send_json(handler, 200, {"totalTokens": 40})
            return
        if ":streamGenerateContent" not in path:
            self._send_json(handler, 200, {"candidates": [{"content": {"role": "model", "parts": [
                {"text": answer.text}]}, "finishReason": "STOP", "index": 0}], "usageMetadata": usage})
            return
        self._start_sse(handler)
        pieces = [answer.text[i : i + 8] for i in range(0, len(answer.text), 8)] or [""]
        for index, piece in enumerate(pieces):
            chunk: dict[str, Any] = {"candidates": [{"content": {"role": "model", "parts": [{"text": piece}]},
                                                     "index": 0}], "modelVersion": "standin"}
            if index == len(pieces) - 1:
                chunk["candidates"][0]["finishReason"] = "STOP"
                chunk["usageMetadata"] = usage
            handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            handler.wfile.flush()
            time.sleep(0.01)
