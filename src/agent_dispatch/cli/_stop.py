"""Running a command's async work so that every stop signal ends it the way Ctrl-C does.

An agent's `claude` runs in its own session, so a closed terminal never reaches it, and Python
dies at once on SIGTERM or SIGHUP: the agent was left running (and billing). `run()` turns
SIGTERM, SIGHUP and SIGINT into a cancellation of the work instead, so the runner's shielded
clean-up kills the run's whole process tree, and the command then exits 128 + the signal's
number, as a shell reports a process stopped by it. Signals that arrive during the clean-up
are absorbed, so a second Ctrl-C cannot cut it short.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

T = TypeVar("T")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def run(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`anyio.run(fn, *args)`, stopped cleanly by a stop signal (then this exits 128 + its number)."""
    import anyio

    stopped: list[signal.Signals] = []
    answer: list[T] = []

    async def main() -> None:
        with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async with anyio.create_task_group() as tg:
                work = anyio.CancelScope()

                async def watch() -> None:
                    async for signum in signals:
                        if not stopped:
                            stopped.append(signal.Signals(signum))
                            work.cancel()

                tg.start_soon(watch)
                with work:
                    answer.append(await fn(*args))
                tg.cancel_scope.cancel()

    anyio.run(main)
    if stopped:
        _report(stopped[0])
    return answer[0]


def _report(signum: signal.Signals) -> None:
    try:
        click.echo(f"Stopped by {signum.name}; nothing the agent started is left running.", err=True)
    except OSError:
        pass  # the terminal is gone (SIGHUP): nobody is left to tell
    sys.exit(128 + signum)
