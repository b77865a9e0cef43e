"""How every tool answers: one JSON value as text and (for objects) structured content.

Claude Code hands the model the structured content and drops the text, so hints and errors
always sit inside the JSON. `boundary` turns every exception into the contract's envelope.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from mcp_types import CallToolResult, TextContent
from pydantic import ValidationError

from agent_dispatch import config as configmod
from agent_dispatch.errors import AgentDispatchError, BadArgumentError


def answer(value: Any, *, is_error: bool = False) -> CallToolResult:
    text = json.dumps(value, ensure_ascii=False, default=str)
    structured = value if isinstance(value, dict) else None
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=structured, is_error=is_error
    )


def envelope(exc: AgentDispatchError) -> CallToolResult:
    return answer(exc.envelope(), is_error=True)


def internal(exc: BaseException) -> CallToolResult:
    name = type(exc).__name__
    return answer(
        {"error": f"internal error ({name}): {str(exc)[:300]}", "hint": "Try again; if it persists, run "
         "`agent-dispatch doctor` and report the error."},
        is_error=True,
    )


def boundary(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[CallToolResult]]:
    """Turn every answer into JSON and every error into the contract's envelope, never a traceback."""

    @wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> CallToolResult:
        try:
            value = await fn(*args, **kwargs)
            # A call answered from a task job comes back already shaped (as it was stored).
            return value if isinstance(value, CallToolResult) else answer(value)
        except AgentDispatchError as exc:
            return envelope(exc)
        except ValidationError as exc:
            return envelope(BadArgumentError(short_validation(exc)))
        except Exception as exc:  # noqa: BLE001 - the server must answer, whatever went wrong
            return internal(exc)

    return wrapper


def wire(result: CallToolResult) -> dict[str, Any]:
    """A tool answer as JSON the way it goes inside a task (`content`, `structuredContent`, `isError`)."""
    out = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    out.pop("resultType", None)
    return out


def short_validation(exc: ValidationError) -> str:
    return "invalid arguments: " + configmod.describe_validation(exc)


def finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadArgumentError(f"{name} must be a finite number")
    return float(value)
