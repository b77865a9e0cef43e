"""The bounded TTL cache of dispatch results, and its statistics.

A `ResultCache` maps a request key (`cache_key`) to a clean, successful `DispatchResult`.

- Entries live `ttl` seconds from the moment they were inserted; an expired entry is dropped
  when it is next touched, and every insert sweeps the expired entries off the old end.
- At most `max_size` entries are kept: inserting a NEW key at capacity evicts the oldest
  inserted entry. Reads never refresh an entry's position or lifetime; re-inserting an existing
  key replaces it and makes it the newest.
- `ttl == 0` or `max_size == 0` disables the cache (nothing is stored, every lookup misses).
- Only clean successes are stored: `success` true, no `denied_tools`, no `error`, no changed files
  (a run that changed files did work a replay would not do again).
- Callers get deep copies marked `cached=True`; nothing they do to one reaches the cache.
- Every method is thread-safe (one lock); `get` is O(1).

This module knows nothing of processes, files or MCP.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from agent_dispatch.errors import BadArgumentError
from agent_dispatch.models import CacheSettings, DispatchRequest, DispatchResult, EffectiveAgent

# Bump when the key's inputs change shape, so keys of different layouts can never collide.
_KEY_VERSION = 1


def cache_key(request: DispatchRequest, agent: EffectiveAgent) -> str:
    """The cache key of `request` run by `agent`: a sha256 hex digest.

    Covers everything that changes the prompt or the run: the request's agent, task, context,
    caller, goal and response_format, and the agent's whole effective configuration (directory,
    timeout, model, budget, permission mode, tool lists, and any field added to EffectiveAgent
    later). `return_ref` and `summary_chars` only shape the answer, so they are left out.
    """
    material = {
        "v": _KEY_VERSION,
        "agent": request.agent,
        "task": request.task,
        "context": request.context,
        "caller": request.caller,
        "goal": request.goal,
        "response_format": request.response_format,
        "config": agent.model_dump(mode="json"),
    }
    # ensure_ascii keeps lone surrogates encodable; sort_keys makes the text canonical.
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def is_cacheable(result: DispatchResult) -> bool:
    """True for a clean success (outcome `done` or none, no question, no changed files): all the cache stores."""
    changed = result.changes is not None and bool(result.changes.files or result.changes.worktree)
    return (
        result.success and not result.denied_tools and not result.error and result.error_type is None
        and result.outcome in (None, "done") and not result.question and not result.clarifications
        and not result.budget_exceeded and not changed
    )


class _Entry(NamedTuple):
    agent: str
    result: DispatchResult  # a private copy, never handed out
    inserted_at: float


def _check_settings(ttl: object, max_size: object) -> tuple[float, int]:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl < 0:
        raise BadArgumentError(f"cache ttl must be a finite number >= 0, got {ttl!r}")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
        raise BadArgumentError(f"cache max_size must be an integer >= 0, got {max_size!r}")
    return float(ttl), max_size


class ResultCache:
    """A thread-safe TTL + size-bounded cache of dispatch results (see the module docstring).

    `clock` returns seconds and must never go backwards (time.monotonic by default; tests
    inject a fake one).
    """

    def __init__(self, ttl: float, max_size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl, self._max_size = _check_settings(ttl, max_size)
        self._clock = clock
        self._lock = threading.Lock()
        # Insertion order == expiry order (one ttl for all, monotonic clock): the oldest is first.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._hits = 0
        self._misses = 0
        self._evictions = 0

    @classmethod
    def from_settings(cls, settings: CacheSettings, clock: Callable[[], float] = time.monotonic) -> ResultCache:
        """A cache configured from agents.yaml's `settings.cache` (`enabled: false` stores nothing)."""
        return cls(settings.ttl, settings.max_size if settings.enabled else 0, clock)

    @property
    def enabled(self) -> bool:
        return self._ttl > 0 and self._max_size > 0

    def get(self, key: str) -> DispatchResult | None:
        """A copy of the stored result marked `cached=True`, or None (absent or expired)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._expired(entry, self._clock()):
                del self._entries[key]
                entry = None
            if entry is None:
                self._misses += 1
                return None
            self._hits += 1
        # The stored copy is never mutated, so copying outside the lock is safe.
        return entry.result.model_copy(deep=True, update={"cached": True})

    def contains(self, key: str) -> bool:
        """Whether `get(key)` would answer now; counts neither a hit nor a miss."""
        with self._lock:
            entry = self._entries.get(key)
            return entry is not None and not self._expired(entry, self._clock())

    def put(self, key: str, agent: str, result: DispatchResult) -> bool:
        """Store a copy of `result` under `key`; True if stored.

        Results that are not clean successes are ignored, and so is everything while disabled.
        """
        if not is_cacheable(result):
            return False
        stored = result.model_copy(deep=True, update={"cached": False})
        with self._lock:
            if not self.enabled:
                return False
            now = self._clock()
            self._sweep(now)
            if key in self._entries:
                del self._entries[key]  # re-insertion makes it the newest
            else:
                while len(self._entries) >= self._max_size:
                    self._entries.popitem(last=False)
                    self._evictions += 1
            self._entries[key] = _Entry(agent, stored, now)
            return True

    def invalidate_agent(self, agent: str) -> int:
        """Drop every entry of `agent` (its configuration changed); returns how many."""
        with self._lock:
            doomed = [key for key, entry in self._entries.items() if entry.agent == agent]
            for key in doomed:
                del self._entries[key]
            return len(doomed)

    def clear(self) -> int:
        """Drop every entry; returns how many were live. Hit/miss counters are kept."""
        with self._lock:
            self._sweep(self._clock())
            count = len(self._entries)
            self._entries.clear()
            return count

    def reconfigure(self, ttl: float, max_size: int) -> None:
        """Apply new settings (re-read per call). Shrinking evicts the oldest entries at once."""
        ttl, max_size = _check_settings(ttl, max_size)
        with self._lock:
            self._ttl, self._max_size = ttl, max_size
            if not self.enabled:
                self._entries.clear()
                return
            self._sweep(self._clock())
            while len(self._entries) > self._max_size:
                self._entries.popitem(last=False)
                self._evictions += 1

    def apply(self, settings: CacheSettings) -> None:
        """`reconfigure` from agents.yaml's `settings.cache` (`enabled: false` stores nothing)."""
        self.reconfigure(settings.ttl, settings.max_size if settings.enabled else 0)

    def stats(self) -> dict[str, Any]:
        """`{size, max_size, hits, misses, evictions, hit_rate, ttl}`; `size` counts live entries."""
        with self._lock:
            self._sweep(self._clock())
            lookups = self._hits + self._misses
            return {
                "size": len(self._entries),
                "max_size": self._max_size,
                "hits": self._hits,
                "misses": self._misses,
                "evictions": self._evictions,
                "hit_rate": round(self._hits / lookups, 4) if lookups else 0.0,
                "ttl": self._ttl,
            }

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _expired(self, entry: _Entry, now: float) -> bool:
        return now - entry.inserted_at >= self._ttl

    def _sweep(self, now: float) -> None:
        """Drop expired entries from the old end; amortised O(1) per insert. Lock held."""
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if not self._expired(oldest, now):
                return
            self._entries.popitem(last=False)
