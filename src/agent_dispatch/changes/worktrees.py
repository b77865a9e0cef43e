"""Worktree isolation: a fresh git worktree per run, kept only when the run left work in it.

Layout of the worktrees directory (`worktrees/` beside the config, 0o700):

    <agent>-<run>/        the worktree itself, on the branch `agent-dispatch/<agent>-<run>`
    <agent>-<run>.json    its record (0o600, replaced atomically): repository, branch, base
                          commit, state (active, kept, removed), the sessions that ran in it

`<run>` is the first 12 hex characters of the job id (async jobs, tasks) or of a fresh id.
A record outlives a removed worktree so that a session started in it continues at the same
path (Claude Code, like Gemini, finds a session by the directory it ran in); `gc` drops the
records of removed worktrees once they are old.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent_dispatch.changes.git import GitError, RepoInfo, decode_path, forget, git, repo_info, status
from agent_dispatch.errors import BadArgumentError, InvalidInputFailure
from agent_dispatch.files import tighten_dir
from agent_dispatch.runner.tree import read_stat

WORKTREES_DIR_ENV = "AGENT_DISPATCH_WORKTREES_DIR"
BRANCH_PREFIX = "agent-dispatch/"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*-[0-9a-f]{12}")
RECORD_VERSION = 1


class IsolationRefused(InvalidInputFailure):
    """Worktree isolation cannot be set up for this directory; nothing has run."""


def worktrees_dir(cfg_path: Path | None = None) -> Path:
    """Where worktrees and their records live: env AGENT_DISPATCH_WORKTREES_DIR, else `worktrees/` beside the config."""
    value = os.environ.get(WORKTREES_DIR_ENV, "").strip()
    if value:
        return Path(os.path.abspath(os.path.expanduser(value)))
    from agent_dispatch.config import config_path

    return (cfg_path if cfg_path is not None else config_path()).parent / "worktrees"


@dataclass
class Worktree:
    """One record: a worktree made for an agent's run."""

    name: str
    agent: str
    repo: str  # the top of the checkout it was made from
    subdir: str  # the agent's directory relative to that top ("" = the top itself)
    path: str
    branch: str
    base: str  # the commit it started from
    created_at: float
    updated_at: float
    state: str = "active"  # active (a run is in it), kept (work left in it), removed
    sessions: list[str] = field(default_factory=list)
    job_id: str | None = None
    owner: dict[str, Any] | None = None  # the server process of the run in it, while active
    version: int = RECORD_VERSION

    @property
    def cwd(self) -> str:
        return os.path.join(self.path, self.subdir) if self.subdir else self.path

    @property
    def exists(self) -> bool:
        return os.path.isdir(self.path)

    @property
    def in_use(self) -> bool:
        """A run is working in it now (its server is alive); one whose server died is not."""
        owner = self.owner or {}
        pid = owner.get("pid")
        if self.state != "active" or not isinstance(pid, int) or pid <= 0:
            return False
        stat = read_stat(pid)
        return stat is not None and stat.state != "Z" and stat.start == owner.get("start")


def _me() -> dict[str, Any]:
    stat = read_stat(os.getpid())
    return {"pid": os.getpid(), "start": stat.start if stat else None}


def check_isolation(directory: str, agent: str, *, verify_head: bool = True) -> RepoInfo:
    """The repository `directory` is in, or IsolationRefused saying why a worktree cannot be made there.

    Without `verify_head` only what is remembered for a few seconds is asked (no git process on
    a busy path); the commit check then comes when the worktree is made.
    """
    if not os.path.isdir(directory):
        raise IsolationRefused(
            f"agent {agent}'s directory does not exist: {directory}",
            "Create it, or point the agent elsewhere with `agent-dispatch update`.",
        )
    info = repo_info(directory)
    if info is None:
        if shutil.which("git") is None:
            raise IsolationRefused(
                "worktree isolation needs git, and git is not installed",
                "Install git, or dispatch with isolation none.",
            )
        raise IsolationRefused(
            f"agent {agent}'s directory is not in a git checkout, so it cannot run in a worktree: {directory}",
            f"Make it a git repository with a first commit, or run without isolation "
            f"(`agent-dispatch update {agent} --isolation none`).",
        )
    if not verify_head:
        return info
    try:
        git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], info.toplevel)
    except GitError:
        raise IsolationRefused(
            f"agent {agent}'s repository has no commit yet, so there is no HEAD to start a worktree from: "
            f"{info.toplevel}",
            "Commit once in that repository, or run without isolation.",
        ) from None
    return info


def _store(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    tighten_dir(directory)
    return directory


def save(record: Worktree, directory: Path) -> None:
    record.updated_at = time.time()
    data = json.dumps(asdict(record), indent=1).encode()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, directory / f"{record.name}.json")
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _load(path: Path) -> Worktree | None:
    try:
        data = json.loads(path.read_bytes())
        record = Worktree(**{key: data[key] for key in Worktree.__dataclass_fields__ if key in data})
    except (OSError, ValueError, TypeError):
        return None
    if not _NAME_RE.fullmatch(record.name) or record.name != path.stem or not record.branch.startswith(BRANCH_PREFIX):
        return None
    if os.path.abspath(record.path) != os.path.abspath(path.parent / record.name):
        return None  # a record never points outside its own directory: removal deletes that path
    return record


def records(directory: Path | None = None) -> list[Worktree]:
    """Every readable record, oldest first."""
    directory = directory or worktrees_dir()
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    found = [_load(directory / name) for name in names if name.endswith(".json") and not name.startswith(".")]
    return sorted((r for r in found if r is not None), key=lambda r: r.created_at)


def find_session(session_id: str, directory: Path | None = None) -> Worktree | None:
    """The worktree a session ran in, if it ran in one."""
    if not session_id:
        return None
    matches = [r for r in records(directory) if session_id in r.sessions]
    return matches[-1] if matches else None


def create(info: RepoInfo, directory: str, agent: str, run_id: str, *, job_id: str | None = None,
           store: Path | None = None) -> Worktree:
    """A new worktree of `info`'s checkout at its HEAD, on a new branch named after the agent and the run."""
    store = _store(store or worktrees_dir())
    name = f"{agent}-{run_id[:12]}"
    subdir = os.path.relpath(os.path.realpath(directory), os.path.realpath(info.toplevel))
    subdir = "" if subdir == "." else subdir
    base = git(["rev-parse", "--verify", "HEAD^{commit}"], info.toplevel).decode().strip()
    now = time.time()
    record = Worktree(name=name, agent=agent, repo=info.toplevel, subdir=subdir, path=str(store / name),
                      branch=BRANCH_PREFIX + name, base=base, created_at=now, updated_at=now, job_id=job_id,
                      owner=_me())
    save(record, store)  # the record first: a worktree is never left without one
    try:
        git(["worktree", "add", "--quiet", "-b", record.branch, "--", record.path, base], info.toplevel)
    except GitError as exc:
        _drop_record(record, store)
        raise IsolationRefused(
            f"could not create a worktree for agent {agent}: {exc}",
            "Check the repository with `git worktree list`; see `agent-dispatch worktrees`.",
        ) from None
    if not os.path.isdir(record.cwd):
        remove(record, store)
        raise IsolationRefused(
            f"agent {agent}'s directory {subdir!r} is not part of the commit at HEAD, so a worktree would not hold it",
            "Commit the agent's directory, or run without isolation.",
        )
    return record


def reopen(record: Worktree, store: Path | None = None) -> Worktree:
    """Make a session's worktree ready again: as it is when it exists, recreated at the same path when not."""
    store = _store(store or worktrees_dir())
    record.owner = _me()
    if record.exists:
        record.state = "active"
        save(record, store)
        return record
    if not os.path.isdir(record.repo):
        raise IsolationRefused(f"the repository of worktree {record.name} is gone: {record.repo}",
                               "Start a new session instead.")
    git(["worktree", "prune"], record.repo)
    if _branch_exists(record):
        git(["worktree", "add", "--quiet", "--", record.path, record.branch], record.repo)
    else:
        record.base = git(["rev-parse", "--verify", "HEAD^{commit}"], record.repo).decode().strip()
        git(["worktree", "add", "--quiet", "-b", record.branch, "--", record.path, record.base], record.repo)
    forget(record.path)
    record.state = "active"
    save(record, store)
    return record


def _branch_exists(record: Worktree) -> bool:
    try:
        git(["rev-parse", "--verify", "--quiet", f"refs/heads/{record.branch}"], record.repo)
    except GitError:
        return False
    return True


def has_work(record: Worktree) -> bool:
    """Whether the worktree holds anything not in its base commit: a changed file or a commit."""
    top = record.path
    st = status(top)
    return bool(st.paths) or st.head != record.base


def settle(record: Worktree, session_id: str | None, store: Path | None = None) -> bool:
    """After a run: keep the worktree when it holds work (True), else remove it and its branch."""
    store = store or worktrees_dir()
    if session_id and session_id not in record.sessions:
        record.sessions.append(session_id)
    try:
        keep = has_work(record)
    except GitError:
        keep = True  # when in doubt, nothing is thrown away
    if keep:
        record.state, record.owner = "kept", None
        save(record, store)
        return True
    remove(record, store)
    return False


def remove(record: Worktree, store: Path | None = None) -> None:
    """Remove the worktree and its branch; the record stays (state removed) for the sessions that ran in it."""
    store = store or worktrees_dir()
    if os.path.isdir(record.repo):
        try:
            git(["worktree", "remove", "--force", "--force", "--", record.path], record.repo)
        except GitError:
            pass
        try:
            git(["branch", "-D", "--", record.branch], record.repo)
        except GitError:
            pass
    if os.path.isdir(record.path):
        shutil.rmtree(record.path, ignore_errors=True)
        if os.path.isdir(record.repo):
            try:
                git(["worktree", "prune"], record.repo)
            except GitError:
                pass
    forget(record.path)
    record.state, record.owner = "removed", None
    if record.sessions:
        save(record, store)
    else:
        _drop_record(record, store)


def _drop_record(record: Worktree, store: Path) -> None:
    try:
        (store / f"{record.name}.json").unlink()
    except FileNotFoundError:
        pass


# -- listing and cleaning (the `worktrees` command, gc) -------------------------------------------


def describe(record: Worktree, now: float | None = None) -> dict[str, Any]:
    """One kept worktree as `worktrees` shows it: agent, branch, path, age, changed files, merged."""
    now = now if now is not None else time.time()
    out: dict[str, Any] = {
        "name": record.name,
        "agent": record.agent,
        "branch": record.branch,
        "path": record.path,
        "repo": record.repo,
        "state": "in use" if record.in_use else ("kept" if record.state == "active" else record.state),
        "created_at": record.created_at,
        "age_seconds": max(0, int(now - record.created_at)),
    }
    try:
        out["changed_files"] = changed_files(record)
        out["commits"] = _commits_ahead(record)
        out["merged"] = is_merged(record)
    except GitError as exc:
        out["error"] = str(exc)
    if record.sessions:
        out["sessions"] = list(record.sessions)
    return out


def changed_files(record: Worktree) -> list[str]:
    """Paths that differ from the base commit: committed on the branch, changed or new in the worktree."""
    out = git(["diff", "--name-only", "-z", "--no-ext-diff", record.base, "--"], record.path)
    names = {decode_path(raw) for raw in out.split(b"\0") if raw}
    names |= status(record.path).untracked
    return sorted(names)


def _commits_ahead(record: Worktree) -> int:
    out = git(["rev-list", "--count", f"{record.base}..HEAD", "--"], record.path)
    return int(out.strip() or 0)


def is_merged(record: Worktree) -> bool:
    """True when the worktree is clean and its branch is contained in its repository's HEAD."""
    if status(record.path).paths:
        return False
    try:
        git(["merge-base", "--is-ancestor", record.branch, "HEAD"], record.repo)  # our own branch name
    except GitError:
        return False
    return True


def kept(directory: Path | None = None) -> list[Worktree]:
    """The worktrees that exist (kept, or active in a run, or left by a run that never ended)."""
    return [r for r in records(directory) if r.state != "removed" and r.exists]


def clean(*, merged_only: bool, names: list[str] | None = None, directory: Path | None = None) -> list[dict[str, Any]]:
    """Remove kept worktrees (only those whose work is merged when `merged_only`); what was removed."""
    chosen = kept(directory)
    if names:
        unknown = sorted(set(names) - {r.name for r in chosen})
        if unknown:
            raise BadArgumentError(f"no kept worktree named {', '.join(unknown)}",
                                   "`agent-dispatch worktrees` lists them.")
        chosen = [r for r in chosen if r.name in names]
    removed = []
    for record in chosen:
        if record.in_use:
            continue  # a run is working in it right now
        info = describe(record)
        if merged_only and not info.get("merged"):
            continue
        remove(record, directory)
        removed.append(info)
    return removed


def prune(max_age_days: float, directory: Path | None = None, *, dry_run: bool = False) -> int:
    """gc: drop records of removed worktrees, and merged clean worktrees, not used for `max_age_days`.

    A kept worktree with unmerged work (a change or a commit not in its repository's HEAD) is
    never removed here; `agent-dispatch worktrees --clean` does that when asked. A worktree a
    run is working in is left alone.
    """
    directory = directory or worktrees_dir()
    cutoff = time.time() - max_age_days * 86400
    count = 0
    for record in records(directory):
        if record.updated_at > cutoff or record.in_use:
            continue
        if record.exists:
            if not _merged_quietly(record):
                continue
            if not dry_run:
                remove(record, directory)
        count += 1
        if not dry_run:
            _drop_record(record, directory)
    return count


def _merged_quietly(record: Worktree) -> bool:
    try:
        return is_merged(record)
    except GitError:
        return False
