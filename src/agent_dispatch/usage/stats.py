"""Figures from the day aggregates: the `usage_stats` answer, an agent's `typical`, the daily spend.

Windows are whole local days: `days=N` covers today and the N-1 days before it (a fraction
rounds up). Percentiles are nearest-rank over the runs that really ran: cache hits and
dispatches refused before anything started count as dispatches but have no duration. The last
summary.EXACT_DAYS days are exact; a window reaching further back counts the whole months it
reaches (`per_month`), with medians and p90s within 1% (bucket counts).
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from agent_dispatch.usage.summary import Summary, add_callers, add_counts, bucket_value, local_day

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


class Spread:
    """The durations (or costs) of runs: the exact values of recent days, plus the bucket counts
    of days old enough to be compacted (see summary.compact)."""

    __slots__ = ("_pairs", "_sorted", "exact", "hist", "top")

    def __init__(self) -> None:
        self.exact: list[float] = []
        self.hist: dict[str, int] = {}
        self.top: float | None = None  # the exact maximum of the compacted values
        self._sorted = False
        self._pairs: list[tuple[float, int]] | None = None  # exact values and buckets, ascending

    def add(self, values: list[Any], hist: dict[str, int] | None = None, top: float | None = None) -> None:
        self.exact.extend(values)
        self._sorted, self._pairs = False, None
        if hist:
            add_counts(self.hist, hist)
        if top is not None:
            self.top = top if self.top is None else max(self.top, top)

    def __len__(self) -> int:
        return len(self.exact) + sum(self.hist.values())

    def _ascending(self) -> None:
        if not self._sorted:
            self.exact.sort()
            self._sorted = True

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile; within 1% where compacted days take part."""
        self._ascending()
        if not self.hist:
            return percentile(self.exact, p)
        if self._pairs is None:
            self._pairs = sorted([(value, 1) for value in self.exact]
                                 + [(bucket_value(key), count) for key, count in self.hist.items()])
        rank = max(1, math.ceil(p / 100 * len(self)))
        seen = 0
        for value, count in self._pairs:
            seen += count
            if seen >= rank:
                return value
        return self._pairs[-1][0]

    def maximum(self) -> float | None:
        self._ascending()
        found = [value for value in (self.exact[-1] if self.exact else None, self.top) if value is not None]
        return max(found) if found else None


class _Acc:
    """Aggregates merged across days (and agents)."""

    __slots__ = ("cached", "callers", "durations", "failed", "failures", "n", "outcomes", "saved", "spend")

    def __init__(self) -> None:
        self.n = self.cached = self.failed = 0
        self.spend = self.saved = 0.0
        self.durations = Spread()
        self.outcomes: dict[str, int] = {}
        self.failures: dict[str, int] = {}
        self.callers: dict[str, list[Any]] = {}

    def add(self, entry: dict[str, Any]) -> None:
        self.n += entry["n"]
        self.cached += entry["cached"]
        self.failed += entry["failed"]
        self.spend += entry["spend"]
        self.saved += entry["saved"]
        self.durations.add(entry["d"], entry.get("dh"), entry.get("dmax"))
        add_counts(self.outcomes, entry["outcomes"])
        add_counts(self.failures, entry["failures"])
        add_callers(self.callers, entry["callers"])


def _money(value: float) -> float:
    return round(value, 6)


def _whole(ms: float | None) -> int | None:
    return None if ms is None else int(round(ms))


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 3)


def usage_stats(summary: Summary, days: float, agent: str = "", now: float | None = None) -> dict[str, Any]:
    """The contract's `usage_stats` object (plus cached share, saved money, callers and per-day spend)."""
    import time

    now = time.time() if now is None else now
    total = _Acc()
    agents: dict[str, _Acc] = {}
    per_day: list[dict[str, Any]] = []
    per_month: list[dict[str, Any]] = []
    window = window_days(days, now)

    def add(entries: dict[str, dict[str, Any]], key: str, label: str, into: list[dict[str, Any]]) -> None:
        count, spent = 0, 0.0
        for name, entry in entries.items():
            if agent and name != agent:
                continue
            total.add(entry)
            agents.setdefault(name, _Acc()).add(entry)
            count += entry["n"]
            spent += entry["spend"]
        if count:
            into.append({key: label, "dispatches": count, "spend_usd": _money(spent)})

    # Days before the last EXACT_DAYS live in months: a window reaching into one counts it whole.
    first_month = window[-1][:7]
    for month in sorted(m for m in summary.months if m >= first_month):
        add(summary.months[month], "month", month, per_month)
    for day in reversed(window):
        add(summary.days.get(day, {}), "day", day, per_day)
    out: dict[str, Any] = {
        "days": days,
        "since": min([window[-1]] + [item["month"] + "-01" for item in per_month[:1]]),
        "dispatches": total.n,
        "cached": total.cached,
        "cached_share": round(total.cached / total.n, 4) if total.n else 0.0,
        "saved_usd": _money(total.saved),
        "spend_usd": _money(total.spend),
        "failed": total.failed,
        "duration_ms": {
            "median": _whole(total.durations.percentile(50)),
            "p90": _whole(total.durations.percentile(90)),
            "max": _whole(total.durations.maximum()),
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
    if per_month:
        out["per_month"] = per_month
    if agent:
        out["agent"] = agent
    for name, acc in sorted(agents.items(), key=lambda kv: (-kv[1].spend, kv[0])):
        out["agents"][name] = {
            "dispatches": acc.n,
            "cached": acc.cached,
            "spend_usd": _money(acc.spend),
            "saved_usd": _money(acc.saved),
            "median_seconds": _seconds(acc.durations.percentile(50)),
            "p90_seconds": _seconds(acc.durations.percentile(90)),
            "max_seconds": _seconds(acc.durations.maximum()),
            "failed": acc.failed,
            "outcomes": acc.outcomes,
            "failures": acc.failures,
        }
    return out


def typical(summary: Summary, agent: str, now: float | None = None) -> dict[str, Any] | None:
    """What the agent's runs of the last TYPICAL_DAYS days looked like; None below TYPICAL_MIN_RUNS runs."""
    import time

    now = time.time() if now is None else now
    durations, costs = Spread(), Spread()
    failed = 0
    outcomes: dict[str, int] = {}
    for day in window_days(TYPICAL_DAYS, now):
        entry = summary.days.get(day, {}).get(agent)
        if entry is None:
            continue
        durations.add(entry["d"], entry.get("dh"), entry.get("dmax"))
        costs.add(entry["c"], entry.get("ch"))
        failed += entry["failed"]
        add_counts(outcomes, entry["outcomes"])
    if len(durations) < TYPICAL_MIN_RUNS:
        return None
    out: dict[str, Any] = {
        "dispatches": len(durations),
        "median_seconds": _seconds(durations.percentile(50)),
        "p90_seconds": _seconds(durations.percentile(90)),
        "median_cost_usd": _money(costs.percentile(50)) if len(costs) else None,
        "failed": failed,
        "outcomes": outcomes,
    }
    return out


def spend_today(summary: Summary, now: float | None = None) -> float:
    import time

    return summary.spend_on(local_day(time.time() if now is None else now))
