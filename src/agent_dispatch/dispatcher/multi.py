"""The workflows made of several runs: dispatch_parallel (with its aggregate) and the dialogue of
two agents. Each takes the Dispatcher and goes through its one run path for every run."""

from __future__ import annotations

import json
from typing import Any

import anyio

from agent_dispatch import refs
from agent_dispatch.dispatcher.service import (
    RESOLVED_MARK,
    AskFn,
    Dispatcher,
    Watch,
    _observer,
    check_total_usd,
    make_request,
    parallel_cap,
)
from agent_dispatch.errors import BadArgumentError
from agent_dispatch.models import DIALOGUE_ROUNDS, DispatchRequest
from agent_dispatch.spend import FanoutBudget

_ITEM_KEYS = frozenset(DispatchRequest.model_fields)


def _check_item_keys(item: dict[str, Any], index: int) -> None:
    unknown = sorted(str(k)[:40] for k in item if k not in _ITEM_KEYS)
    if unknown:
        raise BadArgumentError(
            f"dispatches[{index}] has unknown keys: {', '.join(unknown)}",
            "Allowed keys: " + ", ".join(sorted(_ITEM_KEYS)),
        )


def parse_parallel(d: Dispatcher, dispatches: Any) -> list[DispatchRequest]:
    """Validate a dispatch_parallel call as a whole before anything runs."""
    if isinstance(dispatches, str):
        try:
            items = json.loads(dispatches)
        except RecursionError:
            raise BadArgumentError("dispatches is nested too deeply to be a list of dispatches") from None
        except ValueError as exc:
            raise BadArgumentError(
                f"dispatches is not valid JSON: {exc}",
                'Pass a JSON string holding a list like [{"agent": "infra", "task": "..."}].',
            ) from None
    else:
        items = dispatches
    if not isinstance(items, list) or not items:
        raise BadArgumentError(
            "dispatches must be a non-empty JSON list of {agent, task, ...} objects",
            'Example: [{"agent": "infra", "task": "check disk"}, {"agent": "web", "task": "run tests"}]',
        )
    cfg = d.config()
    cap = parallel_cap(cfg.settings.max_concurrency)
    if len(items) > cap:
        raise BadArgumentError(f"dispatches holds {len(items)} items; at most {cap} are allowed per call")
    requests = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadArgumentError(f"dispatches[{index}] must be an object with at least agent and task")
        _check_item_keys(item, index)
        req = make_request(f"dispatches[{index}]", **item)
        d.agent(req.agent, cfg)
        try:
            d.through_group(req, cfg)
        except BadArgumentError as exc:
            raise BadArgumentError(f"dispatches[{index}]: {exc.message}", exc.hint) from None
        requests.append(req)
    return requests


async def dispatch_parallel(
    d: Dispatcher, requests: list[DispatchRequest], aggregate: str = "", max_total_usd: float = 0, *,
    ask: AskFn | None = None, watch: Watch | None = None,
) -> Any:
    """Run every request at once (bounded by the limiters); results in item order.

    A blocked item's question goes through `ask` like a single dispatch's. `max_total_usd` > 0
    is one spend cap for the whole fan-out (see spend.FanoutBudget)."""
    cfg = d.config()
    if aggregate:
        d.agent(aggregate, cfg)
    fanout = FanoutBudget(check_total_usd(max_total_usd)) if max_total_usd else None
    results: list[dict[str, Any] | None] = [None] * len(requests)

    async def one(index: int, req: DispatchRequest) -> None:
        result = await d.dispatch(req, ask=ask, watch=watch, label=req.agent, tool="dispatch_parallel",
                                     fanout=fanout)
        results[index] = await refs.keep(req, result) if req.return_ref else result.to_json()

    async with anyio.create_task_group() as tg:
        for index, req in enumerate(requests):
            tg.start_soon(one, index, req)
    if not aggregate:
        return results
    task = _aggregate_task(requests, results)
    combined = await d.dispatch(make_request("aggregate", agent=aggregate, task=task), watch=watch,
                                   label=aggregate, tool="dispatch_parallel", fanout=fanout)
    return {"individual_results": results, "aggregated": combined.to_json()}


def check_dialogue(d: Dispatcher, requester: str, responder: str, topic: str, max_rounds: int) -> None:
    """Refuse a dialogue before anything runs: bad rounds, an empty topic, an unknown agent."""
    low, high = DIALOGUE_ROUNDS
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or not low <= max_rounds <= high:
        raise BadArgumentError(f"max_rounds must be a whole number from {low} to {high}")
    if not isinstance(topic, str) or not topic.strip():
        raise BadArgumentError("topic must not be empty")
    cfg = d.config()
    d.agent(responder, cfg)
    d.agent(requester, cfg)


async def dialogue(
    d: Dispatcher, requester: str, responder: str, topic: str, max_rounds: int = 3, *, watch: Watch | None = None
) -> dict[str, Any]:
    """Two agents talk, each in its own session, until one writes [RESOLVED] or the rounds run out."""
    check_dialogue(d, requester, responder, topic, max_rounds)
    cfg = d.config()
    agents = {"responder": d.agent(responder, cfg), "requester": d.agent(requester, cfg)}
    sessions: dict[str, str | None] = {"responder": None, "requester": None}
    conversation: list[dict[str, Any]] = []
    out: dict[str, Any] = {"resolved": False, "rounds": 0, "total_cost_usd": 0.0, "total_duration_ms": 0}
    message = _dialogue_opening(requester, topic)
    final_answer = ""
    for round_no in range(1, max_rounds + 1):
        out["rounds"] = round_no
        for role in ("responder", "requester"):
            agent = agents[role]
            req = make_request("dialogue", agent=agent.name, task=message)
            spec = d.spec(agent, req, resume=sessions[role], stream=watch is not None)
            result = await d.run(spec, cfg, on_event=_observer(watch, agent.name), tool="dispatch_dialogue")
            assert result is not None  # noqa: S101
            sessions[role] = result.session_id or sessions[role]
            out["total_cost_usd"] += result.cost_usd or 0.0
            out["total_duration_ms"] += result.duration_ms or 0
            text = result.result
            conversation.append(
                {"agent": agent.name, "role": role, "round": round_no, "message": text, "cost_usd": result.cost_usd}
            )
            if role == "responder":
                final_answer = text.replace(RESOLVED_MARK, "").strip()
            if not result.success:
                out.update(error=result.error, error_type=result.error_type)
                return _dialogue_end(out, conversation, final_answer)
            if RESOLVED_MARK in text:
                out["resolved"] = True
                return _dialogue_end(out, conversation, final_answer)
            other = "requester" if role == "responder" else "responder"
            message = _dialogue_turn(agent.name, agents[other].name, text)
    return _dialogue_end(out, conversation, final_answer)


def _aggregate_task(requests: list[DispatchRequest], results: list[dict[str, Any] | None]) -> str:
    parts = ["Combine the results below, produced by other agents for the tasks shown, into one answer."]
    for index, (req, res) in enumerate(zip(requests, results, strict=True), start=1):
        res = res or {}
        body = res.get("result") or res.get("summary") or ""
        status = "succeeded" if res.get("success") else f"failed ({res.get('error') or 'no error text'})"
        parts.append(f"### {index}. Agent {req.agent} {status}\nTask: {req.task}\nResult:\n{body}")
    return "\n\n".join(parts)


def _dialogue_opening(requester: str, topic: str) -> str:
    return (
        f"Agent '{requester}' starts a conversation with you about the topic below. Answer it from what you "
        f"know of your project. When the matter is settled, write {RESOLVED_MARK} in your reply.\n\n{topic}"
    )


def _dialogue_turn(speaker: str, listener: str, text: str) -> str:
    return (
        f"Agent '{speaker}' replied:\n\n{text}\n\nContinue the conversation as agent '{listener}'. "
        f"If the matter is settled, write {RESOLVED_MARK} in your reply."
    )


def _dialogue_end(out: dict[str, Any], conversation: list[dict[str, Any]], final_answer: str) -> dict[str, Any]:
    out["total_cost_usd"] = round(out["total_cost_usd"], 6)
    out["final_answer"] = final_answer
    out["conversation"] = conversation
    return out
