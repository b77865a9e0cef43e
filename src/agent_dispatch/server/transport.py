"""Our stdio transport: the SDK's `mcp.server.stdio.stdio_server`, with two differences users notice.

1. Every line gets an answer. The SDK's reader turns a line it cannot validate into an exception
   on the read stream, which the server only logs (`JSONRPCDispatcher._dispatch`): the caller
   waited forever. A lone-surrogate escape such as "\\ud800", which pydantic's JSON parser
   refuses, was enough. Here such a line is answered with a JSON-RPC error that carries the
   request's id whenever one can be read (Python's json module reads lone surrogates), else
   `id: null`, as JSON-RPC 2.0 asks; an invalid notification (no id) is only logged.
2. A long answer is written in pieces. The SDK dumps each message to a str, appends "\\n" (a
   copy) and encodes it (another), so a 30 MB answer, which the message holds twice (text and
   structured content), cost three more copies of 60 MB at once. Here a message with a long
   string is encoded slice by slice straight to the descriptor; others are dumped to bytes once.

Like the SDK's, it serves the wire from private duplicates of fd 0 and fd 1 and points those at
/dev/null and stderr meanwhile, so a handler or a child reading stdin gets EOF and stray output
misses the wire. Bytes that are not UTF-8 are replaced, as the SDK does, before giving up on a line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from json.encoder import encode_basestring as _encode_str  # type: ignore[attr-defined]
from typing import Any

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.mcpserver import MCPServer
from mcp.shared.message import SessionMessage

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 16
LONG_STRING = 1 << 16  # a message holding a longer string is written in pieces
WRITE_SIZE = 1 << 20  # bytes gathered per write(2) when writing in pieces


async def run_stdio(server: MCPServer) -> None:
    """Serve `server` over this process's stdin and stdout until stdin closes."""
    lowlevel = server._lowlevel_server  # what the SDK's run_stdio_async hands its own transport
    async with stdio_streams() as (read_stream, write_stream):
        await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())


@contextlib.asynccontextmanager
async def stdio_streams() -> AsyncIterator[tuple[MemoryObjectReceiveStream[Any], MemoryObjectSendStream[Any]]]:
    """(read stream, write stream) over the claimed stdin and stdout; both fds restored on exit."""
    wire_in = _claim(0, os.O_RDONLY, os.devnull)
    try:
        wire_out = _claim(1, os.O_WRONLY, None)
    except OSError:
        _release(0, wire_in)
        raise
    read_send, read_receive = anyio.create_memory_object_stream[Any](0)
    write_send, write_receive = anyio.create_memory_object_stream[SessionMessage](0)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read, wire_in, read_send, write_send.clone())
            tg.start_soon(_write, wire_out, write_receive)
            yield read_receive, write_send
            tg.cancel_scope.cancel()  # the server is done: a reader blocked on stdin is abandoned
    finally:
        _release(1, wire_out)
        _release(0, wire_in)


# -- the wire descriptors -------------------------------------------------------------------------


def _claim(fd: int, flags: int, diversion: str | None) -> int:
    """A private duplicate of `fd` (above the standard range); `fd` itself now points elsewhere."""
    private = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    try:
        other = os.open(diversion, flags) if diversion else os.dup(2)
        try:
            os.dup2(other, fd)
        finally:
            os.close(other)
    except OSError:
        pass  # left as it is: the wire keeps working, only the protection is lost
    return private


def _release(fd: int, private: int) -> None:
    with contextlib.suppress(OSError):
        os.dup2(private, fd)
    # `private` stays open: a reader thread abandoned on it must never see the number reused.


# -- reading ------------------------------------------------------------------------------------------


async def _read(fd: int, messages: MemoryObjectSendStream[Any], answers: MemoryObjectSendStream[Any]) -> None:
    lines = _Lines(fd)
    async with messages, answers:
        while True:
            line = await anyio.to_thread.run_sync(lines.next, abandon_on_cancel=True)
            if line is None:
                return
            if not line.strip():
                continue
            message = _parse(line)
            try:
                if message is not None:
                    await messages.send(SessionMessage(message))
                    continue
                refusal = refuse(line)
                if refusal is not None:
                    await answers.send(SessionMessage(refusal))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return


class _Lines:
    """Lines of a raw descriptor, read in large chunks (one copy of a long line, no text layer)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._eof = False

    def next(self) -> bytes | None:
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                with memoryview(self._buffer) as view:
                    line = bytes(view[:end])  # one copy; slicing the bytearray would make two
                del self._buffer[: end + 1]
                return line
            if self._eof:
                if not self._buffer:
                    return None
                line = bytes(self._buffer)
                self._buffer.clear()
                return line
            start = len(self._buffer)
            chunk = os.read(self._fd, max(READ_CHUNK, len(self._buffer)))
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True


def _parse(line: bytes) -> Any:
    """The message on a line, or None when it is not one (then `refuse` says why)."""
    try:
        return types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValueError:
        pass
    try:
        line.decode("utf-8")
        return None  # proper UTF-8: the message itself is wrong
    except UnicodeDecodeError:
        pass
    try:  # bytes that are not UTF-8 are replaced, as the SDK does, rather than costing the request
        return types.jsonrpc_message_adapter.validate_json(line.decode("utf-8", "replace"), by_name=False)
    except ValueError:
        return None


def refuse(line: bytes) -> types.JSONRPCError | None:
    """The JSON-RPC error answering a line that is not a valid message; None for a notification."""
    try:
        value = json.loads(line.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        log.warning("answering a line that is not JSON with a parse error")
        return _error(None, types.PARSE_ERROR, "Parse error: the line is not valid JSON.")
    if isinstance(value, list):
        return _error(None, types.INVALID_REQUEST, "Invalid request: JSON-RPC batches are not supported.")
    if not isinstance(value, dict):
        return _error(None, types.INVALID_REQUEST, "Invalid request: a message must be a JSON object.")
    if "id" not in value and isinstance(value.get("method"), str):
        log.warning("dropping an invalid notification %r", value["method"][:100])
        return None
    if _has_lone_surrogate(value):
        message = ("Invalid request: the message holds a lone surrogate escape (such as \\ud800), which is not "
                   "Unicode text; escape characters outside the BMP as surrogate pairs, or send them as UTF-8.")
    else:
        message = "Invalid request: not a JSON-RPC 2.0 request, notification or response."
    return _error(_answerable_id(value.get("id")), types.INVALID_REQUEST, message)


def _error(request_id: Any, code: int, message: str) -> types.JSONRPCError:
    return types.JSONRPCError(jsonrpc="2.0", id=request_id, error=types.ErrorData(code=code, message=message))


def _answerable_id(value: Any) -> int | str | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    if isinstance(value, str) and _has_lone_surrogate(value):
        return None  # it could not be written back as UTF-8
    return value


def _has_lone_surrogate(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if depth > 100:
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k, depth + 1) or _has_lone_surrogate(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item, depth + 1) for item in value)
    return False


# -- writing --------------------------------------------------------------------------------------------


async def _write(fd: int, messages: MemoryObjectReceiveStream[SessionMessage]) -> None:
    async with messages:
        while True:
            try:
                message = (await messages.receive()).message
            except anyio.EndOfStream:
                return
            try:
                await anyio.to_thread.run_sync(_send, fd, message)
            except OSError:
                return  # the client closed its end: nobody is left to answer
            del message  # not kept until the next message arrives


def _send(fd: int, message: Any) -> None:
    """Write one message and its newline (in a worker thread: a slow reader must not block the loop)."""
    if isinstance(message, types.JSONRPCResponse) and _has_long_string(message.result):
        _write_pieces(fd, {"jsonrpc": "2.0", "id": message.id, "result": message.result})
        return
    data = _dump(message)
    if data is not None:
        _write_all(fd, data)
        _write_all(fd, b"\n")


def _dump(message: Any) -> bytes | None:
    try:
        return types.jsonrpc_message_adapter.dump_json(message, by_alias=True, exclude_unset=True)
    except (ValueError, TypeError) as exc:  # e.g. a lone surrogate in an answer: answer the request anyway
        request_id = getattr(message, "id", None)
        log.error("cannot serialize a message: %s", exc)
        if request_id is None or isinstance(message, types.JSONRPCRequest):
            return None
        error = _error(request_id, types.INTERNAL_ERROR, f"the answer could not be encoded as JSON: {exc}"[:300])
        return types.jsonrpc_message_adapter.dump_json(error, by_alias=True, exclude_unset=True)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    with memoryview(data) as view:
        while view:
            view = view[os.write(fd, view):]


def _has_long_string(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return len(value) > LONG_STRING
    if depth > 50:
        return False
    if isinstance(value, dict):
        return any(_has_long_string(item, depth + 1) for item in value.values())
    if isinstance(value, list):
        return any(_has_long_string(item, depth + 1) for item in value)
    return False


def _write_pieces(fd: int, value: Any) -> None:
    """`value` as compact JSON and a newline, gathered into writes of about WRITE_SIZE bytes."""
    buffer = bytearray()
    for piece in _pieces(value):
        buffer += piece.encode("utf-8", "replace")
        if len(buffer) >= WRITE_SIZE:
            _write_all(fd, buffer)
            buffer.clear()
    buffer += b"\n"
    _write_all(fd, buffer)


def _pieces(value: Any) -> Iterator[str]:
    """JSON text of a message (already plain JSON data) in pieces; a long string is escaped a slice
    at a time, so no copy of it is ever made whole."""
    if isinstance(value, str):
        if len(value) <= LONG_STRING:
            yield _encode_str(value)
            return
        yield '"'
        for at in range(0, len(value), LONG_STRING):
            yield _encode_str(value[at : at + LONG_STRING])[1:-1]
        yield '"'
    elif isinstance(value, dict):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield ("," if index else "") + _encode_str(str(key)) + ":"
            yield from _pieces(item)
        yield "}"
    elif isinstance(value, (list, tuple)):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ","
            yield from _pieces(item)
        yield "]"
    else:
        yield json.dumps(value, default=str)
