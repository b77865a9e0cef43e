"""What one run left behind, as the runner observed it, whatever CLI ran it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent_dispatch.errors import TimeoutFailure


@dataclass
class RunOutcome:
    """What one run left behind, as the runner observed it."""

    result: dict[str, Any] | None = None
    session_id: str | None = None
    exit_code: int | None = None
    stderr: str = ""
    timed_out: bool = False
    timeout_seconds: float = 0.0
    last_text: str = ""
    output_size: int = 0
    duration_ms: int = 0


def timeout_failure(name: str, outcome: RunOutcome, session: str | None) -> TimeoutFailure:
    """The failure of a run stopped at its timeout; the hint resumes its session when there is one."""
    longer = int(outcome.timeout_seconds * 2) or 60
    raise_it = f"raise the timeout with `agent-dispatch update {name} --timeout {longer}`."
    return TimeoutFailure(
        f"agent {name} did not finish within {outcome.timeout_seconds:g} s; its processes were stopped",
        f"Resume the session (session_id {session}) to continue, or {raise_it}"
        if session
        else raise_it[0].upper() + raise_it[1:],
    )
