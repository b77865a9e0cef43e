"""What a run changed in git, and worktree isolation. Knows git; knows nothing of MCP, click or runtimes.

RunTracker         around one run: where it runs (the agent's directory, a new worktree, or the
                   worktree its session ran in), the snapshot before, the report and the
                   worktree's fate after (`changes` and `warning` in the result)
report / git       the snapshot, the report, and the one way we run git
worktrees          the records, creating, reopening, settling, listing and cleaning worktrees
overlap            knowing that two runs worked in one tree at once

Every method here blocks on git (milliseconds on a clean tree); the service calls them from a
worker thread.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from agent_dispatch.changes import worktrees
from agent_dispatch.changes.git import GitError, RepoInfo, Status, repo_info
from agent_dispatch.changes.overlap import TreeRun
from agent_dispatch.changes.report import Snapshot, report, take_snapshot
from agent_dispatch.changes.worktrees import IsolationRefused, Worktree, check_isolation
from agent_dispatch.models import ChangeReport, DispatchResult, EffectiveAgent

log = logging.getLogger(__name__)

# Tools that can change files. An agent whose settings leave it none of them should not write.
WRITE_TOOLS = ("Write", "Edit", "MultiEdit", "NotebookEdit", "Bash")
_WRITING_MODES = ("acceptEdits", "bypassPermissions", "dontAsk", "yolo", "auto_edit")


def _names(tools: tuple[str, ...]) -> set[str]:
    return {tool.split("(", 1)[0].strip() for tool in tools}


def read_only_reason(agent: EffectiveAgent) -> str | None:
    """Why `agent`'s settings should keep it from writing files, or None when they allow it (or cannot tell)."""
    if agent.permission_mode == "plan":
        return "its permission_mode is plan"
    if agent.permission_mode in _WRITING_MODES:
        return None
    # A bare name in disallowed_tools denies the whole tool; a pattern such as Bash(rm:*) only part of it.
    denied = {tool.strip() for tool in agent.disallowed_tools}
    if all(tool in denied for tool in WRITE_TOOLS):
        return "its disallowed_tools deny every tool that writes"
    if agent.allowed_tools and not _names(agent.allowed_tools) & set(WRITE_TOOLS):
        return "its allowed_tools hold no tool that writes"
    return None


def markers_dir() -> Path:
    """Where run markers live: `trees/` in the per-user runtime directory (see the contract)."""
    from agent_dispatch import config as configmod

    finder = getattr(configmod, "runtime_dir", None)
    if finder is not None:
        return Path(finder()) / "trees"
    value = os.environ.get("AGENT_DISPATCH_RUNTIME_DIR", "").strip()
    if value:
        return Path(os.path.abspath(os.path.expanduser(value))) / "trees"
    xdg = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return Path(xdg) / "agent-dispatch" / "trees"
    return configmod.config_path().parent / "run" / "trees"


def remote_refusal(agent: str) -> IsolationRefused:
    return IsolationRefused(
        f"agent {agent} runs on another machine; worktree isolation is for agents on this one",
        f"Dispatch it with isolation none, or `agent-dispatch update {agent} --isolation none`.",
    )


class RunTracker:
    """The change report and the worktree of one run: `begin()` before it starts, `end()` after it.

    `begin()` returns the directory the run must use and raises IsolationRefused (nothing has run)
    when worktree isolation cannot be had. `end()` never raises: a report git cannot make is left out.
    """

    def __init__(self, agent: EffectiveAgent, run_id: str, *, resume: str | None = None,
                 job_id: str | None = None) -> None:
        self.agent = agent
        self.run_id = run_id
        self.resume = resume
        self.job_id = job_id
        self.worktree: Worktree | None = None
        self.snapshot: Snapshot | None = None
        self.tree_run: TreeRun | None = None
        self.directory = agent.directory

    def begin(self) -> str:
        if getattr(self.agent, "host", None):
            # The directory is on another machine: local git knows nothing of it.
            if self.agent.isolation == "worktree":
                raise remote_refusal(self.agent.name)
            return self.directory
        record = worktrees.find_session(self.resume) if self.resume else None
        if record is not None:
            self.worktree = worktrees.reopen(record)
        elif self.agent.isolation == "worktree":
            info = check_isolation(self.agent.directory, self.agent.name)
            self.worktree = worktrees.create(info, self.agent.directory, self.agent.name, self.run_id,
                                             job_id=self.job_id)
        if self.worktree is not None:
            self.directory = self.worktree.cwd
        repo = repo_info(self.directory, fresh=self.worktree is not None)
        if repo is not None:
            self._watch(repo)
        return self.directory

    def _watch(self, repo: RepoInfo) -> None:
        try:
            self.snapshot = take_snapshot(repo)
        except GitError as exc:
            log.warning("no change report for agent %s: %s", self.agent.name, exc)
            return
        self.tree_run = TreeRun(markers_dir(), repo.toplevel)
        self.tree_run.begin()

    def end(self, result: DispatchResult, *, settle: bool = True) -> DispatchResult:
        """`result` with `changes` (and `warning`) added; the worktree kept or removed when `settle`."""
        changes = None
        if self.snapshot is not None:
            try:
                changes = report(self.snapshot)
            except GitError as exc:
                log.warning("no change report for agent %s: %s", self.agent.name, exc)
        if self.tree_run is not None and self.tree_run.end() and changes is not None:
            changes.concurrent = True
        if self.worktree is not None and settle:
            try:
                kept = worktrees.settle(self.worktree, result.session_id)
            except (GitError, OSError) as exc:
                log.warning("could not settle worktree %s: %s", self.worktree.path, exc)
                kept = True
            if kept:
                changes = changes or ChangeReport()
                changes.worktree, changes.branch = self.worktree.path, self.worktree.branch
        update: dict[str, object] = {}
        if changes is not None:
            update["changes"] = changes
            reason = read_only_reason(self.agent)
            if reason and changes.files:
                who = " (another run worked in the same tree meanwhile: some may be its)" if changes.concurrent else ""
                update["warning"] = (
                    f"agent {self.agent.name} changed {len(changes.files) + changes.omitted} file(s) although "
                    f"{reason}{who}; review them (changes.files)"
                )
        return result.model_copy(update=update) if update else result


def settle_recovered(job_id: str, result: DispatchResult) -> DispatchResult:
    """A job collected after its server died: settle the worktree it ran in, if any, and report it.

    Without the snapshot its server took, the report is what the worktree holds against the commit
    it was made from (for a first run, exactly what the run did).
    """
    matches = [r for r in worktrees.records() if r.job_id == job_id and r.state == "active" and not r.in_use]
    if not matches:
        return result
    record = matches[-1]
    changes = None
    info = repo_info(record.path, fresh=True) if record.exists else None
    if info is not None:
        try:
            changes = report(Snapshot(repo=info, before=Status(head=record.base, paths=frozenset(),
                                                                untracked=frozenset()), dirty={}))
        except GitError as exc:
            log.warning("no change report for recovered job %s: %s", job_id, exc)
    try:
        kept = worktrees.settle(record, result.session_id)
    except (GitError, OSError):
        kept = True
    if kept:
        changes = changes or ChangeReport()
        changes.worktree, changes.branch = record.path, record.branch
    return result.model_copy(update={"changes": changes}) if changes is not None else result


__all__ = [
    "GitError",
    "IsolationRefused",
    "RunTracker",
    "Worktree",
    "check_isolation",
    "read_only_reason",
    "remote_refusal",
    "settle_recovered",
    "worktrees",
]
