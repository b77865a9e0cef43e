"""Running an argv on another machine through the system OpenSSH client.

`SshTarget` is an agent's `host` and `ssh_options`. `wrap()` turns a local run (argv, the few
environment variables a run carries, a directory, a deadline) into the argv of a local `ssh`
process; the runner supervises that process exactly like a local CLI. The remote command is
built from words that are each `shlex.quote`d, so the remote shell only ever sees literals:
`env NAME=value ... python3 -c SUPERVISOR directory deadline path cli args...`. The prompt
travels on the channel's stdin.

ssh runs in batch mode (no prompt can hang a run), without forwarding (the remote never gets
the user's agent or X display), with keepalives (a dead link is noticed), and through one
shared connection per target: `ensure_master()` starts a persistent master in a private 0o700
socket directory, outside any run's process tree, so killing a run never kills the connection
and the next run skips the handshake. The user's own ~/.ssh/config (aliases, jump hosts,
agents, keys) applies as usual: no `-F` is ever passed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from agent_dispatch.errors import CliFailure, DispatchFailure, NotFoundFailure
from agent_dispatch.models import SshOptions
from agent_dispatch.transports.remote import EXIT_NO_CLI, EXIT_NO_DIRECTORY, EXTRA_PATH, MARK, SUPERVISOR

SSH_ENV = "AGENT_DISPATCH_SSH"  # the ssh client to run: a path or a name on PATH (default `ssh`)
RUNTIME_DIR_ENV = "AGENT_DISPATCH_RUNTIME_DIR"
# The only local variables a remote run receives (as explicit `env` words).
FORWARDED_ENV = ("AGENT_DISPATCH_DEPTH", "AGENT_DISPATCH_CHAIN")
CONNECT_TIMEOUT = 10  # seconds, unless the agent's ssh_options say otherwise
ALIVE_INTERVAL = 5  # seconds between keepalives; a link dead for INTERVAL*COUNT ends the run
ALIVE_COUNT = 3
CONTROL_PERSIST = 600  # seconds an idle shared connection stays up
SUPERVISOR_GRACE = 30  # the remote supervisor's own deadline: the run's timeout plus this
REMOTE_PYTHON = "python3"
_SOCKET_PATH_MAX = 90  # a unix socket path holds ~107 bytes; ssh appends a 17-character suffix
_ENV_NAME_RE = re.compile(r"[A-Z_][A-Z0-9_]*")
# Common ssh failures, matched on ssh's stderr: (pattern, error_type, what it means).
_SSH_FAILURES: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), kind, meaning)
    for pattern, kind, meaning in (
        (r"could not resolve hostname|name or service not known|nodename nor servname", "not_found",
         "its name does not resolve"),
        (r"no route to host|network is unreachable|host is unreachable", "not_found", "there is no route to it"),
        (r"connection timed out|operation timed out|timed out during banner", "not_found",
         "it did not answer within the connect timeout"),
        (r"connection refused", "not_found", "nothing accepts ssh connections on that port"),
        (r"permission denied|too many authentication failures|no supported authentication",
         "cli_error", "it rejected the key (batch mode: no password prompt)"),
        (r"host key verification failed|remote host identification has changed", "cli_error",
         "its host key is unknown or changed"),
        (r"timeout, server .* not responding|broken pipe|connection reset|connection closed|"
         r"connection to .* closed|client_loop: send disconnect", "cli_error", "the connection was lost"),
    )
)


@dataclass(frozen=True)
class SshTarget:
    """Where a remote agent lives: an ssh destination and the agent's few ssh options."""

    host: str
    options: SshOptions | None = None

    @property
    def connect_timeout(self) -> int:
        return (self.options.connect_timeout if self.options else None) or CONNECT_TIMEOUT

    def option_args(self) -> list[str]:
        """The agent's own ssh options as arguments (each value already validated by SshOptions)."""
        args: list[str] = []
        opts = self.options
        if opts is not None:
            if opts.port is not None:
                args += ["-p", str(opts.port)]
            if opts.identity_file:
                args += ["-i", opts.identity_file, "-o", "IdentitiesOnly=yes"]
            if opts.jump_host:
                args += ["-J", opts.jump_host]
        return args

    def common_args(self, connect_timeout: int | None = None) -> list[str]:
        return [
            "-T",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={connect_timeout or self.connect_timeout}",
            "-o", f"ServerAliveInterval={ALIVE_INTERVAL}",
            "-o", f"ServerAliveCountMax={ALIVE_COUNT}",
            "-o", "ForwardAgent=no",
            "-o", "ForwardX11=no",
            "-o", "ClearAllForwardings=yes",
            "-o", "PermitLocalCommand=no",
            *self.option_args(),
        ]

    @property
    def key(self) -> str:
        """A short name for this target's shared connection (differs whenever any option differs)."""
        material = json.dumps([self.host, self.options.model_dump() if self.options else None], sort_keys=True)
        return hashlib.sha256(material.encode()).hexdigest()[:16]

    def manual_command(self, *remote: str) -> str:
        """The ssh command a user can paste to see what goes wrong (`ssh -o BatchMode=yes HOST claude --version`)."""
        configured = self.options is not None and self.options.connect_timeout is not None
        timeout = ["-o", f"ConnectTimeout={self.connect_timeout}"] if configured else []
        words = ["ssh", "-o", "BatchMode=yes", *timeout, *self.option_args(), self.host, *remote]
        return shlex.join(words)


def target_of(agent: object) -> SshTarget | None:
    """The SshTarget of an agent (AgentConfig or EffectiveAgent), or None for a local one."""
    host = getattr(agent, "host", None)
    if not host:
        return None
    options = getattr(agent, "ssh_options", None)
    if isinstance(options, dict):  # a read-only AgentRecord holds the parsed YAML
        options = SshOptions.model_validate(options)
    return SshTarget(host, options)


def ssh_command() -> str:
    return os.environ.get(SSH_ENV, "").strip() or "ssh"


# ---- the shared connection -------------------------------------------------------------------


def _runtime_dir() -> Path:
    from agent_dispatch.config.paths import runtime_dir  # one rule for the per-user runtime directory

    return runtime_dir()


def _private_dir(path: Path) -> Path | None:
    """`path` as an existing 0o700 directory of ours, or None when it cannot be made one."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return None
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(path, 0o700)
        return path
    except OSError:
        return None


def control_dir() -> Path | None:
    """The private directory holding the shared connections' sockets; None disables sharing.

    `ssh/` in the runtime directory, or, when that path is too long for a unix socket, a
    per-user directory in the system temp dir (owned by us and 0o700, or not used at all).
    """
    preferred = _runtime_dir() / "ssh"
    if len(str(preferred)) + 17 <= _SOCKET_PATH_MAX:
        return _private_dir(preferred)
    return _private_dir(Path(tempfile.gettempdir()) / f"agent-dispatch-ssh-{os.geteuid()}")


def control_path(target: SshTarget) -> Path | None:
    directory = control_dir()
    return directory / target.key if directory is not None else None


def _control_args(path: Path | None) -> list[str]:
    if path is None:
        return ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
    return ["-o", "ControlMaster=no", "-o", "ControlPath=" + str(path).replace("%", "%%")]


def _clean_env() -> dict[str, str]:
    """The environment of a master connection: ours without anything that marks a run."""
    return {key: value for key, value in os.environ.items() if not key.startswith("AGENT_DISPATCH_RUN")}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ssh_run(argv: list[str], timeout: float, stderr: object = subprocess.DEVNULL) -> int:
    """Run a short local ssh command (an argument list, never a shell) and return its exit code."""
    return subprocess.run(  # noqa: S603 (argument list; ssh is the configured client)
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, timeout=timeout,
        env=_clean_env(), start_new_session=True,
    ).returncode


def _control_command(target: SshTarget, path: Path, command: str) -> list[str]:
    return [ssh_command(), "-o", "ControlPath=" + str(path).replace("%", "%%"), "-O", command, "--", target.host]


def _master_alive(path: Path) -> bool:
    """Whether a master listens on `path`: a connect to its socket (no ssh process, microseconds).

    A socket file left by a master that died refuses the connection.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _start_master(target: SshTarget, path: Path, connect_timeout: int | None = None) -> DispatchFailure | None:
    """Blocking: make sure a master connection for `target` listens on `path`."""
    connect_timeout = connect_timeout or target.connect_timeout
    if _master_alive(path):  # the common case: no lock, no process
        return None
    with _locked(path):
        if _master_alive(path):
            return None
        with contextlib.suppress(OSError):
            path.unlink()  # a stale socket of a master that died
        argv = [
            ssh_command(), *target.common_args(connect_timeout), "-N", "-f",
            "-o", "ControlMaster=yes", "-o", "ControlPath=" + str(path).replace("%", "%%"),
            "-o", f"ControlPersist={CONTROL_PERSIST}", "--", target.host,
        ]
        # stderr to a file: the backgrounded master keeps it open for as long as it lives.
        with tempfile.TemporaryFile(dir=path.parent) as err:
            try:
                code = _ssh_run(argv, connect_timeout * 3 + 10, stderr=err)
            except FileNotFoundError:
                return ssh_missing()
            except (OSError, subprocess.SubprocessError) as exc:
                return CliFailure(f"could not connect to {target.host}: {exc}", _try_by_hand(target))
            err.seek(0)
            text = err.read(64 * 1024).decode("utf-8", errors="replace")
        if code == 0:
            return None
        return classify_ssh_failure(target, 255, text) or CliFailure(
            f"could not connect to {target.host}: {_last_line(text) or f'ssh exited with {code}'}",
            _try_by_hand(target),
        )


async def ensure_master(target: SshTarget) -> tuple[Path | None, DispatchFailure | None]:
    """Start (or find) the shared connection for `target`: (its socket path or None, a failure or None).

    A failure means the host cannot be used at all (unreachable, key rejected, no ssh client).
    Without a usable socket directory the run connects directly (no sharing, no failure).
    """
    path = control_path(target)
    if path is None:
        return None, None
    failure = await anyio.to_thread.run_sync(_start_master, target, path, abandon_on_cancel=True)
    return path, failure


def start_master_now(target: SshTarget, connect_timeout: int | None = None
                     ) -> tuple[Path | None, DispatchFailure | None]:
    """Blocking `ensure_master`, with an optional shorter connect timeout (listings, doctor)."""
    path = control_path(target)
    if path is None:
        return None, None
    return path, _start_master(target, path, connect_timeout)


def remote_version(target: SshTarget, cli: str, timeout: float = 30) -> tuple[str | None, DispatchFailure | None]:
    """`cli --version` on `target`, found the way a run finds it: (the version, None) or (None, a failure)."""
    socket, failure = start_master_now(target)
    if failure is not None:
        return None, failure
    words = remote_words([cli, "--version"], {}, "~", timeout)
    argv = [ssh_command(), *target.common_args(), *_control_args(socket), "-n", "--", target.host,
            *(shlex.quote(word) for word in words)]
    try:
        proc = subprocess.run(  # noqa: S603 (argument list; every remote word is quoted)
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout + 10, start_new_session=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, CliFailure(f"could not ask {target.host} for {cli} --version: {exc}", _try_by_hand(target))
    out = proc.stdout.decode("utf-8", errors="replace").strip()
    err = proc.stderr.decode("utf-8", errors="replace")
    if proc.returncode == 0 and out:
        return out.splitlines()[0][:200], None
    return None, classify_ssh_failure(target, proc.returncode, err, cli) or CliFailure(
        f"`{cli} --version` failed on {target.host}: {_last_line(err) or f'exit {proc.returncode}'}",
        _try_by_hand(target, cli, "--version"),
    )


def stop_master(target: SshTarget) -> None:
    """Close the shared connection of `target`, if any (used by tests and `doctor`)."""
    path = control_path(target)
    if path is None or not path.exists():
        return
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        _ssh_run(_control_command(target, path, "exit"), 5)


# ---- the remote command ----------------------------------------------------------------------


def remote_words(
    argv: Sequence[str], env: Mapping[str, str], directory: str, deadline: float, forward: Iterable[str] = ()
) -> list[str]:
    """The remote command as words (unquoted): `env K=V.. python3 -c SUPERVISOR dir deadline path argv..`.

    Only FORWARDED_ENV and the names in `forward` (what the runtime adds for its CLI) travel.
    """
    names = dict.fromkeys([*FORWARDED_ENV, *forward])
    assigns = [f"{key}={env[key]}" for key in names if key in env and _ENV_NAME_RE.fullmatch(key)]
    return [
        "env", *assigns, REMOTE_PYTHON, "-c", SUPERVISOR,
        directory, f"{max(1.0, deadline):.0f}", ":".join(EXTRA_PATH), *argv,
    ]


def wrap(
    target: SshTarget,
    argv: Sequence[str],
    env: Mapping[str, str],
    directory: str,
    timeout: float,
    socket: Path | None,
    forward: Iterable[str] = (),
) -> list[str]:
    """The local argv that runs `argv` in `directory` on `target` (the remote CLI's name is argv[0]).

    Every remote word is shell-quoted here, once; ssh joins them with spaces for the remote
    shell, which then sees only quoted literals.
    """
    words = remote_words(argv, env, directory, timeout + SUPERVISOR_GRACE, forward)
    return [ssh_command(), *target.common_args(), *_control_args(socket), "--", target.host,
            *(shlex.quote(word) for word in words)]


def probe_argv(target: SshTarget, socket: Path | None, program: str, *args: str) -> list[str]:
    """The local argv running a `python3 -c` program with `args` on `target` (stdin unused)."""
    words = [REMOTE_PYTHON, "-c", program, *args]
    return [ssh_command(), *target.common_args(), *_control_args(socket), "-n", "--", target.host,
            *(shlex.quote(word) for word in words)]


# ---- failures --------------------------------------------------------------------------------


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _try_by_hand(target: SshTarget, *remote: str) -> str:
    return f"Try it by hand: `{target.manual_command(*(remote or ('true',)))}`"


def ssh_missing() -> NotFoundFailure:
    return NotFoundFailure(
        f"the ssh client was not found: {ssh_command()!r}",
        "Install OpenSSH's client (e.g. `apt-get install openssh-client`) or point AGENT_DISPATCH_SSH at ssh.",
    )


def classify_ssh_failure(target: SshTarget, exit_code: int | None, stderr: str, cli: str = "claude"
                         ) -> DispatchFailure | None:
    """The failure a remote run's exit means when it is the transport's (ssh, the supervisor), else None."""
    host = target.host
    mine = [line for line in stderr.splitlines() if line.startswith(MARK)]
    if exit_code == EXIT_NO_DIRECTORY and mine:
        return NotFoundFailure(f"on {host}: {mine[0][len(MARK):].strip()}",
                               f"Check the agent's directory on {host}: "
                               f"`{target.manual_command('ls', '-ld', '--', '<directory>')}`.")
    if exit_code == EXIT_NO_CLI and mine:
        return NotFoundFailure(f"on {host}: {mine[0][len(MARK):].strip()}",
                               f"Install the {cli} CLI on {host} (in ~/.local/bin or on the PATH of a "
                               f"non-interactive shell). {_try_by_hand(target, cli, '--version')}")
    if exit_code == 127 and re.search(rf"{REMOTE_PYTHON}: (command )?not found|No such file", stderr):
        return NotFoundFailure(f"{REMOTE_PYTHON} is not installed on {host}",
                               f"agent-dispatch runs a small {REMOTE_PYTHON} program on the remote host; "
                               f"install python3 there. {_try_by_hand(target, REMOTE_PYTHON, '--version')}")
    if exit_code != 255:
        return None
    for pattern, kind, meaning in _SSH_FAILURES:
        if pattern.search(stderr):
            message = f"ssh to {host} failed: {meaning} ({_last_line(stderr)})"
            failure = NotFoundFailure if kind == "not_found" else CliFailure
            return failure(message, _try_by_hand(target))
    if not stderr.strip():  # a shared connection that died takes its sessions with it, silently
        return CliFailure(f"the connection to {host} was lost during the run (ssh exited 255)", _try_by_hand(target))
    return CliFailure(f"ssh to {host} failed: {_last_line(stderr)}", _try_by_hand(target))

