"""Async jobs and recovery: the part of the service that outlives a tool call.

A job's `claude` process writes to `<id>.out` in the jobs directory (file-backed mode), in its
own session, so it survives the server that started it. The record names its owner server
(pid + process start time) and the run (pid, start time, token). Any server can then tell a
job of a live server (left alone) from one whose server died: a finished run is collected
from its output file, a live run is adopted and collected when it ends, and a queued job is
failed with the reason. This is how a paid result is never lost.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from agent_dispatch import changes
from agent_dispatch.dispatcher import CALL_JOB, Dispatcher, Watch
from agent_dispatch.errors import BadArgumentError, JobNotFoundError, JobRecordError
from agent_dispatch.jobs import JobStore, TransitionRefused
from agent_dispatch.models import DispatchRequest, DispatchResult, Job, check_job_id
from agent_dispatch.progress import Narrator
from agent_dispatch.refs import open_store
from agent_dispatch.runner import RunHandle, collect_output, kill_run, run_alive
from agent_dispatch.runner.tree import read_stat

PROGRESS_TAIL = 20
PROGRESS_WRITE_INTERVAL = 1.0
ADOPT_POLL = 0.5
ANSWER_WAIT = 3600.0  # seconds a task's question waits for the human before it counts as unanswered
PEEK_INLINE_BYTES = 256 * 1024  # records up to this are parsed on the event loop by `peek`
ORPHAN_PENDING = "the agent-dispatch server that queued this job exited before it started; dispatch it again"
ORPHAN_NO_RESULT = "the agent-dispatch server running this job exited and the run left no result"


def process_start_time(pid: int) -> int | None:
    stat = read_stat(pid)
    return None if stat is None or stat.state == "Z" else stat.start


def owner_info() -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "start": process_start_time(pid)}


def owner_alive(owner: dict[str, Any] | None) -> bool:
    """Whether the server process that owns a job still runs (pid reuse ruled out by its start time)."""
    if not owner:
        return False
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    start = process_start_time(pid)
    return start is not None and start == owner.get("start")


def _progress_texts(events: Any) -> list[str]:
    """The progress tail as stored: one short line per event that has something to show."""
    from agent_dispatch.dispatcher import describe_event

    texts = (describe_event(event) for event in events)
    return [text[:200] for text in texts if text]


# A call run as a task job in this process (several runs: parallel, dialogue): given a watcher for
# its progress, it produces the answer to store, already shaped by the front door.
CallWork = Callable[[Watch], Awaitable[dict[str, Any]]]
QUESTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string", "title": "Answer",
                              "description": "Sent to the agent, which continues its work with it."}},
    "required": ["answer"],
}


@dataclass
class _Question:
    key: str
    answered: anyio.Event = field(default_factory=anyio.Event)
    response: dict[str, Any] | None = None


class JobManager:
    """Starts, watches, cancels and recovers background jobs for one server (or one CLI command)."""

    def __init__(self, dispatcher: Dispatcher, tg: TaskGroup | None = None, store: JobStore | None = None) -> None:
        self.dispatcher = dispatcher
        self.tg = tg
        self.store = store or open_store()
        self.owner = owner_info()
        self._done_events: dict[str, anyio.Event] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._handles: dict[str, dict[str, Any]] = {}
        self._adopting: set[str] = set()
        self._closing = False
        self._watchers: dict[str, Watch] = {}
        self._questions: dict[str, _Question] = {}
        self._writing: set[str] = set()

    # -- starting and running ------------------------------------------------------------

    async def start(
        self, req: DispatchRequest, *, tool: str | None = None, session_id: str = "", cache: bool = False,
        watch: Watch | None = None,
    ) -> Job:
        """Record a pending job and run it in the background; answers at once.

        With `tool`, the job is that tool's call run as an MCP task (kind `task`): `session_id`
        continues a conversation, `cache` stores a clean result as `dispatch` would, and `watch`
        sees the run's events live until `unwatch`.
        """
        self._check_can_start()
        cfg = self.dispatcher.config()
        self.dispatcher.agent(req.agent, cfg)
        req = self.dispatcher.through_group(req, cfg)
        request = req.model_dump()
        if session_id:
            request["session_id"] = session_id
        job = self._new_job(req.agent, req.task, request, tool)
        await anyio.to_thread.run_sync(self.store.create, job)
        self._begin(job.id, watch)
        body = self._run(job.id, req, session_id=session_id, cache=cache, ask_human=tool is not None, tool=tool)
        self.tg.start_soon(self._work, job.id, body)  # type: ignore[union-attr]
        return job

    async def start_call(
        self, tool: str, agent: str, task: str, request: dict[str, Any], work: CallWork, *, watch: Watch | None = None
    ) -> Job:
        """Run a call made of several runs (parallel, dialogue) as a task job of this process.

        Its runs are not detached: if this server dies, the job ends `failed` with the reason.
        """
        self._check_can_start()
        job = self._new_job(agent, task, request, tool)
        await anyio.to_thread.run_sync(self.store.create, job)
        self._begin(job.id, watch)
        self.tg.start_soon(self._work, job.id, self._run_call(job.id, work))  # type: ignore[union-attr]
        return job

    def _check_can_start(self) -> None:
        if self.tg is None or self._closing:
            raise BadArgumentError("this process cannot run background jobs", "Use the MCP server's dispatch_async.")

    def _new_job(self, agent: str, task: str, request: dict[str, Any], tool: str | None) -> Job:
        return Job(
            id=uuid.uuid4().hex, status="pending", agent=agent, task=task, created_at=time.time(),
            owner=self.owner, request=request, kind="task" if tool else "async", tool=tool,
        )

    def _begin(self, job_id: str, watch: Watch | None) -> None:
        self._done_events[job_id] = anyio.Event()
        if watch is not None:
            self._watchers[job_id] = watch

    def unwatch(self, job_id: str) -> None:
        """Stop showing a job's events to the watcher given at start (its progress stays in the record)."""
        self._watchers.pop(job_id, None)

    async def _work(self, job_id: str, body: Awaitable[None]) -> None:
        try:
            with anyio.CancelScope() as scope:
                self._scopes[job_id] = scope
                await body
        finally:
            self._scopes.pop(job_id, None)
            self._handles.pop(job_id, None)
            self._watchers.pop(job_id, None)
            event = self._done_events.pop(job_id, None)
            if event is not None:
                event.set()

    async def _run_call(self, job_id: str, work: CallWork) -> None:
        narrator = Narrator()
        last_write = [0.0]

        def watch(event: Any, source: str) -> None:
            watcher = self._watchers.get(job_id)
            if watcher is not None:
                watcher(event, source)
            if narrator.offer(event, source):
                now = time.monotonic()
                if now - last_write[0] >= PROGRESS_WRITE_INTERVAL:
                    last_write[0] = now
                    self._progress_soon(job_id, status_message=narrator.latest)

        try:
            self.store.transition(job_id, "running", started_at=time.time())
        except TransitionRefused:
            return  # cancelled before it began
        token = CALL_JOB.set(job_id)
        try:
            answer: dict[str, Any] | None = await work(watch)
            error = None
        except Exception as exc:  # noqa: BLE001 - the job must end, whatever the work raised
            answer, error = None, f"the call failed: {type(exc).__name__}: {str(exc)[:300]}"
        finally:
            CALL_JOB.reset(token)

        def finish() -> None:
            try:
                self.store.transition(
                    job_id, "done" if error is None else "failed", completed_at=time.time(), answer=answer,
                    error=error, status_message=narrator.latest or None,
                )
            except TransitionRefused:
                pass

        await anyio.to_thread.run_sync(finish)

    def _note_progress(self, job_id: str, **fields: Any) -> None:
        try:
            self.store.update(job_id, **fields)
        except (TransitionRefused, JobRecordError):
            pass

    def _progress_soon(self, job_id: str, **fields: Any) -> None:
        """Write progress off the event loop (a record write fsyncs), one write per job at a time;
        one due while another is in flight is skipped: the next event brings newer news."""
        if job_id in self._writing or self.tg is None:
            return
        self._writing.add(job_id)

        async def write() -> None:
            try:
                await anyio.to_thread.run_sync(lambda: self._note_progress(job_id, **fields))
            finally:
                self._writing.discard(job_id)

        self.tg.start_soon(write)

    async def _run(
        self, job_id: str, req: DispatchRequest, *, session_id: str = "", cache: bool = False, ask_human: bool = False,
        tool: str | None = None,
    ) -> None:
        d = self.dispatcher
        cfg = d.config()
        try:
            agent = d.agent(req.agent, cfg)
        except Exception as exc:  # the agent was removed while the job waited
            self._finish(job_id, DispatchResult.failure(req.agent, exc))
            return
        spec = d.spec(
            agent, req, stream=True, resume=session_id or None, output_path=self.store.path_for(job_id, ".out")
        )
        tail: deque[Any] = deque(maxlen=PROGRESS_TAIL)  # events; described only when written
        narrator = Narrator()
        last_write = [0.0]

        def on_spawn(handle: RunHandle) -> None:
            info = handle.to_dict()
            self._handles[job_id] = info
            last_write[0] = time.monotonic()  # the running record is written now: progress waits its turn
            try:
                self.store.transition(job_id, "running", started_at=time.time(), run=info)
            except TransitionRefused:
                kill_run(info)  # cancelled while it was starting: it must not run

        def on_event(event: Any) -> None:
            tail.append(event)
            watcher = self._watchers.get(job_id)
            if watcher is not None:
                watcher(event, "")
            narrator.offer(event)
            now = time.monotonic()
            if now - last_write[0] >= PROGRESS_WRITE_INTERVAL:
                last_write[0] = now
                self._progress_soon(job_id, progress=_progress_texts(tail), status_message=narrator.latest or None)

        def still_pending() -> bool:
            return self.store.get(job_id).status == "pending"  # cancelled while it waited: it never runs

        ran = await d.run(spec, cfg, tool=tool or "dispatch_async", caller=req.caller, job_id=job_id,
                          on_event=on_event, on_spawn=on_spawn, detach_on_cancel=True, admit=still_pending,
                          settle_on_cancel=lambda: not run_alive(self._handles.get(job_id) or {}))
        if ran is None:
            return
        result = ran
        if ask_human:  # a task: a blocked agent's question goes to the human as input_required
            result = await d.clarify(agent, req, result, cfg, self._asker(job_id), stream=True, on_event=on_event,
                                     tool=tool or "dispatch_async")
        if cache:
            d.remember(req, result)
        # One write for the end and the final progress, off the event loop (fsync takes milliseconds).
        progress = _progress_texts(tail)
        await anyio.to_thread.run_sync(lambda: self._finish(job_id, result, progress=progress))

    def _finish(
        self, job_id: str, result: DispatchResult, progress: list[str] | None = None
    ) -> None:
        """Record the end of a run; a job already terminal (cancelled meanwhile) stays as it is."""
        status = "done" if result.success else "failed"
        extra: dict[str, Any] = {"progress": progress} if progress else {}
        try:
            self.store.transition(
                job_id, status, completed_at=time.time(), result=result, error=None if result.success else result.error,
                **extra,
            )
        except TransitionRefused:
            pass

    # -- questions for the human ------------------------------------------------------------------

    async def ask(self, job_id: str, message: str, schema: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Put a question to the human through the client following this job as a task; wait for it.

        While it waits the record holds `question` ({key, message, schema}), so `tasks/get` answers
        `input_required` with it; `answer` (what `tasks/update` calls) delivers the response
        ({action: accept|decline|cancel, content}), which this returns. A cancelled job (or caller)
        stops the wait; the question is cleared from the record either way.
        """
        check_job_id(job_id)
        question = _Question(key="q" + uuid.uuid4().hex[:15])
        self._questions[job_id] = question
        record = {"key": question.key, "message": message, "schema": schema or QUESTION_SCHEMA}
        try:
            await anyio.to_thread.run_sync(lambda: self.store.update(job_id, question=record))
            await question.answered.wait()
            return question.response
        finally:
            self._questions.pop(job_id, None)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(lambda: self._note_progress(job_id, question=None))

    def _asker(self, job_id: str) -> Callable[[str, str], Awaitable[str | None]]:
        """The dispatcher's AskFn for a task job: the question goes through `ask`; only an accepted
        form with a non-empty answer is an answer."""

        async def ask(agent: str, question: str) -> str | None:
            message = (f"Agent '{agent}' is blocked and asks:\n\n{question}\n\n"
                       "Your answer is sent to the agent, which continues the same session with it.")
            with anyio.move_on_after(ANSWER_WAIT):
                response = await self.ask(job_id, message)
                content = response.get("content") if response and response.get("action") == "accept" else None
                answer = content.get("answer") if isinstance(content, dict) else None
                return answer if isinstance(answer, str) and answer.strip() else None
            return None

        return ask

    def answer(self, job_id: str, responses: dict[str, Any]) -> bool:
        """Deliver the human's response to the job's waiting question; False when none matches its key."""
        question = self._questions.get(job_id)
        if question is None or question.key not in responses or question.answered.is_set():
            return False
        response = responses[question.key]
        question.response = response if isinstance(response, dict) else {"action": "cancel"}
        question.answered.set()
        return True

    # -- reading -------------------------------------------------------------------------------

    async def status(self, job_id: str) -> Job:
        check_job_id(job_id)
        job = await anyio.to_thread.run_sync(self.store.get, job_id)
        if not job.terminal:
            job = await self._resolve_if_orphaned(job)
        return job

    async def peek(self, job_id: str) -> Job:
        """Like `status`, for a poll that must answer in milliseconds (tasks/get): a small record is
        read on the event loop (one file, no lock; a thread hop costs more on a busy machine)."""
        check_job_id(job_id)
        try:
            small = os.stat(self.store.path_for(job_id)).st_size <= PEEK_INLINE_BYTES
        except OSError:
            small = False  # let the store say what is wrong
        job = self.store.get(job_id) if small else await anyio.to_thread.run_sync(self.store.get, job_id)
        if not job.terminal and job.owner != self.owner:
            job = await self._resolve_if_orphaned(job)
        return job

    async def wait(self, job_id: str, timeout: float) -> tuple[Job, bool]:
        """Wait for a job to end: on an event for our own jobs, with a widening poll for others'."""
        job = await self.status(job_id)
        deadline = anyio.current_time() + timeout
        delay = 0.05
        while not job.terminal:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                return job, True
            event = self._done_events.get(job_id)
            if event is not None:
                with anyio.move_on_after(remaining):
                    await event.wait()
            else:
                await anyio.sleep(min(delay, remaining))
                delay = min(delay * 1.5, 1.0)
            job = await self.status(job_id)
        return job, False

    def list(self, status: str | None, limit: int) -> list[Job]:
        """Jobs newest first, after settling the ones dead servers left, so each shows its true state."""
        self.settle_orphans()
        return self.store.list(status, limit)

    def gc(self, max_age_days: float | None, *, dry_run: bool = False, ids: list[str] | None = None) -> int:
        """Delete (or with `dry_run` count) terminal jobs older than `max_age_days`; None = any age.
        `ids` receives the ids of the jobs deleted (or that would be)."""
        self.settle_orphans()
        if max_age_days is None:
            return self.store.gc_all(dry_run=dry_run, ids=ids)
        return self.store.gc(max_age_days, dry_run=dry_run, ids=ids)

    def settle_orphans(self) -> None:
        """Resolve the pending and running jobs whose server died (never a live server's).

        Synchronous, for listings (which run in a worker thread): a run still going stays
        `running`, which is true, and is collected by whoever looks once it has ended.
        """
        for job in self.store.unfinished():
            try:
                self._settle(job)
            except Exception:  # noqa: BLE001, S112 - one damaged record must not stop the others
                continue

    def gc_preview(self, max_age_days: float) -> list[str]:
        """The ids of the jobs gc(max_age_days) would delete; deletes nothing."""
        ids: list[str] = []
        self.gc(max_age_days, dry_run=True, ids=ids)
        return ids

    async def apply_retention(self) -> None:
        """Prune terminal jobs older than settings.job_retention_days (0 = keep all); at server start,
        once recovery has settled the jobs of dead servers."""
        try:
            days = self.dispatcher.config().settings.job_retention_days
            if days > 0:
                await anyio.to_thread.run_sync(lambda: self.store.gc(days))
        except Exception:  # noqa: BLE001, S110 - housekeeping must never stop the server
            pass

    async def fetch_result(self, ref: str, max_chars: int = 0) -> dict[str, Any]:
        job = await self.status(ref)
        if job.result is None:
            raise BadArgumentError(
                f"job {ref} is {job.status} and has no result yet",
                "Call dispatch_wait with this id to wait for it." if not job.terminal else
                "The job ended without a result; see its error with dispatch_status.",
            )
        out = job.result.to_json()
        out["ref"] = ref
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 0:
            raise BadArgumentError("max_chars must be a whole number >= 0 (0 = everything)")
        if max_chars and len(job.result.result) > max_chars:
            out["result"] = job.result.result[:max_chars]
            out["truncated"] = True
            out["full_size"] = len(job.result.result)
        return out

    # -- cancelling ------------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> dict[str, Any]:
        check_job_id(job_id)
        try:
            job = await anyio.to_thread.run_sync(self.store.get, job_id)
        except JobNotFoundError:
            return {"outcome": "not_found", "hint": "No job has this id; dispatch_jobs lists the known ones."}
        if job.terminal:
            return {"outcome": "already_terminal", "job": job.to_json()}
        if job.status == "pending":
            try:
                job = self.store.transition(job_id, "cancelled", completed_at=time.time(),
                                            error="cancelled before it started")
                scope = self._scopes.get(job_id)
                if scope is not None:
                    scope.cancel()
                return {"outcome": "cancelled", "job": job.to_json()}
            except TransitionRefused as exc:
                job = exc.job  # it started meanwhile: fall through to the running case
                if job.terminal:
                    return {"outcome": "already_terminal", "job": job.to_json()}
        handle = self._handles.get(job_id) or job.run
        if not handle and job.kind == "task" and job_id in self._scopes:
            # A call of several runs in this process: cancelling its scope kills each run's tree.
            try:
                job = self.store.transition(
                    job_id, "cancelled", completed_at=time.time(), error="cancelled while running"
                )
            except TransitionRefused as exc:
                return {"outcome": "already_terminal", "job": exc.job.to_json()}
            self._scopes[job_id].cancel()
            return {"outcome": "cancelled_running", "job": job.to_json()}
        if not handle:
            return {"outcome": "running", "job": job.to_json(),
                    "hint": "The job is starting in another process; try dispatch_cancel again in a moment."}
        try:
            job = self.store.transition(job_id, "cancelled", completed_at=time.time(), error="cancelled while running")
        except TransitionRefused as exc:
            return {"outcome": "already_terminal", "job": exc.job.to_json()}
        await anyio.to_thread.run_sync(kill_run, handle)
        scope = self._scopes.get(job_id)
        if scope is not None:
            scope.cancel()
        return {"outcome": "cancelled_running", "job": job.to_json()}

    # -- recovery ----------------------------------------------------------------------------------

    async def recover_on_start(self) -> None:
        """Resolve the jobs that dead servers left pending or running (never a live server's)."""
        try:
            jobs = await anyio.to_thread.run_sync(self.store.unfinished)
        except Exception:  # noqa: BLE001 - an unreadable jobs dir must not stop the server
            return
        for job in jobs:
            try:
                await self._resolve_if_orphaned(job)
            except Exception:  # noqa: BLE001, S112 - one damaged record must not stop the others
                continue
        await self.apply_retention()

    async def _resolve_if_orphaned(self, job: Job) -> Job:
        return self._settle(job, adopt=True)

    def _settle(self, job: Job, *, adopt: bool = False) -> Job:
        """A dead server's job resolved: pending fails, a finished run is collected; `adopt` (on
        the event loop only) also watches a live run to collect it when it ends."""
        if job.terminal or job.owner == self.owner or owner_alive(job.owner) or job.id in self._adopting:
            return job
        if job.status == "pending":
            try:
                return self.store.transition(job.id, "failed", completed_at=time.time(), error=ORPHAN_PENDING)
            except TransitionRefused as exc:
                return exc.job
        handle = job.run or {}
        if handle and run_alive(handle):
            if adopt and self.tg is not None:
                self._adopting.add(job.id)
                self.tg.start_soon(self._adopt, job)
            return job
        return self._collect(job)

    def _collect(self, job: Job) -> Job:
        request = job.request or {}
        runtime = (job.run or {}).get("runtime") if isinstance(job.run, dict) else None
        result = collect_output(
            self.store.path_for(job.id, ".out"), job.agent, request.get("response_format", ""), runtime=runtime
        )
        if result is not None:
            result = changes.settle_recovered(job.id, result)  # the worktree it ran in, if isolated
        try:
            if result is None:
                return self.store.transition(job.id, "failed", completed_at=time.time(), error=ORPHAN_NO_RESULT)
            status = "done" if result.success else "failed"
            collected = self.store.transition(job.id, status, completed_at=time.time(), result=result,
                                              error=None if result.success else result.error)
        except TransitionRefused as exc:
            return exc.job
        # The server that ran it died before recording it: the journal learns of it here, once.
        try:
            self.dispatcher.journal(result, self.dispatcher.config(), tool="dispatch_async",
                                    caller=str(request.get("caller") or ""), job_id=job.id)
        except Exception:  # noqa: BLE001, S110 - an unreadable config must not lose the collected result
            pass
        return collected

    async def _adopt(self, job: Job) -> None:
        """Watch a run whose server died; enforce its timeout; collect it when it ends."""
        try:
            handle = job.run or {}
            timeout = self._timeout_for(job)
            deadline = (job.started_at or job.created_at) + timeout
            while run_alive(handle):
                if time.time() > deadline:
                    await anyio.to_thread.run_sync(kill_run, handle)
                    break
                await anyio.sleep(ADOPT_POLL)
            self._collect(job)
        finally:
            self._adopting.discard(job.id)

    def _timeout_for(self, job: Job) -> float:
        try:
            return float(self.dispatcher.agent(job.agent).timeout)
        except Exception:  # noqa: BLE001 - the agent may be gone; fall back to the default
            return float(self.dispatcher.config().settings.default_timeout)

    # -- stopping --------------------------------------------------------------------------------------

    async def shutdown(self, reason: str) -> None:
        """Fail our queued jobs with `reason`; running ones keep going and are collected by a later server."""
        self._closing = True
        for job_id, scope in list(self._scopes.items()):
            try:
                job = self.store.get(job_id)
            except Exception:  # noqa: BLE001, S112
                continue
            if job.status == "pending" or job.run is None:  # queued, or a call whose runs end with us
                try:
                    self.store.transition(job_id, "failed", completed_at=time.time(), error=reason)
                except TransitionRefused:
                    pass
            scope.cancel()
