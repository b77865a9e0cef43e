"""The service: every workflow against a fake `claude`, the shared limiter, recursion and the cache."""

from __future__ import annotations

import json
import os

import anyio
import pytest

from agent_dispatch import background
from agent_dispatch.dispatcher import Dispatcher, make_request, multi
from agent_dispatch.errors import AgentNotFoundError, BadArgumentError

SPAN_BODY = """
import os, time
prompt = read_prompt()
record(prompt)
spans = os.environ["SPANS"]
with open(spans, "a") as fh:
    fh.write(f"start {time.time()}\\n")
time.sleep(float(os.environ.get("FAKE_CLAUDE_SLEEP", "0.15")))
with open(spans, "a") as fh:
    fh.write(f"end {time.time()}\\n")
if "replied:" in prompt:
    emit_result("done [RESOLVED]")
else:
    emit_result("echo: " + prompt.splitlines()[-1])
"""


@pytest.fixture
def two_agents(write_config, project):
    def make(max_concurrency: int = 5, extra: str = "") -> None:
        a, b = project("alpha"), project("beta")
        write_config(f"""
            agents:
              alpha: {{directory: {a}, timeout: 30}}
              beta: {{directory: {b}, timeout: 30}}
            settings:
              max_concurrency: {max_concurrency}
            {extra}
        """)

    return make


def max_overlap(path) -> int:
    events = []
    for line in path.read_text().splitlines():
        kind, stamp = line.split()
        events.append((float(stamp), 1 if kind == "start" else -1))
    events.sort(key=lambda e: (e[0], e[1]))
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    return peak


async def test_one_limit_across_every_path(two_agents, fake_claude, tmp_path, monkeypatch):
    two_agents(max_concurrency=3)
    spans = tmp_path / "spans"
    monkeypatch.setenv("SPANS", str(spans))
    fake_claude(SPAN_BODY)
    d = Dispatcher()
    async with anyio.create_task_group() as tg:
        jobs = background.JobManager(d, tg)
        job_ids = []

        async def progress(_message: str) -> None:
            pass

        async def one(n: int) -> None:
            kind = n % 6
            req = make_request(agent="alpha" if n % 2 else "beta", task=f"task {n}")
            if kind == 0:
                await d.dispatch(req)
            elif kind == 1:
                await d.dispatch_session(req)
            elif kind == 2:
                await multi.dispatch_parallel(d, [req, make_request(agent="alpha", task=f"task {n}b")])
            elif kind == 3:
                await d.dispatch_stream(req, progress)
            elif kind == 4:
                await multi.dialogue(d, "alpha", "beta", f"topic {n}", max_rounds=1)
            else:
                job_ids.append((await jobs.start(req)).id)

        async with anyio.create_task_group() as calls:
            for n in range(50):
                calls.start_soon(one, n)
        for job_id in job_ids:
            job, timed_out = await jobs.wait(job_id, 30)
            assert not timed_out and job.status == "done", job
        tg.cancel_scope.cancel()
    assert d.limiter.peak == 3
    assert max_overlap(spans) <= 3
    assert len(spans.read_text().splitlines()) >= 2 * 58


async def test_limiter_is_first_come_first_served(two_agents, fake_claude, tmp_path, monkeypatch):
    two_agents(max_concurrency=1)
    spans = tmp_path / "spans"
    monkeypatch.setenv("SPANS", str(spans))
    monkeypatch.setenv("FAKE_CLAUDE_SLEEP", "0.05")
    fake = fake_claude(SPAN_BODY)
    d = Dispatcher()
    async with anyio.create_task_group() as tg:
        for n in range(6):
            tg.start_soon(lambda n=n: d.dispatch(make_request(agent="alpha", task=f"order {n}"), use_cache=False))
            await anyio.sleep(0.01)
    order = [run["stdin"] for run in fake.runs()]
    assert order == [f"order {n}" for n in range(6)]


async def test_recursion_limit_starts_nothing(two_agents, fake_claude, monkeypatch):
    two_agents(extra="")
    fake = fake_claude()
    monkeypatch.setenv("AGENT_DISPATCH_DEPTH", "3")
    result = await Dispatcher().dispatch(make_request(agent="alpha", task="deeper"))
    assert result.success is False and result.error_type == "recursion"
    assert fake.runs() == []


async def test_child_gets_depth_plus_one(two_agents, fake_claude, monkeypatch):
    two_agents()
    fake = fake_claude()
    monkeypatch.setenv("AGENT_DISPATCH_DEPTH", "1")
    assert (await Dispatcher().dispatch(make_request(agent="alpha", task="x"))).success
    assert fake.runs()[0]["env"]["AGENT_DISPATCH_DEPTH"] == "2"


async def test_changing_an_agent_drops_its_cache_entries(two_agents, fake_claude, config_path):
    two_agents()
    fake = fake_claude()
    d = Dispatcher()
    req = make_request(agent="alpha", task="same")
    await d.dispatch(req)
    assert (await d.dispatch(req)).cached is True
    text = config_path.read_text().replace("alpha: {", "alpha: {model: opus, ")
    config_path.write_text(text)
    os.utime(config_path, ns=(1, 1))  # a different mtime even on coarse clocks
    fresh = await d.dispatch(req)
    assert fresh.cached is False and len(fake.runs()) == 2
    assert "--model" in fake.runs()[-1]["argv"]


async def test_failures_are_not_cached(two_agents, fake_claude):
    two_agents()
    fake = fake_claude("read_prompt(); record(''); emit_result('boom', is_error=True); sys.exit(1)")
    d = Dispatcher()
    req = make_request(agent="alpha", task="x")
    first, second = await d.dispatch(req), await d.dispatch(req)
    assert not first.success and not second.cached and len(fake.runs()) == 2


async def test_parallel_rejects_before_running(two_agents, fake_claude):
    two_agents(max_concurrency=1)
    fake = fake_claude()
    d = Dispatcher()
    with pytest.raises(AgentNotFoundError):
        multi.parse_parallel(d, json.dumps([{"agent": "alpha", "task": "a"}, {"agent": "zeta", "task": "b"}]))
    with pytest.raises(BadArgumentError, match="at most 100"):
        multi.parse_parallel(d, json.dumps([{"agent": "alpha", "task": "a"}] * 101))
    with pytest.raises(BadArgumentError, match="unknown keys"):
        multi.parse_parallel(d, json.dumps([{"agent": "alpha", "task": "a", "model": "opus"}]))
    with pytest.raises(BadArgumentError):
        multi.parse_parallel(d, json.dumps([{"agent": "alpha"}]))
    assert fake.runs() == []


async def test_dialogue_ends_on_resolved(two_agents, fake_claude, tmp_path, monkeypatch):
    two_agents()
    monkeypatch.setenv("SPANS", str(tmp_path / "spans"))
    monkeypatch.setenv("FAKE_CLAUDE_SLEEP", "0")
    fake = fake_claude(SPAN_BODY)
    out = await multi.dialogue(Dispatcher(), "alpha", "beta", "which port?", max_rounds=5)
    assert out["resolved"] is True and out["rounds"] == 1
    assert [m["agent"] for m in out["conversation"]] == ["beta", "alpha"]
    assert out["total_cost_usd"] == pytest.approx(0.0246)
    assert "which port?" in fake.runs()[0]["stdin"]
    with pytest.raises(BadArgumentError):
        await multi.dialogue(Dispatcher(), "alpha", "beta", "x", max_rounds=11)


async def test_cancelled_caller_holds_its_slot_until_the_child_is_gone(two_agents, fake_claude):
    two_agents(max_concurrency=1)
    fake = fake_claude("""
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
record(read_prompt())
time.sleep(60)
""")
    d = Dispatcher()
    async with anyio.create_task_group() as tg:
        tg.start_soon(d.dispatch, make_request(agent="alpha", task="stubborn"))
        while not fake.runs():
            await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    pid = fake.runs()[0]["pid"]
    assert d.limiter.active == 0
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
