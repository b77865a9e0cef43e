"""Spend caps and what the journal teaches a failed run: the fan-out budget, the daily budget,
`budget_exceeded`, and a timeout hint from the agent's measured p90.

Pure functions of results, specs and figures; the dispatcher's run path applies them.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import time
from typing import Any

import anyio

from agent_dispatch.errors import BudgetFailure
from agent_dispatch.models import DispatchResult
from agent_dispatch.runner import RunSpec, runtime_of


def with_run_cap(spec: RunSpec, left: float | None) -> RunSpec:
    """The spec with a per-run cap no larger than `left` dollars (None, or a CLI without one: unchanged)."""
    if left is None:
        return spec
    left = max(left, 0.01)  # the CLI needs a positive amount; the cap check before the run refused the rest
    current = spec.agent.max_budget_usd
    if current is not None and current <= left:
        return spec
    agent = spec.agent.model_copy(update={"max_budget_usd": round(left, 4)})
    try:
        runtime_of(spec).check_agent(agent)
    except Exception:  # noqa: BLE001 - this CLI takes no per-run cap: the caps before and after the run still hold
        return spec
    return dataclasses.replace(spec, agent=agent)


def mark_over_budget(result: DispatchResult, spec: RunSpec) -> DispatchResult:
    """`budget_exceeded: true` when the reported cost went past the run's cap (such a result is never cached)."""
    cap = spec.agent.max_budget_usd
    if cap is not None and result.cost_usd is not None and result.cost_usd > cap and not result.budget_exceeded:
        return result.model_copy(update={"budget_exceeded": True})
    return result


# -- the fan-out budget (`max_total_usd` on dispatch_parallel) ----------------------------------------


class FanoutBudget:
    """One spend cap for every item of a dispatch_parallel call.

    Items check it just before they would start; a finished item adds its cost, and once the
    total reaches the cap the running items are cancelled (their trees killed, session ids
    kept) and no further item starts."""

    def __init__(self, total_usd: float) -> None:
        self.total = float(total_usd)
        self.spent = 0.0
        self._scopes: set[anyio.CancelScope] = set()

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.total

    @property
    def left(self) -> float:
        return max(0.0, self.total - self.spent)

    def prepare(self, spec: RunSpec) -> RunSpec:
        """A per-run cap of what is left, and a session id chosen now so a cancelled run keeps it."""
        spec = with_run_cap(spec, self.left)
        if spec.resume is None and spec.session_id is None:  # only CLIs that take a session id get one
            spec = dataclasses.replace(spec, session_id=runtime_of(spec).new_session_id())
        return spec

    def refusal(self, agent: str) -> DispatchResult:
        return DispatchResult.failure(agent, BudgetFailure(
            f"not started: the fan-out's max_total_usd of ${self.total:g} was reached (${self.spent:.4f} spent)",
            "Raise max_total_usd, or dispatch the remaining items again in a new call.",
        ))

    def cancelled(self, spec: RunSpec) -> DispatchResult:
        return DispatchResult.failure(spec.agent.name, BudgetFailure(
            f"cancelled: the fan-out's max_total_usd of ${self.total:g} was reached while this item ran",
            "Resume its session with dispatch_session to finish it, or raise max_total_usd.",
        ), session_id=spec.resume or spec.session_id)

    def watch(self, scope: anyio.CancelScope) -> None:
        self._scopes.add(scope)

    def unwatch(self, scope: anyio.CancelScope) -> None:
        self._scopes.discard(scope)

    def add(self, result: DispatchResult) -> None:
        if result.cost_usd is not None and not result.cached:
            self.spent += result.cost_usd
        if self.exhausted:
            for scope in list(self._scopes):
                scope.cancel()


# -- the daily budget (`settings.daily_budget_usd`, across every server of the user) --------------


def next_midnight(now: float) -> _dt.datetime:
    today = _dt.datetime.fromtimestamp(now).date()
    return _dt.datetime.combine(today + _dt.timedelta(days=1), _dt.time())


def daily_refusal(cap: float | None, spent: float, agent: str, config_path: Any, now: float | None = None,
                  ) -> DispatchResult | None:
    """A `budget` failure when today's spend has reached the daily cap, else None."""
    if cap is None or spent < cap:
        return None
    now = time.time() if now is None else now
    reset = next_midnight(now)
    wait = max(0, int(reset.timestamp() - now))
    return DispatchResult.failure(agent, BudgetFailure(
        f"the daily budget of ${cap:g} is spent: ${spent:.4f} today across every agent-dispatch server and "
        "CLI run of this user; nothing was started",
        f"It resets at local midnight ({reset:%Y-%m-%d %H:%M}, in {wait // 3600}h {wait % 3600 // 60:02d}m). "
        f"To raise it, set settings.daily_budget_usd in {config_path} (null removes the cap).",
    ))


# -- hints from measured runs ---------------------------------------------------------------------


def timeout_hint(result: DispatchResult, timeout: float, typical: dict[str, Any] | None) -> DispatchResult:
    """A timed-out run's hint, proposing a timeout from the agent's measured p90 when it is known."""
    if result.error_type != "timeout" or not typical or not typical.get("p90_seconds"):
        return result
    p90 = float(typical["p90_seconds"])
    proposal = int(math.ceil(max(p90 * 1.5, timeout * 1.25) / 10) * 10)
    name = result.agent
    runs = typical.get("dispatches")
    resume = f"Resume the session (session_id {result.session_id}) to continue, or r" if result.session_id else "R"
    hint = (
        f"{name}'s recorded runs take {p90:g} s at p90 ({runs} runs) against a timeout of {timeout:g} s. "
        f"{resume}aise the timeout with `agent-dispatch update {name} --timeout {proposal}`."
    )
    return result.model_copy(update={"hint": hint})
