"""agents.yaml as typed models: agents, groups, settings, and an agent with the defaults applied."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent_dispatch.models.checks import (
    AGENT_NAME_RULE,
    CLARIFICATIONS_MAX,
    LABEL_TEXT_MAX,
    SSH_CONNECT_TIMEOUT_MAX,
    SSH_JUMP_RE,
    TIMEOUT_MAX,
    _check_flag_value,
    _check_instructions,
    _check_labels,
    _check_positive_finite,
    _check_timeout,
    _check_tool_names,
    _refuse_bool,
    _Strict,
    case_twin,
    check_runtime,
    check_ssh_host,
    is_valid_agent_name,
)


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
