"""The one concurrency limiter every dispatch path shares.

First come, first served: a released slot goes straight to the oldest waiter, so a burst of
parallel items cannot starve an earlier single dispatch. The capacity follows
`settings.max_concurrency`, which is re-read on every call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio


class Limiter:
    """A FIFO counting semaphore whose capacity can change while it is in use."""

    def __init__(self, capacity: int) -> None:
        self._capacity = max(1, capacity)
        self._active = 0
        self._waiters: deque[anyio.Event] = deque()
        self.peak = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def set_capacity(self, capacity: int) -> None:
        """Change the limit; a larger one admits waiters at once, a smaller one takes effect as slots free."""
        self._capacity = max(1, capacity)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._active < self._capacity:
            event = self._waiters.popleft()
            self._active += 1  # the slot is handed to the waiter before it runs
            self.peak = max(self.peak, self._active)
            event.set()

    async def acquire(self) -> None:
        if self._active < self._capacity and not self._waiters:
            self._active += 1
            self.peak = max(self.peak, self._active)
            return
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                # Cancelled after the slot was handed over: give it back.
                self.release()
            else:
                self._waiters.remove(event)
            raise

    def release(self) -> None:
        self._active -= 1
        self._wake()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the body. The body must not return before its child process has exited."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()
