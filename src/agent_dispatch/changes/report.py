"""What a run changed in a git work tree: a snapshot before it, a report after it.

Before: one `git status` (HEAD and the paths that differ from it) and a fingerprint of each
path that was already dirty (its content digest, kept whole when small). After: the status
again. When HEAD has not moved and no path is newly dirty or changed again, that is all: a
clean run costs two `git status` calls. Otherwise the report is computed:

- paths that were clean before are compared with the old HEAD in one `git diff --raw --numstat -M`
  against the work tree, using a throw-away copy of the index in which new untracked files are
  marked intent-to-add (so they are diffed and renames are found, without writing any object
  or touching the real index);
- paths that were dirty before count only if their content changed again; they are compared
  with their content from before the run (`git diff --no-index`), so the user's own edits are
  never blamed on the run.

Paths are relative to the top of the work tree, as git shows them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from agent_dispatch.changes.git import (
    GitError,
    RepoInfo,
    Status,
    decode_path,
    empty_tree,
    encode_path,
    git,
    status,
)
from agent_dispatch.models import ChangeReport, FileChange

KEEP_BYTES = 256 * 1024  # a dirty file up to this size is kept whole, so its line counts can be told later
KEEP_TOTAL = 8 * 1024 * 1024  # at most this much dirty content is kept per snapshot
DIGEST_MAX = 2000  # dirty paths beyond this many are fingerprinted by their stat only
FILES_MAX = 500  # files listed in one report; the rest are counted in `omitted`


@dataclass(frozen=True)
class Fingerprint:
    """What a path held: kind ('missing', 'file', 'link', 'other'), size, and a digest or a stat stamp."""

    kind: str
    size: int = 0
    digest: bytes | None = None
    stamp: tuple[int, int] | None = None  # (mtime_ns, inode) when no digest was taken
    content: bytes | None = field(default=None, compare=False)

    def same_as(self, other: Fingerprint) -> bool:
        if self.kind != other.kind or self.size != other.size:
            return False
        if self.digest is not None and other.digest is not None:
            return self.digest == other.digest
        return self.stamp == other.stamp


def fingerprint(path: Path, *, digest: bool = True, keep: bool = False) -> Fingerprint:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Fingerprint("missing")
    except OSError:
        return Fingerprint("other")
    if stat.S_ISLNK(st.st_mode):
        target = os.fsencode(os.readlink(path))
        return Fingerprint("link", len(target), hashlib.sha1(target).digest(), content=target)  # noqa: S324
    if not stat.S_ISREG(st.st_mode):
        return Fingerprint("other", stamp=(st.st_mtime_ns, st.st_ino))
    if not digest:
        return Fingerprint("file", st.st_size, stamp=(st.st_mtime_ns, st.st_ino))
    hasher = hashlib.blake2b(digest_size=20)
    kept = bytearray() if keep and st.st_size <= KEEP_BYTES else None
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                hasher.update(chunk)
                if kept is not None:
                    kept += chunk
    except OSError:
        return Fingerprint("other", stamp=(st.st_mtime_ns, st.st_ino))
    return Fingerprint("file", st.st_size, hasher.digest(), content=bytes(kept) if kept is not None else None)


@dataclass
class Snapshot:
    """The state of a work tree just before a run."""

    repo: RepoInfo
    before: Status
    dirty: dict[str, Fingerprint]


def take_snapshot(repo: RepoInfo) -> Snapshot:
    """Note the work tree's state before a run (raises GitError when git cannot tell)."""
    before = status(repo.toplevel)
    dirty: dict[str, Fingerprint] = {}
    kept = 0
    top = Path(repo.toplevel)
    for index, path in enumerate(sorted(before.paths)):
        print_ = fingerprint(top / path, digest=index < DIGEST_MAX, keep=kept < KEEP_TOTAL)
        if print_.content is not None:
            kept += len(print_.content)
        dirty[path] = print_
    return Snapshot(repo=repo, before=before, dirty=dirty)


def report(snap: Snapshot) -> ChangeReport:
    """What changed since `snap` (raises GitError when git cannot tell)."""
    top = Path(snap.repo.toplevel)
    after = status(snap.repo.toplevel)
    again = {
        path for path, old in snap.dirty.items()
        if not fingerprint(top / path, digest=old.digest is not None).same_as(old)
    }
    newly = after.paths - snap.before.paths
    if after.head == snap.before.head and not newly and not again:
        return ChangeReport()
    files = _against_head(snap, after) if (newly or after.head != snap.before.head) else []
    files += [_again(top, path, snap.dirty[path]) for path in sorted(again)]
    return _summarise(files)


def _against_head(snap: Snapshot, after: Status) -> list[FileChange]:
    """Paths clean before the run that now differ from the HEAD the run started from."""
    repo = snap.repo
    base = snap.before.head or empty_tree(repo.toplevel)
    fresh = sorted(after.untracked - snap.before.paths)
    with tempfile.TemporaryDirectory(prefix="agent-dispatch-index-") as tmp:
        index = os.path.join(tmp, "index")
        try:
            shutil.copyfile(repo.index, index)
        except FileNotFoundError:
            pass  # no index yet: git starts from an empty one
        env = {"GIT_INDEX_FILE": index}
        if fresh:
            git(["add", "--intent-to-add", "--pathspec-from-file=-", "--pathspec-file-nul"], repo.toplevel,
                stdin=b"\0".join(encode_path(p) for p in fresh) + b"\0", env=env)
        out = git(["diff", "--raw", "--numstat", "-z", "-M", "--no-ext-diff", "--no-textconv",
                   "--ignore-submodules=dirty", base, "--"], repo.toplevel, env=env)
    return [change for change in _parse_diff(out) if change.path not in snap.dirty]


_STATUS = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed", "T": "modified", "C": "added"}


def _parse_diff(out: bytes) -> list[FileChange]:
    """Parse `git diff --raw --numstat -z`: the raw records, then one numstat record per file."""
    words = out.split(b"\0")
    changes: list[FileChange] = []
    i = 0
    while i < len(words) and words[i].startswith(b":"):
        letter = words[i].split(b" ")[-1][:1].decode("ascii")
        if letter in ("R", "C"):
            old, new = decode_path(words[i + 1]), decode_path(words[i + 2])
            i += 3
        else:
            old, new = None, decode_path(words[i + 1])
            i += 2
        status_name = _STATUS.get(letter, "modified")
        changes.append(FileChange(path=new, status=status_name, old_path=old if letter == "R" else None))
    # numstat records come in the same order: "ins\tdel\tpath" or, for a rename, "ins\tdel\t" + old + new.
    for change in changes:
        if i >= len(words):
            break
        ins, dels, rest = (words[i].split(b"\t", 2) + [b"", b""])[:3]
        i += 1 if rest else 3
        if ins == b"-":
            change.binary = True
        elif ins.isdigit() and dels.isdigit():
            change.insertions, change.deletions = int(ins), int(dels)
    return changes


def _again(top: Path, path: str, old: Fingerprint) -> FileChange:
    """A path dirty before the run whose content the run changed: compared with its content before."""
    now = fingerprint(top / path, keep=True)
    if old.kind == "missing":
        change = FileChange(path=path, status="added")
    elif now.kind == "missing":
        change = FileChange(path=path, status="deleted")
    else:
        change = FileChange(path=path, status="modified")
    before_text = b"" if old.kind == "missing" else old.content
    after_text = b"" if now.kind == "missing" else now.content
    if before_text is None or after_text is None:
        return change  # too large to keep: listed without line counts
    with tempfile.TemporaryDirectory(prefix="agent-dispatch-diff-") as tmp:
        a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        Path(a).write_bytes(before_text)
        Path(b).write_bytes(after_text)
        out = git(["diff", "--no-index", "--numstat", "--no-ext-diff", "--no-textconv", "--", a, b], tmp,
                  ok_codes=(0, 1))
    fields = out.split(b"\t", 2)
    if len(fields) == 3:
        if fields[0] == b"-":
            change.binary = True
        elif fields[0].isdigit() and fields[1].isdigit():
            change.insertions, change.deletions = int(fields[0]), int(fields[1])
    return change


def _summarise(files: list[FileChange]) -> ChangeReport:
    files.sort(key=lambda change: change.path)
    out = ChangeReport(
        files=files[:FILES_MAX],
        insertions=sum(change.insertions or 0 for change in files),
        deletions=sum(change.deletions or 0 for change in files),
    )
    if len(files) > FILES_MAX:
        out.omitted = len(files) - FILES_MAX
    return out


__all__ = ["GitError", "Snapshot", "report", "take_snapshot"]
