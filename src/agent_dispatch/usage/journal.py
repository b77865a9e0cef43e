"""The usage journal: one JSON line per dispatch, shared by every server and CLI of the user.

Files (beside the config unless env AGENT_DISPATCH_USAGE_LOG names the journal):

    usage.jsonl            the live journal, 0o600; every record is ONE O_APPEND write(2)
    usage.jsonl.1          the previous generation, kept raw after a rotation
    usage.jsonl.summary    daily aggregates of everything read so far (see `summary`)

Writers take a shared flock(2) on the journal for the one write, and check that the path still
names the file they opened; the rotator takes the exclusive lock, folds the last lines into the
summary and renames the journal to `.1` (dropping the older `.1`, already folded). So a line is
never torn, never lost, and never lands in a file that nobody reads again.

Nothing here raises into a dispatch: `append` logs and returns on any error.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ROTATE_BYTES = 16 * 1024 * 1024  # the live journal is rotated once it passes this size
SUMMARY_EVERY = 256 * 1024  # journal bytes after which the summary file is brought up to date
RECORD_MAX = 3500  # bytes per line: far below a page, so one write(2) is one piece
TEXT_MAX = 120  # caller and other free text kept per record
LOCK_WAIT = 2.0  # seconds a writer waits for a rotation before writing without the lock
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

# Record keys, in the order they are written (the contract's names; more may be added, none renamed).
KEYS = (
    "ts", "agent", "tool", "success", "cached", "cost_usd", "saved_usd", "duration_ms", "num_turns",
    "error_type", "outcome", "budget_exceeded", "refused", "caller", "session_id", "job_id", "runtime",
    "host", "depth", "clarification", "usage",
)


def previous_path(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def summary_path(path: Path) -> Path:
    return path.with_name(path.name + ".summary")


def encode(record: dict[str, Any]) -> bytes:
    """One journal line: compact JSON in KEYS order, None values dropped, free text cut short."""
    out: dict[str, Any] = {}
    for key in KEYS:
        value = record.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, str) and len(value) > TEXT_MAX:
            value = value[:TEXT_MAX]
        out[key] = value
    for key, value in record.items():  # fields added by other features keep their place at the end
        if key not in out and key not in KEYS and value is not None:
            out[key] = value[:TEXT_MAX] if isinstance(value, str) else value
    line = json.dumps(out, ensure_ascii=True, separators=(",", ":"), default=str)
    if len(line) >= RECORD_MAX:  # never reached with the fields above; keep the line whole anyway
        line = json.dumps({k: out[k] for k in out if k in KEYS[:12]}, separators=(",", ":"), default=str)
    return line.encode("ascii") + b"\n"


def _ensure_dir(directory: Path) -> None:
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)


class Journal:
    """Appending to, rotating and reading one usage journal."""

    def __init__(self, path: Path, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.path = Path(path)
        self.rotate_bytes = rotate_bytes

    # -- writing ---------------------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> str:
        """Write one record. Returns "rotate" when the journal is now past its size, "summary" when
        this line crossed a SUMMARY_EVERY mark (the summary file is due a catch-up), else "".
        Never raises."""
        try:
            return self._append(encode(record))
        except Exception as exc:  # noqa: BLE001 - a journal problem must never fail a dispatch
            log.warning("cannot write the usage journal %s: %s", self.path, exc)
            return ""

    def _append(self, line: bytes) -> str:
        for _ in range(5):
            fd = self._open_for_append()
            try:
                locked = _lock(fd, fcntl.LOCK_SH, LOCK_WAIT)
                st = os.fstat(fd)
                if locked and not _same_file(self.path, st):
                    continue  # rotated between open and lock: write to the new journal
                os.write(fd, line)
                end = st.st_size + len(line)
                if end > self.rotate_bytes:
                    return "rotate"
                return "summary" if end // SUMMARY_EVERY != st.st_size // SUMMARY_EVERY else ""
            finally:
                os.close(fd)
        return ""

    def _open_for_append(self) -> int:
        _ensure_dir(self.path.parent)
        fd = os.open(self.path, _OPEN_FLAGS, 0o600)
        try:
            st = os.fstat(fd)
            if st.st_mode & 0o077 and st.st_uid == os.geteuid():
                os.fchmod(fd, 0o600)
        except OSError:
            pass
        return fd

    def rotate(self, fold: Any = None) -> bool:
        """Rename the journal to `.1` if it is past the size, calling `fold()` under the exclusive
        lock first so the summary has read every line of the generation about to be dropped."""
        try:
            fd = os.open(self.path, _READ_FLAGS)
        except OSError:
            return False
        try:
            if not _lock(fd, fcntl.LOCK_EX, LOCK_WAIT * 5):
                return False
            st = os.fstat(fd)
            if not _same_file(self.path, st) or st.st_size <= self.rotate_bytes:
                return False  # someone else rotated it already
            if fold is not None:
                fold()
            os.replace(self.path, previous_path(self.path))
            return True
        except OSError as exc:
            log.warning("cannot rotate the usage journal %s: %s", self.path, exc)
            return False
        finally:
            os.close(fd)

    # -- reading ---------------------------------------------------------------------------------

    def generations(self) -> list[tuple[Path, os.stat_result]]:
        """The journal files that exist, oldest first: `.1`, then the live one."""
        found = []
        for path in (previous_path(self.path), self.path):
            try:
                found.append((path, os.stat(path)))
            except OSError:
                continue
        return found


def read_records(path: Path, offset: int = 0, end: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """The whole lines from byte `offset` (to `end`), parsed; a damaged line is skipped. Returns the
    records and the offset just past the last whole line read (a half-written tail is left)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return [], offset
    with contextlib.closing(os.fdopen(fd, "rb")) as fh:
        fh.seek(offset)
        data = fh.read() if end is None else fh.read(max(0, end - offset))
    cut = data.rfind(b"\n") + 1
    return list(_parse(data[:cut])), offset + cut


def _parse(data: bytes) -> Iterator[dict[str, Any]]:
    if not data:
        return
    try:  # one decoder call over the whole chunk is much faster than one per line
        records = json.loads(b"[" + data.rstrip(b"\n").replace(b"\n", b",") + b"]")
        if all(isinstance(r, dict) for r in records):
            yield from records
            return
    except ValueError:
        pass
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def _same_file(path: Path, st: os.stat_result) -> bool:
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev)


def _lock(fd: int, kind: int, wait: float) -> bool:
    """flock with a deadline; False when it could not be taken in time."""
    deadline = time.monotonic() + wait
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
