"""The CLI's one error boundary and small printing helpers shared by every command module.

Exit codes: 0 success, 1 failure (an `AgentDispatchError`: one readable line plus a fix, never a
traceback), 2 usage error (click's own, or `usage_errors()` for a malformed option value).
The top-level group runs every command inside `error_boundary()`, so command modules only
raise; they may also use it, or `fail()`, directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import click

from agent_dispatch.errors import AgentDispatchError, BadArgumentError

F = TypeVar("F", bound=Callable[..., Any])


def _one_line(text: str) -> str:
    return " ".join(text.split())


def echo_error(message: str, hint: str | None = None, label: str = "Error") -> None:
    """Print `Error: ...` (or another `label`) and, when given, `Hint: ...` to stderr."""
    click.echo(f"{label}: {_one_line(message)}", err=True)
    if hint:
        click.echo(f"Hint: {_one_line(hint)}", err=True)


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Report a failure and exit with `code`."""
    echo_error(message, hint)
    raise click.exceptions.Exit(code)


@contextlib.contextmanager
def error_boundary() -> Iterator[None]:
    """Turn an AgentDispatchError into one readable line plus its fix, and exit 1."""
    try:
        yield
    except AgentDispatchError as exc:
        fail(exc.message, exc.hint)


@contextlib.contextmanager
def usage_errors(param_hint: str | None = None) -> Iterator[None]:
    """Turn a BadArgumentError raised while parsing command-line values into a usage error (exit 2)."""
    try:
        yield
    except BadArgumentError as exc:
        message = f"{exc.message}. {exc.hint}" if exc.hint else exc.message
        raise click.BadParameter(_one_line(message), param_hint=param_hint) from None


def handle_errors(fn: F) -> F:
    """Decorator form of `error_boundary()` for a command callback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with error_boundary():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


boundary = handle_errors


class BoundaryGroup(click.Group):
    """A click group whose every subcommand runs inside `error_boundary()`."""

    def invoke(self, ctx: click.Context) -> Any:
        with error_boundary():
            return super().invoke(ctx)
