"""The CLI's one error boundary and small printing helpers shared by every command module.

Exit codes: 0 success, 1 failure (an `AgentDispatchError`: one readable line plus a fix, never a
traceback), 2 usage error (click's own, or `usage_errors()` for a malformed option value).
The top-level group runs every command inside `error_boundary()`, so command modules only
raise; they may also use it, or `fail()`, directly.

With `--json` (see `json_option`), a command prints its data as JSON on stdout, and so are its
errors: `{"error": ..., "hint": ...}` on stdout, usage errors included, with the same exit code.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import click

from agent_dispatch.errors import AgentDispatchError, BadArgumentError

F = TypeVar("F", bound=Callable[..., Any])

JSON_FLAG = "agent_dispatch.json"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def json_mode(ctx: click.Context | None = None) -> bool:
    """Whether the running command was given `--json`."""
    ctx = ctx or click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(JSON_FLAG))


def _mark_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[JSON_FLAG] = True
    return value


def json_option(help: str = "Print the answer as JSON (errors too).") -> Callable[[F], F]:  # noqa: A002
    """The `--json` flag every data or result command takes (passed to the command as `as_json`)."""
    return click.option("--json", "as_json", is_flag=True, is_eager=True, expose_value=True,
                        callback=_mark_json, help=help)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def echo_error(message: str, hint: str | None = None, label: str = "Error") -> None:
    """Print `Error: ...` (or another `label`) and, when given, `Hint: ...` to stderr."""
    click.echo(f"{label}: {_one_line(message)}", err=True)
    if hint:
        click.echo(f"Hint: {_one_line(hint)}", err=True)


def fail(message: str, hint: str | None = None, code: int = 1, **extra: Any) -> NoReturn:
    """Report a failure (as a JSON envelope under --json) and exit with `code`."""
    if json_mode():
        echo_json({"error": _one_line(message), **({"hint": _one_line(hint)} if hint else {}), **extra})
    else:
        echo_error(message, hint)
    raise click.exceptions.Exit(code)


@contextlib.contextmanager
def error_boundary() -> Iterator[None]:
    """Turn an AgentDispatchError into one readable line plus its fix, and exit 1."""
    try:
        yield
    except AgentDispatchError as exc:
        fail(exc.message, exc.cli_hint or exc.hint)


@contextlib.contextmanager
def usage_errors(param_hint: str | None = None) -> Iterator[None]:
    """Turn a BadArgumentError raised while parsing command-line values into a usage error (exit 2)."""
    try:
        yield
    except BadArgumentError as exc:
        hint = exc.cli_hint or exc.hint
        message = f"{exc.message}. {hint}" if hint else exc.message
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


def _json_in_args(ctx: click.Context) -> bool:
    """`--json` among the words not parsed yet (a usage error may come before its callback ran)."""
    words = list(getattr(ctx, "_protected_args", []) or []) + list(ctx.args or [])
    if "--" in words:
        words = words[: words.index("--")]
    return "--json" in words


class BoundaryGroup(click.Group):
    """A click group whose every subcommand runs inside `error_boundary()`; under --json a usage
    error is a JSON envelope too."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with error_boundary():
                return super().invoke(ctx)
        except click.UsageError as exc:
            if not (json_mode(ctx) or _json_in_args(ctx)):
                raise
            command = exc.ctx.command_path if exc.ctx is not None else "agent-dispatch"
            echo_json({"error": _one_line(exc.format_message()),
                       "hint": f"Run `{command} --help` for the usage.", "usage_error": True})
            raise click.exceptions.Exit(exc.exit_code) from None
