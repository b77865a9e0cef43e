"""Shared data types: agents.yaml, dispatch requests and results, job records.

Every bound or validation that more than one front door needs lives here, once.
This module knows nothing of files, processes or MCP.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


class SshOptions(_Strict):
    """The ssh settings an agent may carry: only what is safe to take from a config file."""

    port: int | None = Field(default=None, ge=1, le=65535)
    identity_file: str | None = None
    jump_host: str | None = None
    connect_timeout: int | None = Field(default=None, ge=1, le=SSH_CONNECT_TIMEOUT_MAX)

    @field_validator("port", "connect_timeout", mode="before")
    @classmethod
    def _numbers_not_bool(cls, value: Any) -> Any:
        return _refuse_bool(value)

    @field_validator("identity_file")
    @classmethod
    def _identity(cls, value: str | None) -> str | None:
        value = _check_flag_value(value)
        if value is not None and any(ch in value for ch in "\x00\n\r"):
            raise ValueError("identity_file must not contain NUL or line breaks")
        return value

    @field_validator("jump_host")
    @classmethod
    def _jump(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("-") or not SSH_JUMP_RE.fullmatch(value)):
            raise ValueError("jump_host must be [user@]host[:port] hops separated by commas, not starting with '-'")
        return value


class AgentConfig(_Strict):
    """One entry under `agents:`. Tool lists are tri-state: None inherits, [] means none."""

    directory: str
    description: str = ""
    timeout: int | None = None
    model: str | None = None
    max_budget_usd: float | None = None
    permission_mode: str | None = None
    allowed_tools: list[str] | None = None
    disallowed_tools: list[str] | None = None
    runtime: str | None = None  # None = claude
    instructions: str | None = None
    capabilities: list[str] | None = None  # labels shown to callers choosing an agent
    risky_capabilities: list[str] | None = None  # labels that call for care
    isolation: Literal["none", "worktree"] | None = None
    host: str | None = None  # the directory is on that machine, reached over ssh
    ssh_options: SshOptions | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        return None if value is None else check_ssh_host(value)

    @model_validator(mode="after")
    def _ssh_options_need_host(self) -> AgentConfig:
        if self.ssh_options is not None and not self.host:
            raise ValueError("ssh_options need a host")
        return self

    @field_validator("directory")
    @classmethod
    def _directory(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("directory must not be empty")
        if "\x00" in value:
            raise ValueError("directory must not contain NUL")
        return value

    @field_validator("timeout", "max_budget_usd", mode="before")
    @classmethod
    def _numbers_not_bool(cls, value: Any) -> Any:
        return _refuse_bool(value)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: int | None) -> int | None:
        return _check_timeout(value, "timeout")

    @field_validator("max_budget_usd")
    @classmethod
    def _budget(cls, value: float | None) -> float | None:
        return _check_positive_finite(value, "max_budget_usd")

    @field_validator("model", "permission_mode")
    @classmethod
    def _flag_value(cls, value: str | None) -> str | None:
        return _check_flag_value(value)

    @field_validator("allowed_tools", "disallowed_tools")
    @classmethod
    def _tools(cls, value: list[str] | None) -> list[str] | None:
        return _check_tool_names(value)

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, value: str | None) -> str | None:
        return check_runtime(value)
    @field_validator("instructions")
    @classmethod
    def _instructions(cls, value: str | None) -> str | None:
        return _check_instructions(value)

    @field_validator("capabilities", "risky_capabilities")
    @classmethod
    def _labels(cls, value: list[str] | None) -> list[str] | None:
        return _check_labels(value)


class GroupMember(_Strict):
    """One member of a group: an agent's name and what the group uses it for."""

    agent: str
    use_for: str = ""

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str) -> str:
        if not is_valid_agent_name(value):
            raise ValueError(f"member {value!r} is not a valid agent name")
        return value

    @field_validator("use_for")
    @classmethod
    def _use_for(cls, value: str) -> str:
        if "\x00" in value or len(value) > LABEL_TEXT_MAX:
            raise ValueError(f"use_for must be text of at most {LABEL_TEXT_MAX} characters without NUL")
        return value


class GroupConfig(_Strict):
    """One entry under `groups:`. Members may name agents that were removed since (reported unknown)."""

    description: str = ""  # for the caller choosing agents; never sent to members
    shared_context: str = ""  # facts added to the context of every dispatch made through the group
    members: list[GroupMember] = Field(default_factory=list)

    @field_validator("members", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("description", "shared_context", mode="before")
    @classmethod
    def _none_is_blank(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("members")
    @classmethod
    def _unique(cls, value: list[GroupMember]) -> list[GroupMember]:
        names = [member.agent for member in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"members are listed more than once: {', '.join(twice)}")
        return value

    @field_validator("shared_context")
    @classmethod
    def _shared(cls, value: str) -> str:
        return _check_instructions(value) or ""

    def member(self, agent: str) -> GroupMember | None:
        return next((member for member in self.members if member.agent == agent), None)


class CacheSettings(_Strict):
    enabled: bool = True
    ttl: float = Field(default=300, ge=0)
    max_size: int = Field(default=1000, ge=0)

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("ttl must be finite")
        return value


class Settings(_Strict):
    default_timeout: int = Field(default=300, gt=0, le=TIMEOUT_MAX)
    default_max_budget_usd: float | None = None
    default_permission_mode: str | None = None
    default_allowed_tools: list[str] = Field(default_factory=list)
    default_disallowed_tools: list[str] = Field(default_factory=list)
    max_dispatch_depth: int = Field(default=3, ge=0)
    max_concurrency: int = Field(default=5, ge=1)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    dispatch_protocol: bool = True
    max_clarifications: int = Field(default=2, ge=0, le=CLARIFICATIONS_MAX)
    # MCP tasks: a long call answers a task handle to a client that declares the extension.
    mcp_tasks: bool = True
    task_grace_seconds: float = Field(default=1, ge=0, le=3600)

    @field_validator("task_grace_seconds", mode="before")
    @classmethod
    def _grace(cls, value: Any) -> Any:
        value = _refuse_bool(value)
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise ValueError("task_grace_seconds must be a finite number of seconds")
        return value

    # Usage and limits across every server of the user (usage journal, spend and concurrency caps).
    usage_log: bool = True
    daily_budget_usd: float | None = None
    max_concurrency_user: int | None = Field(default=10, ge=1)
    job_retention_days: float = Field(default=0, ge=0)

    @field_validator("daily_budget_usd", "max_concurrency_user", "job_retention_days", mode="before")
    @classmethod
    def _usage_numbers_not_bool(cls, value: Any) -> Any:
        return _refuse_bool(value)

    @field_validator("daily_budget_usd")
    @classmethod
    def _daily_budget(cls, value: float | None) -> float | None:
        return _check_positive_finite(value, "daily_budget_usd")

    @field_validator("job_retention_days")
    @classmethod
    def _retention(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("job_retention_days must be finite (0 = keep every job)")
        return value

    @field_validator("default_timeout", "default_max_budget_usd", "max_clarifications", mode="before")
    @classmethod
    def _numbers_not_bool(cls, value: Any) -> Any:
        return _refuse_bool(value)

    @field_validator("default_max_budget_usd")
    @classmethod
    def _budget(cls, value: float | None) -> float | None:
        return _check_positive_finite(value, "default_max_budget_usd")

    @field_validator("default_permission_mode")
    @classmethod
    def _mode(cls, value: str | None) -> str | None:
        return _check_flag_value(value)

    @field_validator("default_allowed_tools", "default_disallowed_tools", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("default_allowed_tools", "default_disallowed_tools")
    @classmethod
    def _tools(cls, value: list[str]) -> list[str]:
        return _check_tool_names(value) or []


class AppConfig(_Strict):
    """The whole agents.yaml."""

    agents: dict[str, AgentConfig] = Field(default_factory=dict)
    groups: dict[str, GroupConfig] = Field(default_factory=dict)
    settings: Settings = Field(default_factory=Settings)

    @field_validator("groups", mode="before")
    @classmethod
    def _no_groups(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("groups")
    @classmethod
    def _group_names(cls, value: dict[str, GroupConfig]) -> dict[str, GroupConfig]:
        for name in value:
            if not is_valid_agent_name(name):
                raise ValueError(
                    f"invalid group name {name!r}: start with a letter or digit; use letters, digits, - and _"
                )
        return value

    @field_validator("agents", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("settings", mode="before")
    @classmethod
    def _none_settings(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("agents")
    @classmethod
    def _names(cls, value: dict[str, AgentConfig]) -> dict[str, AgentConfig]:
        for name in value:
            if not is_valid_agent_name(name):
                shown = name if len(name) <= 80 else name[:80] + "…"
                raise ValueError(f"invalid agent name {shown!r}: {AGENT_NAME_RULE}")
            twin = case_twin(name, value)
            if twin is not None:
                raise ValueError(f"agents {twin!r} and {name!r} differ only in case: rename one of them")
        return value


class EffectiveAgent(BaseModel):
    """An agent with the settings defaults applied: what a run actually uses."""

    model_config = ConfigDict(frozen=True)

    name: str
    directory: str
    timeout: int
    model: str | None = None
    max_budget_usd: float | None = None
    permission_mode: str | None = None
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    runtime: str = "claude"
    instructions: str | None = None
    protocol: bool = True  # settings.dispatch_protocol
    host: str | None = None
    ssh_options: SshOptions | None = None
    isolation: str = "none"

    @classmethod
    def resolve(cls, name: str, agent: AgentConfig, settings: Settings) -> EffectiveAgent:
        allowed = agent.allowed_tools if agent.allowed_tools is not None else settings.default_allowed_tools
        disallowed = (
            agent.disallowed_tools if agent.disallowed_tools is not None else settings.default_disallowed_tools
        )
        return cls(
            name=name,
            directory=agent.directory,
            timeout=agent.timeout or settings.default_timeout,
            model=agent.model,
            max_budget_usd=agent.max_budget_usd or settings.default_max_budget_usd,
            permission_mode=agent.permission_mode or settings.default_permission_mode,
            allowed_tools=tuple(allowed),
            disallowed_tools=tuple(disallowed),
            runtime=agent.runtime or "claude",
            instructions=agent.instructions or None,
            protocol=settings.dispatch_protocol,
            host=agent.host,
            ssh_options=agent.ssh_options,
            isolation=agent.isolation or "none",
        )

    def isolated(self, isolation: str) -> EffectiveAgent:
        """This agent with a dispatch's `isolation` ("" = the agent's own setting) applied."""
        if not isolation or isolation == self.isolation:
            return self
        return self.model_copy(update={"isolation": isolation})


class DispatchRequest(BaseModel):
    """What a caller asks one agent to do."""

    model_config = ConfigDict(extra="forbid")

    agent: str
    task: str
    context: str = ""
    caller: str = ""
    goal: str = ""
    response_format: Literal["", "json"] = ""
    return_ref: bool = False
    summary_chars: int = 500
    group: str = ""  # dispatch through this group: the agent must be a member; its shared_context is added
    isolation: Literal["", "none", "worktree"] = ""

    @field_validator("response_format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            if value in ("text", "none"):
                return ""
        return value

    @field_validator("summary_chars", mode="before")
    @classmethod
    def _summary(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return clamp(value, 0, SUMMARY_CHARS_MAX)
        return value

    @field_validator("task")
    @classmethod
    def _task(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("task must not be empty")
        return value


FileStatus = Literal["added", "modified", "deleted", "renamed"]
ISOLATIONS: tuple[str, ...] = ("none", "worktree")


class FileChange(BaseModel):
    """One path a run changed; counts are lines (absent for binary files and files too large to compare)."""

    path: str
    status: FileStatus
    old_path: str | None = None
    insertions: int | None = None
    deletions: int | None = None
    binary: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "status": self.status}
        if self.old_path is not None:
            out["old_path"] = self.old_path
        if self.binary:
            out["binary"] = True
        elif self.insertions is not None:
            out["insertions"], out["deletions"] = self.insertions, self.deletions or 0
        return out


class ChangeReport(BaseModel):
    """What a run changed in its git work tree (`changes` in a result)."""

    files: list[FileChange] = Field(default_factory=list)
    insertions: int = 0
    deletions: int = 0
    omitted: int = 0  # files changed beyond the listed ones
    concurrent: bool = False  # another run worked in the same tree meanwhile: the files may be partly its
    worktree: str | None = None
    branch: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "files": [change.to_json() for change in self.files],
            "insertions": self.insertions,
            "deletions": self.deletions,
        }
        if self.omitted:
            out["omitted"] = self.omitted
        if self.concurrent:
            out["concurrent"] = True
        for key in ("worktree", "branch"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out


class DispatchResult(BaseModel):
    """The contract's dispatch result object."""

    agent: str
    success: bool
    result: str = ""
    session_id: str | None = None
    cost_usd: float | None = None
    duration_ms: int | None = None
    num_turns: int | None = None
    error: str | None = None
    error_type: ErrorType | None = None
    parsed_result: Any = None
    cached: bool = False
    denied_tools: list[str] = Field(default_factory=list)
    hint: str | None = None
    runtime: str | None = None  # set for agents not on the default runtime (claude)
    usage: dict[str, int] | None = None  # token counts, from CLIs that report no cost
    outcome: Outcome | None = None
    question: str | None = None
    clarifications: list[dict[str, str]] = Field(default_factory=list)
    host: str | None = None  # set for an agent on another machine
    budget_exceeded: bool = False
    changes: ChangeReport | None = None
    warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON answer: null and empty optional fields left out; `result` always present."""
        out: dict[str, Any] = {"agent": self.agent, "success": self.success, "result": self.result}
        for key in ("session_id", "cost_usd", "duration_ms", "num_turns", "error", "error_type", "hint", "outcome",
                    "question", "host"):
            value = getattr(self, key)
            if value is not None and value != "":
                out[key] = value
        if self.parsed_result is not None:
            out["parsed_result"] = self.parsed_result
        if self.cached:
            out["cached"] = True
        if self.denied_tools:
            out["denied_tools"] = list(self.denied_tools)
        if self.runtime:
            out["runtime"] = self.runtime
        if self.usage:
            out["usage"] = dict(self.usage)
        if self.clarifications:
            out["clarifications"] = [dict(item) for item in self.clarifications]
        if self.budget_exceeded:
            out["budget_exceeded"] = True
        if self.changes is not None:
            out["changes"] = self.changes.to_json()
        if self.warning:
            out["warning"] = self.warning
        return out

    @classmethod
    def failure(cls, agent: str, exc: Exception, **extra: Any) -> DispatchResult:
        """A failed result from a DispatchFailure (or any error: cli_error)."""
        error_type = getattr(exc, "error_type", "cli_error")
        hint = getattr(exc, "hint", None) or None
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        return cls(agent=agent, success=False, error=message, error_type=error_type, hint=hint, **extra)


class Job(BaseModel):
    """One job record (`<id>.json`). `version` is the record format."""

    model_config = ConfigDict(extra="ignore")

    version: int = 1
    id: str
    status: JobStatus
    agent: str
    task: str
    created_at: float
    started_at: float | None = None
    completed_at: float | None = None
    result: DispatchResult | None = None
    error: str | None = None
    progress: list[str] = Field(default_factory=list)
    # Which server owns the job, and which process runs it: used to recover jobs of a dead server.
    owner: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    # The request, kept so a job can be reported and (for refs) so `fetch_result` knows its origin.
    request: dict[str, Any] | None = None
    kind: Literal["async", "ref", "task"] = "async"
    # Tasks (MCP tasks extension): the tool that was called, its answer when it is not one
    # dispatch result (the CallToolResult as sent), the latest progress line, and the question
    # waiting for the human ({key, message, schema}) while the task is input_required.
    tool: str | None = None
    answer: dict[str, Any] | None = None
    status_message: str | None = None
    question: dict[str, Any] | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not is_valid_job_id(value):
            raise ValueError("job id must be 32 lowercase hex characters")
        return value

    @model_validator(mode="after")
    def _times(self) -> Job:
        for key in ("created_at", "started_at", "completed_at"):
            value = getattr(self, key)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"{key} must be a finite, non-negative epoch time")
        return self

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def to_json(self) -> dict[str, Any]:
        """The contract's job record as tools answer it (internal bookkeeping left out)."""
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "agent": self.agent,
            "task": self.task,
            "created_at": self.created_at,
        }
        for key in ("started_at", "completed_at", "error"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.result is not None:
            out["result"] = self.result.to_json()
        if self.progress:
            out["progress"] = list(self.progress)
        if self.tool:
            out["tool"] = self.tool
        return out

    def summary(self, task_chars: int = 120) -> dict[str, Any]:
        """One line of `dispatch_jobs`."""
        task = self.task if len(self.task) <= task_chars else self.task[: task_chars - 1] + "…"
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "agent": self.agent,
            "task": task,
            "created_at": self.created_at,
        }
        for key in ("started_at", "completed_at"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.result is not None:
            out["success"] = self.result.success
        error = self.error or (self.result.error if self.result is not None else None)
        if error:
            out["error"] = error
        if self.progress:
            out["last_progress"] = self.progress[-1]
        return out
