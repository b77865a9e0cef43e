"""What dispatches cost and how long they take: the usage journal and the figures read from it.

    journal   Journal: one O_APPEND line per dispatch, rotation; encode(); read_records()
    summary   Summary: daily aggregates kept current by reading only new lines, persisted
    stats     usage_stats(), typical(), spend_today(), percentile()

`Usage` ties them together for one process: `record()` is what the dispatcher's run path calls
after every dispatch (never raises; `housekeep()` when it says rotation or a summary catch-up is
due), the rest read the in-memory summary, which costs one stat(2) when nothing was appended
since the last call.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agent_dispatch.usage.journal import Journal, encode, read_records
from agent_dispatch.usage.stats import percentile, spend_today, typical, usage_stats
from agent_dispatch.usage.summary import DayOf, Summary, ensure_rotated, local_day


def record_for(result: Any, *, tool: str, **fields: Any) -> dict[str, Any]:
    """The journal record of one dispatch result (a DispatchResult, or anything with its fields)."""
    cached = bool(getattr(result, "cached", False))
    cost = getattr(result, "cost_usd", None)
    rec: dict[str, Any] = {
        "ts": round(time.time(), 3),
        "agent": result.agent,
        "tool": tool,
        "success": bool(result.success),
        "cached": cached,
        "cost_usd": None if cached else cost,
        "saved_usd": cost if cached else None,
        "duration_ms": 0 if cached else (getattr(result, "duration_ms", None) or 0),
        "num_turns": None if cached else getattr(result, "num_turns", None),
        "error_type": getattr(result, "error_type", None),
        "session_id": getattr(result, "session_id", None),
        "budget_exceeded": True if getattr(result, "budget_exceeded", False) else None,
    }
    for key in ("outcome", "runtime", "host"):  # fields other features add to results
        value = getattr(result, key, None)
        if isinstance(value, str) and value:
            rec[key] = value
    tokens = getattr(result, "usage", None)
    if isinstance(tokens, dict) and tokens and not cached:
        rec["usage"] = {str(k)[:40]: v for k, v in list(tokens.items())[:8] if isinstance(v, int)}
    rec.update({key: value for key, value in fields.items() if value is not None and value != ""})
    return rec


class Usage:
    """The usage journal of one path, and its summary, for this process."""

    def __init__(self, path: Path) -> None:
        self.journal = Journal(path)
        self.summary = Summary(self.journal)
        self._typical: dict[str, tuple[int, str, dict[str, Any] | None]] = {}
        self._day_of = DayOf()

    @property
    def path(self) -> Path:
        return self.journal.path

    def record(self, record: dict[str, Any]) -> str:
        """Append one record. Returns what housekeeping the append made due ("rotate", "summary" or
        ""): call `housekeep()` then, preferably off the event loop. Never raises."""
        return self.journal.append(record)

    def housekeep(self, due: str = "summary") -> None:
        """Do what `record()` said is due: rotate the journal ("rotate"), or bring the summary file up
        to the journal ("summary"), so a fresh reader only ever folds the last SUMMARY_EVERY bytes.
        Only a rotation takes the journal's exclusive lock. Never raises."""
        try:
            summary = Summary(self.journal)  # its own: this may run on a thread beside the readers
            if due == "rotate" and ensure_rotated(self.journal, summary):
                return  # the rotation folded and saved everything
            summary.refresh(persist=True)
        except Exception:  # noqa: BLE001, S110 - housekeeping; the journal and readers work without it
            pass

    def refresh(self) -> None:
        try:
            self.summary.refresh()
        except Exception:  # noqa: BLE001, S110 - unreadable usage files give empty figures, never an error
            pass

    def typicals(self, agents: list[str]) -> dict[str, dict[str, Any] | None]:
        """Each agent's `typical` (None under 3 runs), from one refresh; cached per agent until new
        records arrive or the day changes."""
        self.refresh()
        today = self._day_of(time.time())
        version = self.summary.version
        out: dict[str, dict[str, Any] | None] = {}
        for agent in agents:
            hit = self._typical.get(agent)
            if hit is None or hit[0] != version or hit[1] != today:
                hit = self._typical[agent] = (version, today, typical(self.summary, agent))
            out[agent] = hit[2]
        return out

    def typical(self, agent: str) -> dict[str, Any] | None:
        """The agent's `typical` (None under 3 runs)."""
        return self.typicals([agent])[agent]

    def stats(self, days: float = 7, agent: str = "") -> dict[str, Any]:
        self.refresh()
        return usage_stats(self.summary, days, agent)

    def spend_today(self) -> float:
        self.refresh()
        return spend_today(self.summary)


_OPEN: dict[str, Usage] = {}


def open_usage(path: Path) -> Usage:
    """The process-wide Usage for a journal path (its summary is shared by every caller)."""
    key = str(path)
    usage = _OPEN.get(key)
    if usage is None:
        usage = _OPEN[key] = Usage(Path(path))
    return usage


def with_typicals(path: Path, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Agent listings (dicts with a `name`) with `typical` added where the journal at `path` knows
    one; the journal is looked at once for all. Figures are advice: any problem leaves them out."""
    try:
        values = open_usage(path).typicals([item["name"] for item in items])
    except Exception:  # noqa: BLE001 - never an error for a listing
        values = {}
    for item in items:
        value = values.get(item["name"])
        if value is not None:
            item["typical"] = value
    return items


def describe_typical(value: dict[str, Any]) -> str:
    """`typical` in words, for the terminal."""
    text = (f"{value['dispatches']} runs in 30 days: median {value['median_seconds']:g} s, "
            f"p90 {value['p90_seconds']:g} s")
    if value.get("median_cost_usd") is not None:
        text += f", median ${value['median_cost_usd']:.4f}"
    return text + (f", {value['failed']} failed" if value.get("failed") else "")


__all__ = [
    "Journal",
    "Summary",
    "Usage",
    "encode",
    "local_day",
    "open_usage",
    "percentile",
    "read_records",
    "record_for",
    "spend_today",
    "typical",
    "usage_stats",
    "with_typicals",
    "describe_typical",
]
