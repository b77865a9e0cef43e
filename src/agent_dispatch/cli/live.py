"""A live status line for a dispatch run from a terminal: elapsed time and the agent's latest
activity, redrawn in place on stderr every second, so a long or retrying run is never silent.

Only plain text and carriage returns are written (no escape sequences), and the line is wiped
before anything else is printed.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from typing import IO, TypeVar

import anyio

T = TypeVar("T")
ProgressFn = Callable[[str], Awaitable[None]]


def wanted(stream: IO[str] | None = None) -> bool:
    """Whether `stream` (stderr by default) is a terminal a person watches."""
    stream = stream if stream is not None else sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


class StatusLine:
    """`label  12s  latest activity`, kept to one terminal row."""

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()
        self.latest = "starting the agent's CLI"
        self._drawn = 0

    def update(self, message: str) -> None:
        text = " ".join("".join(ch if ch.isprintable() else " " for ch in message).split())
        if text:
            self.latest = text
        self.draw()

    def draw(self) -> None:
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        line = f"{self.label}  {int(time.monotonic() - self.started)}s  {self.latest}"
        if len(line) > width:
            line = line[: width - 1] + "…"
        self._write("\r" + line.ljust(self._drawn))
        self._drawn = len(line)

    def clear(self) -> None:
        if self._drawn:
            self._write("\r" + " " * self._drawn + "\r")
            self._drawn = 0

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not fail the run


async def run_with_status(label: str, work: Callable[[ProgressFn], Awaitable[T]],
                          stream: IO[str] | None = None) -> T:
    """Run `work(progress)` while a StatusLine shows its progress; the line is wiped at the end."""
    status = StatusLine(label, stream)

    async def progress(message: str) -> None:
        status.update(message)

    async def tick() -> None:
        while True:
            status.draw()
            await anyio.sleep(1)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(tick)
            try:
                return await work(progress)
            finally:
                group.cancel_scope.cancel()
    finally:
        status.clear()
