"""The running registry: what every agent-dispatch process of the user is running now.

Inside the per-user runtime directory:

    running/<id>.json    the entry (agent, tool, server_pid, started_at, caller?, job_id?,
                         last_progress?), replaced atomically when the progress changes
    running/<id>.lock    locked (flock) by the process running it for as long as it runs

An entry whose lock nobody holds belongs to a process that died (SIGKILL included): readers
skip it and remove both files, so a dead server's entries never show.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from agent_dispatch.files import tighten_dir

PROGRESS_EVERY = 1.0  # seconds between progress writes of one entry
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class Entry:
    """One running dispatch, registered until `close()`."""

    def __init__(self, registry: Registry, entry_id: str, data: dict[str, Any], lock_fd: int) -> None:
        self.registry = registry
        self.id = entry_id
        self.data = data
        self._lock_fd = lock_fd
        self._written = time.monotonic() - PROGRESS_EVERY  # the first progress is written at once
        self._pending: str | None = None
        self._timer: asyncio.TimerHandle | None = None

    def progress(self, text: str) -> None:
        """Note the latest progress; written at most once per PROGRESS_EVERY, and the last one
        of a burst no later than that (an agent that goes quiet still shows what it said last).
        Never raises."""
        if not text:
            return
        self._pending = text[:200]
        wait = PROGRESS_EVERY - (time.monotonic() - self._written)
        if wait <= 0:
            self._flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(wait, self._flush)
            except RuntimeError:  # no event loop here: the next progress writes it
                pass

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending is None or self._lock_fd < 0:
            return
        self.data["last_progress"] = self._pending
        self._pending = None
        self._written = time.monotonic()
        with contextlib.suppress(OSError):
            self.registry._write(self.id, self.data)  # noqa: SLF001

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for suffix in (".json", ".lock"):
            with contextlib.suppress(OSError):
                os.unlink(self.registry.directory / f"{self.id}{suffix}")
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = -1


class Registry:
    """The `running/` directory of one runtime directory."""

    def __init__(self, runtime_dir: Path) -> None:
        self.root = Path(runtime_dir)
        self.directory = self.root / "running"
        self._ready = False

    def _prepare(self) -> None:
        if not self._ready:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            tighten_dir(self.root)
            self.directory.mkdir(exist_ok=True, mode=0o700)
            self._ready = True

    def register(self, **fields: Any) -> Entry | None:
        """Add an entry for a run starting now; None when the directory cannot be written."""
        try:
            self._prepare()
            entry_id = uuid.uuid4().hex
            fd = os.open(self.directory / f"{entry_id}.lock", _FLAGS | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            data = {"agent": fields.pop("agent"), "tool": fields.pop("tool"), "server_pid": os.getpid(),
                    "started_at": round(time.time(), 3)}
            data.update({key: value for key, value in fields.items() if value not in (None, "")})
            self._write(entry_id, data)
            return Entry(self, entry_id, data, fd)
        except OSError:
            return None

    def _write(self, entry_id: str, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.directory / f"{entry_id}.json")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def running(self) -> list[dict[str, Any]]:
        """Every live entry, oldest first; entries of dead processes are removed on the way."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        out = []
        for name in names:
            if not name.endswith(".json") or name.startswith("."):
                continue
            entry_id = name[:-5]
            if not self._alive(entry_id):
                for suffix in (".json", ".lock"):
                    with contextlib.suppress(OSError):
                        os.unlink(self.directory / f"{entry_id}{suffix}")
                continue
            try:
                with open(self.directory / name, encoding="utf-8") as fh:
                    data = json.load(fh)
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                out.append(data)
        return sorted(out, key=lambda item: item.get("started_at") or 0)

    def _alive(self, entry_id: str) -> bool:
        try:
            fd = os.open(self.directory / f"{entry_id}.lock", os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False  # nobody holds it: the process that ran it is gone
        except OSError:
            return True
        finally:
            os.close(fd)
