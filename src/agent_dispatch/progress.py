"""Live progress of a running dispatch: what the agent is doing, throttled, with heartbeats.

Every dispatch path offers its stream events to a `LiveProgress`; the front door gives it a
`send(count, message)` callable (for the MCP server, a progress notification on the caller's
token). A message names the agent's turn and its latest tool use or a head of its latest text.
While the agent is silent a heartbeat goes out every `heartbeat` seconds, so a client's idle
watchdog sees the call alive. `mute()` stops all sending for good (a task handle went out).
Knows nothing of MCP.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

SendFn = Callable[[int, str], Awaitable[None]]

THROTTLE = 0.5  # seconds between two progress messages at most once
HEARTBEAT = 5.0  # seconds of silence before a heartbeat (Claude Code's watchdog wants one at least every 10 s)
MESSAGE_MAX = 300
UNSENT_KEPT = 4  # events between two messages: a burst shows its newest few, joined


class Narrator:
    """Keeps the agent's turn count and its newest event; describes it only when asked (a busy
    stream offers tens of thousands of events per second, of which a few are shown)."""

    def __init__(self) -> None:
        self._turns: dict[str, int] = {}
        self._after_tool: dict[str, bool] = {}
        self._event: Any = None
        self._source = ""
        self._line: str | None = ""
        self._unsent: list[tuple[Any, str, int]] = []  # since the last `take`, newest few

    def offer(self, event: Any, source: str = "") -> bool:
        """Note one event; True when it is something to show."""
        kind = getattr(event, "kind", None)
        if kind in ("text", "tool_use"):
            if self._turns.get(source, 0) == 0 or self._after_tool.get(source):
                self._turns[source] = self._turns.get(source, 0) + 1
            self._after_tool[source] = kind == "tool_use"
        if kind is None and not event:
            return False
        self._event, self._source, self._line = event, source, None
        self._unsent.append((event, source, self._turns.get(source, 0)))
        del self._unsent[:-UNSENT_KEPT]
        return True

    @property
    def latest(self) -> str:
        """The newest thing the agent did: "[agent: ]turn N: what", or "" before anything happened."""
        if self._line is None:
            self._line = _line(self._event, self._source, self._turns.get(self._source, 0))
        return self._line

    def take(self) -> str:
        """What happened since the last take (its newest few events joined), then forget it."""
        lines = [_line(event, source, turn) for event, source, turn in self._unsent]
        self._unsent.clear()
        return " | ".join(line for line in lines if line)


def _line(event: Any, source: str, turn: int) -> str:
    describe = getattr(event, "describe", None)
    text = describe(200) if callable(describe) else str(event or "")
    head = f"{source}: " if source else ""
    return (f"{head}turn {turn}: {text}" if turn else f"{head}{text}") if text else ""


class LiveProgress:
    """Turns stream events into throttled progress messages plus heartbeats for one waiting caller."""

    def __init__(self, send: SendFn, *, interval: float = THROTTLE, heartbeat: float = HEARTBEAT) -> None:
        self._send = send
        self._interval = interval
        self._heartbeat = heartbeat
        self._started = time.monotonic()
        self._changed = anyio.Event()
        self._fresh = False
        self._muted = False
        self._count = 0
        self.narrator = Narrator()

    def offer(self, event: Any, source: str = "") -> None:
        """Note one stream event (called on the event loop, often; cheap). `source` names the agent
        when several run under one call."""
        if self.narrator.offer(event, source):
            self._fresh = True
            if not self._changed.is_set():
                self._changed.set()

    def mute(self) -> None:
        """Never send again (the caller's token must not be used after a task handle)."""
        self._muted = True

    async def run(self) -> None:
        """Send until cancelled: news at most every `interval`, a heartbeat after `heartbeat` s of silence."""
        while not self._muted:
            with anyio.move_on_after(self._heartbeat):
                await self._changed.wait()
            self._changed = anyio.Event()
            await self.flush(heartbeat=True)
            await anyio.sleep(self._interval)

    async def flush(self, *, heartbeat: bool = False) -> None:
        """Send the newest message now if there is news (or, with `heartbeat`, a still-working line)."""
        if self._muted:
            return
        news = self.narrator.take() if self._fresh else ""
        latest = self.narrator.latest
        if news:
            message = news
        elif heartbeat:
            elapsed = int(time.monotonic() - self._started)
            message = f"still working ({elapsed} s)" + (f"; last: {latest}" if latest else "")
        else:
            return
        self._fresh = False
        if len(message) > MESSAGE_MAX:
            message = "…" + message[-(MESSAGE_MAX - 1):]  # the newest part matters most
        self._count += 1
        try:
            await self._send(self._count, message)
        except Exception:  # noqa: BLE001, S110 - a client that stopped listening must not fail the run
            pass


class Throttled:
    """Sends progress at most once per `interval`; messages that arrive in between are joined, not dropped."""

    JOINED_MAX = 300

    def __init__(self, send: Callable[[str], Awaitable[None]], interval: float) -> None:
        self._send = send
        self._interval = interval
        self._pending: list[Any] = []
        self._changed = anyio.Event()

    def offer(self, item: Any) -> None:
        """Queue a message or a stream event; an event is described only if it is sent (a busy
        stream offers tens of thousands per second, of which a few are sent)."""
        if item:
            self._pending.append(item)
            del self._pending[:-4]  # a burst keeps only its newest few
            if not self._changed.is_set():
                self._changed.set()

    async def flush(self) -> None:
        if not self._pending:
            return
        texts = [item if isinstance(item, str) else describe_event(item) for item in self._pending]
        self._pending.clear()
        message = " | ".join(text for text in texts if text)
        if not message:
            return
        if len(message) > self.JOINED_MAX:
            message = "…" + message[-(self.JOINED_MAX - 1):]
        try:
            await self._send(message)
        except Exception:  # noqa: BLE001, S110 - a client that stopped listening must not fail the run
            pass

    async def pump(self) -> None:
        while True:
            await self._changed.wait()
            self._changed = anyio.Event()
            await self.flush()
            await anyio.sleep(self._interval)


def describe_event(event: Any) -> str | None:
    """One line for a progress notification: the agent's latest text or tool use."""
    describe = getattr(event, "describe", None)
    text = describe(300) if callable(describe) else getattr(event, "text", "")
    return text or None
