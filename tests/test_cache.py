"""The result cache: keys, TTL, eviction order, invalidation, copies, stats, threads."""

from __future__ import annotations

import threading

import pytest

from agent_dispatch.cache import ResultCache, cache_key
from agent_dispatch.errors import BadArgumentError
from agent_dispatch.models import AgentConfig, CacheSettings, DispatchRequest, DispatchResult, EffectiveAgent, Settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def ok(text: str = "answer", agent: str = "infra", **extra) -> DispatchResult:
    return DispatchResult(agent=agent, success=True, result=text, session_id="s1", **extra)


def agent(**overrides) -> EffectiveAgent:
    config = AgentConfig(**{"directory": "/srv/infra", **overrides})
    return EffectiveAgent.resolve("infra", config, Settings())


def request(**overrides) -> DispatchRequest:
    return DispatchRequest(**{"agent": "infra", "task": "deploy", **overrides})


# --- keys -------------------------------------------------------------------------------


def test_key_is_stable_and_hex():
    assert cache_key(request(), agent()) == cache_key(request(), agent())
    assert len(cache_key(request(), agent())) == 64


@pytest.mark.parametrize(
    "field, value",
    [("task", "deploy now"), ("context", "ctx"), ("caller", "web"), ("goal", "ship"), ("response_format", "json")],
)
def test_every_request_field_that_shapes_the_prompt_changes_the_key(field, value):
    assert cache_key(request(**{field: value}), agent()) != cache_key(request(), agent())


def test_the_requested_agent_name_changes_the_key():
    assert cache_key(request(agent="other"), agent()) != cache_key(request(), agent())


@pytest.mark.parametrize(
    "overrides",
    [
        {"directory": "/srv/elsewhere"},
        {"timeout": 17},
        {"model": "opus"},
        {"max_budget_usd": 0.5},
        {"permission_mode": "plan"},
        {"allowed_tools": ["Read"]},
        {"disallowed_tools": ["Write"]},
    ],
)
def test_every_effective_config_field_changes_the_key(overrides):
    base = cache_key(request(), agent())
    assert cache_key(request(), agent(**overrides)) != base


def test_settings_defaults_reach_the_key_through_the_effective_agent():
    plain = EffectiveAgent.resolve("infra", AgentConfig(directory="/srv/infra"), Settings())
    tooled = EffectiveAgent.resolve(
        "infra", AgentConfig(directory="/srv/infra"), Settings(default_allowed_tools=["Read"])
    )
    assert cache_key(request(), plain) != cache_key(request(), tooled)


def test_answer_shaping_fields_do_not_change_the_key():
    base = cache_key(request(), agent())
    assert cache_key(request(return_ref=True), agent()) == base
    assert cache_key(request(summary_chars=10), agent()) == base


def test_key_fields_cannot_bleed_into_each_other():
    # A naive concatenation would give these two the same key.
    first = request(task="a", context="b\nc")
    second = request(task="a\nb", context="c")
    assert cache_key(first, agent()) != cache_key(second, agent())


def test_key_survives_lone_surrogates_and_huge_context():
    key = cache_key(request(task="x\ud800", context="y" * 5_000_000), agent())
    assert len(key) == 64


# --- storing and reading ----------------------------------------------------------------


def test_hit_returns_a_copy_marked_cached(clock):
    cache = ResultCache(ttl=60, max_size=10, clock=clock)
    original = ok(parsed_result={"items": [1, 2]})
    assert cache.put("k", "infra", original)
    hit = cache.get("k")
    assert hit is not None and hit.cached is True
    assert hit.result == "answer" and hit.parsed_result == {"items": [1, 2]}
    assert original.cached is False  # the caller's object is untouched


def test_mutating_a_returned_or_stored_result_does_not_touch_the_cache(clock):
    cache = ResultCache(ttl=60, max_size=10, clock=clock)
    original = ok(parsed_result={"items": [1, 2]})
    cache.put("k", "infra", original)
    original.parsed_result["items"].append("from-put-side")
    first = cache.get("k")
    first.parsed_result["items"].append(3)
    first.result = "changed"
    second = cache.get("k")
    assert second.parsed_result == {"items": [1, 2]}
    assert second.result == "answer"
    assert second is not first


@pytest.mark.parametrize(
    "result",
    [
        DispatchResult(agent="infra", success=False, error="boom", error_type="cli_error"),
        DispatchResult(agent="infra", success=True, result="partial", denied_tools=["Write"], hint="grant"),
        DispatchResult(agent="infra", success=True, result="over", error="budget exceeded", error_type="budget"),
        DispatchResult(agent="infra", success=True, result="odd", error_type="budget"),
    ],
    ids=["failure", "denied-tools", "success-with-error", "success-with-error-type"],
)
def test_only_clean_successes_are_stored(clock, result):
    cache = ResultCache(ttl=60, max_size=10, clock=clock)
    assert cache.put("k", "infra", result) is False
    assert cache.get("k") is None
    assert cache.stats()["size"] == 0


def test_missing_key_is_a_miss(clock):
    cache = ResultCache(ttl=60, max_size=10, clock=clock)
    assert cache.get("nope") is None
    assert cache.stats()["misses"] == 1


# --- TTL ------------------------------------------------------------------------------------


def test_entries_expire_after_ttl(clock):
    cache = ResultCache(ttl=30, max_size=10, clock=clock)
    cache.put("k", "infra", ok())
    clock.now += 29.9
    assert cache.get("k") is not None
    clock.now += 0.1
    assert cache.get("k") is None
    assert len(cache) == 0  # dropped on access


def test_reads_do_not_extend_the_lifetime(clock):
    cache = ResultCache(ttl=30, max_size=10, clock=clock)
    cache.put("k", "infra", ok())
    for _ in range(5):
        clock.now += 5
        assert cache.get("k") is not None
    clock.now += 5
    assert cache.get("k") is None


def test_reinsert_restarts_the_lifetime(clock):
    cache = ResultCache(ttl=30, max_size=10, clock=clock)
    cache.put("k", "infra", ok("old"))
    clock.now += 20
    cache.put("k", "infra", ok("new"))
    clock.now += 20
    assert cache.get("k").result == "new"


def test_expired_entries_are_swept_without_being_read(clock):
    cache = ResultCache(ttl=10, max_size=1000, clock=clock)
    for i in range(100):
        cache.put(f"old{i}", "infra", ok())
    clock.now += 11
    cache.put("fresh", "infra", ok())
    assert len(cache) == 1
    assert cache.stats()["evictions"] == 0  # expiry is not an eviction


# --- size bound -----------------------------------------------------------------------------


def test_new_key_at_capacity_evicts_the_oldest_inserted(clock):
    cache = ResultCache(ttl=60, max_size=3, clock=clock)
    for key in ("a", "b", "c"):
        cache.put(key, "infra", ok(key))
        clock.now += 1
    assert cache.get("a") is not None  # a read does not protect "a"
    cache.put("d", "infra", ok("d"))
    assert cache.get("a") is None
    assert [cache.get(k).result for k in ("b", "c", "d")] == ["b", "c", "d"]
    assert cache.stats()["evictions"] == 1


def test_reinserting_an_existing_key_replaces_without_evicting(clock):
    cache = ResultCache(ttl=60, max_size=3, clock=clock)
    for key in ("a", "b", "c"):
        cache.put(key, "infra", ok(key))
    cache.put("a", "infra", ok("a2"))
    assert cache.stats()["evictions"] == 0 and len(cache) == 3
    assert cache.get("a").result == "a2"
    cache.put("d", "infra", ok("d"))  # "a" is now the newest, so "b" goes
    assert cache.get("b") is None and cache.get("a") is not None


def test_shrinking_evicts_the_oldest(clock):
    cache = ResultCache(ttl=60, max_size=5, clock=clock)
    for key in "abcde":
        cache.put(key, "infra", ok(key))
    cache.reconfigure(ttl=60, max_size=2)
    assert [k for k in "abcde" if cache.get(k) is not None] == ["d", "e"]
    stats = cache.stats()
    assert stats["max_size"] == 2 and stats["evictions"] == 3


def test_shorter_ttl_applies_to_existing_entries(clock):
    cache = ResultCache(ttl=300, max_size=5, clock=clock)
    cache.put("k", "infra", ok())
    clock.now += 20
    cache.reconfigure(ttl=10, max_size=5)
    assert cache.get("k") is None


@pytest.mark.parametrize("ttl, max_size", [(0, 10), (60, 0)])
def test_zero_ttl_or_size_disables(clock, ttl, max_size):
    cache = ResultCache(ttl=ttl, max_size=max_size, clock=clock)
    assert cache.put("k", "infra", ok()) is False
    assert cache.get("k") is None
    assert not cache.enabled


def test_disabling_drops_entries_and_settings_map_enabled_false(clock):
    cache = ResultCache.from_settings(CacheSettings(ttl=60, max_size=10), clock=clock)
    cache.put("k", "infra", ok())
    cache.apply(CacheSettings(enabled=False, ttl=60, max_size=10))
    assert cache.get("k") is None and cache.stats()["max_size"] == 0
    cache.apply(CacheSettings(ttl=60, max_size=10))
    assert cache.put("k", "infra", ok()) and cache.get("k") is not None


@pytest.mark.parametrize(
    "ttl, max_size", [(float("nan"), 1), (float("inf"), 1), (-1, 1), (1, -1), (1, 1.5), (True, 1), (1, True)]
)
def test_bad_settings_are_refused(ttl, max_size):
    with pytest.raises(BadArgumentError):
        ResultCache(ttl=ttl, max_size=max_size)
    cache = ResultCache(ttl=1, max_size=1)
    with pytest.raises(BadArgumentError):
        cache.reconfigure(ttl, max_size)
    assert cache.stats()["ttl"] == 1 and cache.stats()["max_size"] == 1


# --- invalidation, clear, stats -----------------------------------------------------------


def test_invalidate_agent_drops_only_that_agents_entries(clock):
    cache = ResultCache(ttl=60, max_size=10, clock=clock)
    cache.put("i1", "infra", ok())
    cache.put("i2", "infra", ok())
    cache.put("w1", "web", ok(agent="web"))
    assert cache.invalidate_agent("infra") == 2
    assert cache.get("i1") is None and cache.get("i2") is None
    assert cache.get("w1") is not None
    assert cache.invalidate_agent("infra") == 0


def test_clear_counts_live_entries(clock):
    cache = ResultCache(ttl=60, max_size=10, clock=clock)
    cache.put("a", "infra", ok())
    clock.now += 30
    cache.put("b", "infra", ok())
    clock.now += 31  # "a" has expired
    assert cache.clear() == 1
    assert cache.get("b") is None


def test_stats_shape_and_counts(clock):
    cache = ResultCache(ttl=45, max_size=2, clock=clock)
    assert cache.stats() == {
        "size": 0, "max_size": 2, "hits": 0, "misses": 0, "evictions": 0, "hit_rate": 0.0, "ttl": 45.0
    }
    cache.put("a", "infra", ok())
    cache.get("a")
    cache.get("a")
    cache.get("a")
    cache.get("zz")
    cache.put("b", "infra", ok())
    cache.put("c", "infra", ok())
    assert cache.stats() == {
        "size": 2, "max_size": 2, "hits": 3, "misses": 1, "evictions": 1, "hit_rate": 0.75, "ttl": 45.0
    }


# --- threads ----------------------------------------------------------------------------------


def test_concurrent_threads_keep_the_cache_consistent():
    cache = ResultCache(ttl=60, max_size=50)
    threads_n, rounds = 8, 400
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads_n)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(rounds):
                key = f"k{(n * rounds + i) % 120}"
                cache.put(key, f"agent{n % 3}", ok(key))
                got = cache.get(key)
                if got is not None:
                    assert got.result == key and got.cached
                if i % 50 == 0:
                    cache.invalidate_agent(f"agent{(n + 1) % 3}")
                    cache.stats()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stats = cache.stats()
    assert stats["size"] <= 50
    assert stats["hits"] + stats["misses"] == threads_n * rounds
