"""Putting `agent-dispatch` on PATH after an install into its own virtual environment.

`init` links `~/.local/bin/agent-dispatch` to the running script (creating the directory) when
`agent-dispatch` on PATH is not already this one, never replacing a file that is there, and says
when `~/.local/bin` is not on PATH. It answers the command a person should type from now on.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path


def _same(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def link_dir() -> Path:
    return Path.home() / ".local" / "bin"


def _dir_on_path(directory: Path) -> bool:
    return any(part and _same(part, directory) for part in os.environ.get("PATH", "").split(os.pathsep))


def ensure_on_path(script: str) -> tuple[str, list[str]]:
    """(the command to type, lines to tell the person) so that `script` can be run by name."""
    found = shutil.which("agent-dispatch")
    if found and _same(found, script):
        return "agent-dispatch", []
    directory = link_dir()
    link = directory / "agent-dispatch"
    told: list[str] = []
    if os.path.lexists(link):
        if not _same(link, script):
            told.append(f"{link} already exists and is not this agent-dispatch; it was left as it is.")
            return shlex.quote(script), told
    else:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            link.symlink_to(script)
        except OSError as exc:
            told.append(f"Could not link {link} to {script}: {exc.strerror or exc}.")
            return shlex.quote(script), told
        told.append(f"Linked {link} -> {script}, so `agent-dispatch` can be typed by name.")
    if not _dir_on_path(directory):
        told.append(f"{directory} is not on your PATH yet. Add it, e.g. "
                    "`echo 'export PATH=\"$HOME/.local/bin:$PATH\"' >> ~/.profile`, then open a new shell "
                    f"(many systems add it by themselves at the next login now that it exists). "
                    f"Until then, type {link}.")
        return shlex.quote(str(link)), told
    if found and not _same(found, link):
        told.append(f"Note: `agent-dispatch` on your PATH is {found}, which comes before {directory}; "
                    f"type {link} to run this one.")
        return shlex.quote(str(link)), told
    return "agent-dispatch", told
