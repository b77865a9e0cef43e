"""`doctor`: check what agent-dispatch depends on; every problem comes with the command that fixes it.

Also the small probes of the installed `claude` that `init` shares: running it with a bounded
wait, reading its help text, and the `claude mcp add` command line that registers this server.
Only argument lists are ever run (no shell), and only the trusted `claude` executable.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess  # noqa: S404 (runs only the configured `claude`, with argument lists)
import sys
from typing import TYPE_CHECKING, NamedTuple

import click

from agent_dispatch.cli._common import echo_json, json_option

if TYPE_CHECKING:
    from agent_dispatch.config import ConfigStore
    from agent_dispatch.models import AppConfig

SERVER_NAME = "agent-dispatch"
# Options the runner passes to `claude`; a CLI without one of them cannot run our dispatches.
REQUIRED_OPTIONS = (
    "--output-format", "--verbose", "--resume", "--model", "--max-budget-usd", "--permission-mode",
    "--allowedTools", "--disallowedTools",
)
PROBE_TIMEOUT = 30.0
MCP_TIMEOUT = 60.0  # `claude mcp get` starts the server to check it
INSTALL_FIX = "npm install -g @anthropic-ai/claude-code"


class Probe(NamedTuple):
    """The outcome of one `claude` run; `code` is None when it could not run or timed out."""

    code: int | None
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def detail(self) -> str:
        for text in (self.err, self.out):
            for line in text.splitlines():
                if line.strip():
                    return line.strip()[:300]
        return f"exit code {self.code}"


def run_claude(claude: str, *args: str, timeout: float = PROBE_TIMEOUT) -> Probe:
    """Run `claude args...` with stdin closed; never raises."""
    try:
        proc = subprocess.run(  # noqa: S603 (argument list; `claude` is the configured executable)
            [claude, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
            timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        return Probe(None, "", f"`claude {' '.join(args)}` did not finish within {timeout:g} s")
    except OSError as exc:
        return Probe(None, "", f"cannot run {claude}: {exc.strerror or exc}")
    return Probe(proc.returncode, proc.stdout, proc.stderr)


def missing_options(help_text: str) -> list[str]:
    """The REQUIRED_OPTIONS that `claude --help` does not mention."""
    return [opt for opt in REQUIRED_OPTIONS if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", help_text)]


def permission_modes(help_text: str) -> list[str] | None:
    """The `--permission-mode` choices listed by `claude --help`, or None when not found.

    Reads commander's `(choices: "a", "b", ...)`, which may wrap over several lines.
    """
    match = re.search(r"--permission-mode\b[^\n]*(?:\n(?![ \t]*-)[^\n]*)*", help_text)
    if not match:
        return None
    choices = re.search(r"\(choices:(.*?)\)", match.group(0), re.DOTALL)
    if not choices:
        return None
    listed = re.split(r"\b(?:default|preset):", choices.group(1))[0]
    modes = re.findall(r'"([^"]+)"', listed)
    return modes or None


def server_command() -> list[str]:
    """The absolute command line that starts this agent-dispatch's MCP server."""
    candidates = []
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0).startswith("agent-dispatch"):
        candidates.append(argv0)
    candidates.append(os.path.join(os.path.dirname(sys.executable), "agent-dispatch"))
    candidates.append(shutil.which("agent-dispatch") or "")
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return [os.path.abspath(candidate), "serve"]
    return [sys.executable, "-m", "agent_dispatch", "serve"]


def registration_args(command: list[str]) -> list[str]:
    """`claude` arguments registering `command` for every project (user scope).

    A config or jobs directory chosen through the environment is passed on with `-e`, since
    Claude Code starts the server with its own environment.
    """
    from agent_dispatch.config import paths

    env = []
    if os.environ.get(paths.CONFIG_ENV, "").strip() and paths.config_path() != paths.default_config_path():
        env += ["-e", f"{paths.CONFIG_ENV}={paths.config_path()}"]
    if os.environ.get(paths.JOBS_DIR_ENV, "").strip():
        env += ["-e", f"{paths.JOBS_DIR_ENV}={paths.jobs_dir()}"]
    if os.environ.get(paths.USAGE_LOG_ENV, "").strip():
        env += ["-e", f"{paths.USAGE_LOG_ENV}={paths.usage_log_path()}"]
    if os.environ.get(paths.RUNTIME_DIR_ENV, "").strip():
        env += ["-e", f"{paths.RUNTIME_DIR_ENV}={paths.runtime_dir()}"]
    return ["mcp", "add", "-s", "user", SERVER_NAME, *env, "--", *command]


def registered_command(mcp_get_output: str) -> str | None:
    """The `Command:` and `Args:` that `claude mcp get` shows, joined by a space."""
    command = re.search(r"^\s*Command:\s*(.+?)\s*$", mcp_get_output, re.MULTILINE)
    if not command:
        return None
    args = re.search(r"^\s*Args:\s*(.*?)\s*$", mcp_get_output, re.MULTILINE)
    return f"{command.group(1)} {args.group(1)}".strip() if args else command.group(1)


def same_command(registered: str, ours: list[str]) -> bool:
    """Whether the registered command line (as `registered_command` shows it) starts this same
    agent-dispatch: the same arguments, and an executable that resolves to the same file (a
    symlink on PATH to our script, as the README suggests, is the same program)."""
    if registered == " ".join(ours):
        return True
    suffix = " ".join(ours[1:])
    if suffix and not registered.endswith(" " + suffix):
        return False
    executable = registered[: len(registered) - len(suffix)].rstrip() if suffix else registered
    try:
        return os.path.samefile(executable, ours[0])
    except OSError:
        return False


def registration_problem(mcp_get_output: str) -> str | None:
    """Why Claude Code cannot connect to the registered server, from `claude mcp get`; None if it can
    (or the output does not say)."""
    status = re.search(r"^\s*Status:\s*(.+?)\s*$", mcp_get_output, re.MULTILINE)
    if not status or ("connected" in status.group(1).lower() and "fail" not in status.group(1).lower()):
        return None
    issue = re.search(r"^\s*Issue:\s*(.+?)\s*$", mcp_get_output, re.MULTILINE)
    return f"{status.group(1)}" + (f" ({issue.group(1)})" if issue else "")


# --- the report ---------------------------------------------------------------------------


class _Report:
    """Prints each check as it is made, or (`quiet`, for --json) only collects them in `checks`."""

    def __init__(self, quiet: bool = False) -> None:
        self.failures = 0
        self.warnings = 0
        self.quiet = quiet
        self.checks: list[dict[str, str]] = []

    def ok(self, message: str) -> None:
        self.checks.append({"status": "ok", "message": message})
        if not self.quiet:
            click.echo(f"{click.style('ok  ', fg='green')}  {message}")

    def warn(self, message: str, fix: str) -> None:
        self.warnings += 1
        self.checks.append({"status": "warn", "message": message, "fix": fix})
        if not self.quiet:
            click.echo(f"{click.style('warn', fg='yellow')}  {message}")
            click.echo(f"      fix: {fix}")

    def fail(self, message: str, fix: str) -> None:
        self.failures += 1
        self.checks.append({"status": "fail", "message": message, "fix": fix})
        if not self.quiet:
            click.echo(f"{click.style('FAIL', fg='red', bold=True)}  {message}")
            click.echo(f"      fix: {fix}")


@click.command()
@json_option("Print {ok, failures, warnings, checks: [{status, message, fix?}]} as JSON.")
def doctor(as_json: bool) -> None:
    """Check claude, the registration, the config and every agent.

    Also checks the options and permission modes the installed claude accepts. Every problem
    comes with the command that fixes it; exits 1 when any check fails.
    """
    from agent_dispatch import config

    report = _Report(quiet=as_json)
    modes = _check_claude(report, config.claude_command())
    store = config.ConfigStore()
    loaded = _check_config(report, store)
    if loaded is not None:
        _check_agents(report, loaded, modes, store)
        from agent_dispatch.cli.doctor_runtimes import check_runtimes

        check_runtimes(report, loaded)
    if as_json:
        echo_json({"ok": not report.failures, "failures": report.failures, "warnings": report.warnings,
                   "checks": report.checks})
        raise click.exceptions.Exit(1 if report.failures else 0)
    if report.failures:
        click.echo(f"\n{report.failures} problem(s) found" + (f", {report.warnings} warning(s)." if report.warnings
                                                              else "."))
        raise click.exceptions.Exit(1)
    click.echo("\nAll checks passed" + (f" ({report.warnings} warning(s))." if report.warnings else "."))


def _check_claude(report: _Report, claude: str | None) -> list[str] | None:
    """claude found, its version, its options, the registration. Returns its permission modes."""
    from agent_dispatch.config import paths

    override = os.environ.get(paths.CLAUDE_ENV, "").strip()
    if claude is None:
        if override:
            report.fail(f"{paths.CLAUDE_ENV}={override} is not an executable",
                        f"unset {paths.CLAUDE_ENV}, or point it at the claude executable")
        else:
            report.fail("claude (Claude Code) is not on PATH", f"{INSTALL_FIX}  (then open a new shell)")
        report.fail("cannot check the registration with Claude Code without claude", "install claude, then rerun")
        return None
    version = run_claude(claude, "--version")
    if not version.ok:
        report.fail(f"{claude} --version failed: {version.detail}", INSTALL_FIX)
        return None
    report.ok(f"claude {version.out.strip() or '(unknown version)'} at {claude}")

    helped = run_claude(claude, "--help")
    modes = None
    if not helped.ok:
        report.fail(f"{claude} --help failed: {helped.detail}", INSTALL_FIX)
    else:
        missing = missing_options(helped.out)
        if missing:
            report.fail(f"this claude lacks options agent-dispatch uses: {', '.join(missing)}",
                        "update Claude Code: claude update")
        else:
            report.ok("claude supports every option agent-dispatch uses")
        modes = permission_modes(helped.out)
        if modes:
            report.ok(f"permission modes this claude accepts: {', '.join(modes)}")
        else:
            report.warn("could not read the accepted permission modes from `claude --help`",
                        "update Claude Code: claude update")

    registered = run_claude(claude, "mcp", "get", SERVER_NAME, timeout=MCP_TIMEOUT)
    if registered.ok:
        shown = registered_command(registered.out)
        ours = " ".join(server_command())
        report.ok(f"registered with Claude Code as {SERVER_NAME!r}" + (f": {shown}" if shown else ""))
        if shown and not same_command(shown, server_command()):
            report.warn(f"the registration runs `{shown}`, not this agent-dispatch (`{ours}`)",
                        f"claude mcp remove {SERVER_NAME} -s user && agent-dispatch init")
        problem = registration_problem(registered.out)
        if problem:
            report.fail(f"Claude Code cannot connect to the registered server: {problem}",
                        f"run `{shown or ours}` by hand to see why, then: "
                        f"claude mcp remove {SERVER_NAME} -s user && agent-dispatch init")
    else:
        report.fail(f"agent-dispatch is not registered with Claude Code ({registered.detail})", "agent-dispatch init")
    return modes


def _check_config(report: _Report, store: ConfigStore) -> AppConfig | None:
    from agent_dispatch.errors import ConfigError

    path = store.path
    if not os.path.lexists(path):
        report.fail(f"no config at {path} yet", "agent-dispatch init")
        return None
    try:
        loaded = store.load()
    except ConfigError as exc:
        report.fail(exc.message, exc.hint or f"edit {path}")
        return None
    report.ok(f"config {path} is valid ({len(loaded.agents)} agent(s))")
    for target, want, fix in ((os.path.realpath(path), 0o600, "chmod 600"), (path.parent, 0o700, "chmod 700")):
        mode = stat.S_IMODE(os.stat(target).st_mode)
        if mode & 0o077:
            report.warn(f"{target} is readable by others (mode {mode:o}, expected {want:o})", f"{fix} {target}")
    return loaded


def _check_agents(report: _Report, loaded: AppConfig, modes: list[str] | None, store: ConfigStore) -> None:
    from agent_dispatch.config.listing import project_of

    if not loaded.agents:
        report.warn("no agents are registered", "agent-dispatch add NAME DIR")
    _check_hosts(report, loaded)
    for name, agent in loaded.agents.items():
        info = project_of(agent)
        where = f"{agent.host}:{agent.directory}" if agent.host else agent.directory
        if info.healthy:
            report.ok(f"agent {name}: {where}")
        else:
            report.fail(f"agent {name}: {where}: {info.problem}",
                        f"restore the directory, or point the agent at its new place: agent-dispatch update "
                        f"{shlex.quote(name)} --directory NEW_DIR  (or drop it: agent-dispatch remove "
                        f"{shlex.quote(name)})")
        if modes and agent.permission_mode and agent.permission_mode not in modes:
            # claude refuses the option before doing anything: every dispatch to this agent fails.
            report.fail(
                f"agent {name}: cannot run: permission mode {agent.permission_mode!r} is not accepted by this "
                f"claude (it accepts {', '.join(modes)})",
                f"agent-dispatch update {shlex.quote(name)} --permission-mode {modes[0]}  (one of the accepted "
                "modes; or `none` to use the settings default)",
            )
    default_mode = loaded.settings.default_permission_mode
    if modes and default_mode and default_mode not in modes:
        inheriting = [name for name, agent in loaded.agents.items() if not agent.permission_mode]
        report.fail(f"settings.default_permission_mode {default_mode!r} is not accepted by this claude "
                    f"(it accepts {', '.join(modes)}), so agents without their own mode cannot run"
                    + (f" ({', '.join(inheriting)})" if inheriting else ""),
                    f"edit settings.default_permission_mode in {store.path} (one of the accepted modes, or null)")


def accepted_modes() -> list[str] | None:
    """The permission modes the installed `claude` accepts, or None when that cannot be told
    (no claude, its help unreadable)."""
    from agent_dispatch.config import claude_command

    claude = claude_command()
    if claude is None:
        return None
    helped = run_claude(claude, "--help")
    return permission_modes(helped.out) if helped.ok else None


def _check_hosts(report: _Report, loaded: AppConfig) -> None:
    """Each remote host once: reachable, the key accepted in batch mode, the agent CLI's version there."""
    from agent_dispatch.transports import ssh

    seen: set[tuple[str, str]] = set()
    for agent in loaded.agents.values():
        target = ssh.target_of(agent)
        if target is None:
            continue
        cli = getattr(agent, "runtime", None) or "claude"
        if (target.key, cli) in seen:
            continue
        seen.add((target.key, cli))
        version, failure = ssh.remote_version(target, cli)
        if failure is not None:
            report.fail(f"host {target.host}: {failure.message}", failure.hint or target.manual_command("true"))
        else:
            report.ok(f"host {target.host}: reachable, key accepted in batch mode, {cli} {version}")


def register(group: click.Group) -> None:
    """Attach `doctor` to the top-level group."""
    group.add_command(doctor)
