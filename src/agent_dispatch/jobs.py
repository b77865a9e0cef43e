"""The job store: one JSON record per job in a private directory, safe across processes.

Layout of the jobs directory (0o700, an existing one is tightened):

    <id>.json            the record (models.Job), 0o600, replaced atomically on every change
    <id>.out, <id>.err   artefacts the runner may keep beside a record; gc removes them with it
    .index/<created>-<id>.<status>
                         one empty marker per record: its name carries the creation time and
                         status, so listing and recovery read names, not 10,000 JSON files
    .lock                flock(2) taken around every read-check-write, across processes
    .tmp-*               temporary files of writes in progress

Contract:
- A job id is 32 lowercase hex characters; every method taking one checks it before touching
  any file (BadArgumentError), so an id never becomes a path.
- Records are read with O_NOFOLLOW from regular files only: a symlink or FIFO planted under a
  record's name is refused, never followed. A record that cannot be read, does not validate, or
  whose inner id differs from its file name raises JobRecordError and is never deleted.
- Writes go to a unique temporary file in the same directory, are fsynced, then renamed over
  the record.
- Allowed transitions: pending -> running | cancelled | failed, running -> done | failed |
  cancelled. `pending -> failed` is the one extra edge: a queued job whose server died or was
  stopped before its process started. A terminal job never changes again (JobAlreadyTerminal).
- The index is a hint, the record is the truth: every listing re-checks the parsed record.
  A marker is created before its record and renamed after it, so a crash between the two
  leaves at worst a stale marker, which `unfinished()` (run at server start) and `gc()` repair.
- Every listing (`list`, `unfinished`, `gc`) first gives a marker to each record that has none
  (copied in, restored from a backup, written by an older version): one stat of the directory
  when it has not changed since the last check, two name listings when it has.

This module knows nothing of processes or MCP.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import TypeAdapter, ValidationError

from agent_dispatch.errors import BadArgumentError, JobNotFoundError, JobRecordError
from agent_dispatch.files import tighten_dir
from agent_dispatch.models import (
    JOB_STATUSES,
    JOBS_LIMIT,
    TERMINAL_STATUSES,
    Job,
    check_job_id,
    clamp,
    is_valid_job_id,
)

log = logging.getLogger(__name__)

ALLOWED_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("pending", "running"),
        ("pending", "cancelled"),
        ("pending", "failed"),  # the server died or stopped before the job's process started
        ("running", "done"),
        ("running", "failed"),
        ("running", "cancelled"),
    }
)
ACTIVE_STATUSES: tuple[str, ...] = ("pending", "running")

_INDEX = ".index"
_LOCK = ".lock"
_TMP_PREFIX = ".tmp-"
JOB_ID_PREFIX_RE = re.compile(r"[0-9a-f]{1,32}")  # what `ids_starting_with` compares names against
_STALE_TMP_SECONDS = 3600.0
# A directory mtime this recent may not show a change made in the same clock tick: checked again.
_RACY_NS = 100_000_000
_SIBLING_SUFFIXES = (".out", ".err")
_SUFFIX_RE = re.compile(r"\.[a-z]{1,8}")
_RECORD_RE = re.compile(r"([0-9a-f]{32})\.json")
# Fields a caller may never set through update()/transition().
_FIXED_FIELDS = frozenset({"version", "id", "status", "created_at"})
_MICROS_MAX = 10**20 - 1
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def new_job_id() -> str:
    """A fresh job id: uuid4 as 32 lowercase hex characters."""
    return uuid.uuid4().hex


class TransitionRefused(JobRecordError):
    """The job cannot move to `to_status` from where it is; `job` is its current record."""

    default_hint = "Call dispatch_status to see the job's current state."
    default_cli_hint = "Run `agent-dispatch job ID` to see the job's current state."

    def __init__(self, job: Job, to_status: str | None, message: str | None = None) -> None:
        target = to_status or "be changed"
        super().__init__(message or f"job {job.id} is {job.status}; it cannot become {target}")
        self.job = job
        self.to_status = to_status


class JobAlreadyTerminal(TransitionRefused):
    """The job already ended (done, failed or cancelled); a terminal job never changes."""

    def __init__(self, job: Job, to_status: str | None) -> None:
        super().__init__(job, to_status, f"job {job.id} already ended ({job.status}); a finished job never changes")


class RecordProblem(NamedTuple):
    """A record that exists but could not be read; reported, never deleted."""

    job_id: str
    reason: str


class _Mark(NamedTuple):
    name: str
    micros: int
    job_id: str
    status: str


def _mark_name(job: Job) -> str:
    micros = min(int(job.created_at * 1_000_000), _MICROS_MAX)
    return f"{micros:020d}-{job.id}.{job.status}"


def _parse_mark(name: str) -> _Mark | None:
    # "<20 digits>-<32 hex>.<status>"; anything else in the index is ignored.
    if len(name) < 55 or name[20] != "-" or name[53] != "." or not name[:20].isdigit():
        return None
    job_id, status = name[21:53], name[54:]
    if status not in JOB_STATUSES or not is_valid_job_id(job_id):
        return None
    return _Mark(name, int(name[:20]), job_id, status)


def _settled(mtime_ns: int) -> bool:
    """Whether a directory mtime is old enough that a later change would have moved it.

    A change made in the same clock tick may leave the mtime as it was; filesystems with
    whole-second times get a longer wait.
    """
    racy = _RACY_NS * (20 if mtime_ns % 1_000_000_000 == 0 else 1)
    return time.time_ns() - mtime_ns > racy


def _check_status(status: object) -> str | None:
    if status is None or status == "":
        return None
    if not isinstance(status, str) or status not in JOB_STATUSES:
        raise BadArgumentError(
            f"unknown job status {status!r}",
            f"Use one of: {', '.join(JOB_STATUSES)} (or leave it empty for all).",
        )
    return status


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise BadArgumentError(f"limit must be an integer, got {limit!r}")
    return clamp(limit, *JOBS_LIMIT)


def _check_age_days(days: object) -> float:
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not math.isfinite(days) or days <= 0:
        raise BadArgumentError(
            f"max_age_days must be a finite number greater than 0, got {days!r}",
            "Pass a number of days such as 7 or 0.5.",
        )
    return float(days)


def _check_fields(fields: dict[str, Any]) -> None:
    # Field names come from our own code, never from callers of the tools: a wrong one is a bug.
    fixed = _FIXED_FIELDS.intersection(fields)
    if fixed:
        raise TypeError(f"job fields {sorted(fixed)} cannot be changed this way")
    unknown = set(fields) - set(Job.model_fields)
    if unknown:
        raise TypeError(f"unknown job fields {sorted(unknown)}")


_JOB_JSON = TypeAdapter(Job)


def _serialize(job: Job) -> bytes:
    try:
        return _JOB_JSON.dump_json(job)  # bytes at once: a str first would be one more copy of a long result
    except (ValueError, UnicodeError):
        # Lone surrogates cannot be encoded as UTF-8: they are stored as '?' rather than failing the write.
        text = json.dumps(job.model_dump(mode="json"), ensure_ascii=False)
        return text.encode("utf-8", errors="replace")


def _ensure_private_dir(path: Path) -> None:
    missing: list[Path] = []
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=0o700)
        if not path.is_dir():
            raise JobRecordError(
                f"jobs directory {path} is not a directory", "Point AGENT_DISPATCH_JOBS_DIR at a directory."
            )
        tighten_dir(path)
    except OSError as exc:
        raise JobRecordError(
            f"jobs directory {path} cannot be prepared: {exc.strerror or exc}",
            "Check the directory's owner and permissions, or set AGENT_DISPATCH_JOBS_DIR.",
        ) from exc


class JobStore:
    """The job records in `directory` (see the module docstring for the contract).

    Several stores, in any number of processes, may share one directory. `clock` gives the
    epoch seconds stamped into started_at / completed_at and used by gc.
    """

    def __init__(self, directory: Path | str, clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory)
        self._index = self.directory / _INDEX
        self._clock = clock
        self._reconciled_mtime: int | None = None  # the directory mtime at the last complete reconcile
        self._marker_count = 0  # markers this store added for records that had none
        self._names_cache: tuple[int, tuple[str, ...]] | None = None  # (index mtime, its names)
        _ensure_private_dir(self.directory)
        if not self._index_ok():
            with self._locked():
                self._ensure_index()

    # --- public API ------------------------------------------------------------------------

    def path_for(self, job_id: str, suffix: str = ".json") -> Path:
        """The path of a job's record (or of an artefact such as `.out`), after checking the id."""
        check_job_id(job_id)
        if not isinstance(suffix, str) or not _SUFFIX_RE.fullmatch(suffix):
            raise BadArgumentError(f"bad artefact suffix {suffix!r}")
        return self.directory / f"{job_id}{suffix}"

    def create(self, job: Job) -> Job:
        """Store a new record (any status: refs are created `done`). JobRecordError if the id exists."""
        check_job_id(job.id)
        with self._locked():
            self._ensure_index()
            if os.path.lexists(self._record(job.id)):
                raise JobRecordError(f"a job record {job.id} already exists", "Use a fresh id (new_job_id()).")
            self._touch_mark(_mark_name(job))  # marker first: a crash leaves a marker, never a lost record
            self._write(job)
        return job

    def get(self, job_id: str) -> Job:
        """The record. JobNotFoundError if absent; JobRecordError if it cannot be read or trusted."""
        check_job_id(job_id)
        return self._read(job_id)

    def transition(
        self, job_id: str, to_status: str, *, require: Callable[[Job], bool] | None = None, **fields: Any
    ) -> Job:
        """Move the job to `to_status`, setting `fields` too, atomically across processes.

        started_at / completed_at are stamped when not given. `require`, if set, is called with
        the current record under the lock; returning False refuses the move (e.g. "only if I own
        it"). Raises JobAlreadyTerminal for a finished job, TransitionRefused for an edge not
        allowed or a failed `require`, BadArgumentError for an unknown status or a bad value.
        """
        check_job_id(job_id)
        if to_status not in JOB_STATUSES:
            raise BadArgumentError(f"unknown job status {to_status!r}")
        _check_fields(fields)
        with self._locked():
            current = self._read(job_id)
            if current.terminal:
                raise JobAlreadyTerminal(current, to_status)
            if (current.status, to_status) not in ALLOWED_TRANSITIONS:
                raise TransitionRefused(current, to_status)
            if require is not None and not require(current):
                message = f"job {job_id} ({current.status}) did not meet the condition to become {to_status}"
                raise TransitionRefused(current, to_status, message)
            changes: dict[str, Any] = {"status": to_status}
            if to_status == "running" and "started_at" not in fields:
                changes["started_at"] = self._clock()
            if to_status in TERMINAL_STATUSES and "completed_at" not in fields:
                changes["completed_at"] = self._clock()
            updated = _revise(current, {**changes, **fields})
            self._write(updated)
            self._move_mark(_mark_name(current), _mark_name(updated))
        return updated

    def update(self, job_id: str, **fields: Any) -> Job:
        """Change non-status fields (progress, run, owner, ...) of a job that has not ended.

        Raises JobAlreadyTerminal once it has; status changes go through `transition`.
        """
        check_job_id(job_id)
        _check_fields(fields)
        with self._locked():
            current = self._read(job_id)
            if current.terminal:
                raise JobAlreadyTerminal(current, None)
            if not fields:
                return current
            updated = _revise(current, fields)
            self._write(updated)
        return updated

    def list(
        self, status: str | None = None, limit: int = 50, problems: list[RecordProblem] | None = None
    ) -> list[Job]:
        """Up to `limit` jobs (clamped to JOBS_LIMIT), newest `created_at` first, optionally of one status.

        Only the returned records are parsed. Unreadable records are skipped, logged, and
        appended to `problems` when a list is given.
        """
        status = _check_status(status)
        limit = _check_limit(limit)
        # Fixed-width names sort by creation time; only the visited ones are parsed.
        names = self._listed_names((status,) if status else ())
        names.sort(reverse=True)
        jobs: list[Job] = []
        seen: set[str] = set()
        for mark in map(_parse_mark, names):
            if mark is None:
                continue
            if mark.job_id in seen:
                continue  # a stale marker left by a crash shares its id with the current one
            seen.add(mark.job_id)
            job = self._read_quietly(mark.job_id, problems)
            if job is None or (status is not None and job.status != status):
                continue
            jobs.append(job)
            if len(jobs) >= limit:
                break
        return jobs

    def unfinished(self, problems: list[RecordProblem] | None = None) -> list[Job]:
        """Every pending or running job, oldest first: what a starting server must recover.

        Repairs stale index markers on the way (a crash between a record write and its marker).
        """
        jobs: dict[str, Job] = {}
        for mark in self._marks(ACTIVE_STATUSES):
            job = self._read_quietly(mark.job_id, problems)
            if job is None:
                self._repair(mark)
            elif job.status != mark.status:
                self._repair(mark)
                if not job.terminal:
                    jobs[job.id] = job
            else:
                jobs[job.id] = job
        return sorted(jobs.values(), key=lambda job: (job.created_at, job.id))

    def gc(
        self, max_age_days: float = 7.0, *, dry_run: bool = False, problems: list[RecordProblem] | None = None,
        ids: list[str] | None = None,
    ) -> int:
        """Delete terminal jobs whose completed_at (else created_at) is older than `max_age_days`.

        Removes each record with its `.out` / `.err` artefacts and returns how many jobs went
        (with `dry_run`, how many would). Pending and running jobs and unreadable records are
        never deleted. BadArgumentError, deleting nothing, unless 0 < max_age_days < inf.
        `ids`, when given, receives the id of every job deleted (or that would be).
        """
        days = _check_age_days(max_age_days)
        return self._collect(self._clock() - days * 86400.0, dry_run, problems, ids)

    def gc_all(
        self, *, dry_run: bool = False, problems: list[RecordProblem] | None = None, ids: list[str] | None = None
    ) -> int:
        """Delete every terminal job, whatever its age (`agent-dispatch gc --all`)."""
        return self._collect(math.inf, dry_run, problems, ids)

    def reconcile(self) -> int:
        """Give every record without an index marker its marker; returns how many were added.

        Listings do this first. A directory whose mtime has not moved since the last complete
        check costs one stat; otherwise its names are compared with the index's.
        """
        before = self._marker_count
        self._reconciled_names()
        return self._marker_count - before

    def ids_starting_with(self, prefix: str, limit: int = 10) -> list[str]:
        """Ids of the records whose id starts with `prefix` (lowercase hex), at most `limit`,
        sorted. Only directory entry names are compared: `prefix` never becomes a path."""
        if not isinstance(prefix, str) or not prefix or JOB_ID_PREFIX_RE.fullmatch(prefix) is None:
            return []
        found = []
        for entry in os.scandir(self.directory):
            name = entry.name
            if name.endswith(".json") and name.startswith(prefix) and is_valid_job_id(name[:-5]):
                found.append(name[:-5])
                if len(found) > limit:
                    break
        return sorted(found)[:limit]

    # --- records ----------------------------------------------------------------------------

    def _record(self, job_id: str) -> Path:
        return self.directory / f"{job_id}.json"

    def _read(self, job_id: str) -> Job:
        path = self._record(job_id)
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            raise JobNotFoundError(f"no job {job_id}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise JobRecordError(f"job record {path} is a symbolic link; it is not read") from None
            raise JobRecordError(f"job record {path} cannot be opened: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise JobRecordError(f"job record {path} is not a regular file; it is not read")
            data = _read_all(fd, info.st_size)
        except OSError as exc:
            raise JobRecordError(f"job record {path} cannot be read: {exc.strerror}") from None
        finally:
            os.close(fd)
        try:
            job = Job.model_validate_json(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ())) or "record"
            raise JobRecordError(f"job record {path} is invalid: {where}: {first.get('msg')}") from None
        if job.id != job_id:
            raise JobRecordError(f"job record {path} holds the id {job.id!r}, not the one in its name")
        return job

    def _read_quietly(self, job_id: str, problems: list[RecordProblem] | None) -> Job | None:
        try:
            return self._read(job_id)
        except JobNotFoundError:
            return None  # being created by another store, or removed by gc: not a problem
        except JobRecordError as exc:
            log.warning("skipping job record %s: %s", job_id, exc.message)
            if problems is not None:
                problems.append(RecordProblem(job_id, exc.message))
            return None

    def _write(self, job: Job) -> None:
        data = _serialize(job)
        try:
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".part", dir=self.directory)
        except OSError as exc:
            raise JobRecordError(f"cannot write job record {job.id}: {exc.strerror or exc}") from None
        try:
            with open(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._record(job.id))
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise JobRecordError(f"cannot write job record {job.id}: {exc.strerror or exc}") from None
            raise

    # --- the index --------------------------------------------------------------------------

    def _index_ok(self) -> bool:
        try:
            return stat.S_ISDIR(os.lstat(self._index).st_mode)
        except FileNotFoundError:
            return False

    def _mark_names(self, statuses: tuple[str, ...] = ()) -> list[str]:
        """Names in the index, optionally only those of `statuses` (unparsed: parsing 10,000 costs).

        The last listing is reused while the index's mtime has not moved.
        """
        try:
            mtime = os.stat(self._index).st_mtime_ns
            if self._names_cache is not None and self._names_cache[0] == mtime:
                names = list(self._names_cache[1])
            else:
                names = os.listdir(self._index)
                self._names_cache = (mtime, tuple(names)) if _settled(mtime) else None
        except FileNotFoundError:
            return []
        if statuses:
            suffixes = tuple("." + status for status in statuses)
            names = [name for name in names if name.endswith(suffixes)]
        return names

    def _marks(self, statuses: tuple[str, ...] = ()) -> list[_Mark]:
        return [mark for mark in map(_parse_mark, self._listed_names(statuses)) if mark is not None]

    def _listed_names(self, statuses: tuple[str, ...] = ()) -> list[str]:
        """The index names listings read, once every record on disk has its marker."""
        names = self._reconciled_names()
        if names is None:
            return self._mark_names(statuses)
        if statuses:
            suffixes = tuple("." + status for status in statuses)
            names = [name for name in names if name.endswith(suffixes)]
        return names

    def _reconciled_names(self) -> list[str] | None:
        """Index every record that has no marker; the whole index's names when it was listed, else None."""
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except OSError:
            return None
        if mtime == self._reconciled_mtime:
            return None
        # The directory first: a record seen there had its marker made before it, so a record
        # found here without one really has none (a concurrent create is never mistaken for one).
        unmarked = set(os.listdir(self.directory))
        names = self._mark_names()
        unmarked.difference_update([name[21:53] + ".json" for name in names])  # set ops: 10,000 names cost ~1 ms
        missing = sorted(name[:32] for name in unmarked if len(name) == 37 and name.endswith(".json"))
        if missing:
            with self._locked():
                self._ensure_index()
                for job_id in missing:
                    name = self._record_mark_name(job_id) if is_valid_job_id(job_id) else None
                    if name is not None:
                        self._touch_mark(name)
                        self._marker_count += 1
                        names.append(name)
        if _settled(mtime):
            self._reconciled_mtime = mtime
        return names

    def _touch_mark(self, name: str) -> None:
        os.close(os.open(self._index / name, _CREATE_FLAGS, 0o600))

    def _move_mark(self, old: str, new: str) -> None:
        if old == new:
            return
        try:
            os.replace(self._index / old, self._index / new)
        except FileNotFoundError:
            self._touch_mark(new)

    def _drop_mark(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._index / name)

    def _repair(self, mark: _Mark) -> None:
        """Bring one marker in line with its record, under the lock (the record is the truth)."""
        with self._locked():
            try:
                job = self._read(mark.job_id)
            except JobNotFoundError:
                self._drop_mark(mark.name)  # under the lock, so no create is half done: an orphan
                return
            except JobRecordError:
                return
            right = _mark_name(job)
            if right != mark.name:
                self._move_mark(mark.name, right)

    def _record_mark_name(self, job_id: str) -> str | None:
        """The marker a record on disk should have; None when it is gone or not a regular file."""
        job = self._read_quietly(job_id, None)
        if job is not None:
            return _mark_name(job)
        try:
            info = os.lstat(self._record(job_id))
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        # Unreadable: index it anyway (by file time) so listings keep reporting it.
        micros = min(int(info.st_mtime * 1_000_000), _MICROS_MAX)
        return f"{micros:020d}-{job_id}.failed"

    def _ensure_index(self) -> None:
        """Build the index from the records when it is missing (first run, or deleted). Lock held."""
        if self._index_ok():
            return
        staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX + "index-", dir=self.directory))
        for entry in os.scandir(self.directory):
            match = _RECORD_RE.fullmatch(entry.name)
            if match is None or not entry.is_file(follow_symlinks=False):
                continue
            name = self._record_mark_name(match.group(1))
            if name is not None:
                os.close(os.open(staging / name, _CREATE_FLAGS, 0o600))
        if os.path.lexists(self._index):
            os.unlink(self._index)  # not a directory (checked above): a stray file or symlink
        os.rename(staging, self._index)

    # --- gc ------------------------------------------------------------------------------------

    def _collect(
        self, cutoff: float, dry_run: bool, problems: list[RecordProblem] | None, ids: list[str] | None = None
    ) -> int:
        deleted = 0
        for mark in self._marks():
            # completed_at >= created_at, so a job created after the cutoff cannot be old enough.
            if mark.micros / 1_000_000 >= cutoff:
                continue
            with self._locked():
                try:
                    job = self._read(mark.job_id)
                except JobNotFoundError:
                    if not dry_run:
                        self._drop_mark(mark.name)
                    continue
                except JobRecordError as exc:
                    log.warning("gc keeps unreadable job record %s: %s", mark.job_id, exc.message)
                    if problems is not None:
                        problems.append(RecordProblem(mark.job_id, exc.message))
                    continue
                age_from = job.completed_at if job.completed_at is not None else job.created_at
                if not job.terminal or age_from >= cutoff:
                    continue
                if not dry_run:
                    try:
                        self._delete(job, mark.name)
                    except OSError as exc:
                        log.warning("gc cannot delete job record %s: %s", job.id, exc)
                        if problems is not None:
                            problems.append(RecordProblem(job.id, f"cannot be deleted: {exc.strerror or exc}"))
                        continue
                deleted += 1
                if ids is not None:
                    ids.append(job.id)
        if not dry_run:
            self._sweep_temporaries()
        return deleted

    def _delete(self, job: Job, mark_name: str) -> None:
        # Artefacts, then the record, then the marker: a crash leaves an orphan marker gc drops.
        for suffix in _SIBLING_SUFFIXES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.directory / f"{job.id}{suffix}")
        os.unlink(self._record(job.id))
        self._drop_mark(mark_name)
        self._drop_mark(_mark_name(job))

    def _sweep_temporaries(self) -> None:
        """Remove temporary files and staging dirs that crashed writers left behind."""
        horizon = time.time() - _STALE_TMP_SECONDS
        for entry in os.scandir(self.directory):
            if not entry.name.startswith(_TMP_PREFIX):
                continue
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_mtime >= horizon:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)

    # --- locking -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive across threads and processes: each call opens its own descriptor."""
        try:
            fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise JobRecordError(f"cannot lock the jobs directory {self.directory}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _read_all(fd: int, size: int) -> bytes:
    """The whole file as bytes, read at once (joined chunks would be two copies, and the JSON parser
    copies a bytearray before it starts)."""
    data = os.read(fd, size + 1)
    rest = []
    while chunk := os.read(fd, 1 << 20):  # a short read, or it grew meanwhile
        rest.append(chunk)
    return data + b"".join(rest) if rest else data


def _revise(current: Job, changes: dict[str, Any]) -> Job:
    """A validated copy of `current` with `changes` applied (BadArgumentError for a bad value)."""
    data = current.model_dump()
    data.update(changes)
    try:
        return Job.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "job"
        raise BadArgumentError(f"invalid job field {where}: {first.get('msg')}") from None
