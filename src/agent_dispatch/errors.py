"""One exception tree for every documented failure.

    AgentDispatchError                 (tool envelope / CLI exit 1)
    ├── ConfigError                    agents.yaml cannot be read, parsed or written
    ├── AgentNotFoundError             no agent of that name
    ├── AgentExistsError               add of a name already taken
    ├── GroupNotFoundError             no group of that name
    ├── GroupExistsError               group add of a name already taken
    ├── BadArgumentError               a tool or CLI argument is out of range or malformed
    ├── JobNotFoundError               no job record with that id
    ├── JobRecordError                 a job record exists but cannot be read or trusted
    └── DispatchFailure                a dispatch failed; carries the contract's `error_type`
        ├── PermissionFailure          permission
        ├── TimeoutFailure             timeout
        ├── RecursionFailure           recursion
        ├── NotFoundFailure            not_found (directory or CLI missing)
        ├── BudgetFailure              budget
        ├── UsageLimitFailure          usage_limit
        ├── InvalidInputFailure        invalid_input (refused before anything ran)
        └── CliFailure                 cli_error

Front doors catch `AgentDispatchError` at one boundary: the MCP server turns it into
`{"error", "hint"}` (or a failed dispatch result for `DispatchFailure`), the CLI into one
readable line and exit code 1. Callers branch on the type, never on the message.
"""

from __future__ import annotations

from typing import ClassVar


class AgentDispatchError(Exception):
    """Base of every error this package raises on purpose.

    `hint` is worded for the calling model (tool names); `cli_hint`, when set, is the same advice
    worded for a person at the command line, which the CLI prints instead.
    """

    default_hint: ClassVar[str] = ""
    default_cli_hint: ClassVar[str] = ""

    def __init__(self, message: str, hint: str | None = None, cli_hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.cli_hint = cli_hint if cli_hint is not None else (self.default_cli_hint if hint is None else "")

    def envelope(self) -> dict[str, str]:
        """The contract's tool-level error envelope."""
        out = {"error": self.message}
        if self.hint:
            out["hint"] = self.hint
        return out


class ConfigError(AgentDispatchError):
    default_hint = "Fix agents.yaml (see agents.example.yaml), or run `agent-dispatch doctor`."


class AgentNotFoundError(AgentDispatchError):
    default_hint = "Call list_agents to see the registered agents, or add one with `agent-dispatch add`."
    default_cli_hint = "Run `agent-dispatch list` to see the agents; add one with `agent-dispatch add NAME DIR`."


class AgentExistsError(AgentDispatchError):
    default_hint = "Use `agent-dispatch update` to change it, or pick another name."


class GroupNotFoundError(AgentDispatchError):
    default_hint = "Call list_groups to see the groups, or create one with `agent-dispatch group add`."
    default_cli_hint = "Run `agent-dispatch group list` to see the groups; create one with `agent-dispatch group add`."


class GroupExistsError(AgentDispatchError):
    default_hint = "Use `agent-dispatch group update` to change it, or pick another name."


class BadArgumentError(AgentDispatchError):
    default_hint = "Check the tool's parameter description and call it again."
    default_cli_hint = "Check the value given; `agent-dispatch COMMAND --help` describes each option."


class JobNotFoundError(AgentDispatchError):
    default_hint = "Call dispatch_jobs to list known jobs."
    default_cli_hint = "Run `agent-dispatch jobs` to list the known jobs."


class JobRecordError(AgentDispatchError):
    default_hint = "The job record is damaged; inspect it in the jobs directory, or remove it with dispatch_gc."
    default_cli_hint = "The job record is damaged; inspect it in the jobs directory, or delete it: `agent-dispatch gc`."


class DispatchFailure(AgentDispatchError):
    """A dispatch that did not succeed; `error_type` is the contract's code."""

    error_type: ClassVar[str] = "cli_error"


class PermissionFailure(DispatchFailure):
    error_type = "permission"


class TimeoutFailure(DispatchFailure):
    error_type = "timeout"


class RecursionFailure(DispatchFailure):
    error_type = "recursion"


class NotFoundFailure(DispatchFailure):
    error_type = "not_found"


class BudgetFailure(DispatchFailure):
    error_type = "budget"


class UsageLimitFailure(DispatchFailure):
    error_type = "usage_limit"


class InvalidInputFailure(DispatchFailure):
    error_type = "invalid_input"


class CliFailure(DispatchFailure):
    error_type = "cli_error"


FAILURE_TYPES: dict[str, type[DispatchFailure]] = {
    cls.error_type: cls
    for cls in (
        PermissionFailure,
        TimeoutFailure,
        RecursionFailure,
        NotFoundFailure,
        BudgetFailure,
        UsageLimitFailure,
        InvalidInputFailure,
        CliFailure,
    )
}
