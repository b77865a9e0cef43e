"""Knowing when two runs worked in one work tree at once, across every server of this user.

Each run in a tree leaves a marker `<tree>.<run>` in a private directory (`trees/` in the
per-user runtime directory) while it runs. A run that starts lists the markers of its tree:
any live one means both overlap, so it notes that for itself and leaves an `.overlap` flag
beside the other's marker. A run that ends is concurrent if it was flagged, saw another at its
start, or sees one at its end. Writing one's own marker before listing makes two runs that start
together see at least one another. A marker whose process is gone is swept by whoever meets it.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

from agent_dispatch.files import tighten_dir
from agent_dispatch.runner.tree import read_stat


def _tree_key(toplevel: str) -> str:
    return hashlib.sha256(os.fsencode(os.path.realpath(toplevel))).hexdigest()[:24]


def _me() -> dict[str, int | None]:
    stat = read_stat(os.getpid())
    return {"pid": os.getpid(), "start": stat.start if stat else None}


def _alive(marker: Path) -> bool:
    try:
        owner = json.loads(marker.read_bytes())
        pid = owner["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not isinstance(pid, int) or pid <= 0:
        return False
    stat = read_stat(pid)
    return stat is not None and stat.state != "Z" and stat.start == owner.get("start")


class TreeRun:
    """The marker of one run in one work tree; `end()` tells whether another run overlapped it."""

    def __init__(self, directory: Path, toplevel: str) -> None:
        self.directory = directory
        self.prefix = _tree_key(toplevel) + "."
        self.marker = directory / f"{self.prefix}{uuid.uuid4().hex}"
        self.concurrent = False
        self._written = False

    def begin(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            tighten_dir(self.directory)
            tmp = self.directory / f".tmp-{self.marker.name}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(_me(), fh)
            os.rename(tmp, self.marker)  # others only ever see a whole marker
            self._written = True
        except OSError:
            return  # without a marker directory only what this process sees is known
        for other in self._others():
            self.concurrent = True
            try:
                os.close(os.open(f"{other}.overlap", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
            except OSError:
                pass

    def end(self) -> bool:
        """Remove the marker; True when another run worked in the tree at any time during this one."""
        if not self._written:
            return self.concurrent
        flag = Path(f"{self.marker}.overlap")
        if flag.exists() or self._others():
            self.concurrent = True
        for path in (self.marker, flag):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        return self.concurrent

    def _others(self) -> list[Path]:
        found = []
        try:
            names = os.listdir(self.directory)
        except OSError:
            return found
        for name in names:
            if not name.startswith(self.prefix) or name.endswith(".overlap"):
                continue
            path = self.directory / name
            if path == self.marker:
                continue
            if _alive(path):
                found.append(path)
            else:  # its server died mid-run
                for stale in (path, Path(f"{path}.overlap")):
                    try:
                        stale.unlink()
                    except OSError:
                        pass
        return found
