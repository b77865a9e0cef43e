"""Names, ids, bounds and the value checks every front door and model shares, once.

This module knows nothing of files, processes or MCP.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from agent_dispatch.errors import BadArgumentError, InvalidInputFailure

AGENT_NAME_MAX = 64
AGENT_NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{AGENT_NAME_MAX - 1}}}")
AGENT_NAME_RULE = (
    f"An agent name is 1 to {AGENT_NAME_MAX} characters: it starts with a letter or digit and holds only "
    "letters, digits, '-' and '_'; names that differ only in case are not allowed together."
)
JOB_ID_RE = re.compile(r"[0-9a-f]{32}")

ErrorType = Literal[
    "permission", "timeout", "recursion", "not_found", "budget", "usage_limit", "invalid_input", "cli_error"
]
Outcome = Literal["done", "partial", "blocked"]
JobStatus = Literal["pending", "running", "done", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = ("pending", "running", "done", "failed", "cancelled")
TERMINAL_STATUSES: frozenset[str] = frozenset({"done", "failed", "cancelled"})

# Bounds shared by the MCP tools and the CLI.
PREVIEW_LINES_MAX = 200
SUMMARY_CHARS_MAX = 100_000
DIALOGUE_ROUNDS = (1, 10)
WAIT_SECONDS_MAX = 3600.0
JOBS_LIMIT = (1, 1000)
DENIED_TOOLS_MAX = 50
CLARIFICATIONS_MAX = 10  # the highest settings.max_clarifications (questions per dispatch)
INSTRUCTIONS_MAX = 20_000  # characters of an agent's standing instructions (they go into argv)
LABEL_TEXT_MAX = 1000  # characters of a group member's use_for
# Bounds of configured values: a timeout of at most a week, a per-dispatch cap of at most $1000.
TIMEOUT_MAX = 7 * 24 * 3600
BUDGET_MAX_USD = 1000.0


def is_valid_agent_name(name: object) -> bool:
    return isinstance(name, str) and AGENT_NAME_RE.fullmatch(name) is not None


def check_agent_name(name: object) -> str:
    """Return `name` if it is a valid agent name, else raise BadArgumentError."""
    if not is_valid_agent_name(name):
        shown = name if not isinstance(name, str) or len(name) <= 80 else name[:80] + "…"
        raise BadArgumentError(f"invalid agent name {shown!r}", AGENT_NAME_RULE)
    return name  # type: ignore[return-value]


def case_twin(name: str, names: Any) -> str | None:
    """The other name among `names` that differs from `name` only in case, if any."""
    folded = name.casefold()
    return next((other for other in names if other != name and other.casefold() == folded), None)


def is_valid_job_id(job_id: object) -> bool:
    return isinstance(job_id, str) and JOB_ID_RE.fullmatch(job_id) is not None


def check_job_id(job_id: object) -> str:
    """Return `job_id` if it is 32 lowercase hex characters, else raise BadArgumentError."""
    if not is_valid_job_id(job_id):
        shown = job_id[:80] if isinstance(job_id, str) else job_id
        raise BadArgumentError(
            f"malformed job id {shown!r}",
            "A job id (or ref) is the 32 lowercase hex characters returned by dispatch_async or return_ref.",
        )
    return job_id  # type: ignore[return-value]


def check_not_option(value: str | None, what: str) -> None:
    """Refuse a value that would sit after a CLI option but looks like an option itself."""
    if value is not None and value.startswith("-"):
        raise InvalidInputFailure(
            f"{what} {value[:80]!r} starts with '-' and would be read as a command-line option",
            f"Pass a {what} that does not start with '-'.",
        )


# The agent CLIs a config may name; agent_dispatch.runtimes holds one module each, in this order
# (the runtimes' tests check that the two agree). Named here so the models need no runtime code.
RUNTIME_NAMES = ("claude", "codex", "gemini")


def check_runtime(value: str | None) -> str | None:
    """`value` when it names a known runtime (None = the default); ValueError listing them otherwise."""
    if value is None or value in RUNTIME_NAMES:
        return value
    raise ValueError(f"unknown runtime {value!r}; known runtimes: {', '.join(RUNTIME_NAMES)}")


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def split_tools(value: str) -> list[str]:
    """Split a comma-separated tool list ("Read, Grep" -> ["Read", "Grep"]); blanks dropped."""
    return [part.strip() for part in value.split(",") if part.strip()]


def _check_positive_finite(value: float | None, what: str, high: float = BUDGET_MAX_USD) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a finite number greater than 0")
    if value > high:
        raise ValueError(f"{what} must be at most {high:g}")
    return value


def _check_timeout(value: int | None, what: str) -> int | None:
    if value is not None and not 0 < value <= TIMEOUT_MAX:
        raise ValueError(f"{what} must be a whole number of seconds from 1 to {TIMEOUT_MAX} (7 days)")
    return value


def _check_flag_value(value: str | None) -> str | None:
    """A configured value that will follow a CLI option: non-empty, not option-like."""
    if value is not None and (not value.strip() or value.startswith("-")):
        raise ValueError("must be a non-empty value that does not start with '-'")
    return value


def _check_tool_names(tools: list[str] | None) -> list[str] | None:
    if tools is None:
        return None
    for tool in tools:
        if not tool or not tool.strip():
            raise ValueError("tool names must not be empty")
        if tool.startswith("-"):
            raise ValueError(f"tool name {tool!r} must not start with '-'")
        if "\x00" in tool or "\n" in tool:
            raise ValueError("tool names must not contain NUL or newlines")
    return tools


def _check_instructions(value: str | None) -> str | None:
    if value is None:
        return None
    if "\x00" in value:
        raise ValueError("instructions must not contain NUL")
    if len(value) > INSTRUCTIONS_MAX:
        raise ValueError(f"instructions must be at most {INSTRUCTIONS_MAX} characters")
    return value


def _check_labels(labels: list[str] | None) -> list[str] | None:
    if labels is None:
        return None
    for label in labels:
        if not label.strip() or len(label) > 200 or any(not ch.isprintable() for ch in label):
            raise ValueError("labels must be non-empty printable text of at most 200 characters")
    return labels


def _refuse_bool(value: Any) -> Any:
    # pydantic would read YAML `true` as 1 (second, dollar): a number was meant, say so.
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --- remote agents (ssh) ------------------------------------------------------------------
# An OpenSSH destination `[user@]name`: a host, address or ~/.ssh/config alias. Nothing that a
# shell or ssh could read as an option or a second word.
SSH_HOST_RE = re.compile(r"(?:[A-Za-z0-9._][A-Za-z0-9._+-]*@)?[A-Za-z0-9_.:\[\]%][A-Za-z0-9_.:\[\]%-]*")
# ssh -J: one or more `[user@]host[:port]` hops, comma-separated.
SSH_JUMP_RE = re.compile(rf"{SSH_HOST_RE.pattern}(?:,{SSH_HOST_RE.pattern})*")
SSH_CONNECT_TIMEOUT_MAX = 600


def check_ssh_host(value: str, what: str = "host") -> str:
    """Return `value` if it is an ssh destination `[user@]name`, else raise ValueError."""
    if not isinstance(value, str) or not value or value.startswith("-") or not SSH_HOST_RE.fullmatch(value):
        raise ValueError(f"{what} must be an ssh destination [user@]name (letters, digits, . _ - :), "
                         "not starting with '-'")
    return value
