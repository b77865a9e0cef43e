"""The service's one run path and its single-run workflows (dispatch, session, stream, clarifications).

`Dispatcher` owns the one concurrency limiter and the result cache, re-reads the config on
each call (cheaply), and turns requests into runs of `claude`. It returns typed objects
(`DispatchResult`, `Job`) or plain dicts shaped by the contract; it knows nothing of MCP or click.
The workflows of several runs are `multi`; async jobs and recovery live in `agent_dispatch.background`,
result refs in `agent_dispatch.refs`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import anyio
from pydantic import ValidationError

from agent_dispatch import config as configmod
from agent_dispatch import protocol, spend
from agent_dispatch.cache import ResultCache, cache_key
from agent_dispatch.changes import GitError, IsolationRefused, RunTracker, check_isolation, remote_refusal, worktrees
from agent_dispatch.errors import AgentNotFoundError, BadArgumentError, RecursionFailure
from agent_dispatch.limiter import Limiter
from agent_dispatch.limits import SLOT_ENV, Held, Registry, UserSlots, parent_slot
from agent_dispatch.models import (
    AppConfig,
    DispatchRequest,
    DispatchResult,
    EffectiveAgent,
    check_agent_name,
)
from agent_dispatch.progress import Throttled, describe_event
from agent_dispatch.runner import RunSpec, build_argv, build_prompt, current_chain, current_depth, run_claude
from agent_dispatch.runtimes import get_runtime
from agent_dispatch.spend import FanoutBudget
from agent_dispatch.usage import Usage, open_usage, record_for, with_typicals

log = logging.getLogger(__name__)

# The job a call made of several runs (a dispatch_parallel or dispatch_dialogue task) runs as:
# each of its runs names it in the usage journal and in `ps`, like a single-run job does.
CALL_JOB: ContextVar[str | None] = ContextVar("agent_dispatch_call_job", default=None)

RESOLVED_MARK = "[RESOLVED]"
ProgressFn = Callable[[str], Awaitable[None]]
# Puts a blocked agent's question to the human: (agent name, question) -> the answer, or None
# when there is none (declined, cancelled, no way to ask). The front door decides how to ask.
AskFn = Callable[[str, str], Awaitable[str | None]]
# Someone watching a run live: gets each stream event and the agent it came from ("" when the call
# has one agent). Given, a run streams (stream-json) so there is something to watch.
Watch = Callable[[Any, str], None]


def _observer(watch: Watch | None, label: str = "") -> Callable[[Any], None] | None:
    return None if watch is None else (lambda event: watch(event, label))


def parallel_cap(max_concurrency: int) -> int:
    return max(100, 20 * max_concurrency)


def check_total_usd(value: Any) -> float:
    """A fan-out's max_total_usd: a finite number >= 0 (0 = no cap)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise BadArgumentError("max_total_usd must be a finite number >= 0 (0 = no cap)")
    return float(value)


def make_request(where: str = "request", **fields: Any) -> DispatchRequest:
    """Build a DispatchRequest, turning validation errors into one readable BadArgumentError."""
    try:
        return DispatchRequest(**fields)
    except ValidationError as exc:
        raise BadArgumentError(f"{where}: {configmod.describe_validation(exc)}") from None


class Dispatcher:
    """Runs dispatches. One per server process (or per CLI command)."""

    def __init__(
        self,
        store: configmod.ConfigStore | None = None,
        *,
        claude: str | None = None,
        commands: dict[str, str] | None = None,
    ) -> None:
        self.store = store or configmod.ConfigStore()
        self._claude = claude
        self._commands = dict(commands or {})  # runtime name -> executable (a seam for tests)
        if claude:
            self._commands.setdefault("claude", claude)
        self.limiter = Limiter(5)
        self.cache = ResultCache(ttl=300, max_size=1000)
        self.depth = current_depth()
        self.chain = current_chain()
        self._config: AppConfig | None = None
        self._agent_fingerprints: dict[str, EffectiveAgent] = {}
        self._slots: UserSlots | None = None
        self._registry: Registry | None = None

    # -- configuration -------------------------------------------------------------------

    def config(self) -> AppConfig:
        """The current config (re-read when agents.yaml changed); applies settings to the limiter and cache."""
        cfg = self.store.load()
        if cfg is not self._config:
            self._apply(cfg)
        return cfg

    def _apply(self, cfg: AppConfig) -> None:
        settings = cfg.settings
        self.limiter.set_capacity(settings.max_concurrency)
        self.cache.reconfigure(ttl=settings.cache.ttl, max_size=settings.cache.max_size)
        fresh = {name: EffectiveAgent.resolve(name, agent, settings) for name, agent in cfg.agents.items()}
        for name, old in self._agent_fingerprints.items():
            if fresh.get(name) != old:
                self.cache.invalidate_agent(name)  # changed or removed: its entries can never be right again
        self._agent_fingerprints = fresh
        self._config = cfg

    def agent(self, name: str, cfg: AppConfig | None = None) -> EffectiveAgent:
        """The effective configuration of agent `name`, or AgentNotFoundError naming the available ones."""
        cfg = cfg or self.config()
        if not isinstance(name, str) or name not in cfg.agents:
            available = ", ".join(sorted(cfg.agents)) or "none registered"
            shown = name[:100] if isinstance(name, str) else repr(name)
            raise AgentNotFoundError(
                f"unknown agent {shown!r}; available agents: {available}",
                "Call list_agents to see them, or register one with add_agent / `agent-dispatch add NAME DIR`.",
                "Run `agent-dispatch list` to see them, or register one with `agent-dispatch add NAME DIR`.",
            )
        return EffectiveAgent.resolve(name, cfg.agents[name], cfg.settings)

    def through_group(self, req: DispatchRequest, cfg: AppConfig | None = None) -> DispatchRequest:
        """`req` as it runs: with a `group`, the agent must be a member (BadArgumentError naming the
        members) and the group's shared_context leads the context, so the cache keeps groups apart."""
        if not req.group:
            return req
        cfg = cfg or self.config()
        context = configmod.through_group(cfg, req.agent, req.group, req.context)
        return req.model_copy(update={"context": context, "group": ""})

    def claude(self) -> str:
        """The claude executable; a configured one that cannot be found is kept, so the error names it."""
        return self._claude or configmod.claude_command() or os.environ.get(configmod.CLAUDE_ENV) or "claude"

    def command(self, agent: EffectiveAgent) -> str:
        """The executable of `agent`'s CLI; one that cannot be found is kept, so the error names it."""
        return self._commands.get(agent.runtime) or get_runtime(agent.runtime).command()

    # -- the one path every run takes -------------------------------------------------------

    def spec(
        self,
        agent: EffectiveAgent,
        req: DispatchRequest,
        *,
        stream: bool = False,
        resume: str | None = None,
        output_path: Any = None,
    ) -> RunSpec:
        prompt = build_prompt(req.task, req.context, req.caller, req.goal, req.response_format)
        system = protocol.system_prompt(
            protocol=agent.protocol, timeout=agent.timeout, response_format=req.response_format,
            instructions=agent.instructions,
        )
        if system and not get_runtime(agent.runtime).system_prompt_option:
            # A CLI without a system-prompt option reads the protocol at the head of a new session's prompt.
            prompt = prompt if resume else protocol.with_system_text(system, prompt)
            system = None
        return RunSpec(
            agent=agent.isolated(req.isolation),
            prompt=prompt,
            claude=self.command(agent),
            stream=stream,
            resume=resume or None,
            response_format=req.response_format,
            depth=self.depth,
            output_path=output_path,
            system_prompt=system,
            chain=self.chain,
        )

    def precheck(self, spec: RunSpec, cfg: AppConfig) -> DispatchResult | None:
        """A failed result when the run must not start (a cycle, recursion, a flag-like value), else None."""
        name = spec.agent.name
        if name in spec.chain:
            cycle = " -> ".join((*spec.chain[spec.chain.index(name):], name))
            exc = RecursionFailure(
                f"dispatch cycle {cycle}: agent {name} is already working on a dispatch above this one",
                f"Answer from what you know instead of dispatching back to {name}, or say in your answer what "
                f"{name} should do.",
            )
            return DispatchResult.failure(name, exc)
        limit = cfg.settings.max_dispatch_depth
        if self.depth >= limit:
            exc = RecursionFailure(
                f"dispatch depth {self.depth} has reached max_dispatch_depth {limit}",
                "Do the work here instead of dispatching again, or raise settings.max_dispatch_depth.",
            )
            return DispatchResult.failure(spec.agent.name, exc)
        try:
            build_argv(spec)
        except Exception as exc:  # InvalidInputFailure: refused before anything ran
            return DispatchResult.failure(spec.agent.name, exc)
        if spec.agent.isolation == "worktree" and getattr(spec.agent, "host", None):
            return DispatchResult.failure(spec.agent.name, remote_refusal(spec.agent.name))
        if spec.agent.isolation == "worktree" and not (spec.resume and worktrees.find_session(spec.resume)):
            try:
                check_isolation(spec.agent.directory, spec.agent.name, verify_head=False)
            except IsolationRefused as exc:
                return DispatchResult.failure(spec.agent.name, exc)
        return None

    async def run(
        self,
        spec: RunSpec,
        cfg: AppConfig,
        *,
        tool: str = "dispatch",
        caller: str = "",
        job_id: str | None = None,
        on_event: Any = None,
        on_spawn: Any = None,
        detach_on_cancel: bool = False,
        settle_on_cancel: Callable[[], bool] | bool = True,
        admit: Callable[[], bool] | None = None,
        fanout: FanoutBudget | None = None,
        clarification: int = 0,
    ) -> DispatchResult | None:
        """The one path every run takes: refusals (recursion, flag-like values, the daily budget),
        the server's limiter, the user-wide slot, the running registry, `claude` itself, and one
        usage journal record. The slots are held until the child has exited.

        `admit()` is asked once the slots are held; False means the run must not start (None is
        returned, nothing recorded). `fanout` is a dispatch_parallel item's shared budget;
        `clarification` numbers a run that resumes a blocked session with the human's answer."""
        job_id = job_id or CALL_JOB.get()
        journal = functools.partial(self.journal, cfg=cfg, tool=tool, caller=caller, job_id=job_id,
                                    clarification=clarification or None)
        refused = self.precheck(spec, cfg) or self._daily_refusal(spec, cfg)
        if refused is not None:
            journal(refused, refused=True)
            return refused
        spec = spend.with_run_cap(spec, self._daily_left(cfg))
        async with self.limiter.slot(), self._user_slot(cfg) as held:
            if admit is not None and not admit():
                return None
            if fanout is not None:
                if fanout.exhausted:
                    refused = fanout.refusal(spec.agent.name)
                    journal(refused, refused=True)
                    return refused
                spec = fanout.prepare(spec)
            if held is not None:
                spec = dataclasses.replace(spec, env={**(spec.env or {}), SLOT_ENV: held.name})
            entry = self.registry().register(agent=spec.agent.name, tool=tool, caller=caller[:120], job_id=job_id)
            try:
                result = await self._spawn(
                    spec, entry, on_event, on_spawn, detach_on_cancel, fanout,
                    job_id=job_id, settle_on_cancel=settle_on_cancel,
                )
            finally:
                if entry is not None:
                    entry.close()
        result = spend.mark_over_budget(result, spec)
        if result.error_type == "timeout":
            result = spend.timeout_hint(result, spec.effective_timeout, self.typical(spec.agent.name, cfg))
        if fanout is not None:
            fanout.add(result)
        journal(result)
        return result

    async def _spawn(
        self, spec: RunSpec, entry: Any, on_event: Any, on_spawn: Any, detach: bool, fanout: FanoutBudget | None,
        *, job_id: str | None = None, settle_on_cancel: Callable[[], bool] | bool = True,
    ) -> DispatchResult:
        def events(event: Any) -> None:
            if entry is not None and spec.stream:
                entry.progress(describe_event(event) or "")
            if on_event is not None:
                on_event(event)

        with anyio.CancelScope() as scope:
            if fanout is not None:
                fanout.watch(scope)
            try:
                return await self.tracked(
                    spec,
                    lambda s: run_claude(s, on_event=events, on_spawn=on_spawn, detach_on_cancel=detach),
                    job_id=job_id,
                    settle_on_cancel=settle_on_cancel,
                )
            finally:
                if fanout is not None:
                    fanout.unwatch(scope)
        return fanout.cancelled(spec) if fanout is not None else DispatchResult.failure(
            spec.agent.name, RuntimeError("the run was stopped"))

    @asynccontextmanager
    async def _user_slot(self, cfg: AppConfig) -> AsyncIterator[Held | None]:
        cap = cfg.settings.max_concurrency_user
        if cap is None:
            yield None
            return
        try:
            held = await self.user_slots().acquire(cap, depth=self.depth, parent=parent_slot())
        except OSError as exc:  # the runtime directory cannot be used: run under the per-server limit only
            log.warning("the per-user concurrency limit is not enforced: %s", exc)
            yield None
            return
        try:
            yield held
        finally:
            held.release()

    # -- usage: the journal, figures, the daily budget ---------------------------------------------

    def usage(self) -> Usage:
        return open_usage(configmod.usage_log_path(self.store.path))

    def user_slots(self) -> UserSlots:
        directory = configmod.runtime_dir(self.store.path)
        if self._slots is None or self._slots.directory != directory:
            self._slots = UserSlots(directory)
        return self._slots

    def registry(self) -> Registry:
        directory = configmod.runtime_dir(self.store.path)
        if self._registry is None or self._registry.root != directory:
            self._registry = Registry(directory)
        return self._registry

    def journal(self, result: DispatchResult, cfg: AppConfig, *, tool: str, caller: str = "",
                job_id: str | None = None, refused: bool = False, clarification: int | None = None) -> None:
        """Append the dispatch's usage record (unless `settings.usage_log` is off). Never raises."""
        if not cfg.settings.usage_log:
            return
        try:
            usage = self.usage()
            record = record_for(result, tool=tool, caller=caller, job_id=job_id, refused=refused or None,
                                depth=self.depth or None, clarification=clarification)
            due = usage.record(record)
            if due:
                # Not a daemon: a CLI run that ends now still finishes the rename or the summary write.
                threading.Thread(target=usage.housekeep, args=(due,), name="usage-housekeeping").start()
        except Exception as exc:  # noqa: BLE001 - the journal never fails a dispatch
            log.warning("usage journal: %s", exc)

    def typical(self, agent: str, cfg: AppConfig | None = None) -> dict[str, Any] | None:
        """The agent's measured `typical` (None under 3 recorded runs or without a journal)."""
        try:
            return self.usage().typical(agent)
        except Exception:  # noqa: BLE001 - figures are advice; never an error
            return None

    def with_typical(self, item: dict[str, Any]) -> dict[str, Any]:
        """An agent listing or inspection with `typical` added once the agent has 3 recorded runs."""
        return self.with_typicals([item])[0]

    def with_typicals(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Agent listings with `typical` added where known, the journal looked at once for all."""
        return with_typicals(configmod.usage_log_path(self.store.path), items)

    def usage_stats(self, days: Any = 7, agent: str = "") -> dict[str, Any]:
        """The `usage_stats` answer; BadArgumentError for days that are not a finite number > 0."""
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not math.isfinite(days) or days <= 0:
            raise BadArgumentError("days must be a finite number greater than 0")
        if float(days).is_integer():
            days = int(days)  # `--days 7` and days=7 answer the same object
        if agent:
            check_agent_name(agent)
        return self.usage().stats(days, agent)

    def running(self) -> list[dict[str, Any]]:
        """What every agent-dispatch process of this user runs now (entries of dead ones never show)."""
        return self.registry().running()

    def _daily_refusal(self, spec: RunSpec, cfg: AppConfig) -> DispatchResult | None:
        cap = cfg.settings.daily_budget_usd
        if cap is None:
            return None
        return spend.daily_refusal(cap, self.usage().spend_today(), spec.agent.name, self.store.path)

    def _daily_left(self, cfg: AppConfig) -> float | None:
        cap = cfg.settings.daily_budget_usd
        return None if cap is None else cap - self.usage().spend_today()

    async def tracked(
        self,
        spec: RunSpec,
        start: Callable[[RunSpec], Awaitable[DispatchResult]],
        *,
        job_id: str | None = None,
        settle_on_cancel: Callable[[], bool] | bool = True,
    ) -> DispatchResult:
        """Run `start(spec)` with its change report, in its worktree when isolated (every path comes here).

        The run's directory is set here, on the spec, for whatever runtime runs it. A cancelled run
        settles its worktree only when `settle_on_cancel` says its process is gone (a detached
        async job keeps working in it).
        """
        tracker = RunTracker(spec.agent, job_id or uuid.uuid4().hex, resume=spec.resume, job_id=job_id)
        try:
            directory = await anyio.to_thread.run_sync(tracker.begin)
        except (IsolationRefused, GitError, OSError) as exc:
            refusal = exc if isinstance(exc, IsolationRefused) else IsolationRefused(
                f"could not prepare the worktree for agent {spec.agent.name}: {exc}")
            await anyio.to_thread.run_sync(lambda: tracker.end(DispatchResult(agent=spec.agent.name, success=False)))
            return DispatchResult.failure(spec.agent.name, refusal)
        if directory != spec.agent.directory:
            spec = dataclasses.replace(spec, agent=spec.agent.model_copy(update={"directory": directory}))
        try:
            result = await start(spec)
        except BaseException:
            with anyio.CancelScope(shield=True):
                settle = settle_on_cancel() if callable(settle_on_cancel) else settle_on_cancel
                empty = DispatchResult(agent=spec.agent.name, success=False)
                await anyio.to_thread.run_sync(lambda: tracker.end(empty, settle=settle))
            raise
        return await anyio.to_thread.run_sync(tracker.end, result)

    # -- workflows ---------------------------------------------------------------------------

    async def dispatch(
        self, req: DispatchRequest, *, use_cache: bool = True, ask: AskFn | None = None,
        watch: Watch | None = None, label: str = "", tool: str = "dispatch", fanout: FanoutBudget | None = None,
    ) -> DispatchResult:
        """One task to one agent; identical requests within the cache TTL are answered from memory.

        Only a result whose outcome is `done` (or absent) is cached; a question never is.
        `ask` puts a blocked agent's question to the human (see `clarify`); `watch` sees the run live.
        `tool` names the caller in the usage journal; `fanout` is a dispatch_parallel item's shared budget.
        """
        cfg = self.config()
        agent = self.agent(req.agent, cfg)
        req = self.through_group(req, cfg)
        caching = use_cache and cfg.settings.cache.enabled
        key = cache_key(req, agent.isolated(req.isolation)) if caching else None
        if key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.journal(hit, cfg, tool=tool, caller=req.caller)
                return hit
        stream, on_event = watch is not None, _observer(watch, label)
        result = await self.run(self.spec(agent, req, stream=stream), cfg, on_event=on_event, tool=tool,
                                caller=req.caller, fanout=fanout)
        assert result is not None  # noqa: S101 - no admit callback: a run always answers
        result = await self.clarify(agent, req, result, cfg, ask, stream=stream, on_event=on_event, tool=tool,
                                    fanout=fanout)
        if key is not None and not result.clarifications:  # an answer shaped by a person is theirs alone
            self.cache.put(key, agent.name, result)
        return result

    async def dispatch_session(
        self, req: DispatchRequest, session_id: str = "", *, ask: AskFn | None = None, watch: Watch | None = None
    ) -> DispatchResult:
        """Start or continue a conversation with an agent; never cached."""
        cfg = self.config()
        agent = self.agent(req.agent, cfg)
        req = self.through_group(req, cfg)
        stream, on_event = watch is not None, _observer(watch)
        result = await self.run(self.spec(agent, req, resume=session_id or None, stream=stream), cfg, on_event=on_event,
                                tool="dispatch_session", caller=req.caller)
        assert result is not None  # noqa: S101
        return await self.clarify(agent, req, result, cfg, ask, stream=stream, on_event=on_event,
                                  tool="dispatch_session")

    def is_cached(self, req: DispatchRequest) -> bool:
        """Whether `dispatch(req)` would answer from the cache right now (counts nothing)."""
        cfg = self.config()
        req = self.through_group(req, cfg)
        return cfg.settings.cache.enabled and self.cache.contains(cache_key(req, self.agent(req.agent, cfg)))

    def remember(self, req: DispatchRequest, result: DispatchResult) -> None:
        """Cache a result produced outside `dispatch` (a dispatch run as a task) as `dispatch` would."""
        cfg = self.config()
        if cfg.settings.cache.enabled and req.agent in cfg.agents and not result.clarifications:
            agent = self.agent(req.agent, cfg)
            self.cache.put(cache_key(self.through_group(req, cfg), agent), agent.name, result)

    async def dispatch_stream(
        self, req: DispatchRequest, on_progress: ProgressFn, interval: float = 0.1, *, ask: AskFn | None = None,
        tool: str = "dispatch_stream",
    ) -> DispatchResult:
        """Like dispatch, reporting what the agent is doing through `on_progress` (throttled); never cached."""
        cfg = self.config()
        agent = self.agent(req.agent, cfg)
        req = self.through_group(req, cfg)
        progress = Throttled(on_progress, interval)

        def on_event(event: Any) -> None:
            progress.offer(event)

        async with anyio.create_task_group() as tg:
            tg.start_soon(progress.pump)
            result = await self.run(self.spec(agent, req, stream=True), cfg, on_event=on_event, tool=tool,
                                    caller=req.caller)
            assert result is not None  # noqa: S101
            result = await self.clarify(agent, req, result, cfg, ask, stream=True, on_event=on_event, tool=tool)
            tg.cancel_scope.cancel()
        await progress.flush()  # the newest message always reaches the client, even if throttled
        assert result is not None  # noqa: S101
        return result

    async def clarify(
        self,
        agent: EffectiveAgent,
        req: DispatchRequest,
        result: DispatchResult,
        cfg: AppConfig,
        ask: AskFn | None,
        *,
        stream: bool = False,
        on_event: Any = None,
        tool: str = "dispatch",
        fanout: FanoutBudget | None = None,
    ) -> DispatchResult:
        """Put a blocked agent's question to the human through `ask` and resume the same session
        with the answer, at most `settings.max_clarifications` times.

        Each resumed run takes a concurrency slot and the agent's timeout like any run. The final
        result carries `clarifications` and the totals of every run (cost, duration, turns). With
        no answer (declined, cancelled, no `ask`) the blocked result comes back as it is.
        """
        rounds: list[dict[str, str]] = []
        runs = [result]
        while (
            ask is not None
            and len(rounds) < cfg.settings.max_clarifications
            and result.success
            and result.outcome == "blocked"
            and result.question
            and result.session_id
        ):
            answer = await ask(agent.name, result.question)
            if answer is None or not answer.strip():
                break
            rounds.append({"question": result.question, "answer": answer})
            follow = make_request("clarification", agent=agent.name, task=protocol.answer_prompt(result.question,
                                  answer), response_format=req.response_format)
            answered = await self.run(
                self.spec(agent, follow, resume=result.session_id, stream=stream), cfg, on_event=on_event,
                tool=tool, caller=req.caller, fanout=fanout, clarification=len(rounds),
            )
            assert answered is not None  # noqa: S101
            result = answered
            runs.append(result)
        if not rounds:
            return result
        return protocol.with_clarifications(result, runs, rounds)

    def refusal(self, req: DispatchRequest, session_id: str = "") -> DispatchResult | None:
        """The failed result a dispatch of `req` would answer before starting anything, else None."""
        cfg = self.config()
        spec = self.spec(self.agent(req.agent, cfg), req, resume=session_id or None)
        return self.precheck(spec, cfg)
