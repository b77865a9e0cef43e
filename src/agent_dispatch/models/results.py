"""What a caller asks (a dispatch request), what a run answers (a result, with what it changed),
and the job record that keeps it."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent_dispatch.models.checks import (
    SUMMARY_CHARS_MAX,
    TERMINAL_STATUSES,
    ErrorType,
    JobStatus,
    Outcome,
    clamp,
    is_valid_job_id,
)


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
