"""Where things live: the config file, the job records, and the `claude` executable."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_ENV = "AGENT_DISPATCH_CONFIG"
JOBS_DIR_ENV = "AGENT_DISPATCH_JOBS_DIR"
CLAUDE_ENV = "AGENT_DISPATCH_CLAUDE"
USAGE_LOG_ENV = "AGENT_DISPATCH_USAGE_LOG"
RUNTIME_DIR_ENV = "AGENT_DISPATCH_RUNTIME_DIR"


def default_config_path() -> Path:
    return Path.home() / ".config" / "agent-dispatch" / "agents.yaml"


def config_path() -> Path:
    """The config file: env AGENT_DISPATCH_CONFIG (~ expanded, made absolute), else the default."""
    value = os.environ.get(CONFIG_ENV, "").strip()
    if value:
        return Path(os.path.abspath(os.path.expanduser(value)))
    return default_config_path()


def jobs_dir(cfg_path: Path | None = None) -> Path:
    """The job records directory: env AGENT_DISPATCH_JOBS_DIR, else `jobs/` beside the config."""
    value = os.environ.get(JOBS_DIR_ENV, "").strip()
    if value:
        return Path(os.path.abspath(os.path.expanduser(value)))
    return (cfg_path if cfg_path is not None else config_path()).parent / "jobs"


def usage_log_path(cfg_path: Path | None = None) -> Path:
    """The usage journal: env AGENT_DISPATCH_USAGE_LOG, else `usage.jsonl` beside the config."""
    value = os.environ.get(USAGE_LOG_ENV, "").strip()
    if value:
        return Path(os.path.abspath(os.path.expanduser(value)))
    return (cfg_path if cfg_path is not None else config_path()).parent / "usage.jsonl"


def runtime_dir(cfg_path: Path | None = None) -> Path:
    """The per-user live state (user-wide slots, running registry): env AGENT_DISPATCH_RUNTIME_DIR,
    else `$XDG_RUNTIME_DIR/agent-dispatch`, else `run/` beside the config."""
    value = os.environ.get(RUNTIME_DIR_ENV, "").strip()
    if value:
        return Path(os.path.abspath(os.path.expanduser(value)))
    xdg = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return Path(xdg) / "agent-dispatch"
    return (cfg_path if cfg_path is not None else config_path()).parent / "run"


def claude_command() -> str | None:
    """The `claude` executable to run: env AGENT_DISPATCH_CLAUDE (a path or a name looked up on
    PATH), else `claude` on PATH. None when it cannot be found or is not executable."""
    import shutil

    value = os.environ.get(CLAUDE_ENV, "").strip()
    return shutil.which(os.path.expanduser(value) if value else "claude")


EXAMPLE_NAME = "agents.example.yaml"


def example_path() -> Path | None:
    """The commented example config shipped with the package (or, in a source checkout, the
    repository's copy); None when neither is there."""
    here = Path(__file__).resolve().parent.parent  # the agent_dispatch package
    for candidate in (here / EXAMPLE_NAME, here.parent.parent / EXAMPLE_NAME):
        if candidate.is_file():
            return candidate
    return None


def example_hint() -> str:
    """Where a person finds every key documented: a command that prints the example, and its file."""
    found = example_path()
    where = f" (the file: {found})" if found is not None else ""
    return f"`agent-dispatch example` prints a commented agents.yaml with every key{where}."
