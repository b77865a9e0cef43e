"""`serve` and `test`: the commands that run dispatches."""

from __future__ import annotations

import sys

import click

from agent_dispatch.cli._common import boundary, echo_json, json_option

DEFAULT_TEST_TASK = "In two sentences: who are you, and what is this project?"


SERVE_ON_A_TERMINAL = """\
agent-dispatch serve speaks MCP (JSON-RPC) on stdin and stdout; Claude Code starts it, a person
does not type into it. To register it with Claude Code for all your projects, run
  agent-dispatch init
(or: claude mcp add -s user agent-dispatch -- {command}); then start a new Claude Code session.
Still serving on this terminal; press Ctrl-D or Ctrl-C to stop."""


@click.command()
def serve() -> None:
    """Serve the MCP tools over stdio (Claude Code starts this; see `agent-dispatch init`)."""
    if sys.stdin.isatty():
        from agent_dispatch.cli import doctor

        click.echo(SERVE_ON_A_TERMINAL.format(command=" ".join(doctor.server_command())), err=True)
    from agent_dispatch.server import serve as run_server

    run_server()


class _TaskCommand(click.Command):
    """`test`: an unknown option is most often a task that starts with '-'; say how to pass one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            exc.message += (" A TASK that starts with '-' goes after `--`: "
                            "agent-dispatch test NAME -- '-the task'.")
            raise


@click.command(cls=_TaskCommand)
@click.argument("name")
@click.argument("task", required=False, default=DEFAULT_TEST_TASK)
@click.option("--stream", is_flag=True, help="Show what the agent is doing while it works.")
@json_option("Print the result object as JSON (errors too).")
@boundary
def test(name: str, task: str, stream: bool, as_json: bool) -> None:
    """Run one dispatch to agent NAME through the same path the MCP tools use, and show the result.

    TASK defaults to a short self-description; `-` reads it from standard input.
    """
    from agent_dispatch.cli import _stop as stop
    from agent_dispatch.cli import live
    from agent_dispatch.dispatcher import Dispatcher, make_request

    if task == "-":
        task = click.get_text_stream("stdin").read()
    if not task.strip():
        raise click.BadParameter("the task is empty; say what the agent should do (or leave TASK out).",
                                 param_hint="TASK")

    dispatcher = Dispatcher()
    req = make_request(agent=name, task=task)
    dispatcher.agent(name)

    async def progress(message: str) -> None:
        click.echo(click.style("… ", fg="cyan") + message, err=True)

    async def quiet(message: str) -> None:
        pass

    async def go():
        # Always the stream path: what the agent does is seen as it happens (a refused login
        # ends in seconds, not after minutes of the CLI's retries).
        if stream:
            return await dispatcher.dispatch_stream(req, progress, tool="test")
        if live.wanted():
            # A person at a terminal sees the elapsed time and the latest activity on one line.
            return await live.run_with_status(
                f"{name}:", lambda status: dispatcher.dispatch_stream(req, status, interval=0.5, tool="test"))
        return await dispatcher.dispatch_stream(req, quiet, interval=1.0, tool="test")

    result = stop.run(go)  # SIGTERM, SIGHUP and Ctrl-C end the agent's process tree first
    if as_json:
        echo_json(result.to_json())
    elif result.success:
        click.echo(result.result)
        _footer(result)
    else:
        click.echo(click.style(f"failed ({result.error_type}): ", fg="red") + (result.error or ""), err=True)
        if result.result:
            click.echo(result.result)
        if result.hint:
            click.echo(click.style("fix: ", fg="yellow") + result.hint, err=True)
        if result.session_id:
            click.echo(f"session: {result.session_id}", err=True)
    if not as_json:
        _changes(result)
    if result.success and result.denied_tools and result.hint:
        click.echo(click.style("note: ", fg="yellow") + result.hint, err=True)
    sys.exit(0 if result.success else 1)


def _footer(result) -> None:
    bits = []
    if result.duration_ms is not None:
        bits.append(f"{result.duration_ms / 1000:.1f}s")
    if result.cost_usd is not None:
        bits.append(f"${result.cost_usd:.4f}")
    if result.num_turns is not None:
        bits.append(f"{result.num_turns} turn{'' if result.num_turns == 1 else 's'}")
    if result.session_id:
        bits.append(f"session {result.session_id}")
    if getattr(result, "host", None):
        bits.append(f"on {result.host}")
    if bits:
        click.echo(click.style(" · ".join(bits), dim=True), err=True)


def _changes(result) -> None:
    """What the run changed in its git tree, on stderr like the footer."""
    changes = result.changes
    if changes is None:
        return
    if changes.files:
        count = len(changes.files) + changes.omitted
        listed = ", ".join(f"{change.path} ({change.status})" for change in changes.files[:10])
        more = f", and {count - 10} more" if count > 10 else ""
        click.echo(f"changed {count} file{'s' if count != 1 else ''} (+{changes.insertions} -{changes.deletions}): "
                   f"{listed}{more}" + (" [another run worked in the same tree]" if changes.concurrent else ""),
                   err=True)
    if changes.worktree:
        click.echo(f"kept worktree {changes.worktree} on branch {changes.branch}", err=True)
    if result.warning:
        click.echo(click.style("warning: ", fg="yellow") + result.warning, err=True)


def register(group: click.Group) -> None:
    """Attach this module's commands to the top-level group."""
    group.add_command(serve)
    group.add_command(test)
