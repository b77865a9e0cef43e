"""Running `git` for the change report and worktrees: argv lists only, never a shell.

Every call goes through `git()`: the executable is `git` on PATH, paths are always given
after `--` (or through stdin with NUL separators), pathspecs are literal
(GIT_LITERAL_PATHSPECS), and optional locks are off (GIT_OPTIONAL_LOCKS=0) so reading the
status never takes the index lock a person or an agent may need at the same moment. Variables
that would point git at another repository (GIT_DIR and friends, inherited from a hook or a
caller) are removed.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT = 60.0  # seconds; a status of a huge repository on a cold disk can take a while
_REPO_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)
_INFO_TTL = 30.0  # seconds a directory's repository facts are reused


class GitError(Exception):
    """git failed, is missing, or took too long; `stderr` holds its last words."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _REPO_ENV}
    env.update(GIT_LITERAL_PATHSPECS="1", GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    if extra:
        env.update(extra)
    return env


def git(
    args: list[str],
    cwd: str | Path,
    *,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    ok_codes: tuple[int, ...] = (0,),
) -> bytes:
    """Run `git ARGS` in `cwd` and return its stdout; GitError unless it exits with one of `ok_codes`."""
    try:
        proc = subprocess.run(  # noqa: S603 - our argv list; values sit after `--` or on stdin
            ["git", *args],  # noqa: S607 - git as found on PATH, like the user's own
            cwd=cwd,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            env=_env(env),
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed (not found on PATH)") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} took longer than {GIT_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from None
    if proc.returncode not in ok_codes:
        err = proc.stderr.decode("utf-8", errors="replace").strip()
        raise GitError(f"git {args[0]} failed: {err.splitlines()[-1] if err else f'exit {proc.returncode}'}", err)
    return proc.stdout


@dataclass(frozen=True)
class RepoInfo:
    """Where a directory sits in git: its work tree's top, the index file, and HEAD (None before the first commit)."""

    toplevel: str
    index: str
    git_dir: str
    common_dir: str


_info_cache: dict[str, tuple[float, RepoInfo | None]] = {}
_info_lock = threading.Lock()


def repo_info(directory: str | Path, *, fresh: bool = False) -> RepoInfo | None:
    """The repository facts of `directory`, or None when it is not inside a git work tree (or git is missing).

    Reused for a few seconds per directory, so a busy server does not ask git on every dispatch.
    """
    key = os.path.abspath(directory)
    if not _under_git(key):
        return None  # no .git above it: not one git process spent outside git
    now = time.monotonic()
    if not fresh:
        with _info_lock:
            hit = _info_cache.get(key)
        if hit is not None and now - hit[0] < _INFO_TTL:
            return hit[1]
    info: RepoInfo | None
    try:
        out = git(
            ["rev-parse", "--path-format=absolute", "--show-toplevel", "--git-path", "index",
             "--git-dir", "--git-common-dir"],
            key,
        )
        lines = out.decode("utf-8", errors="surrogateescape").splitlines()
        info = RepoInfo(*lines[:4]) if len(lines) >= 4 and lines[0] else None
    except (GitError, NotADirectoryError, FileNotFoundError, PermissionError):
        info = None
    with _info_lock:
        if len(_info_cache) > 1000:
            _info_cache.clear()
        _info_cache[key] = (now, info)
    return info


def _under_git(directory: str) -> bool:
    """Whether `directory` or a parent holds `.git` (a directory, or a file for linked worktrees)."""
    path = directory
    while True:
        if os.path.lexists(os.path.join(path, ".git")):
            return True
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent


def forget(directory: str | Path) -> None:
    """Drop what `repo_info` remembers of `directory` (a worktree just created or removed)."""
    with _info_lock:
        _info_cache.pop(os.path.abspath(directory), None)


@dataclass(frozen=True)
class Status:
    """One `git status`: HEAD's commit (None before the first commit) and every path that differs from it."""

    head: str | None
    paths: frozenset[str]
    untracked: frozenset[str]


def decode_path(raw: bytes) -> str:
    return raw.decode("utf-8", errors="surrogateescape")


def encode_path(path: str) -> bytes:
    return path.encode("utf-8", errors="surrogateescape")


def status(toplevel: str) -> Status:
    """The work tree's status against HEAD: one `git status --porcelain=v2 -z` (untracked files listed one by one)."""
    out = git(
        ["status", "--porcelain=v2", "-z", "--branch", "--no-ahead-behind", "--no-renames",
         "--untracked-files=all", "--ignore-submodules=dirty"],
        toplevel,
    )
    head: str | None = None
    paths: set[str] = set()
    untracked: set[str] = set()
    for record in out.split(b"\0"):
        if not record:
            continue
        kind = record[:1]
        if kind == b"#":
            if record.startswith(b"# branch.oid "):
                oid = record[len(b"# branch.oid "):].decode("ascii", errors="replace")
                head = None if oid == "(initial)" else oid
        elif kind == b"1":
            paths.add(decode_path(record.split(b" ", 8)[8]))
        elif kind == b"u":
            paths.add(decode_path(record.split(b" ", 10)[10]))
        elif kind == b"?":
            path = decode_path(record[2:])
            paths.add(path)
            untracked.add(path)
    return Status(head=head, paths=frozenset(paths), untracked=frozenset(untracked))


def empty_tree(toplevel: str) -> str:
    """The id of the empty tree in this repository's hash format (the baseline before a first commit)."""
    return git(["hash-object", "-t", "tree", "--stdin"], toplevel, stdin=b"").decode("ascii").strip()
