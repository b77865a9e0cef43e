"""`doctor`'s checks of the Codex and Gemini CLIs, for each runtime some agent uses.

For each: the CLI is found, answers --version, its help lists the options the runtime passes,
and a stand-alone headless start gets past login and trust (stdin closed, so no model turn is
paid for: the CLI stops at "no prompt"). Only argument lists are run, never a shell.
"""

from __future__ import annotations

import os
import shutil
import subprocess  # noqa: S404 (runs only the configured agent CLIs, with argument lists)
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent_dispatch.models import AppConfig

PROBE_TIMEOUT = 90.0  # a Node CLI on a busy machine takes a while to start
# What each runtime's argv relies on, as its help spells it, and where that help is.
CHECKS: dict[str, dict[str, Any]] = {
    "codex": {
        "help": ("exec", "--help"),
        "options": ("--json", "--skip-git-repo-check", "--cd", "--sandbox", "--model",
                    "--dangerously-bypass-approvals-and-sandbox", "resume"),
        "start": ("exec", "--json", "--skip-git-repo-check", "-"),
        "started": "No prompt provided",
        "login": ("login", "status"),
    },
    "gemini": {
        "help": ("--help",),
        "options": ("--skip-trust", "--output-format", "--approval-mode", "--model", "--resume", "--session-id"),
        "start": ("--skip-trust", "-o", "stream-json"),
        "started": "No input provided",
    },
}


def _probe(command: str, args: tuple[str, ...], cwd: str | None = None) -> tuple[int | None, str]:
    try:
        proc = subprocess.run(  # noqa: S603 (argument list; the configured executable)
            [command, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
            timeout=PROBE_TIMEOUT, cwd=cwd,
        )
    except subprocess.TimeoutExpired:
        return None, f"did not finish within {PROBE_TIMEOUT:g} s"
    except OSError as exc:
        return None, f"cannot run {command}: {exc.strerror or exc}"
    return proc.returncode, (proc.stdout or "") + (proc.stderr or "")


def _line(text: str, *, prefer: str = "") -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("WARNING")]
    for line in lines:
        if prefer and prefer.lower() in line.lower():
            return line[:300]
    return lines[-1][:300] if lines else "no output"


def check_runtimes(report: Any, loaded: AppConfig) -> None:
    """Check every non-default runtime that an agent of `loaded` uses (claude is checked above)."""
    from agent_dispatch.runtimes import get_runtime

    used: dict[str, list[str]] = {}
    for name, agent in loaded.agents.items():
        if agent.runtime and agent.runtime != "claude":
            used.setdefault(agent.runtime, []).append(name)
    for runtime, names in used.items():
        impl = get_runtime(runtime)
        checks = CHECKS.get(runtime)
        command = impl.command()
        if shutil.which(command) is None:
            report.fail(f"{impl.label} (`{impl.executable}`, used by {', '.join(names)}) was not found: {command}",
                        impl.install_hint)
            continue
        code, out = _probe(command, ("--version",))
        if code != 0:
            report.fail(f"{command} --version failed: {_line(out)}", impl.install_hint)
            continue
        report.ok(f"{impl.executable} {_line(out)} at {command} (agents: {', '.join(names)})")
        if checks is None:
            continue
        code, out = _probe(command, checks["help"])
        missing = [option for option in checks["options"] if option not in out]
        if code != 0 or missing:
            report.fail(f"this {impl.executable} lacks options agent-dispatch uses: "
                        f"{', '.join(missing) or _line(out)}", f"update it: {impl.install_hint}")
        else:
            report.ok(f"{impl.executable} supports every option agent-dispatch uses")
        directory = loaded.agents[names[0]].directory
        code, out = _probe(command, checks["start"], cwd=directory if os.path.isdir(directory) else None)
        if checks["started"].lower() in out.lower():
            report.ok(f"{impl.executable} starts headless in {directory} (stopped at the empty prompt)")
        else:
            report.fail(f"{impl.executable} cannot start a headless run in {directory}: "
                        f"{_line(out, prefer='auth')} (exit {code})",
                        f"run `{impl.executable}` once in that directory and log in; "
                        f"then `agent-dispatch test {names[0]}`")
        if "login" in checks:
            code, out = _probe(command, checks["login"])
            if code == 0:
                report.ok(f"{impl.executable}: {_line(out)}")
            else:
                report.warn(f"{impl.executable} login status: {_line(out)} (fine when your config.toml provider "
                            "takes its API key from the environment)", f"{impl.executable} login")

