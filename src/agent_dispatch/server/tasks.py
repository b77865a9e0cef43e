"""Long dispatches as MCP tasks (the 2026-07-28 `io.modelcontextprotocol/tasks` extension), and
live progress on every dispatch tool.

How a dispatch tool runs (`run_single` / `run_call`): with a progress token, the caller gets
throttled progress notifications and heartbeats while the agent works. When the request's
client capabilities declare the tasks extension (and `settings.mcp_tasks` is on), the tool's
work runs as a job; if it has not finished within `settings.task_grace_seconds` the call
answers a task handle (the task id is the job id), the progress token is never used again, and
the client follows the job with `tasks/get`. Every other client gets the plain answer.

Built on the SDK's documented hooks: `Extension` (capability, `tasks/*` methods,
`intercept_tool_call`) and `Server.middleware` (to stop advertising the extension when the
setting is off). The interceptor does not compute answers itself: it lets the tool run (so the
SDK validates the arguments exactly as for a plain call) and only swaps the answer for the
handle when the tool's work became a task. A contextvar carries that offer from the
interceptor to the tool, because `call_next` passes nothing but the request context through.

Questions to the human: in a task, the dispatcher's `ask` is `JobManager.ask(job_id, ...)`, which
puts the question in the job record; `tasks/get` then answers `input_required` with it as a form
elicitation, and `tasks/update` hands the response to `JobManager.answer`. (Plain calls ask through
`server.clarify` instead.)
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.server import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, CallToolRequestParams, CallToolResult, RequestParams
from pydantic import Field

from agent_dispatch import background, refs
from agent_dispatch.dispatcher import Watch
from agent_dispatch.errors import AgentDispatchError
from agent_dispatch.models import DispatchRequest, Job, is_valid_job_id
from agent_dispatch.progress import LiveProgress
from agent_dispatch.server.answers import answer, boundary, wire

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
TASK_TOOLS = frozenset({"dispatch", "dispatch_session", "dispatch_stream", "dispatch_parallel", "dispatch_dialogue"})
POLL_INTERVAL_MS = 500  # a finished task is noticed within about half a second; tasks/get costs ~1 ms
TTL_MS = 7 * 24 * 3600 * 1000  # records stay until gc (dispatch_gc's default age: 7 days)
STARTING = "waiting for a free slot"


@dataclass
class _Offer:
    """This tools/call may become a task: set by the interceptor, filled by the tool."""

    grace: float
    job: Job | None = None


_OFFER: contextvars.ContextVar[_Offer | None] = contextvars.ContextVar("agent_dispatch_task_offer", default=None)


def declares_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request's client capabilities declare the tasks extension."""
    capabilities = ctx.session.client_capabilities
    extensions = capabilities.extensions if capabilities is not None else None
    return bool(extensions) and TASKS_EXTENSION in extensions


# -- running a dispatch tool's work ---------------------------------------------------------


@asynccontextmanager
async def _live(ctx: Context) -> AsyncIterator[LiveProgress | None]:
    """Progress notifications on the call's token while the body runs (None without a token)."""
    if progress_token_from_params(ctx.request_context.params) is None:
        yield None
        return

    async def send(count: int, message: str) -> None:
        await ctx.report_progress(count, None, message)

    live = LiveProgress(send)
    async with anyio.create_task_group() as tg:
        tg.start_soon(live.run)
        try:
            yield live
            await live.flush()  # the newest news reaches the caller before the answer
        finally:
            tg.cancel_scope.cancel()


async def _run(
    ctx: Context,
    jobs: background.JobManager,
    plain: Callable[[Watch | None], Awaitable[Any]],
    start: Callable[[Watch | None], Awaitable[Job]] | None,
) -> Any:
    offer = _OFFER.get()
    async with _live(ctx) as live:
        watch = live.offer if live is not None else None
        if offer is None or start is None:
            return await plain(watch)
        job = await start(watch)
        job, waiting = await jobs.wait(job.id, offer.grace)
        value = None if waiting else completed_value(job)
        if value is not None:
            return value
        jobs.unwatch(job.id)
        if live is not None:
            live.mute()  # Claude Code treats progress on this token after the handle as an error
        offer.job = job
        return {}  # the interceptor answers the task handle instead


async def run_single(
    ctx: Context,
    jobs: background.JobManager,
    tool: str,
    req: DispatchRequest,
    plain: Callable[[Watch | None], Awaitable[Any]],
    *,
    session_id: str = "",
    cache: bool = False,
) -> Any:
    """A tool whose work is one run: plain, or a detached job that survives the server."""
    d = jobs.dispatcher
    # A cache hit or a refused request always answers inline (checked only when a task is possible).
    inline_only = _OFFER.get() is None or (cache and d.is_cached(req)) or d.refusal(req, session_id) is not None

    async def start(watch: Watch | None) -> Job:
        return await jobs.start(req, tool=tool, session_id=session_id, cache=cache, watch=watch)

    return await _run(ctx, jobs, plain, None if inline_only else start)


async def run_call(
    ctx: Context,
    jobs: background.JobManager,
    tool: str,
    label: tuple[str, str, dict[str, Any]],
    plain: Callable[[Watch | None], Awaitable[Any]],
) -> Any:
    """A tool whose work is several runs (parallel, dialogue): plain, or a job of this server.

    `label` is what the job record shows: (agent, task, request).
    """
    agent, task, request = label
    shaped = boundary(plain)

    async def work(watch: Watch | None) -> dict[str, Any]:
        return wire(await shaped(watch))

    async def start(watch: Watch | None) -> Job:
        return await jobs.start_call(tool, agent, task, request, work, watch=watch)

    return await _run(ctx, jobs, plain, start)


def completed_value(job: Job) -> Any:
    """What the tool call answers for a finished job (None while it runs or when it has no answer)."""
    if not job.terminal:
        return None
    if job.answer is not None:
        return CallToolResult.model_validate(job.answer)
    if job.result is None:
        return None
    request = job.request or {}
    if job.tool == "dispatch" and request.get("return_ref"):
        return refs.ref_payload(job.id, job.result, int(request.get("summary_chars", 500)))
    return job.result.to_json()


# -- the task's state as tasks/get answers it -------------------------------------------------


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def task_state(job: Job) -> dict[str, Any]:
    """The task (the extension's DetailedTask) for a job record."""
    updated = max(t for t in (job.created_at, job.started_at, job.completed_at) if t is not None)
    out: dict[str, Any] = {
        "taskId": job.id,
        "status": "working",
        "createdAt": _iso(job.created_at),
        "lastUpdatedAt": _iso(updated),
        "ttlMs": TTL_MS,
        "pollIntervalMs": POLL_INTERVAL_MS,
    }
    if not job.terminal:
        if job.question:
            out["status"] = "input_required"
            out["statusMessage"] = job.question.get("message", "")
            out["inputRequests"] = {job.question["key"]: _elicitation(job.question)}
        else:
            latest = job.status_message or (job.progress[-1] if job.progress else "")
            out["statusMessage"] = latest or (STARTING if job.status == "pending" else "started")
        return out
    if job.status == "cancelled":
        out["status"] = "cancelled"
        out["statusMessage"] = job.error or "cancelled"
        return out
    value = completed_value(job)
    if value is None:
        out["status"] = "failed"
        message = job.error or "the dispatch ended without an answer"
        out["statusMessage"] = message
        out["error"] = {"code": INTERNAL_ERROR, "message": message}
        return out
    out["status"] = "completed"
    out["result"] = wire(value if isinstance(value, CallToolResult) else answer(value))
    if job.status_message:
        out["statusMessage"] = job.status_message
    return out


def _elicitation(question: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": str(question.get("message", "")),
            "requestedSchema": question.get("schema") or background.QUESTION_SCHEMA,
        },
    }


# -- the extension: capability, tasks/* methods, the tools/call interceptor -----------------


class TaskParams(RequestParams):
    task_id: str = Field(alias="taskId")


class TaskUpdateParams(TaskParams):
    input_responses: dict[str, Any] = Field(alias="inputResponses", default_factory=dict)


class TasksExtension(Extension):
    """Serves `tasks/get`, `tasks/update`, `tasks/cancel` and turns long dispatch calls into tasks."""

    identifier = TASKS_EXTENSION

    def __init__(self, jobs: Callable[[], background.JobManager]) -> None:
        self._jobs = jobs  # the server's JobManager exists only once its lifespan has started

    def methods(self) -> Sequence[MethodBinding]:
        return (
            MethodBinding("tasks/get", TaskParams, self._get),
            MethodBinding("tasks/update", TaskUpdateParams, self._update),
            MethodBinding("tasks/cancel", TaskParams, self._cancel),
        )

    def enabled(self) -> bool:
        try:
            return self._jobs().dispatcher.config().settings.mcp_tasks
        except (AgentDispatchError, AttributeError):
            return False  # an unreadable config: plain answers (which carry the error envelope)

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if params.name not in TASK_TOOLS or not declares_tasks(ctx) or not self.enabled():
            return await call_next(ctx)
        grace = self._jobs().dispatcher.config().settings.task_grace_seconds
        offer = _Offer(grace=grace)
        token = _OFFER.set(offer)
        try:
            result = await call_next(ctx)
        finally:
            _OFFER.reset(token)
        if offer.job is None:
            return result
        return {"resultType": "task", **task_state(offer.job)}

    async def middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Advertise the extension in `server/discover` only while `settings.mcp_tasks` is on."""
        result = await call_next(ctx)
        if ctx.method == "server/discover" and isinstance(result, dict) and not self.enabled():
            extensions = (result.get("capabilities") or {}).get("extensions")
            if isinstance(extensions, dict):
                extensions.pop(TASKS_EXTENSION, None)
                if not extensions:
                    result["capabilities"].pop("extensions", None)
        return result

    async def _job(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> Job:
        require_client_extension(ctx, TASKS_EXTENSION)
        if not is_valid_job_id(task_id):
            raise MCPError(code=INVALID_PARAMS, message="Failed to retrieve task: a task id is 32 lowercase hex")
        try:
            job = await self._jobs().peek(task_id)
        except AgentDispatchError:
            job = None
        if job is None or job.kind != "task":
            raise MCPError(code=INVALID_PARAMS, message=f"Failed to retrieve task: no task {task_id}")
        return job

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        return task_state(await self._job(ctx, params.task_id))

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: TaskUpdateParams) -> dict[str, Any]:
        job = await self._job(ctx, params.task_id)
        self._jobs().answer(job.id, params.input_responses)
        return {}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        job = await self._job(ctx, params.task_id)
        await self._jobs().cancel(job.id)
        return {}
