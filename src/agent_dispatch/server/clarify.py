"""Questions from a blocked agent, put to the human through MCP elicitation.

The dispatcher asks through a plain callable (`AskFn`); this module turns that callable into the
SDK's version-aware elicitation: a tool wrapped by `clarifying` gets a chain of `Resolve`
resolvers, each of which can return one `Elicit[Answer]`. The SDK sends it as an
`elicitation/create` request mid-call (2025-11-25) or as an `InputRequiredResult` round that the
client answers by calling the tool again with `input_responses` (2026-07-28).

Because a 2026-07-28 round ends the tools/call, the dispatch itself runs as a `_Flow` in the
server's task group: the tool's body is started once, and its `ask` waits for the answer of the
next round. Retried calls find their flow by the tool's name and arguments. A client without
form elicitation, a declined or cancelled form, or an answer that never comes, all give the
dispatcher `None`, so the blocked result comes back with its question and hint.

No `from __future__ import annotations` here: the resolver annotations are built at run time
and must be real objects for the SDK to read.
"""

import hashlib
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Annotated, Any

import anyio
from anyio.abc import TaskGroup
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit, Resolve
from pydantic import BaseModel, Field

from agent_dispatch.errors import BadArgumentError
from agent_dispatch.models import CLARIFICATIONS_MAX

ANSWER_WAIT = 3600.0  # seconds a question waits for the client's answer before it counts as unanswered
FINISHED_KEEP = 600.0  # seconds a finished flow waits for the retry that collects it
# Resolvers in a tool's chain: the questions of one call, across a parallel call's items too.
QUESTIONS_PER_CALL = CLARIFICATIONS_MAX


class Answer(BaseModel):
    """The form the human fills in: one free-text answer."""

    answer: str = Field(title="Answer", description="Sent to the agent, which continues its work with it.")


def question_message(agent: str, question: str) -> str:
    return (
        f"Agent '{agent}' is blocked and asks:\n\n{question}\n\n"
        "Your answer is sent to the agent, which continues the same session with it."
    )


class _Done:
    """What a tool body ended with: its answer, or the exception it raised."""

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value = value
        self.error = error

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class _Flow:
    """One tool body running in the background; its questions become elicitation rounds."""

    def __init__(self, key: str, can_ask: bool) -> None:
        self.key = key
        self.can_ask = can_ask
        self.events: list[tuple[str, str] | _Done] = []  # (agent, question) per ask, then the end
        self.answers: dict[int, str | None] = {}
        self.ctx: Any = None  # the Context of the newest round (progress goes there)
        self.scope = anyio.CancelScope()
        self.finished_at: float | None = None
        self.created_at = time.monotonic()
        self._changed = anyio.Event()
        self._ask_lock = anyio.Lock()  # a parallel call's items ask one at a time

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def ask(self, agent: str, question: str) -> str | None:
        """The AskFn handed to the dispatcher."""
        async with self._ask_lock:
            if not self.can_ask or sum(1 for e in self.events if not isinstance(e, _Done)) >= QUESTIONS_PER_CALL:
                return None
            index = len(self.events)
            self.events.append((agent, question))
            self._notify()
            with anyio.move_on_after(ANSWER_WAIT):
                while index not in self.answers:
                    await self._changed.wait()
            return self.answers.get(index)

    def answer(self, index: int, text: str | None) -> None:
        if index not in self.answers:  # a later round re-delivers earlier answers: the first one counts
            self.answers[index] = text
            self._notify()

    def finish(self, done: _Done) -> None:
        self.events.append(done)
        self.finished_at = time.monotonic()
        self._notify()

    async def event(self, index: int) -> tuple[str, str] | _Done:
        """The index-th event (a question or the end), waiting for it; a cancelled wait stops the flow."""
        try:
            while len(self.events) <= index:
                await self._changed.wait()
        except anyio.get_cancelled_exc_class():
            self.scope.cancel()  # the caller went away while the agent worked: stop the run
            raise
        return self.events[index]


class Flows:
    """The flows of one server, and the task group they run in (set by the server's lifespan)."""

    def __init__(self) -> None:
        self.tg: TaskGroup | None = None
        self._flows: dict[str, list[_Flow]] = {}

    def _sweep(self) -> None:
        now = time.monotonic()
        for key in list(self._flows):
            kept = [f for f in self._flows[key] if f.finished_at is None or now - f.finished_at < FINISHED_KEEP]
            if kept:
                self._flows[key] = kept
            else:
                del self._flows[key]

    def start(self, key: str, can_ask: bool, work: Callable[[_Flow], Awaitable[Any]]) -> _Flow:
        self._sweep()
        flow = _Flow(key, can_ask)
        self._flows.setdefault(key, []).append(flow)

        async def run() -> None:
            done = _Done()
            try:
                with flow.scope:
                    done = _Done(await work(flow))
            except Exception as exc:  # noqa: BLE001 - the tool's boundary turns it into an envelope
                done = _Done(error=exc)
            finally:
                if flow.scope.cancel_called and done.error is None and done.value is None:
                    done = _Done(error=BadArgumentError("the dispatch was cancelled"))
                flow.finish(done)

        if self.tg is None:
            raise RuntimeError("the server's task group is not running")
        self.tg.start_soon(run)
        return flow

    def find(self, key: str) -> _Flow | None:
        """The oldest flow of these arguments still waiting for a round."""
        self._sweep()
        for flow in self._flows.get(key, []):
            return flow
        return None

    def discard(self, flow: _Flow) -> None:
        flows = self._flows.get(flow.key, [])
        if flow in flows:
            flows.remove(flow)
        if not flows:
            self._flows.pop(flow.key, None)


_CURRENT: ContextVar[_Flow | None] = ContextVar("agent_dispatch_flow", default=None)


def can_elicit(ctx: Any) -> bool:
    """Whether the client declared form elicitation (a bare `elicitation: {}` counts as form)."""
    try:
        capabilities = ctx.client_capabilities
    except Exception:  # noqa: BLE001 - outside a request there is nobody to ask
        return False
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


class _LiveContext:
    """What a flow's body sees as its Context: progress goes to the newest round's request."""

    def __init__(self, flow: _Flow) -> None:
        self._flow = flow

    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        ctx = self._flow.ctx
        if ctx is not None:
            await ctx.report_progress(progress, total, message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._flow.ctx, name)


def _call_key(tool: str, args: dict[str, Any]) -> str:
    text = json.dumps({"tool": tool, "args": args}, sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _elicit(flow: _Flow, index: int, event: "tuple[str, str] | _Done") -> Any:
    if isinstance(event, _Done):
        return event
    agent, question = event
    return Elicit(question_message(agent, question), Answer)


def clarifying(body: Callable[..., Awaitable[Any]], flows: Flows) -> Callable[..., Awaitable[Any]]:
    """The tool function for `body`, whose blocked agents' questions are put to the human.

    `body(**tool_args, ask=AskFn)` (and `ctx` when it declares a Context parameter) is the tool's
    work. The returned function has the same parameters plus one resolved by a chain of
    `QUESTIONS_PER_CALL + 1` resolvers; it answers what `body` answers (or raises what it raised).
    """
    name = body.__name__
    signature = inspect.signature(body)
    hints = _hints(body)
    ctx_name = next((p for p, hint in hints.items() if hint is Context), None)
    arg_params = [
        p.replace(annotation=hints.get(p.name, Any))
        for p in signature.parameters.values()
        if p.name not in ("ask", ctx_name)
    ]

    async def first(ctx: Context, **args: Any) -> Any:
        key = _call_key(name, args)
        flow = flows.find(key) if ctx.request_state else None  # a retried round continues its flow
        if flow is None:
            if ctx.request_state:
                return _Done(error=_Expired())

            async def work(flow: _Flow) -> Any:
                extra = {ctx_name: _LiveContext(flow)} if ctx_name else {}
                return await body(**args, **extra, ask=flow.ask)

            flow = flows.start(key, can_elicit(ctx), work)
        flow.ctx = ctx
        _CURRENT.set(flow)
        return _elicit(flow, 0, await flow.event(0))

    first.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Context)]
        + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in arg_params]
    )
    first.__annotations__ = {"ctx": Context, **{p.name: p.annotation for p in arg_params}, "return": Any}
    first.__qualname__ = f"{name}.first"

    steps: list[Callable[..., Any]] = [first]
    for index in range(1, QUESTIONS_PER_CALL + 1):
        steps.append(_step(name, index, steps[-1]))

    final = Annotated[ElicitationResult[Answer], Resolve(steps[-1])]

    async def tool(**kwargs: Any) -> Any:
        outcome = kwargs.pop("clarified")
        done = outcome.data if isinstance(outcome, AcceptedElicitation) else None
        flow = _CURRENT.get()
        if flow is not None:
            flows.discard(flow)
        if not isinstance(done, _Done):
            raise _Expired()
        return done.unwrap()

    params = list(signature.parameters.values())
    tool.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [p.replace(annotation=hints.get(p.name, Any)) for p in params if p.name != "ask"]
        + [inspect.Parameter("clarified", inspect.Parameter.KEYWORD_ONLY, annotation=final)]
    )
    tool.__annotations__ = {
        **{p.name: hints.get(p.name, Any) for p in params if p.name != "ask"}, "clarified": final, "return": Any
    }
    tool.__name__ = name
    tool.__qualname__ = name
    tool.__doc__ = body.__doc__
    tool.body = body  # type: ignore[attr-defined]  # for callers with their own way to ask (MCP tasks)
    return tool


def _step(name: str, index: int, previous: Callable[..., Any]) -> Callable[..., Any]:
    """Resolver `index`: deliver the answer to question index-1, then surface the next event."""

    async def step(outcome: Any) -> Any:
        flow = _CURRENT.get()
        data = outcome.data if isinstance(outcome, AcceptedElicitation) else None
        if isinstance(data, _Done) or flow is None:
            return data
        flow.answer(index - 1, data.answer if isinstance(data, Answer) else None)
        # At most QUESTIONS_PER_CALL questions are asked, so the last resolver always sees the end.
        return _elicit(flow, index, await flow.event(index))

    step.__annotations__ = {"outcome": Annotated[ElicitationResult[Answer], Resolve(previous)], "return": Any}
    step.__qualname__ = f"{name}.step{index}"
    return step


class _Expired(BadArgumentError):
    """A retried round whose dispatch this server no longer holds (restarted, or too late)."""

    def __init__(self) -> None:
        super().__init__(
            "the question this call answers is no longer pending (the server restarted, or the answer came "
            "too late)",
            "Dispatch again; a blocked result's hint names the dispatch_session call that continues its session.",
        )


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(fn, include_extras=True)
