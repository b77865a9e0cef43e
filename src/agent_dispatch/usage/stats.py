"""Figures from the day aggregates: the `usage_stats` answer, an agent's `typical`, the daily spend.

Windows are whole local days: `days=N` covers today and the N-1 days before it (a fraction
rounds up). Percentiles are nearest-rank over the runs that really ran: cache hits and
dispatches refused before anything started count as dispatches but have no duration.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from agent_dispatch.usage.summary import Summary, local_day

TYPICAL_MIN_RUNS = 3
TYPICAL_DAYS = 30


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (p in 0..100); None for an empty list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def window_days(days: float, now: float) -> list[str]:
    """The local days a window of `days` covers, newest first."""
    count = max(1, math.ceil(days))
    today = _dt.datetime.fromtimestamp(now).date()
    return [(today - _dt.timedelta(days=back)).strftime("%Y-%m-%d") for back in range(min(count, 100_000))]


class _Acc:
    """Aggregates merged across days (and agents)."""

    __slots__ = ("cached", "callers", "durations", "failed", "failures", "n", "outcomes", "saved", "spend")

    def __init__(self) -> None:
        self.n = self.cached = self.failed = 0
        self.spend = self.saved = 0.0
        self.durations: list[int] = []
        self.outcomes: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.callers: dict[str, list[Any]] = {}

    def add(self, entry: dict[str, Any]) -> None:
        self.n += entry["n"]
        self.cached += entry["cached"]
        self.failed += entry["failed"]
        self.spend += entry["spend"]
        self.saved += entry["saved"]
        self.durations.extend(entry["d"])
        _add_counts(self.outcomes, entry["outcomes"])
        _add_counts(self.failures, entry["failures"])
        for caller, (count, spend) in entry["callers"].items():
            pair = self.callers.setdefault(caller, [0, 0.0])
            pair[0] += count
            pair[1] += spend


def _add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for key, count in more.items():
        into[key] = into.get(key, 0) + count


def _money(value: float) -> float:
    return round(value, 6)


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 3)


def usage_stats(summary: Summary, days: float, agent: str = "", now: float | None = None) -> dict[str, Any]:
    """The contract's `usage_stats` object (plus cached share, saved money, callers and per-day spend)."""
    import time

    now = time.time() if now is None else now
    total = _Acc()
    agents: dict[str, _Acc] = {}
    per_day: list[dict[str, Any]] = []
    window = window_days(days, now)
    for day in reversed(window):
        entries = summary.days.get(day, {})
        day_n, day_spend = 0, 0.0
        for name, entry in entries.items():
            if agent and name != agent:
                continue
            total.add(entry)
            agents.setdefault(name, _Acc()).add(entry)
            day_n += entry["n"]
            day_spend += entry["spend"]
        if day_n:
            per_day.append({"day": day, "dispatches": day_n, "spend_usd": _money(day_spend)})
    total.durations.sort()
    out: dict[str, Any] = {
        "days": days,
        "since": window[-1],
        "dispatches": total.n,
        "cached": total.cached,
        "cached_share": round(total.cached / total.n, 4) if total.n else 0.0,
        "saved_usd": _money(total.saved),
        "spend_usd": _money(total.spend),
        "failed": total.failed,
        "duration_ms": {
            "median": percentile(total.durations, 50),
            "p90": percentile(total.durations, 90),
            "max": total.durations[-1] if total.durations else None,
        },
        "outcomes": total.outcomes,
        "failures": total.failures,
        "agents": {},
        "callers": {
            name: {"dispatches": count, "spend_usd": _money(spend)}
            for name, (count, spend) in sorted(total.callers.items(), key=lambda kv: -kv[1][1])
        },
        "per_day": per_day,
    }
    if agent:
        out["agent"] = agent
    for name, acc in sorted(agents.items(), key=lambda kv: (-kv[1].spend, kv[0])):
        acc.durations.sort()
        out["agents"][name] = {
            "dispatches": acc.n,
            "cached": acc.cached,
            "spend_usd": _money(acc.spend),
            "saved_usd": _money(acc.saved),
            "median_seconds": _seconds(percentile(acc.durations, 50)),
            "p90_seconds": _seconds(percentile(acc.durations, 90)),
            "max_seconds": _seconds(acc.durations[-1] if acc.durations else None),
            "failed": acc.failed,
            "outcomes": acc.outcomes,
            "failures": acc.failures,
        }
    return out


def typical(summary: Summary, agent: str, now: float | None = None) -> dict[str, Any] | None:
    """What the agent's runs of the last TYPICAL_DAYS days looked like; None below TYPICAL_MIN_RUNS runs."""
    import time

    now = time.time() if now is None else now
    durations: list[int] = []
    costs: list[float] = []
    failed = 0
    outcomes: dict[str, int] = {}
    for day in window_days(TYPICAL_DAYS, now):
        entry = summary.days.get(day, {}).get(agent)
        if entry is None:
            continue
        durations.extend(entry["d"])
        costs.extend(entry["c"])
        failed += entry["failed"]
        _add_counts(outcomes, entry["outcomes"])
    if len(durations) < TYPICAL_MIN_RUNS:
        return None
    durations.sort()
    costs.sort()
    out: dict[str, Any] = {
        "dispatches": len(durations),
        "median_seconds": _seconds(percentile(durations, 50)),
        "p90_seconds": _seconds(percentile(durations, 90)),
        "median_cost_usd": _money(percentile(costs, 50)) if costs else None,
        "failed": failed,
        "outcomes": outcomes,
    }
    return out


def spend_today(summary: Summary, now: float | None = None) -> float:
    import time

    return summary.spend_on(local_day(time.time() if now is None else now))
