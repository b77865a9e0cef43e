"""The agent CLIs agent-dispatch can run, one module each, and the table that names them.

Adding a CLI: write a module with a `Runtime` subclass (see base.py), add it to RUNTIMES, and
its name to models.RUNTIME_NAMES (what a config may name).
"""

from __future__ import annotations

from agent_dispatch.runtimes import claude, codex, gemini
from agent_dispatch.runtimes.base import OutputReader, Runtime

RUNTIMES: dict[str, Runtime] = {
    claude.RUNTIME.name: claude.RUNTIME,
    codex.RUNTIME.name: codex.RUNTIME,
    gemini.RUNTIME.name: gemini.RUNTIME,
}
DEFAULT_RUNTIME = "claude"


def get_runtime(name: str | None) -> Runtime:
    """The runtime called `name` (None: the default); KeyError for an unknown one."""
    return RUNTIMES[name or DEFAULT_RUNTIME]


__all__ = ["DEFAULT_RUNTIME", "RUNTIMES", "OutputReader", "Runtime", "get_runtime"]
