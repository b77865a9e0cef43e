"""The per-user concurrency limit: slot files locked with flock(2), shared by every process of the user.

Layout (inside the per-user runtime directory, 0o700):

    slots/<n>             one file per slot (n < max_concurrency_user); a holder keeps an
                          exclusive flock on it while its agent process runs
    slots/<n>.b[.b...]    the lend of a slot to the nested dispatches of the run holding it
    queue/<ns>-<pid>-<r>  one ticket per waiter, locked by it; the name orders the queue

No daemon: the kernel drops a lock when its holder exits, SIGKILL included, so a dead holder's
slot (or ticket) is free at the next poll of any waiter. Waiters poll with a short, widening
pause; the waiter k places behind the head of the queue takes a slot only when it sees more
than k free, so slots go roughly in arrival order and a waiter at the head is never overtaken.

A nested dispatch (depth > 0) knows the slot its caller's run holds (env AGENT_DISPATCH_SLOT).
It takes a free slot when there is one, without queueing, and otherwise runs on its caller's
slot: the caller is waiting for it anyway. One nested run at a time holds a lend, its own
children may borrow from it again, so a chain at the cap always completes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio

from agent_dispatch.files import tighten_dir

SLOT_ENV = "AGENT_DISPATCH_SLOT"
POLL = (0.005, 0.1)  # first and longest pause between looks at the slots
LIVENESS_EVERY = 0.25  # seconds between checks that the tickets ahead still have a living owner
_SLOT_RE = re.compile(r"\d{1,4}(?:\.b){0,32}")
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def parent_slot(value: str | None = None) -> str | None:
    """The slot the caller's run holds (from env AGENT_DISPATCH_SLOT), when it is well formed."""
    value = os.environ.get(SLOT_ENV, "") if value is None else value
    return value if _SLOT_RE.fullmatch(value or "") else None


@dataclass
class Held:
    """A slot held by this process: `name` is what a child run is told (env AGENT_DISPATCH_SLOT)."""

    name: str
    fd: int
    borrowed: bool = False

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)  # closing drops the flock
            self.fd = -1


def _ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def _try_lock(path: Path, kind: int = fcntl.LOCK_EX) -> int | None:
    """An fd holding a non-blocking flock on `path`, or None when someone else holds it."""
    try:
        fd = os.open(path, _FLAGS, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
        return fd
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise


class UserSlots:
    """The slots of one runtime directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.slots = self.directory / "slots"
        self.queue = self.directory / "queue"
        self._ready = False

    def _prepare(self) -> None:
        if not self._ready:
            _ensure_private_dir(self.directory)
            tighten_dir(self.directory)
            _ensure_private_dir(self.slots)
            _ensure_private_dir(self.queue)
            self._ready = True

    # -- probing -----------------------------------------------------------------------------------

    def _take_free(self, cap: int, need: int = 1) -> Held | None:
        """Lock the `need`-th free slot seen (earlier free ones are left for those ahead)."""
        seen = 0
        for index in range(cap):
            fd = _try_lock(self.slots / str(index))
            if fd is None:
                continue
            seen += 1
            if seen >= need:
                return Held(str(index), fd)
            os.close(fd)
        return None

    def holders(self, cap: int) -> int:
        """How many of the first `cap` slots are held right now (a probe; for tests and `ps`)."""
        busy = 0
        for index in range(cap):
            fd = _try_lock(self.slots / str(index), fcntl.LOCK_SH)
            if fd is None:
                busy += 1
            else:
                os.close(fd)
        return busy

    def _live_tickets_ahead(self, mine: str) -> int:
        ahead = 0
        try:
            names = sorted(os.listdir(self.queue))
        except OSError:
            return 0
        for name in names:
            if name >= mine:
                break
            if name.startswith("."):
                continue
            fd = _try_lock(self.queue / name, fcntl.LOCK_SH)
            if fd is None:
                ahead += 1  # its owner holds it: alive
                continue
            with contextlib.suppress(OSError):  # its owner died: the ticket is garbage
                os.unlink(self.queue / name)
            os.close(fd)
        return ahead

    def _enqueue(self) -> tuple[str, int]:
        stamp = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging = self.queue / f".new-{stamp}"
        fd = os.open(staging, _FLAGS | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # locked before it is visible: a ticket seen unlocked is dead
        os.rename(staging, self.queue / stamp)
        return stamp, fd

    def _dequeue(self, stamp: str, fd: int) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.queue / stamp)
        with contextlib.suppress(OSError):
            os.close(fd)

    # -- acquiring ---------------------------------------------------------------------------------

    async def acquire(self, cap: int, *, depth: int = 0, parent: str | None = None) -> Held:
        """Wait for a slot (cancellable). See the module docstring for the order and for nesting."""
        self._prepare()
        cap = max(1, cap)
        if depth > 0 and parent is not None:
            return await self._acquire_nested(cap, parent)
        if not self._queue_busy():
            held = self._take_free(cap)
            if held is not None:
                return held
        stamp, ticket = self._enqueue()
        try:
            pause = POLL[0]
            ahead = self._live_tickets_ahead(stamp)
            checked = time.monotonic()
            while True:
                held = self._take_free(cap, need=ahead + 1)
                if held is not None:
                    return held
                await anyio.sleep(pause)
                pause = min(pause * 1.5, POLL[1])
                if ahead and time.monotonic() - checked >= LIVENESS_EVERY:
                    ahead = self._live_tickets_ahead(stamp)
                    checked = time.monotonic()
        finally:
            self._dequeue(stamp, ticket)

    async def _acquire_nested(self, cap: int, parent: str) -> Held:
        lend = self.slots / f"{parent}.b"
        pause = POLL[0]
        while True:
            held = self._take_free(cap)
            if held is not None:
                return held
            fd = _try_lock(lend)
            if fd is not None:
                return Held(f"{parent}.b", fd, borrowed=True)
            await anyio.sleep(pause)
            pause = min(pause * 1.5, POLL[1])

    def _queue_busy(self) -> bool:
        try:
            with os.scandir(self.queue) as entries:
                return any(not entry.name.startswith(".") for entry in entries)
        except OSError:
            return False

    @contextlib.asynccontextmanager
    async def slot(self, cap: int, *, depth: int = 0, parent: str | None = None) -> AsyncIterator[Held]:
        """Hold a slot for the body; it is released when the body ends, however it ends."""
        held = await self.acquire(cap, depth=depth, parent=parent)
        try:
            yield held
        finally:
            held.release()
