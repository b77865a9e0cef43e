"""What to run: the run specification, and the guards every runtime's argv goes through.

It sits below the runtimes (each builds its argv from a RunSpec); which runtime a spec runs is
looked up above them, by `runner.argv.runtime_of`.

The prompt never goes into argv (it is written to stdin): variadic options such as
`--allowedTools` swallow every following word, a text starting with `-` would be parsed as an
option, and one argv string is limited to 128 KiB. Every value that does go into argv sits
after an option and is refused when it starts with `-` (`check_value`). The argv itself is
built by the agent's runtime (agent_dispatch.runtimes).
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
    """One run of an agent's CLI (`claude` is the executable to start, whichever runtime it is).

    `depth` is the caller's nesting depth (the child gets depth+1). `output_path` selects the
    file-backed mode: stdout goes to that file and stderr to `error_path_for(output_path)`,
    so the run survives the server. `timeout` (seconds) overrides `agent.timeout` when set.
    `system_prompt` (the dispatch protocol and standing instructions, from `protocol`) is added
    to the agent's system prompt by its runtime on a new session; a resumed session keeps its own.
    `chain` is the agent names of the dispatches above this one (the child gets it plus its own).
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
    system_prompt: str | None = None
    chain: tuple[str, ...] = ()
    session_id: str | None = None  # a new run's session id chosen by the caller (else a fresh uuid4)
    env: dict[str, str] | None = None  # extra environment for the child (e.g. the user-wide slot it runs on)

    @property
    def effective_timeout(self) -> float:
        return float(self.timeout if self.timeout is not None else self.agent.timeout)


def error_path_for(output_path: Path) -> Path:
    """Where a file-backed run's stderr goes: the output file's sibling with suffix `.err`."""
    path = Path(output_path)
    err = path.with_suffix(".err")
    return err if err != path else path.with_name(path.name + ".err")


def check_value(value: str, what: str) -> str:
    """`value`, refused (InvalidInputFailure) when it starts with '-' or holds a NUL byte."""
    check_not_option(value, what)
    if "\x00" in value:
        raise InvalidInputFailure(f"{what} contains a NUL byte", f"Pass a {what} without NUL bytes.")
    return value


def check_tool(tool: str) -> str:
    """A tool name for argv: not empty, and through `check_value`."""
    if not tool.strip():
        raise InvalidInputFailure("a tool name is empty", "Remove the empty entry from the agent's tool list.")
    return check_value(tool, "tool name")


def format_budget(amount: float) -> str:
    """A spend cap as an option value; refused unless positive and finite."""
    text = repr(float(amount))
    if amount != amount or amount in (float("inf"), float("-inf")) or amount <= 0:
        raise InvalidInputFailure(
            f"max_budget_usd {text} is not a positive finite amount", "Set max_budget_usd to a positive number."
        )
    return text
