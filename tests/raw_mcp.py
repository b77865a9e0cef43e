"""A small raw JSON-RPC client speaking MCP 2026-07-28 to the installed `agent-dispatch serve`.

It declares (or not) the tasks extension per request the way interactive Claude Code (or
`claude -p`) does, and records every notification with its arrival time, so tests can see
task handles, `tasks/*` answers and progress exactly as they go over stdio.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process

SERVER = str(Path(sys.executable).parent / "agent-dispatch")
TASKS = "io.modelcontextprotocol/tasks"
VERSION = "2026-07-28"


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.code = error.get("code")
        self.error = error


@dataclass
class RawClient:
    proc: Process
    tasks: bool = True
    notifications: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    _next: int = 0
    _waiting: dict[int, Any] = field(default_factory=dict)
    _answers: dict[int, dict[str, Any]] = field(default_factory=dict)

    def meta(self, tasks: bool | None = None, progress: Any = None) -> dict[str, Any]:
        declared = self.tasks if tasks is None else tasks
        caps: dict[str, Any] = {"elicitation": {"form": {}}, "roots": {}}
        if declared:
            caps["extensions"] = {TASKS: {}}
        meta = {
            "io.modelcontextprotocol/protocolVersion": VERSION,
            "io.modelcontextprotocol/clientInfo": {"name": "raw-test-client", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": caps,
        }
        if progress is not None:
            meta["progressToken"] = progress
        return meta

    async def request(
        self, method: str, params: dict[str, Any] | None = None, *, tasks: bool | None = None,
        progress: Any = None, timeout: float = 60,
    ) -> dict[str, Any]:
        """Send a request and return its result (RpcError for an error answer)."""
        self._next += 1
        rid = self._next
        body = dict(params or {})
        body["_meta"] = self.meta(tasks, progress)
        event = anyio.Event()
        self._waiting[rid] = event
        line = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": body}) + "\n"
        await self.proc.stdin.send(line.encode())
        with anyio.fail_after(timeout):
            await event.wait()
        message = self._answers.pop(rid)
        if "error" in message:
            raise RpcError(message["error"])
        return message["result"]

    async def call(self, tool: str, arguments: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return await self.request("tools/call", {"name": tool, "arguments": arguments}, **kwargs)

    def progress_for(self, token: Any) -> list[tuple[float, dict[str, Any]]]:
        return [
            (at, n["params"]) for at, n in self.notifications
            if n.get("method") == "notifications/progress" and n["params"].get("progressToken") == token
        ]

    async def _read(self) -> None:
        buffer = b""
        async for chunk in self.proc.stdout:
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if not line.strip():
                    continue
                message = json.loads(line)
                if "id" in message and ("result" in message or "error" in message):
                    self._answers[message["id"]] = message
                    event = self._waiting.pop(message["id"], None)
                    if event is not None:
                        event.set()
                else:
                    self.notifications.append((time.monotonic(), message))


def tool_json(result: dict[str, Any]) -> Any:
    """The JSON a tool answered (a CallToolResult, inline or inside a completed task)."""
    value = json.loads(result["content"][0]["text"])
    if "structuredContent" in result:
        assert result["structuredContent"] == value
    return value


@asynccontextmanager
async def raw_server(*, tasks: bool = True, **env: str):
    """Start `agent-dispatch serve` and talk to it; the server is killed (SIGKILL) on the way out."""
    proc = await anyio.open_process([SERVER, "serve"], env={**os.environ, **env}, stderr=None)
    client = RawClient(proc, tasks=tasks)
    async with anyio.create_task_group() as tg:
        tg.start_soon(client._read)
        try:
            await client.request("server/discover")
            yield client
        finally:
            tg.cancel_scope.cancel()
            if proc.returncode is None:
                proc.kill()
            with anyio.CancelScope(shield=True):
                await proc.wait()
