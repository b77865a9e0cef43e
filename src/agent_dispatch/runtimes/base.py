"""The interface every agent CLI implements, so the runner and the service never branch on it.

A runtime knows its CLI: the executable (and the env variable that overrides it), the argv for
a run (the prompt never in it: the runner writes it to stdin and closes stdin), how to read its
output into StreamEvents and a final record, and how to turn what a run left behind into the
contract's DispatchResult. It also refuses, up front, agent settings its CLI cannot honour.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent_dispatch.models import DispatchResult, EffectiveAgent
    from agent_dispatch.runs.events import StreamEvent
    from agent_dispatch.runs.outcome import RunOutcome
    from agent_dispatch.runs.spec import RunSpec


class OutputReader(Protocol):
    """Consumes a run's stdout as it arrives (see runtimes.claude.parse.OutputReader)."""

    result: dict[str, Any] | None  # the final record once seen: the run has answered (or failed)
    session_id: str | None
    size: int
    eof: bool

    @property
    def last_text(self) -> str: ...

    def feed(self, chunk: bytes) -> None: ...

    def finish(self) -> None: ...


class Runtime:
    """One agent CLI. Subclasses set the class attributes and implement the methods."""

    name = ""  # the `runtime` value in agents.yaml
    label = ""  # how users call the CLI
    executable = ""  # looked up on PATH
    command_env = ""  # env variable naming the executable instead
    install_hint = ""
    context_file = ""  # the project file the CLI reads as its standing instructions
    system_prompt_option = False  # the argv can add to the system prompt (else the protocol leads the prompt)

    def command(self) -> str:
        """The executable: the env override (a path or a name on PATH), else the name on PATH.

        Resolved to a path when it can be found; else returned as given, so an error names it.
        """
        value = os.environ.get(self.command_env, "").strip()
        value = os.path.expanduser(value) if value else self.executable
        return shutil.which(value) or value

    def check_agent(self, agent: EffectiveAgent) -> None:
        """Raise InvalidInputFailure when `agent` holds a setting this CLI cannot honour."""

    def new_session_id(self) -> str | None:
        """A session id to assign to a new run, for CLIs that take one; None when the CLI picks it."""
        return None

    def build_argv(self, spec: RunSpec, session_id: str | None = None) -> list[str]:
        """The argv (argv[0] = spec.claude as given, the prompt not in it); InvalidInputFailure on bad values."""
        raise NotImplementedError

    def env(self, spec: RunSpec) -> dict[str, str]:
        """Variables added to the child's environment."""
        return {}

    def reader(
        self,
        *,
        stream: bool,
        on_event: Callable[[StreamEvent], None] | None,
        on_change: Callable[[], None] | None,
    ) -> OutputReader:
        raise NotImplementedError

    def find_result(self, data: bytes) -> tuple[dict[str, Any] | None, str | None]:
        """The final record in a whole output and the session id seen (for runs collected later)."""
        raise NotImplementedError

    def classify(self, agent: EffectiveAgent | str, outcome: RunOutcome, response_format: str = "") -> DispatchResult:
        """The DispatchResult for a finished run. Never raises."""
        raise NotImplementedError
