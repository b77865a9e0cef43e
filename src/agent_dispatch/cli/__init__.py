"""The `agent-dispatch` command line. Commands that do not serve MCP never import `mcp`.

Each command module has `register(group)`; every command runs inside the group's error
boundary (see `_common`): exit 0 ok, 1 failure, 2 usage error. The agent commands are
registered up front; the other modules (`doctor`, and `run` and `jobs`, which pull in the
dispatch engine) are registered only when a command is not found among those, or when help
lists them all, so `agent-dispatch list` imports neither the engine nor pydantic.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from agent_dispatch import __version__
from agent_dispatch.cli._common import BoundaryGroup

_EAGER_MODULES = ("agents",)
_DEFERRED_MODULES = ("doctor", "run", "jobs", "groups", "usage", "worktrees")


class _Group(BoundaryGroup):
    """Registers the deferred command modules the first time they are needed."""

    _deferred_done = False

    def _register_deferred(self) -> None:
        if not self._deferred_done:
            self._deferred_done = True
            _register(_DEFERRED_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is None and not self._deferred_done:
            self._register_deferred()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._register_deferred()
        return super().list_commands(ctx)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agent-dispatch")
def cli() -> None:
    """Hand work from Claude Code to agents that live in other project directories."""


def _register(modules: tuple[str, ...] = _EAGER_MODULES) -> None:
    for name in modules:
        importlib.import_module(f"agent_dispatch.cli.{name}").register(cli)


_register()


def main() -> None:
    import os

    # NO_COLOR (https://no-color.org): any non-empty value turns styling off, even on a terminal.
    color = False if os.environ.get("NO_COLOR") else None
    cli(prog_name="agent-dispatch", color=color)
