"""Daily aggregates of the usage journal, kept up to date by reading only what was appended.

The summary is what every reader uses (stats, `typical`, the daily budget): it holds, per local
day and agent, the counts, spend, money the cache saved, outcomes, failures by type, callers,
and the duration (and cost) of every run that really ran, as lists (exact medians and p90s).
Days before the last EXACT_DAYS are merged into months, lists into bucket counts (`compact`),
so years of use stay small on disk and in memory.
It is persisted beside the journal (`usage.jsonl.summary`, 0o600) with the position read so
far, so a fresh process reads the summary plus the journal's new lines, never the whole
history again. Writers keep the file close behind: the append that crosses a SUMMARY_EVERY mark
asks for a catch-up (`Usage.housekeep`), so those new lines are never more than that. That file
is how years of use stay small after the raw lines are rotated away.
A summary that is missing or damaged is rebuilt from the raw generations that remain.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import math
import os
import re
import tempfile
from typing import Any

from agent_dispatch.usage.journal import SUMMARY_EVERY, Journal, previous_path, read_records, summary_path

log = logging.getLogger(__name__)

FORMAT = 2  # files written before months and bucket counts ("months", "dh", "ch", "dmax") read as they are
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
SAVE_AFTER_BYTES = SUMMARY_EVERY  # journal bytes a reader folds before it rewrites the summary file
# Days this recent are kept day by day with every run's duration and cost (exact medians and
# p90s: `typical` reads 30 days, `stats` 7 by default). Older days are merged into their month,
# with durations and costs as counts in log-spaced buckets 2% apart: the summary then grows by
# one entry per agent and month, whatever the number of runs, and figures reaching back that far
# count whole months, their medians and p90s within 1%.
EXACT_DAYS = 92
BUCKET_RATIO = 1.02
_LOG_RATIO = math.log(BUCKET_RATIO)
ZERO_BUCKET = "z"  # zero (or a negative value, which a CLI should never report)


def bucket_of(value: float) -> str:
    """The histogram key of a duration or cost."""
    return ZERO_BUCKET if value <= 0 else str(round(math.log(value) / _LOG_RATIO))


def bucket_value(key: str) -> float:
    """The value a histogram key stands for (its bucket's middle, within 1% of every value in it)."""
    return 0.0 if key == ZERO_BUCKET else BUCKET_RATIO ** int(key)


Days = dict[str, dict[str, dict[str, Any]]]  # day (or month) -> agent -> aggregates


def compact(days: Days, months: Days, before: str) -> int:
    """Merge every day before `before` (YYYY-MM-DD) into its month (YYYY-MM) of `months`, the
    per-run lists into bucket counts (the exact maximum duration kept as `dmax`); returns how many
    agent-days were merged."""
    merged = 0
    for day in [day for day in days if day < before]:
        month = months.setdefault(day[:7], {})
        for agent, entry in days.pop(day).items():
            target = month.get(agent)
            if target is None:
                target = month[agent] = _new_day()
            _merge(target, entry)
            merged += 1
    return merged


def _merge(into: dict[str, Any], entry: dict[str, Any]) -> None:
    for key in ("n", "cached", "failed", "spend", "saved"):
        into[key] += entry.get(key) or 0
    durations, costs = entry.get("d") or [], entry.get("c") or []
    tops = [value for value in (into.get("dmax"), entry.get("dmax"), max(durations, default=None)) if value is not None]
    if tops:
        into["dmax"] = max(tops)
    for key, values, counted in (("dh", durations, entry.get("dh")), ("ch", costs, entry.get("ch"))):
        hist = into.setdefault(key, {})
        _count_into(hist, values)
        add_counts(hist, counted or {})
    add_counts(into["outcomes"], entry.get("outcomes") or {})
    add_counts(into["failures"], entry.get("failures") or {})
    add_callers(into["callers"], entry.get("callers") or {})


def add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for key, count in more.items():
        into[key] = into.get(key, 0) + count


def add_callers(into: dict[str, list[Any]], more: dict[str, list[Any]]) -> None:
    """Callers' [dispatches, spend] pairs added together."""
    for caller, (count, spend) in more.items():
        pair = into.setdefault(caller, [0, 0.0])
        pair[0] += count
        pair[1] += spend


def _count_into(hist: dict[str, int], values: list[Any]) -> None:
    for value in values:
        key = bucket_of(value)
        hist[key] = hist.get(key, 0) + 1


def local_day(ts: float) -> str:
    """The local calendar day of a Unix time, as YYYY-MM-DD."""
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d")


class DayOf:
    """Maps a Unix time to its local day, remembering the last day's bounds (journals are in time order)."""

    def __init__(self) -> None:
        self.start = self.end = 0.0
        self.name = ""

    def __call__(self, ts: float) -> str:
        if not self.start <= ts < self.end:
            moment = _dt.datetime.fromtimestamp(ts)
            midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
            self.name = midnight.strftime("%Y-%m-%d")
            self.start = midnight.timestamp()
            self.end = (midnight + _dt.timedelta(days=1)).timestamp()
        return self.name


def _new_day() -> dict[str, Any]:
    # d: duration_ms of every run that ran; c: cost_usd of those that reported one
    return {"n": 0, "cached": 0, "failed": 0, "spend": 0.0, "saved": 0.0, "d": [], "c": [], "outcomes": {},
            "failures": {}, "callers": {}}


def fold(days: dict[str, dict[str, dict[str, Any]]], record: dict[str, Any], day_of: Any = local_day) -> None:
    """Add one journal record to the day aggregates."""
    ts = record.get("ts")
    agent = record.get("agent")
    if not isinstance(ts, (int, float)) or not isinstance(agent, str):
        return
    try:
        day = days.setdefault(day_of(ts), {})
    except (OverflowError, OSError, ValueError):
        return
    entry = day.get(agent)
    if entry is None:
        entry = day[agent] = _new_day()
    entry["n"] += 1
    cost = record.get("cost_usd")
    cost = float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None
    if record.get("cached"):
        entry["cached"] += 1
        saved = record.get("saved_usd")
        if isinstance(saved, (int, float)) and not isinstance(saved, bool):
            entry["saved"] += float(saved)
    else:
        if cost is not None:
            entry["spend"] += cost
        duration = record.get("duration_ms")
        if not record.get("refused") and isinstance(duration, (int, float)) and not isinstance(duration, bool):
            entry["d"].append(int(duration))
            if cost is not None:
                entry["c"].append(cost)
    if not record.get("success"):
        entry["failed"] += 1
        kind = record.get("error_type") or "cli_error"
        entry["failures"][kind] = entry["failures"].get(kind, 0) + 1
    outcome = record.get("outcome")
    if isinstance(outcome, str) and outcome:
        entry["outcomes"][outcome] = entry["outcomes"].get(outcome, 0) + 1
    caller = record.get("caller")
    if isinstance(caller, str) and caller:
        pair = entry["callers"].setdefault(caller, [0, 0.0])
        pair[0] += 1
        if cost is not None and not record.get("cached"):
            pair[1] += cost


class Summary:
    """The day aggregates of one journal plus where reading stopped (`source`: inode, device, offset)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.path = summary_path(journal.path)
        self.days: Days = {}
        self.months: Days = {}  # days before the last EXACT_DAYS, merged by month (see `compact`)
        self.source: dict[str, int] | None = None
        self.version = 0  # bumped whenever new records were folded in
        self._seen: tuple[int, int, int] | None = None  # (ino, dev, size) of the live journal at the last refresh
        self._loaded = False
        self._unsaved = 0
        self.folded = 0  # journal bytes folded in, over every generation: how far this summary is

    # -- keeping it current ------------------------------------------------------------------------

    def refresh(self, *, persist: bool | None = None) -> bool:
        """Fold in what was appended since the last call; True when anything new was read.

        Costs one stat(2) when nothing changed. The file is rewritten once enough new lines were
        read (`persist=None`), always (`True`) or never (`False`)."""
        try:
            live = os.stat(self.journal.path)
            key: tuple[int, int, int] | None = (live.st_ino, live.st_dev, live.st_size)
        except OSError:
            key = None
        if self._loaded and key == self._seen:
            return False
        if not self._loaded:
            self._load()
        read = self._read_new()
        self._seen = key
        if read:
            self.version += 1
            self._unsaved += read
        if self._unsaved and (persist or (persist is None and self._unsaved >= SAVE_AFTER_BYTES)):
            self.save()
        return bool(read)

    def _position(self, generations: list[Any]) -> int | None:
        src = self.source
        if src is None:
            return 0
        for index, (_, st) in enumerate(generations):
            if (st.st_ino, st.st_dev) == (src["ino"], src["dev"]):
                return index
        return None

    def _read_new(self) -> int:
        """Fold the lines not yet seen; returns how many bytes were read."""
        generations = self.journal.generations()
        first = self._position(generations)
        if first is None:  # the file last read was rotated away: the saved summary has folded it
            self._load()
            first = self._position(generations)
        src = self.source
        offset, newer_than = (src["offset"] if src else 0), None
        if first is None:  # rotations missed by everyone: take only lines newer than those folded
            first, offset, newer_than = 0, 0, float(src.get("ts") or 0) if src else 0.0
        newest = float(src.get("ts") or 0) if src else 0.0
        read = 0
        day_of = DayOf()
        for index in range(first, len(generations)):
            path, st = generations[index]
            start = offset if index == first else 0
            records, end = read_records(path, start)
            read += end - start
            self.folded += end - start
            for record in records:
                ts = record.get("ts")
                if not isinstance(ts, (int, float)):
                    continue
                if newer_than is not None and ts <= newer_than:
                    continue
                fold(self.days, record, day_of)
                newest = max(newest, ts)
            self.source = {"ino": st.st_ino, "dev": st.st_dev, "offset": end, "ts": newest}
        return read

    # -- persistence -------------------------------------------------------------------------------

    def _load(self) -> None:
        self._loaded = True
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as fh:
                data = json.loads(fh.read())
            if data.get("format") == FORMAT and isinstance(data.get("days"), dict):
                self.days = data["days"]
                self.months = data["months"] if isinstance(data.get("months"), dict) else {}
                self.folded = int(data.get("folded") or 0)
                source = data.get("source")
                self.source = source if isinstance(source, dict) and {"ino", "dev", "offset"} <= set(source) else None
        except (OSError, ValueError, AttributeError):
            self.days, self.months, self.source, self.folded = {}, {}, None, 0

    def save(self) -> None:
        """Write the summary atomically (temporary file + rename), owner-only. Never raises.

        A summary is never replaced by one that has folded less of the journal (a slow process
        saving after another one rotated), so no line is ever dropped from it."""
        if self.source is None:
            return
        cutoff = _dt.date.today() - _dt.timedelta(days=EXACT_DAYS - 1)
        if compact(self.days, self.months, cutoff.strftime("%Y-%m-%d")):
            self.version += 1
        data = {"format": FORMAT, "folded": self.folded, "source": self.source, "days": self.days,
                "months": self.months}
        try:
            directory = self.path.parent
            lock = os.open(self.path.with_name(self.path.name + ".lock"), _LOCK_FLAGS, 0o600)
        except OSError as exc:
            log.warning("cannot write the usage summary %s: %s", self.path, exc)
            return
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _saved_folded(self.path) > self.folded:
                self._loaded = False  # another process is ahead: read its summary next time
                self._seen = None
                return
            fd, tmp = tempfile.mkstemp(prefix=".usage-summary-", dir=directory)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(json.dumps(data, separators=(",", ":")).encode())  # dumps: the C encoder
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._unsaved = 0
        except OSError as exc:
            log.warning("cannot write the usage summary %s: %s", self.path, exc)
        finally:
            os.close(lock)

    # -- reading ---------------------------------------------------------------------------------

    def spend_on(self, day: str) -> float:
        """What the runs of local day `day` cost, all agents together."""
        return sum(entry["spend"] for entry in self.days.get(day, {}).values())


def _saved_folded(path: Any) -> int:
    """How much of the journal the summary on disk has folded (read from the file's head)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(128)
    except OSError:
        return -1
    found = re.search(rb'"folded":(\d+)', head)
    return int(found.group(1)) if found else -1


def ensure_rotated(journal: Journal, summary: Summary) -> bool:
    """Rotate the journal when it is past its size, folding its last lines into the summary first."""

    def fold_everything() -> None:
        summary._seen = None  # noqa: SLF001 - force a read even if the size looks unchanged
        summary.refresh(persist=True)

    return journal.rotate(fold_everything)


__all__ = ["EXACT_DAYS", "FORMAT", "Days", "Summary", "bucket_value", "compact", "ensure_rotated", "fold",
           "local_day", "previous_path"]
