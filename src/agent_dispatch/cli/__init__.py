"""The `agent-dispatch` command line. Commands that do not serve MCP never import `mcp`."""

from __future__ import annotations

import click

from agent_dispatch import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agent-dispatch")
def cli() -> None:
    """Hand work from Claude Code to agents that live in other project directories."""


def _register() -> None:
    from agent_dispatch.cli import jobs, run

    run.register(cli)
    jobs.register(cli)


_register()


def main() -> None:
    cli(prog_name="agent-dispatch")
