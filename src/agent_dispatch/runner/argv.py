"""What to run: the run specification and the `claude` argv built from it.

The prompt never goes into argv (it is written to stdin): variadic options such as
`--allowedTools` swallow every following word, a text starting with `-` would be parsed as an
option, and one argv string is limited to 128 KiB. Every value that does go into argv sits
after an option and is refused when it starts with `-`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent_dispatch.errors import InvalidInputFailure
from agent_dispatch.models import EffectiveAgent, check_not_option

CLAUDE_ENV = "AGENT_DISPATCH_CLAUDE"


def claude_command() -> str:
    """The `claude` executable to run: env AGENT_DISPATCH_CLAUDE, else `claude` on PATH."""
    return os.environ.get(CLAUDE_ENV) or "claude"


@dataclass(frozen=True)
class RunSpec:
    """One run of `claude -p`.

    `depth` is the caller's nesting depth (the child gets depth+1). `output_path` selects the
    file-backed mode: stdout goes to that file and stderr to `error_path_for(output_path)`,
    so the run survives the server. `timeout` (seconds) overrides `agent.timeout` when set.
    """

    agent: EffectiveAgent
    prompt: str
    claude: str
    stream: bool = False
    resume: str | None = None
    response_format: str = ""
    depth: int = 0
    output_path: Path | None = None
    timeout: float | None = None

    @property
    def effective_timeout(self) -> float:
        return float(self.timeout if self.timeout is not None else self.agent.timeout)


def error_path_for(output_path: Path) -> Path:
    """Where a file-backed run's stderr goes: the output file's sibling with suffix `.err`."""
    path = Path(output_path)
    err = path.with_suffix(".err")
    return err if err != path else path.with_name(path.name + ".err")


def _check(value: str, what: str) -> str:
    check_not_option(value, what)
    if "\x00" in value:
        raise InvalidInputFailure(f"{what} contains a NUL byte", f"Pass a {what} without NUL bytes.")
    return value


def _check_tool(tool: str) -> str:
    if not tool.strip():
        raise InvalidInputFailure("a tool name is empty", "Remove the empty entry from the agent's tool list.")
    return _check(tool, "tool name")


def _format_budget(amount: float) -> str:
    text = repr(float(amount))
    if amount != amount or amount in (float("inf"), float("-inf")) or amount <= 0:
        raise InvalidInputFailure(
            f"max_budget_usd {text} is not a positive finite amount", "Set max_budget_usd to a positive number."
        )
    return text


def build_argv(spec: RunSpec, session_id: str | None = None) -> list[str]:
    """The argv for `spec` (argv[0] is `spec.claude` as given; the prompt is not in it).

    `session_id` (a new session's UUID) adds `--session-id`; it is ignored when resuming.
    Raises InvalidInputFailure, before anything runs, for any value that would follow an option
    and starts with '-' (or holds a NUL byte).
    """
    agent = spec.agent
    argv = [spec.claude, "-p", "--output-format"]
    argv += ["stream-json", "--verbose"] if spec.stream else ["json"]
    if spec.resume:
        argv += ["--resume", _check(spec.resume, "session_id")]
    elif session_id:
        argv += ["--session-id", _check(session_id, "session_id")]
    if agent.model:
        argv += ["--model", _check(agent.model, "model")]
    if agent.max_budget_usd is not None:
        argv += ["--max-budget-usd", _format_budget(agent.max_budget_usd)]
    if agent.permission_mode:
        argv += ["--permission-mode", _check(agent.permission_mode, "permission_mode")]
    # Variadic options: each tool is its own word; nothing but options may follow them.
    for option, tools in (("--allowedTools", agent.allowed_tools), ("--disallowedTools", agent.disallowed_tools)):
        if tools:
            argv += [option, *(_check_tool(tool) for tool in tools)]
    return argv
