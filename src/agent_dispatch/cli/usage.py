"""`stats` and `ps`: what dispatches cost, and what runs now, across every server of the user."""

from __future__ import annotations

import datetime as _dt
import json
import time
from typing import Any

import click

from agent_dispatch.cli._common import usage_errors

BAR_WIDTH = 28
_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(value: float, largest: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of `width` cells for `value` out of `largest` (eighths of a cell)."""
    if largest <= 0 or value <= 0:
        return " " * width
    eighths = max(1, round(value / largest * width * 8))
    full, rest = divmod(min(eighths, width * 8), 8)
    text = "█" * full + (_EIGHTHS[rest] if rest else "")
    return text.ljust(width)


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 600 else f"{value / 60:.1f} min"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {count}" for key, count in sorted(counts.items(), key=lambda kv: -kv[1]))


def _dispatcher():
    from agent_dispatch.dispatcher import Dispatcher

    return Dispatcher()


@click.command()
@click.option("--days", type=float, default=7.0, show_default=True, help="Local days to cover, today included.")
@click.option("--agent", default="", help="Only this agent.")
@click.option("--json", "as_json", is_flag=True, help="Print the usage_stats object as JSON.")
def stats(days: float, agent: str, as_json: bool) -> None:
    """What dispatches cost and how long they took, from the usage journal of every server of this user."""
    dispatcher = _dispatcher()
    with usage_errors("--days" if not agent else None):
        figures = dispatcher.usage_stats(days, agent)
    if as_json:
        click.echo(json.dumps(figures, indent=2, ensure_ascii=False))
        return
    _print_stats(figures)


def _print_stats(figures: dict[str, Any]) -> None:
    scope = f" for agent {figures['agent']}" if figures.get("agent") else ""
    days = figures["days"]
    shown_days = int(days) if float(days).is_integer() else days
    click.echo(f"Usage{scope}, last {shown_days} day{'s' if days != 1 else ''} (since {figures['since']})")
    if not figures["dispatches"]:
        click.echo("No dispatches recorded.")
        return
    click.echo(
        f"  {figures['dispatches']} dispatches · ${figures['spend_usd']:.4f} spent · "
        f"{figures['cached_share'] * 100:.0f}% cached (saved ${figures['saved_usd']:.4f}) · {figures['failed']} failed"
    )
    dur = figures["duration_ms"]
    if dur["median"] is not None:
        click.echo(
            f"  durations: median {_secs(dur['median'] / 1000)} · p90 {_secs(dur['p90'] / 1000)} · "
            f"max {_secs(dur['max'] / 1000)}"
        )
    if figures["outcomes"]:
        click.echo(f"  outcomes: {_counts(figures['outcomes'])}")
    if figures["failures"]:
        click.echo(f"  failures: {_counts(figures['failures'])}")
    from agent_dispatch.usage.summary import EXACT_DAYS

    by_month = f"Spend per month (days before the last {EXACT_DAYS} are kept by month)"
    for key, title, width in (("per_month", by_month, 7), ("per_day", "Spend per day", 10)):
        rows = figures.get(key) or []
        if rows:
            click.echo(f"\n{title}")
            top = max(row["spend_usd"] for row in rows)
            for row in rows:
                spent = row["spend_usd"]
                label = row["month" if key == "per_month" else "day"]
                click.echo(f"  {label:<{width}}  {bar(spent, top)} ${spent:>9.4f}  {row['dispatches']:>5}")
    agents = figures["agents"]
    if agents:
        click.echo("\nSpend per agent")
        width = max(len(name) for name in agents)
        top = max(item["spend_usd"] for item in agents.values())
        for name, item in agents.items():
            failed = f"  {item['failed']} failed" if item["failed"] else ""
            click.echo(
                f"  {name:<{width}}  {bar(item['spend_usd'], top)} ${item['spend_usd']:>9.4f}  {item['dispatches']:>5}"
                f"  median {_secs(item['median_seconds'])}  p90 {_secs(item['p90_seconds'])}{failed}"
            )
    callers = figures["callers"]
    if callers:
        click.echo("\nPer caller")
        width = max(len(name) for name in callers)
        for name, item in list(callers.items())[:20]:
            click.echo(f"  {name:<{width}}  ${item['spend_usd']:>9.4f}  {item['dispatches']:>5}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list_running answer as JSON.")
def ps(as_json: bool) -> None:
    """The dispatches running now across every agent-dispatch server and CLI run of this user."""
    running = _dispatcher().running()
    if as_json:
        click.echo(json.dumps(running, indent=2, ensure_ascii=False))
        return
    if not running:
        click.echo("Nothing running.")
        return
    now = time.time()
    for item in running:
        since = _dt.datetime.fromtimestamp(item["started_at"]).strftime("%H:%M:%S")
        age = _secs(max(0.0, now - item["started_at"]))
        extras = [f"caller {item['caller']}"] if item.get("caller") else []
        if item.get("job_id"):
            extras.append(f"job {item['job_id']}")
        click.echo(
            f"{item['agent']:<16} {item['tool']:<18} pid {item['server_pid']:<8} since {since} ({age})"
            + (f"  {'  '.join(extras)}" if extras else "")
        )
        if item.get("last_progress"):
            click.echo(f"    … {item['last_progress']}")


def register(group: click.Group) -> None:
    """Attach this module's commands to the top-level group."""
    group.add_command(stats)
    group.add_command(ps)
