"""Text an agent CLI gave back: made safe to encode, and a JSON answer read out of a reply."""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE_RE = re.compile(r"```[ \t]*(?:json|JSON|json5)?[ \t]*\r?\n(.*?)\r?\n?[ \t]*```", re.DOTALL)
_SURROGATE_ESCAPE_RE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _reject_constant(name: str) -> Any:
    # NaN and infinities are not JSON; letting them through would break every JSON answer later.
    raise ValueError(f"{name} is not valid JSON")


def _loads(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


def clean_text(text: str) -> str:
    """`text` with lone surrogates replaced, so that it always encodes as UTF-8."""
    if text.isascii() or _SURROGATE_RE.search(text) is None:  # no copy of a long answer to check it
        return text
    return text.encode("utf-8", errors="replace").decode("utf-8")


def clean_value(value: Any) -> Any:
    """A parsed JSON value with every string passed through `clean_text`."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [clean_value(item) for item in value]
    if isinstance(value, dict):
        return {clean_text(key): clean_value(item) for key, item in value.items()}
    return value


def parse_json_answer(text: str) -> Any | None:
    """The JSON value in an agent's answer, or None when there is none.

    Accepts the bare value or one wrapped in a Markdown code fence (```json ... ```), with
    prose around the fence tolerated. NaN/Infinity are refused; never raises.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    ok, value = _loads(text.strip())
    if not ok:
        for match in _FENCE_RE.finditer(text):
            ok, value = _loads(match.group(1).strip())
            if ok:
                break
    if not ok:
        return None
    if _SURROGATE_ESCAPE_RE.search(text):
        value = clean_value(value)
    return value
