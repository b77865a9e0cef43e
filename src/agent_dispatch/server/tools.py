"""The MCP tools: each checks its arguments, calls the service, and answers one JSON value."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field, ValidationError

from agent_dispatch import __version__, background, refs
from agent_dispatch import config as configmod
from agent_dispatch.dispatcher import AskFn, Dispatcher, check_total_usd, make_request, multi
from agent_dispatch.errors import BadArgumentError
from agent_dispatch.models import PREVIEW_LINES_MAX, WAIT_SECONDS_MAX, clamp
from agent_dispatch.server import tasks
from agent_dispatch.server.answers import boundary, envelope, finite, short_validation
from agent_dispatch.server.clarify import Flows, clarifying

# Parameter types shared by the dispatch tools; their descriptions reach the calling model in the schema.
AgentName = Annotated[str, Field(description="Name of a registered agent (see list_agents).")]
Task = Annotated[str, Field(description="What the agent should do, in plain words.")]
ContextText = Annotated[str, Field(description="Background the agent needs: facts, logs, earlier findings.")]
Caller = Annotated[str, Field(description="Who is asking (e.g. your project or session), so the agent knows.")]
Goal = Annotated[str, Field(description="What the result will be used for.")]
ResponseFormat = Annotated[
    str, Field(description='"" for plain text, or "json" to get one JSON value back in parsed_result.')
]
GroupName = Annotated[
    str, Field(description="Dispatch through this group (see list_groups): the agent must be a member, and the "
                           "group's shared context is added to the context.")
]
Labels = Annotated[str, Field(description='Comma-separated labels, e.g. "docker_logs,deploy_debug".')]
Isolation = Annotated[
    str,
    Field(description='"" for the agent\'s setting; "worktree" to run in a fresh git worktree of its checkout '
                      '(kept for review only if the run changed files: see changes.worktree); "none" to run in '
                      'the directory itself.'),
]

SHUTDOWN_REASON = "the agent-dispatch server stopped before this job started"

INSTRUCTIONS = """\
agent-dispatch hands a task to a Claude Code agent that lives in another project directory and
returns its answer. Each agent runs `claude -p` in its own project, with that project's CLAUDE.md,
MCP servers and tools. Start with list_agents to see who is there. Use dispatch for one task,
dispatch_parallel for several independent ones, dispatch_session for a multi-turn conversation,
dispatch_async (+ dispatch_wait / dispatch_status) for long tasks, return_ref + fetch_result for
large answers. A failed result carries error_type and a hint that says what to do next."""


class _Server(MCPServer):
    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        """Arguments that fail the input schema get the JSON envelope too, not bare text."""
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                message = short_validation(cause)
            else:
                message = str(exc)[:500]
            return envelope(BadArgumentError(f"{name}: {message}"))


class State:
    dispatcher: Dispatcher
    jobs: background.JobManager
    flows: Flows


def build_server(dispatcher: Dispatcher | None = None) -> MCPServer:
    """The MCP server with every tool of the contract registered."""
    state = State()
    state.flows = Flows()

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[dict[str, Any]]:
        state.dispatcher = dispatcher or Dispatcher()
        async with anyio.create_task_group() as tg:
            state.jobs = background.JobManager(state.dispatcher, tg)
            state.flows.tg = tg
            tg.start_soon(state.jobs.recover_on_start)
            try:
                yield {}
            finally:
                with anyio.CancelScope(shield=True):
                    await state.jobs.shutdown(SHUTDOWN_REASON)
                tg.cancel_scope.cancel()

    extension = tasks.TasksExtension(lambda: state.jobs)
    server = _Server(
        name="agent-dispatch", version=__version__, instructions=INSTRUCTIONS, lifespan=lifespan,
        extensions=[extension],
    )
    server.middleware.append(extension.middleware)
    server.agent_dispatch_state = state  # type: ignore[attr-defined]

    def tool(
        description: str, *, read_only: bool = False, asks: bool = False
    ) -> Callable[[Callable[..., Any]], Any]:
        """Register a tool; `asks`: its body takes `ask`, and blocked agents' questions reach the human."""

        def register(fn: Callable[..., Any]) -> Any:
            server.add_tool(
                boundary(clarifying(fn, state.flows) if asks else fn),
                name=fn.__name__,
                description=description,
                annotations=ToolAnnotations(read_only_hint=read_only) if read_only else None,
                structured_output=False,
            )
            return fn

        return register

    # -- agents --------------------------------------------------------------------------

    @tool("List the registered agents: name, directory, description, health, MCP servers and stacks. "
          "Call this first to pick an agent for dispatch.", read_only=True)
    async def list_agents() -> list[dict[str, Any]]:
        cfg = state.dispatcher.config()
        return state.dispatcher.with_typicals([configmod.agent_listing(name, agent)
                                               for name, agent in cfg.agents.items()])

    @tool("Show one agent in detail (configuration, project markers, CLAUDE.md / README previews of "
          "`preview_lines` lines, 0..200, 0 = none). Starts nothing.", read_only=True)
    async def inspect_agent(name: str, preview_lines: int = 40) -> dict[str, Any]:
        cfg = state.dispatcher.config()
        state.dispatcher.agent(name, cfg)
        lines = clamp(preview_lines, 0, PREVIEW_LINES_MAX)
        return state.dispatcher.with_typical(configmod.agent_inspection(name, cfg.agents[name], cfg.settings, lines))

    @tool("Register a project directory as an agent. `description` is generated from the project when "
          "empty; `timeout` seconds (0 = default); `max_budget_usd` per dispatch (0 = none); tool lists are "
          "comma-separated names such as 'Read,Grep'. `host` ([user@]name) puts the agent on another machine "
          "reached over ssh (`directory` is then a path there); `ssh_options` is 'port=N,identity_file=PATH,"
          "jump_host=H,connect_timeout=S'. `runtime` is the agent CLI: claude, codex or gemini "
          "(empty = what the project is set up for, else claude).")
    async def add_agent(
        name: str,
        directory: str,
        description: str = "",
        timeout: int = 0,
        max_budget_usd: float = 0,
        permission_mode: str = "",
        allowed_tools: str = "",
        disallowed_tools: str = "",
        capabilities: Labels = "",
        risky_capabilities: Labels = "",
        instructions: str = "",
        host: str = "",
        ssh_options: str = "",
        runtime: str = "",
        isolation: str = "",
    ) -> dict[str, Any]:
        finite(max_budget_usd, "max_budget_usd")
        changes = configmod.AgentChanges.from_inputs(
            timeout=timeout,
            max_budget_usd=max_budget_usd,
            permission_mode=permission_mode,
            allowed_tools=allowed_tools,
            disallowed_tools=disallowed_tools,
            capabilities=capabilities,
            risky_capabilities=risky_capabilities,
            instructions=instructions,
            host=host,
            ssh_options=ssh_options,
            runtime=runtime,
            isolation=isolation,
        )
        agent = await anyio.to_thread.run_sync(
            lambda: configmod.add_agent_with_changes(state.dispatcher.store, name, directory, description, changes)
        )
        return {"name": name, **agent.model_dump(exclude_none=True)}

    @tool("Change an agent. Empty strings and 0 leave a field as it is; the string 'none' clears it (the agent "
          "goes back to the default). Tool lists are comma-separated names; `runtime` claude, codex or gemini.")
    async def update_agent(
        name: str,
        description: str = "",
        timeout: int | str = 0,
        max_budget_usd: float | str = 0,
        model: str = "",
        permission_mode: str = "",
        allowed_tools: str = "",
        disallowed_tools: str = "",
        capabilities: Labels = "",
        risky_capabilities: Labels = "",
        instructions: str = "",
        host: str = "",
        ssh_options: str = "",
        runtime: str = "",
        isolation: str = "",
    ) -> dict[str, Any]:
        if not isinstance(max_budget_usd, str):
            finite(max_budget_usd, "max_budget_usd")
        changes = configmod.AgentChanges.from_inputs(
            description=description,
            timeout=timeout,
            max_budget_usd=max_budget_usd,
            model=model,
            permission_mode=permission_mode,
            allowed_tools=allowed_tools,
            disallowed_tools=disallowed_tools,
            capabilities=capabilities,
            risky_capabilities=risky_capabilities,
            instructions=instructions,
            host=host,
            ssh_options=ssh_options,
            runtime=runtime,
            isolation=isolation,
        )
        agent = await anyio.to_thread.run_sync(
            lambda: configmod.update_agent(state.dispatcher.store, name, changes)
        )
        return {"name": name, **agent.model_dump(exclude_none=True)}

    @tool("Unregister an agent (its project directory is not touched).")
    async def remove_agent(name: str) -> dict[str, Any]:
        await anyio.to_thread.run_sync(lambda: configmod.remove_agent(state.dispatcher.store, name))
        return {"removed": name}

    # -- groups ------------------------------------------------------------------------------

    @tool("List the groups of agents that work together: name, description, and members with what each is "
          "used for and its health (a member whose agent was removed is unknown: true).", read_only=True)
    async def list_groups() -> list[dict[str, Any]]:
        return configmod.group_listing(state.dispatcher.config())

    @tool("Show one group: description, the shared context its dispatches get, and its members.", read_only=True)
    async def inspect_group(name: str) -> dict[str, Any]:
        return configmod.group_inspection(state.dispatcher.config(), name)

    # -- dispatching -----------------------------------------------------------------------

    @tool("Give one task to one agent and wait for its answer. `context` is background the agent needs; "
          "`caller` says who you are; `goal` says what the result is for; response_format='json' asks for one "
          "JSON value (parsed into parsed_result). return_ref=true stores the full answer and returns a ref "
          "with a `summary_chars`-long summary: use fetch_result(ref) to read it all.", asks=True)
    async def dispatch(
        ctx: Context,
        agent: AgentName,
        task: Task,
        context: ContextText = "",
        caller: Caller = "",
        goal: Goal = "",
        response_format: ResponseFormat = "",
        return_ref: bool = False,
        summary_chars: int = 500,
        group: GroupName = "",
        isolation: Isolation = "",
        *,
        ask: AskFn,
    ) -> dict[str, Any]:
        req = make_request(
            agent=agent, task=task, context=context, caller=caller, goal=goal,
            response_format=response_format, return_ref=return_ref, summary_chars=summary_chars, group=group,
            isolation=isolation,
        )

        async def plain(watch: Any) -> dict[str, Any]:
            result = await state.dispatcher.dispatch(req, ask=ask, watch=watch)
            return await refs.keep(req, result) if req.return_ref else result.to_json()

        return await tasks.run_single(ctx, state.jobs, "dispatch", req, plain, cache=True)

    @tool("Talk to an agent over several turns: leave session_id empty to start, then pass back the session_id "
          "from its answer to continue the same conversation. Never cached.", asks=True)
    async def dispatch_session(
        ctx: Context,
        agent: AgentName,
        task: Task,
        session_id: str = "",
        context: ContextText = "",
        caller: Caller = "",
        goal: Goal = "",
        response_format: ResponseFormat = "",
        group: GroupName = "",
        *,
        ask: AskFn,
    ) -> dict[str, Any]:
        req = make_request(
            agent=agent, task=task, context=context, caller=caller, goal=goal, response_format=response_format,
            group=group,
        )

        async def plain(watch: Any) -> dict[str, Any]:
            return (await state.dispatcher.dispatch_session(req, session_id, ask=ask, watch=watch)).to_json()

        return await tasks.run_single(ctx, state.jobs, "dispatch_session", req, plain, session_id=session_id)

    @tool("Run several dispatches at once. `dispatches` is a JSON string holding a list of objects "
          "{agent, task, context?, caller?, goal?, response_format?, return_ref?, summary_chars?, group?}. "
          "Answers a list of results in item order; with `aggregate` (an agent name) that agent also combines "
          "them, and the "
          "answer is {individual_results, aggregated}. The whole call is refused if any item is invalid. "
          "max_total_usd > 0 is one spend cap for the whole fan-out: once reached, no further item starts, running "
          "items are cancelled, and the items not completed answer error_type 'budget'.", asks=True)
    async def dispatch_parallel(
        ctx: Context, dispatches: str, aggregate: str = "", max_total_usd: float = 0, *, ask: AskFn
    ) -> Any:
        total = check_total_usd(max_total_usd)
        requests = multi.parse_parallel(state.dispatcher, dispatches)
        if aggregate:
            state.dispatcher.agent(aggregate)

        async def plain(watch: Any) -> Any:
            return await multi.dispatch_parallel(state.dispatcher, requests, aggregate, total, ask=ask, watch=watch)

        agents = ",".join(dict.fromkeys(req.agent for req in requests))
        label = (agents[:200], f"{len(requests)} dispatches: " + " | ".join(r.task[:80] for r in requests[:5]),
                 {"dispatches": [r.model_dump() for r in requests], "aggregate": aggregate,
                  "max_total_usd": total})
        return await tasks.run_call(ctx, state.jobs, "dispatch_parallel", label, plain)

    @tool("Like dispatch, but while the agent works you receive progress notifications with what it is "
          "doing (its latest text or tool use). Never cached.", asks=True)
    async def dispatch_stream(
        ctx: Context,
        agent: AgentName,
        task: Task,
        context: ContextText = "",
        caller: Caller = "",
        goal: Goal = "",
        response_format: ResponseFormat = "",
        group: GroupName = "",
        *,
        ask: AskFn,
    ) -> dict[str, Any]:
        req = make_request(
            agent=agent, task=task, context=context, caller=caller, goal=goal, response_format=response_format,
            group=group,
        )

        async def plain(watch: Any) -> dict[str, Any]:
            return (await state.dispatcher.dispatch(req, use_cache=False, ask=ask, watch=watch,
                                                    tool="dispatch_stream")).to_json()

        return await tasks.run_single(ctx, state.jobs, "dispatch_stream", req, plain)

    @tool("Let two agents talk until one of them writes [RESOLVED] or `max_rounds` (1..10) rounds pass. The "
          "topic goes to the responder first; each round is the responder's message, then the requester's reply.")
    async def dispatch_dialogue(
        ctx: Context, requester: str, responder: str, topic: str, max_rounds: int = 3
    ) -> dict[str, Any]:
        multi.check_dialogue(state.dispatcher, requester, responder, topic, max_rounds)

        async def plain(watch: Any) -> dict[str, Any]:
            return await multi.dialogue(state.dispatcher, requester, responder, topic, max_rounds, watch=watch)

        label = (f"{requester},{responder}", topic,
                 {"requester": requester, "responder": responder, "topic": topic, "max_rounds": max_rounds})
        return await tasks.run_call(ctx, state.jobs, "dispatch_dialogue", label, plain)

    # -- cache -----------------------------------------------------------------------------

    @tool("Statistics of the result cache (identical dispatches within the TTL are answered from memory).",
          read_only=True)
    async def cache_stats() -> dict[str, Any]:
        state.dispatcher.config()
        return state.dispatcher.cache.stats()

    @tool("Empty the result cache so the next identical dispatch runs again.")
    async def cache_clear() -> dict[str, Any]:
        return {"cleared": state.dispatcher.cache.clear()}

    # -- jobs --------------------------------------------------------------------------------

    @tool("Start a dispatch in the background and return at once with {job_id, status: 'pending', agent}. "
          "Follow it with dispatch_wait(job_id) or dispatch_status(job_id). Use for long tasks.")
    async def dispatch_async(
        agent: AgentName,
        task: Task,
        context: ContextText = "",
        caller: Caller = "",
        goal: Goal = "",
        response_format: ResponseFormat = "",
        group: GroupName = "",
        isolation: Isolation = "",
    ) -> dict[str, Any]:
        req = make_request(
            agent=agent, task=task, context=context, caller=caller, goal=goal, response_format=response_format,
            group=group, isolation=isolation,
        )
        job = await state.jobs.start(req)
        return {"job_id": job.id, "status": job.status, "agent": job.agent}

    @tool("The record of a background job: status (pending, running, done, failed, cancelled), times (Unix "
          "seconds), recent progress, and the dispatch result once finished.", read_only=True)
    async def dispatch_status(job_id: str) -> dict[str, Any]:
        return (await state.jobs.status(job_id)).to_json()

    @tool("Wait up to `timeout_seconds` (default 60, at most 3600) for a background job to finish and return "
          "its record; if it is still running the record comes back with timed_out_waiting: true.")
    async def dispatch_wait(job_id: str, timeout_seconds: float = 60) -> dict[str, Any]:
        seconds = min(max(finite(timeout_seconds, "timeout_seconds"), 0.0), WAIT_SECONDS_MAX)
        job, timed_out = await state.jobs.wait(job_id, seconds)
        out = job.to_json()
        if timed_out:
            out["timed_out_waiting"] = True
        return out

    @tool("Cancel a background job: a pending job never runs; a running one has its process tree killed.")
    async def dispatch_cancel(job_id: str) -> dict[str, Any]:
        return await state.jobs.cancel(job_id)

    @tool("List background jobs, newest first; `status` filters (pending, running, done, failed, cancelled); "
          "`limit` 1..1000.", read_only=True)
    async def dispatch_jobs(status: str = "", limit: int = 50) -> list[dict[str, Any]]:
        jobs = await anyio.to_thread.run_sync(lambda: state.jobs.list(status or None, limit))
        return [job.summary() for job in jobs]

    @tool("Delete finished job records older than `max_age_days` (default 7). Pending and running jobs are "
          "never deleted. dry_run=true deletes nothing and answers which jobs would go.")
    async def dispatch_gc(max_age_days: float = 7, dry_run: bool = False) -> dict[str, Any]:
        days = finite(max_age_days, "max_age_days")
        if dry_run:
            ids = await anyio.to_thread.run_sync(lambda: state.jobs.gc_preview(days))
            return {"deleted": 0, "would_delete": len(ids), "job_ids": ids}
        return {"deleted": await anyio.to_thread.run_sync(lambda: state.jobs.gc(days))}

    @tool("Read a stored result by its ref (from return_ref) or dispatch_async job id. max_chars > 0 cuts the "
          "text and adds truncated: true and full_size.", read_only=True)
    async def fetch_result(ref: str, max_chars: int = 0) -> dict[str, Any]:
        return await state.jobs.fetch_result(ref, max_chars)

    # -- usage -------------------------------------------------------------------------------

    @tool("What dispatches cost and how long they took over the last `days` local days (default 7; today "
          "included), from the usage journal shared by every agent-dispatch server of this user: spend, counts, "
          "cached share and the money it saved, durations (median, p90, max), outcomes, failures by type, per "
          "agent and per caller. `agent` narrows it to one agent.", read_only=True)
    async def usage_stats(days: float = 7, agent: str = "") -> dict[str, Any]:
        return await anyio.to_thread.run_sync(lambda: state.dispatcher.usage_stats(days, agent))

    @tool("The dispatches running right now across every agent-dispatch server and CLI of this user: agent, "
          "tool, server_pid, started_at (Unix seconds), caller, job_id, last_progress.", read_only=True)
    async def list_running() -> list[dict[str, Any]]:
        return await anyio.to_thread.run_sync(state.dispatcher.running)

    return server
