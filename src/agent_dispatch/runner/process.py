"""Running one agent CLI child under supervision and turning its end into a DispatchResult.

What is particular to a CLI (argv, output format, classification) comes from the spec's
runtime (agent_dispatch.runtimes); everything here is the same for every CLI.

The child gets its own session (process group), the agent's directory as cwd, the prompt on
stdin (a pipe written from a task, then closed; in file-backed mode an unlinked private file),
and an environment carrying the nesting depth and a run token. stdout and stderr are read
concurrently. The run is over when the main process has exited, or once the result has
arrived and stdout has closed (or stayed open RESULT_LINGER past the result); then whatever
the run left behind is killed, so nothing it started survives.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

from agent_dispatch import protocol, runtimes
from agent_dispatch.errors import CliFailure, InvalidInputFailure, NotFoundFailure
from agent_dispatch.models import DispatchResult
from agent_dispatch.runner.argv import runtime_of
from agent_dispatch.runner.tree import (
    KILL_GRACE,
    MARK_ENV,
    TOKEN_ENV,
    WINDOW_MAX_AGE,
    RunHandle,
    TreeKiller,
    boot_id,
    kill_steps,
    new_token,
    read_stat,
    token_chain,
)
from agent_dispatch.runs.events import StreamEvent
from agent_dispatch.runs.outcome import RunOutcome
from agent_dispatch.runs.spec import RunSpec, error_path_for
from agent_dispatch.transports import ssh as ssh_transport

log = logging.getLogger(__name__)

DEPTH_ENV = "AGENT_DISPATCH_DEPTH"
CHAIN_ENV = "AGENT_DISPATCH_CHAIN"
# Set by Claude Code in the processes it starts (our server included): a child `claude` seeing the
# first two refuses to run nested, and CLAUDE_PROJECT_DIR would point the agent at the caller's project.
_PARENT_SESSION_ENV = ("CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT", "CLAUDE_PROJECT_DIR")
READ_SIZE = 1024 * 1024  # take whatever stdout has buffered, up to this, per read
STDERR_TAIL = 64 * 1024  # bytes of stderr kept for error messages
RESULT_LINGER = 1.0  # seconds a child may keep stdout open after printing its result
EXIT_GRACE = 1.0  # seconds a child may take to exit after printing its result and closing stdout
DRAIN_TIMEOUT = 0.5  # seconds to read what is left in stdout once the run's processes are gone
_FILE_POLL = (0.005, 0.1)  # file-backed mode: first and longest pause between reads

OnEvent = Callable[[StreamEvent], None]
OnSpawn = Callable[[RunHandle], None]


def current_depth() -> int:
    """This process's nesting depth (env AGENT_DISPATCH_DEPTH; missing or malformed = 0)."""
    value = os.environ.get(DEPTH_ENV, "").strip()
    return int(value) if value.isdigit() else 0


def current_chain() -> tuple[str, ...]:
    """The agent names of the dispatches above this process (env AGENT_DISPATCH_CHAIN).

    Entries that are not valid agent names are dropped: a damaged variable never blocks a run.
    """
    from agent_dispatch.models import is_valid_agent_name

    raw = os.environ.get(CHAIN_ENV, "")
    return tuple(name for name in (part.strip() for part in raw.split(",")) if is_valid_agent_name(name))


def child_env(
    depth: int, token: str, chain: tuple[str, ...] = (), extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The child's environment: ours (plus `extra`), with the depth incremented, the run token chained
    in, and the dispatch chain (`chain`, already holding the child's own agent)."""
    env = dict(os.environ)
    env.update(extra or {})
    for key in _PARENT_SESSION_ENV:
        env.pop(key, None)
    env[DEPTH_ENV] = str(max(0, depth) + 1)
    env[TOKEN_ENV] = env[MARK_ENV] = token_chain(token)
    env[CHAIN_ENV] = ",".join(chain)
    return env


def _open_private(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def _prompt_file(directory: Path, prompt: bytes) -> int:
    """An unlinked, owner-only file holding the prompt, positioned at its start, as a raw fd."""
    fh = tempfile.TemporaryFile(dir=directory)
    try:
        fh.write(prompt)
        fh.flush()
        fd = os.dup(fh.fileno())
    finally:
        fh.close()
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_tail(path: Path | None, limit: int = STDERR_TAIL) -> str:
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - limit))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


async def run_claude(
    spec: RunSpec,
    *,
    on_event: OnEvent | None = None,
    on_spawn: OnSpawn | None = None,
    detach_on_cancel: bool = False,
) -> DispatchResult:
    """Run `claude -p` for `spec` and return its DispatchResult.

    Never raises for a failed run: refusals, a missing CLI or directory, timeouts and CLI errors
    come back as `success=False` with the contract's `error_type`. Cancellation propagates, but
    only after every process of the run has been killed and has exited (shielded cleanup).
    `on_event` gets stream-json events as they arrive; `on_spawn` the RunHandle once the child
    exists. Both are called on the event loop and must be quick; their errors are logged.

    `detach_on_cancel` (file-backed runs only): a cancelled call leaves the child running
    instead of killing it, so a server shutting down does not take async jobs with it; find it
    again with run_alive / collect_output / kill_run. (A file-backed child reads its prompt from
    an unlinked private file, so it never depends on this process to feed it.)
    """
    name = spec.agent.name
    runtime = runtime_of(spec)
    session = None if spec.resume else (spec.session_id or runtime.new_session_id())
    try:
        argv = runtime.build_argv(spec, session_id=session)
    except InvalidInputFailure as exc:
        return DispatchResult.failure(name, exc)
    target = ssh_transport.target_of(spec.agent)
    if target is not None:  # the CLI and the directory are on that host: its supervisor checks them
        argv[0] = runtime.executable
        run = _Run(spec, session or spec.resume, on_event, detach_on_cancel and spec.output_path is not None, target)
        try:
            return await run.execute(argv, on_spawn)
        except Exception as exc:  # a bug of ours must not crash the caller's server
            log.exception("runner failed for remote agent %s", name)
            return DispatchResult.failure(name, CliFailure(f"internal error while running on {target.host}: {exc!r}"))
    executable = shutil.which(spec.claude)
    if executable is None:
        return DispatchResult.failure(
            name,
            NotFoundFailure(f"the {runtime.executable} CLI was not found: {spec.claude!r}", runtime.install_hint),
        )
    if not os.path.isdir(spec.agent.directory):
        return DispatchResult.failure(
            name,
            NotFoundFailure(
                f"agent {name}'s directory does not exist: {spec.agent.directory}",
                f"Create it, or point the agent elsewhere: `agent-dispatch remove {name}` then `agent-dispatch add`.",
            ),
        )
    argv[0] = executable
    run = _Run(spec, session or spec.resume, on_event, detach_on_cancel and spec.output_path is not None)
    try:
        return await run.execute(argv, on_spawn)
    except Exception as exc:  # a bug of ours must not crash the caller's server
        log.exception("runner failed for agent %s", name)
        return DispatchResult.failure(name, CliFailure(f"internal error while running {runtime.executable}: {exc!r}"))


class _Run:
    """The state of one supervised run."""

    def __init__(
        self,
        spec: RunSpec,
        session_id: str | None,
        on_event: OnEvent | None,
        may_detach: bool,
        target: ssh_transport.SshTarget | None = None,
    ) -> None:
        self.spec = spec
        self.runtime = runtime_of(spec)
        self.target = target
        self.may_detach = may_detach
        self.detached = False
        self.session_id = session_id
        self.began = time.monotonic()
        self.reader = self.runtime.reader(stream=spec.stream, on_event=on_event, on_change=self._notify)
        self.stderr = bytearray()
        self.exited = False
        self.timed_out = False
        self.result_at: float | None = None
        self.readers_done = anyio.Event()
        self._changed = anyio.Event()

    # ---- wiring ----------------------------------------------------------------------------

    def _notify(self) -> None:
        if self.result_at is None and self.reader.result is not None:
            self.result_at = time.monotonic()
        self._changed.set()
        self._changed = anyio.Event()

    # ---- the run ---------------------------------------------------------------------------

    async def execute(self, argv: list[str], on_spawn: OnSpawn | None) -> DispatchResult:
        spec = self.spec
        out_path = spec.output_path
        err_path = error_path_for(out_path) if out_path else None
        token = new_token()
        prompt = spec.prompt.encode("utf-8", errors="replace")
        fds: list[int] = []
        cwd: str | None = spec.agent.directory
        runtime_env = self.runtime.env(spec)
        env = {**child_env(spec.depth, token, (*spec.chain, spec.agent.name), spec.env), **runtime_env}
        if self.target is not None:
            socket, failure = await ssh_transport.ensure_master(self.target)
            if failure is not None:
                return self._result(DispatchResult.failure(spec.agent.name, failure, session_id=self.session_id))
            argv = ssh_transport.wrap(
                self.target, argv, env, spec.agent.directory, spec.effective_timeout, socket, forward=runtime_env
            )
            cwd = None
        try:
            if out_path is not None and err_path is not None:
                try:
                    fds.append(_open_private(out_path))
                    fds.append(_open_private(err_path))
                    fds.append(_prompt_file(out_path.parent, prompt))
                except OSError as exc:
                    return DispatchResult.failure(
                        spec.agent.name, CliFailure(f"cannot create the run's output file {out_path}: {exc}")
                    )
            # Shielded: a cancel landing mid-spawn must not leave an unsupervised child.
            with anyio.CancelScope(shield=True):
                proc = await anyio.open_process(
                    argv,
                    stdin=fds[2] if fds else subprocess.PIPE,
                    stdout=fds[0] if fds else subprocess.PIPE,
                    stderr=fds[1] if fds else subprocess.PIPE,
                    cwd=cwd,
                    env=env,
                    start_new_session=True,
                )
        except OSError as exc:
            return self._spawn_failure(exc)
        finally:
            for fd in fds:
                os.close(fd)
        stat = read_stat(proc.pid)
        handle = RunHandle(
            pid=proc.pid,
            start_time=stat.start if stat else None,
            token=token,
            boot_id=boot_id(),
            started_at=time.time(),
            output_path=out_path,
            error_path=err_path,
            runtime=self.runtime.name,
        )
        try:
            if on_spawn is not None:
                try:
                    on_spawn(handle)
                except Exception:
                    log.exception("on_spawn callback failed")
            await self._supervise(proc, handle, prompt)
        finally:
            if not self.detached:  # closing a detached child's transport would kill it
                with anyio.CancelScope(shield=True):
                    await proc.aclose()
        return self._outcome(proc, err_path)

    async def _supervise(self, proc: Process, handle: RunHandle, prompt: bytes) -> None:
        async with anyio.create_task_group() as tg:
            if self.spec.output_path is None:
                tg.start_soon(self._feed, proc.stdin, prompt)
                tg.start_soon(self._read_stdout, proc.stdout)
                tg.start_soon(self._read_stderr, proc.stderr)
            else:
                tg.start_soon(self._tail_file, self.spec.output_path)
            tg.start_soon(self._wait_exit, proc)
            try:
                await self._until_finished()
            except anyio.get_cancelled_exc_class():
                self.detached = self.may_detach and not self.exited
                raise
            finally:
                if not self.detached:
                    with anyio.CancelScope(shield=True):
                        await self._kill_tree(proc, handle)
                        with anyio.move_on_after(DRAIN_TIMEOUT):
                            await self.readers_done.wait()
                tg.cancel_scope.cancel()

    async def _until_finished(self) -> None:
        deadline = self.began + self.spec.effective_timeout
        while not self.exited:
            now = time.monotonic()
            wait = deadline - now
            if self.result_at is not None:
                if self.reader.eof:
                    with anyio.move_on_after(EXIT_GRACE):
                        while not self.exited:
                            await self._changed.wait()
                    return
                wait = min(wait, self.result_at + RESULT_LINGER - now)
                if wait <= 0:
                    return
            if wait <= 0:
                self.timed_out = True
                return
            with anyio.move_on_after(wait):
                await self._changed.wait()

    async def _kill_tree(self, proc: Process, handle: RunHandle) -> None:
        """Kill every process of the run still alive and wait for the main one to be reaped."""
        recent = time.monotonic() - self.began < WINDOW_MAX_AGE
        killer = TreeKiller(handle, recent_only=recent, group_fallback=proc.returncode is None)
        if recent:
            for pause in kill_steps(killer, KILL_GRACE):
                await anyio.sleep(pause)
        else:  # a full /proc scan can take milliseconds: keep it off the event loop
            await anyio.to_thread.run_sync(_drive, kill_steps(killer, KILL_GRACE))
        await proc.wait()

    # ---- tasks -----------------------------------------------------------------------------

    async def _feed(self, stdin: ByteSendStream | None, data: bytes) -> None:
        if stdin is None:
            return
        try:
            if data:
                await stdin.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the child stopped reading; its exit tells the rest
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await stdin.aclose()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass

    async def _read_stdout(self, stream: ByteReceiveStream | None) -> None:
        try:
            if stream is not None:
                while True:
                    self.reader.feed(await stream.receive(READ_SIZE))
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            self.reader.finish()
            self.readers_done.set()

    async def _read_stderr(self, stream: ByteReceiveStream | None) -> None:
        try:
            if stream is not None:
                async for chunk in stream:
                    self.stderr += chunk
                    if len(self.stderr) > 2 * STDERR_TAIL:
                        del self.stderr[:-STDERR_TAIL]
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass

    async def _tail_file(self, path: Path) -> None:
        """File-backed mode: follow the output file until the child has exited."""
        try:
            with open(path, "rb") as fh:
                pause = _FILE_POLL[0]
                while True:
                    exited = self.exited  # read before the file, so no output is missed after exit
                    chunk = fh.read(1 << 20)
                    if chunk:
                        self.reader.feed(chunk)
                        pause = _FILE_POLL[0]
                        await anyio.sleep(0)
                        continue
                    if exited:
                        break
                    with anyio.move_on_after(pause):
                        await self._changed.wait()
                    pause = min(pause * 2, _FILE_POLL[1])
        except OSError:
            log.warning("cannot read the run's output file %s", path)
        finally:
            self.reader.finish()
            self.readers_done.set()

    async def _wait_exit(self, proc: Process) -> None:
        await proc.wait()
        self.exited = True
        self._notify()

    # ---- results ---------------------------------------------------------------------------

    def _spawn_failure(self, exc: OSError) -> DispatchResult:
        name = self.spec.agent.name
        runtime = self.runtime
        cli = runtime.executable
        if isinstance(exc, FileNotFoundError):
            failure: Any = NotFoundFailure(
                f"could not start {cli} for agent {name}: {exc.strerror or exc}",
                f"Check that the {cli} CLI and the agent's directory both exist.",
            )
        else:
            failure = CliFailure(
                f"could not start {cli} for agent {name}: {exc}",
                f"Check that {runtime.command_env} (or `{cli}` on PATH) is an executable.",
            )
        return DispatchResult.failure(name, failure)

    def _outcome(self, proc: Process, err_path: Path | None) -> DispatchResult:
        stderr = _read_tail(err_path) if err_path else self.stderr[-STDERR_TAIL:].decode("utf-8", errors="replace")
        outcome = RunOutcome(
            result=self.reader.result,
            session_id=self.reader.session_id or self.session_id,
            exit_code=proc.returncode,
            stderr=stderr,
            timed_out=self.timed_out,
            timeout_seconds=self.spec.effective_timeout,
            last_text=self.reader.last_text,
            output_size=self.reader.size,
            duration_ms=int((time.monotonic() - self.began) * 1000),
        )
        if self.target is not None and outcome.result is None and not outcome.timed_out:
            failure = ssh_transport.classify_ssh_failure(
                self.target, outcome.exit_code, stderr, self.runtime.executable
            )
            if failure is not None:
                return self._result(DispatchResult.failure(
                    self.spec.agent.name, failure, session_id=outcome.session_id,
                    result=outcome.last_text, duration_ms=outcome.duration_ms,
                ))
        return self._result(finish_result(self.runtime, self.spec.agent, outcome, self.spec.response_format))

    def _result(self, result: DispatchResult) -> DispatchResult:
        if self.target is not None:
            result.host = self.target.host
        return result


def finish_result(runtime: Any, agent: Any, outcome: RunOutcome, response_format: str = "") -> DispatchResult:
    """The one funnel from a finished run to its DispatchResult, for every runtime: the runtime's
    classification, then the dispatch protocol's STATUS / QUESTION read back (`protocol`)."""
    return protocol.apply_outcome(runtime.classify(agent, outcome, response_format), response_format)


def _drive(steps: Any) -> None:
    for pause in steps:
        time.sleep(pause)


def collect_output(
    output_path: Path, agent: Any, response_format: str = "", runtime: str | None = None
) -> DispatchResult | None:
    """The DispatchResult of a finished file-backed run, from its output file; None without a result.

    `agent` is the agent's name or, better, its EffectiveAgent (then a permission hint names the
    agent's existing tools too). `runtime` names the CLI that wrote it (default: the agent's
    runtime, else claude). The stderr file is not needed.
    """
    impl = runtimes.RUNTIMES.get(runtime or getattr(agent, "runtime", None) or "") or runtimes.get_runtime(None)
    try:
        with open(output_path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    result, session = impl.find_result(data)
    if result is None:
        return None
    outcome = RunOutcome(result=result, session_id=session, output_size=len(data))
    return finish_result(impl, agent, outcome, response_format)
