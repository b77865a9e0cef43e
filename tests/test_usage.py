"""The usage journal: records, concurrent appends, rotation, summaries, stats and `typical`."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent_dispatch.usage import Journal, Summary, Usage, read_records, typical, usage_stats
from agent_dispatch.usage.journal import previous_path, summary_path


def _ts(days_ago: int, hour: int = 12) -> float:
    day = dt.date.today() - dt.timedelta(days=days_ago)
    return dt.datetime.combine(day, dt.time(hour)).timestamp()


def _plant(path: Path, records: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")


def _run(agent: str, days_ago: int, duration_ms: int, cost: float | None, **extra) -> dict:
    rec = {"ts": _ts(days_ago), "agent": agent, "tool": "dispatch", "success": True, "cached": False,
           "duration_ms": duration_ms}
    if cost is not None:
        rec["cost_usd"] = cost
    rec.update(extra)
    return rec


def test_a_record_is_one_line_and_the_journal_is_owner_only(tmp_path):
    path = tmp_path / "cfg" / "usage.jsonl"
    journal = Journal(path)
    journal.append({"ts": 1.5, "agent": "infra", "tool": "dispatch", "success": True, "cached": False,
                    "cost_usd": 0.0123456789, "duration_ms": 10, "caller": "x" * 5000, "outcome": None})
    lines = path.read_bytes().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["cost_usd"] == 0.0123456789  # as reported, not rounded
    assert len(record["caller"]) <= 200 and "outcome" not in record
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_journal_that_cannot_be_written_never_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert Journal(blocker / "usage.jsonl").append({"ts": 1, "agent": "a"}) == ""


APPENDER = """
import sys
sys.path.insert(0, {src!r})
from agent_dispatch.usage import Usage
usage = Usage(__import__("pathlib").Path({path!r}))
usage.journal.rotate_bytes = {rotate}
for i in range({count}):
    rec = {{"ts": 1700000000 + i, "agent": "w{worker}", "tool": "dispatch", "success": True, "cached": False,
           "cost_usd": 0.001, "duration_ms": i, "caller": "c" * {pad}, "seq": i}}
    due = usage.record(rec)
    if due:
        usage.housekeep(due)
"""


def _appenders(path: Path, workers: int, count: int, rotate: int, pad: int = 60) -> None:
    src = str(Path(__file__).resolve().parent.parent / "src")
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER.format(src=src, path=str(path), rotate=rotate, count=count,
                                                                 worker=w, pad=pad)])
        for w in range(workers)
    ]
    for proc in procs:
        assert proc.wait(timeout=240) == 0


def test_concurrent_appends_from_several_processes_lose_and_tear_nothing(tmp_path):
    path = tmp_path / "usage.jsonl"
    _appenders(path, workers=4, count=600, rotate=1 << 40, pad=110)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    records = [json.loads(line) for line in lines[:-1]]  # every line parses: nothing torn
    assert len(records) == 2400
    for worker in range(4):
        assert sorted(r["seq"] for r in records if r["agent"] == f"w{worker}") == list(range(600))


def test_rotation_keeps_one_raw_generation_and_the_summary_counts_every_record(tmp_path):
    path = tmp_path / "usage.jsonl"
    _appenders(path, workers=3, count=700, rotate=40_000)  # ~200 records per generation: many rotations
    assert previous_path(path).exists()
    assert path.stat().st_size < 60_000 and previous_path(path).stat().st_size < 60_000
    summary = Summary(Journal(path))
    summary.refresh()
    counts: dict[str, int] = {}
    for table in (summary.days, summary.months):  # 2023's days are kept by month once saved
        for agents in table.values():
            for name, entry in agents.items():
                counts[name] = counts.get(name, 0) + entry["n"]
    assert counts == {"w0": 700, "w1": 700, "w2": 700}
    assert stat.S_IMODE(summary_path(path).stat().st_mode) == 0o600


def test_a_reader_sees_new_lines_with_one_stat_and_survives_a_damaged_line(tmp_path):
    path = tmp_path / "usage.jsonl"
    today = dt.date.today().strftime("%Y-%m-%d")
    _plant(path, [_run("a", 0, 1000, 0.5)])
    with open(path, "ab") as fh:
        fh.write(b"{torn\n")
    _plant(path, [_run("a", 0, 3000, 0.25)])
    summary = Summary(Journal(path))
    assert summary.refresh() is True
    assert summary.refresh() is False  # nothing new: nothing read
    entry = summary.days[today]["a"]
    assert entry["n"] == 2 and entry["spend"] == pytest.approx(0.75)
    line = json.dumps(_run("a", 0, 5000, 0.25)).encode() + b"\n"
    with open(path, "ab") as fh:
        fh.write(line[:20])  # a writer mid-line: left for later, not skipped
    summary.refresh()
    assert summary.days[today]["a"]["n"] == 2
    with open(path, "ab") as fh:
        fh.write(line[20:])
    summary.refresh()
    assert summary.days[today]["a"]["n"] == 3


def test_a_fresh_process_reads_the_saved_summary_and_only_the_new_lines(tmp_path):
    path = tmp_path / "usage.jsonl"
    _plant(path, [_run("a", 0, 1000, 0.1)] * 10)
    Summary(Journal(path)).refresh(persist=True)
    # Rewrite the old lines in place (same inode, same length) under another agent's name: a reader
    # that re-read them would count agent "b".
    path.write_bytes(path.read_bytes().replace(b'"agent": "a"', b'"agent": "b"'))
    _plant(path, [_run("a", 0, 1000, 0.1)])
    fresh = Summary(Journal(path))
    fresh.refresh()
    day = fresh.days[dt.date.today().strftime("%Y-%m-%d")]
    assert day["a"]["n"] == 11 and "b" not in day


def _planted(tmp_path: Path) -> Summary:
    path = tmp_path / "usage.jsonl"
    records = [
        _run("infra", 0, 1000, 0.10, caller="web", outcome="done"),
        _run("infra", 0, 2000, 0.20, caller="web", outcome="done"),
        _run("infra", 1, 3000, 0.30, caller="cli", outcome="partial"),
        _run("infra", 2, 10000, 0.40, success=False, error_type="timeout"),
        {"ts": _ts(0), "agent": "infra", "tool": "dispatch", "success": True, "cached": True, "saved_usd": 0.10,
         "duration_ms": 0, "caller": "web"},
        _run("db", 0, 4000, 1.00, caller="web", outcome="blocked"),
        {"ts": _ts(0), "agent": "db", "tool": "dispatch", "success": False, "cached": False, "duration_ms": 0,
         "error_type": "recursion", "refused": True},
        _run("db", 20, 99000, 9.00),  # outside a 7-day window
    ]
    _plant(path, records)
    summary = Summary(Journal(path))
    summary.refresh()
    return summary


def test_stats_figures_on_a_planted_journal(tmp_path):
    summary = _planted(tmp_path)
    figures = usage_stats(summary, 7)
    assert figures["dispatches"] == 7
    assert figures["cached"] == 1
    assert figures["cached_share"] == pytest.approx(1 / 7, abs=1e-4)
    assert figures["saved_usd"] == pytest.approx(0.10)
    assert figures["spend_usd"] == pytest.approx(2.00)
    # runs that ran: 1000, 2000, 3000, 4000, 10000 -> nearest-rank median 3000, p90 10000
    assert figures["duration_ms"] == {"median": 3000, "p90": 10000, "max": 10000}
    assert figures["outcomes"] == {"done": 2, "partial": 1, "blocked": 1}
    assert figures["failures"] == {"timeout": 1, "recursion": 1}
    infra = figures["agents"]["infra"]
    assert infra["dispatches"] == 5 and infra["spend_usd"] == pytest.approx(1.0)
    assert infra["median_seconds"] == 2.0 and infra["p90_seconds"] == 10.0
    assert infra["failures"] == {"timeout": 1}
    assert list(figures["agents"]) == ["db", "infra"]  # most expensive first
    assert figures["callers"]["web"] == {"dispatches": 4, "spend_usd": pytest.approx(1.30)}
    assert [day["dispatches"] for day in figures["per_day"]] == [1, 1, 5]
    wide = usage_stats(summary, 30)
    assert wide["spend_usd"] == pytest.approx(11.0) and wide["duration_ms"]["max"] == 99000


def test_stats_for_one_agent_and_one_day(tmp_path):
    summary = _planted(tmp_path)
    figures = usage_stats(summary, 1, agent="infra")
    assert figures["dispatches"] == 3 and list(figures["agents"]) == ["infra"]
    assert figures["spend_usd"] == pytest.approx(0.30)


def test_typical_needs_three_runs_and_reads_the_last_thirty_days(tmp_path):
    summary = _planted(tmp_path)
    assert typical(summary, "db") is None  # one run in 30 days... and one at day 20: two in all
    infra = typical(summary, "infra")
    assert infra == {"dispatches": 4, "median_seconds": 2.0, "p90_seconds": 10.0, "median_cost_usd": 0.2,
                     "failed": 1, "outcomes": {"done": 2, "partial": 1}}


def test_usage_caches_typical_until_a_record_arrives(tmp_path):
    path = tmp_path / "usage.jsonl"
    usage = Usage(path)
    for ms in (1000, 2000, 3000):
        usage.record(_run("a", 0, ms, 0.1))
    first = usage.typical("a")
    assert first["dispatches"] == 3 and usage.typical("a") is first
    usage.record(_run("a", 0, 9000, 0.1))
    assert usage.typical("a")["dispatches"] == 4


def test_stats_cli_prints_bars_and_json(tmp_path, write_config, project, monkeypatch):
    write_config(f"agents:\n  infra:\n    directory: {project('infra')}\n")
    summary = _planted(tmp_path)
    monkeypatch.setenv("AGENT_DISPATCH_USAGE_LOG", str(summary.journal.path))
    cli = [str(Path(sys.executable).parent / "agent-dispatch")]
    out = subprocess.run(cli + ["stats"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "█" in out.stdout and "Spend per agent" in out.stdout and "infra" in out.stdout
    as_json = subprocess.run(cli + ["stats", "--json", "--days", "7"], capture_output=True, text=True, timeout=60)
    assert json.loads(as_json.stdout)["spend_usd"] == pytest.approx(2.0)
    bad = subprocess.run(cli + ["stats", "--days", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_usage_log_false_writes_nothing(tmp_path, write_config, project, fake_claude):
    fake_claude()
    write_config(f"""\
        agents:
          infra:
            directory: {project('infra')}
        settings:
          usage_log: false
        """)
    cli = [str(Path(sys.executable).parent / "agent-dispatch")]
    out = subprocess.run(cli + ["test", "infra", "hi"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not (Path(os.environ["AGENT_DISPATCH_CONFIG"]).parent / "usage.jsonl").exists()


def test_read_records_leaves_a_half_written_tail(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(b'{"a": 1}\n{"a": 2')
    records, end = read_records(path)
    assert records == [{"a": 1}] and end == 9


KEEPER = """
import sys
sys.path.insert(0, {src!r})
from agent_dispatch.dispatcher import Dispatcher
from agent_dispatch.models import DispatchResult
from agent_dispatch.usage.journal import SUMMARY_EVERY
dispatcher = Dispatcher()
cfg = dispatcher.config()
path = dispatcher.usage().path
result = DispatchResult(agent="infra", success=True, result="x", cost_usd=0.01, duration_ms=1200,
                        session_id="5b7f3e0c-1c2d-4e5f-8a9b-0c1d2e3f4a5b")
marks = int(sys.argv[1])
while not path.exists() or path.stat().st_size < marks * SUMMARY_EVERY:
    dispatcher.journal(result, cfg, tool="dispatch", caller="c" * 100)
print(sum(1 for _ in open(path)))
"""  # exits right after the line that crossed the last mark: the catch-up must still finish


def test_writers_keep_the_summary_file_close_behind_the_journal(write_config, project):
    from agent_dispatch.usage.journal import SUMMARY_EVERY

    write_config(f"agents:\n  infra:\n    directory: {project('infra')}\n")
    path = Path(os.environ["AGENT_DISPATCH_CONFIG"]).parent / "usage.jsonl"
    src = str(Path(__file__).resolve().parent.parent / "src")
    written = 0
    for marks in (1, 2):
        out = subprocess.run([sys.executable, "-c", KEEPER.format(src=src), str(marks)], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        written = int(out.stdout)
        saved = json.loads(summary_path(path).read_bytes())
        # The summary on disk has folded everything up to the mark the last writer crossed, so a
        # fresh reader folds less than SUMMARY_EVERY bytes of raw lines, however long the journal.
        assert marks * SUMMARY_EVERY <= saved["source"]["offset"] <= path.stat().st_size
        assert sum(entry["n"] for day in saved["days"].values() for entry in day.values()) == written
    assert stat.S_IMODE(summary_path(path).stat().st_mode) == 0o600
    assert not list(path.parent.glob(".usage-summary-*"))  # no temporary file left behind
    stats = subprocess.run([str(Path(sys.executable).parent / "agent-dispatch"), "stats", "--json"],
                           capture_output=True, text=True, timeout=60)
    assert json.loads(stats.stdout)["dispatches"] == written


def test_days_older_than_the_exact_window_become_months_that_stay_small_and_close(tmp_path):
    from agent_dispatch.usage.summary import EXACT_DAYS

    path = tmp_path / "usage.jsonl"
    old_days = (EXACT_DAYS + 10, EXACT_DAYS + 11)
    old = [_run("infra", old_days[n % 2], 1000 + 37 * n, 0.001 * (1 + n % 50), caller=f"c{n % 3}")
           for n in range(20_000)]
    recent = [_run("infra", 1, 2000 + n, 0.01) for n in range(10)]
    _plant(path, old + recent)
    exact = sorted(r["duration_ms"] for r in old + recent)

    writer = Summary(Journal(path))
    writer.refresh(persist=True)
    saved = json.loads(summary_path(path).read_bytes())
    months = {(dt.date.today() - dt.timedelta(days=back)).strftime("%Y-%m") for back in old_days}
    assert not any(day < (dt.date.today() - dt.timedelta(days=EXACT_DAYS)).isoformat() for day in saved["days"])
    assert set(saved["months"]) == months
    merged = [entry for month in saved["months"].values() for entry in month.values()]
    assert sum(entry["n"] for entry in merged) == 20_000 and all(entry["d"] == [] for entry in merged)
    assert sum(sum(entry["dh"].values()) for entry in merged) == 20_000
    assert len(json.dumps(saved["months"])) < 25_000  # bucket counts, not 20,000 values
    recent_day = (dt.date.today() - dt.timedelta(days=1)).strftime("%Y-%m-%d")
    assert len(saved["days"][recent_day]["infra"]["d"]) == 10  # recent days stay exact

    reader = Summary(Journal(path))  # a fresh process reads the compacted file
    reader.refresh()
    stats = usage_stats(reader, EXACT_DAYS + 20)
    assert stats["dispatches"] == 20_010
    assert stats["spend_usd"] == pytest.approx(sum(r["cost_usd"] for r in old + recent))  # money stays exact
    assert stats["callers"]["c0"]["dispatches"] == 6667
    assert stats["duration_ms"]["max"] == exact[-1]
    for key, p in (("median", 50), ("p90", 90)):
        true = exact[max(1, -(-p * len(exact) // 100)) - 1]
        assert abs(stats["duration_ms"][key] - true) <= 0.01 * true
    assert sorted(item["month"] for item in stats["per_month"]) == sorted(months)
    assert stats["since"] == min(months) + "-01"
    assert "per_month" not in usage_stats(reader, 7)
    assert typical(reader, "infra")["dispatches"] == 10  # the last 30 days: exact values only

    # A late line for a day already merged (a journal rotated while nobody read it) joins its month.
    _plant(path, [_run("infra", old_days[0], 5000, 0.5)])
    reader.refresh(persist=True)
    again = json.loads(summary_path(path).read_bytes())
    assert sum(entry["n"] for month in again["months"].values() for entry in month.values()) == 20_001
