"""Finding and killing every process a run started, from this process or another one.

A run is identified by its main process (pid plus its start time from /proc/<pid>/stat, so a
recycled pid is never mistaken for it), its process group (the main process leads a new
session), and a random token in the environment of every descendant (so processes that moved
to another group or session, like GNU `timeout` or `setsid` children, are found too).
Signals go through a pidfd opened before the identity is re-checked: a process that exits and
whose pid is reused in between is never signalled. Linux-specific; elsewhere only the group is
signalled, and only while the caller knows it is still alive.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import select
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN_ENV = "AGENT_DISPATCH_RUN_TOKEN"  # noqa: S105 - an env var name, not a secret
# The same chain again, under a name that agent CLIs which strip secret-looking variables
# (*TOKEN*, *KEY*) from their shell tools' environment let through: any variable carrying the
# token marks a process as the run's.
MARK_ENV = "AGENT_DISPATCH_RUN"
TOKEN_RE = re.compile(r"[0-9a-f]{32}")
TOKEN_CHAIN_MAX = 16  # ancestors' tokens kept, so nested dispatches stay findable from the top
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL
KILL_WAIT = 2.0  # seconds to wait for SIGKILLed processes to disappear, per sweep
WINDOW_MAX_AGE = 5.0  # runs younger than this only scan pids allocated after the main process
_PROC = "/proc"


@dataclass(frozen=True)
class ProcStat:
    state: str
    pgid: int
    start: int  # clock ticks after boot


def read_stat(pid: int) -> ProcStat | None:
    """The state, process group and start time of `pid`, or None when it does not exist."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return ProcStat(fields[0].decode("ascii", "replace"), int(fields[2]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def read_environ(pid: int) -> bytes | None:
    try:
        with open(f"{_PROC}/{pid}/environ", "rb") as fh:
            return fh.read()
    except OSError:
        return None


@functools.lru_cache(maxsize=1)
def boot_id() -> str | None:
    """This boot's id: start times only compare within one boot."""
    try:
        with open(f"{_PROC}/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _last_pid() -> int | None:
    try:
        with open(f"{_PROC}/sys/kernel/ns_last_pid", "rb") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return None


def new_token() -> str:
    return secrets.token_hex(16)


def token_chain(token: str) -> str:
    """The value of TOKEN_ENV for a child: the inherited chain (bounded) plus `token`."""
    chain = os.environ.get(TOKEN_ENV) or os.environ.get(MARK_ENV, "")
    inherited = [t for t in chain.split(":") if TOKEN_RE.fullmatch(t)]
    return ":".join([*inherited[-(TOKEN_CHAIN_MAX - 1) :], token])


@dataclass(frozen=True)
class RunHandle:
    """What identifies a running agent CLI process, recorded so another process can find it."""

    pid: int
    start_time: int | None
    token: str
    boot_id: str | None = None
    started_at: float = 0.0  # epoch seconds
    output_path: Path | None = None
    error_path: Path | None = None
    runtime: str = "claude"  # the CLI that writes the output, so another process can read it

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "start_time": self.start_time,
            "token": self.token,
            "boot_id": self.boot_id,
            "started_at": self.started_at,
            "output_path": str(self.output_path) if self.output_path else None,
            "error_path": str(self.error_path) if self.error_path else None,
            "runtime": self.runtime,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RunHandle:
        """Rebuild a handle from `to_dict()` output; ValueError when anything is off."""
        if not isinstance(data, dict):
            raise ValueError("run info must be an object")
        pid, start, token = data.get("pid"), data.get("start_time"), data.get("token")
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 1:
            raise ValueError("run info has no valid pid")
        if start is not None and (isinstance(start, bool) or not isinstance(start, int) or start < 0):
            raise ValueError("run info has an invalid start_time")
        if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
            raise ValueError("run info has no valid token")
        paths = {}
        for key in ("output_path", "error_path"):
            value = data.get(key)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"run info has an invalid {key}")
            paths[key] = Path(value) if value else None
        boot = data.get("boot_id")
        started = data.get("started_at", 0.0)
        runtime = data.get("runtime")
        return cls(
            pid=pid,
            start_time=start,
            token=token,
            boot_id=boot if isinstance(boot, str) else None,
            started_at=float(started) if isinstance(started, (int, float)) and not isinstance(started, bool) else 0.0,
            runtime=runtime if isinstance(runtime, str) and runtime else "claude",
            **paths,
        )


def find_processes(handle: RunHandle, *, recent_only: bool = False) -> list[tuple[int, int]]:
    """(pid, start time) of every live process of the run: the main process, its group, token carriers.

    `recent_only` restricts the scan to pids allocated after the main process (cheap; used right
    after a short run); it falls back to a full scan when the pid counter wrapped around. Without
    a recorded start time (the main process was gone before it could be read) only token carriers
    count: a token cannot be recycled, a pid can.
    """
    if not os.path.isdir(_PROC):
        return []
    if recent_only:
        last = _last_pid()
        recent_only = last is not None and last >= handle.pid
    since = handle.start_time if handle.start_time is not None else 0
    main = read_stat(handle.pid)
    token = handle.token.encode()
    # The main process and its group count only while the main process is verifiably ours.
    main_ok = _is_main(handle, main, token)
    me = os.getpid()
    found = []
    for name in os.listdir(_PROC):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == me or (recent_only and pid < handle.pid):
            continue
        stat = main if pid == handle.pid else read_stat(pid)
        if stat is None or stat.state in ("Z", "X", "x") or stat.start < since:
            continue
        if main_ok and (pid == handle.pid or stat.pgid == handle.pid):
            ours = True
        else:
            environ = read_environ(pid)
            ours = environ is not None and token in environ
        if ours:
            found.append((pid, stat.start))
    return found


class TreeKiller:
    """Signals a run's processes, remembering each one by a pidfd until it is gone."""

    def __init__(self, handle: RunHandle, *, recent_only: bool = False, group_fallback: bool = False) -> None:
        self.handle = handle
        self.recent_only = recent_only
        # Without /proc the group is all we can reach; the caller vouches that it is still ours.
        self.group_fallback = group_fallback and not os.path.isdir(_PROC)
        self._targets: dict[tuple[int, int], int | None] = {}

    def sweep(self, sig: int) -> int:
        """Find the run's processes and send `sig` to each; the number signalled."""
        if self.group_fallback:
            try:
                os.killpg(self.handle.pid, sig)
                return 1
            except OSError:
                return 0
        sent = 0
        for key in find_processes(self.handle, recent_only=self.recent_only):
            if key not in self._targets:
                fd = _open_verified(*key)
                if fd is False:
                    continue
                self._targets[key] = fd  # type: ignore[assignment]
            if _send(key[0], self._targets[key], sig):
                sent += 1
            else:
                self._forget(key)
        return sent

    def alive(self) -> bool:
        """Whether any signalled process still runs (zombies count as gone)."""
        if self.group_fallback:
            try:
                os.killpg(self.handle.pid, 0)
                return True
            except OSError:
                return False
        polled = [fd for fd in self._targets.values() if fd is not None]
        exited: set[int] = set()
        if polled:
            poller = select.poll()
            for fd in polled:
                poller.register(fd, select.POLLIN)
            exited = {fd for fd, _ in poller.poll(0)}
        for key, fd in list(self._targets.items()):
            if fd is not None and fd in exited:
                self._forget(key)
            elif fd is None:
                stat = read_stat(key[0])
                if stat is None or stat.start != key[1] or stat.state in ("Z", "X", "x"):
                    self._forget(key)
        return bool(self._targets)

    def close(self) -> None:
        for key in list(self._targets):
            self._forget(key)

    def _forget(self, key: tuple[int, int]) -> None:
        fd = self._targets.pop(key, None)
        if fd is not None:
            os.close(fd)


def _open_verified(pid: int, start: int) -> int | None | bool:
    """A pidfd for `pid` if it is still the process that started at `start` (None: no pidfd support; False: gone)."""
    fd: int | None = None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except (AttributeError, OSError):
        fd = None
    stat = read_stat(pid)
    if stat is None or stat.start != start:
        if fd is not None:
            os.close(fd)
        return False
    return fd


def _send(pid: int, fd: int | None, sig: int) -> bool:
    try:
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_steps(killer: TreeKiller, grace: float = KILL_GRACE) -> Iterator[float]:
    """Kill the tree: SIGTERM, then SIGKILL after `grace` to whatever is left, until nothing is left.

    A generator of pauses (seconds) so that the same steps run blocking or on an event loop.
    """
    try:
        if not killer.sweep(signal.SIGTERM):
            return
        yield from _wait_gone(killer, grace)
        for _ in range(3):
            if not killer.sweep(signal.SIGKILL):
                return
            yield from _wait_gone(killer, KILL_WAIT)
    finally:
        killer.close()


def _wait_gone(killer: TreeKiller, limit: float) -> Iterator[float]:
    deadline = time.monotonic() + limit
    delay = 0.001
    while killer.alive() and time.monotonic() < deadline:
        yield delay
        delay = min(delay * 2, 0.05)


def run_processes(info: dict[str, Any]) -> list[int]:
    """Pids of every live process of a recorded run (empty when the info is not valid here)."""
    handle = _handle_here(info)
    return [pid for pid, _ in find_processes(handle)] if handle else []


def _handle_here(info: Any) -> RunHandle | None:
    try:
        handle = RunHandle.from_dict(info)
    except ValueError:
        return None
    current = boot_id()
    if handle.boot_id and current and handle.boot_id != current:
        return None  # start times from another boot mean nothing now
    return handle


def _is_main(handle: RunHandle, stat: ProcStat | None, token: bytes) -> bool:
    """Whether `stat` (of handle.pid) is the run's live main process: same start time, carrying the token.

    An unreadable environment (a non-dumpable process) leaves the start time as the proof.
    """
    if handle.start_time is None or stat is None or stat.state in ("Z", "X", "x") or stat.start != handle.start_time:
        return False
    environ = read_environ(handle.pid)
    return environ is None or token in environ


def run_alive(info: dict[str, Any]) -> bool:
    """Whether the main `claude` process of a recorded run (RunHandle.to_dict()) still runs.

    Safe against recycled pids: the start time and the token must both match. Works from any
    process of the same user. False for malformed info.
    """
    handle = _handle_here(info)
    return handle is not None and _is_main(handle, read_stat(handle.pid), handle.token.encode())


def kill_run(info: dict[str, Any], grace: float = KILL_GRACE) -> None:
    """Kill every process of a recorded run (its main process, group and token carriers) and wait.

    Blocks up to `grace` plus a moment (run it in a thread from async code). Malformed info or a
    run that is already gone is a no-op.
    """
    handle = _handle_here(info)
    if handle is None:
        return
    for pause in kill_steps(TreeKiller(handle), grace):
        time.sleep(pause)
