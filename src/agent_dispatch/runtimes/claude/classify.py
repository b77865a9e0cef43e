"""Turning what a `claude -p` run produced into the contract's DispatchResult.

A result object is trusted for what it says (success or an error subtype); its optional
fields are read leniently, so a paid answer is never lost to a malformed cost or turn count.
Without a result object the run failed; the error type then comes from stderr and the exit.
"""

from __future__ import annotations

import math
import re
import shlex
from typing import Any

from agent_dispatch.errors import (
    BudgetFailure,
    CliFailure,
    DispatchFailure,
    PermissionFailure,
    UsageLimitFailure,
)
from agent_dispatch.models import DENIED_TOOLS_MAX, DispatchResult, EffectiveAgent
from agent_dispatch.runs.outcome import RunOutcome, timeout_failure
from agent_dispatch.runs.text import clean_text, parse_json_answer

MESSAGE_MAX = 1000  # characters of CLI text quoted in an error message

_USAGE_RE = re.compile(
    r"usage limit|rate[ _-]?limit|too many requests|\b429\b|(?:hour|weekly|daily|opus|sonnet) limit reached|"
    r"limit reached\W+resets|quota exceeded|credit balance is too low",
    re.IGNORECASE,
)
_BUDGET_RE = re.compile(
    r"max(?:imum)?[ _-]?budget|budget\b.{0,30}\b(?:limit|cap|exceeded|reached)|spend(?:ing)? (?:cap|limit)", re.I
)
_PERMISSION_RE = re.compile(
    r"requested permissions? to|haven'?t granted|permission (?:to use \S+ )?(?:was |has been )?denied|"
    r"not (?:been )?(?:allowed|permitted) to use|requires (?:your )?approval",
    re.IGNORECASE,
)
_PERMISSION_TOOL_RE = re.compile(r"permissions? to (?:use )?([A-Za-z][\w.-]*(?:\([^)\n]{0,200}\))?)")
_LOGIN_RE = re.compile(r"not logged in|/login|invalid (?:x-)?api[ -]key|authenticat|\b401\b|unauthori[sz]ed",
                       re.IGNORECASE)
LOGIN_HINT = ("Log in to Claude Code (run `claude` in a terminal and type /login), or set ANTHROPIC_API_KEY to a "
              "valid key for the environment agent-dispatch runs in; then dispatch again.")
_TOOL_NAME_RE = re.compile(r"[^\x00-\x1f\x7f]{1,300}")


# ---- lenient field readers -------------------------------------------------------------------


def _str(value: Any) -> str | None:
    return clean_text(value) if isinstance(value, str) and value else None


def _cost(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def _tool_name(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or value.startswith("-") or not _TOOL_NAME_RE.fullmatch(value):
        return None
    return value


def denied_tools(result: dict[str, Any] | None, text: str = "") -> list[str]:
    """Names of the tools denied in a run (from `permission_denials`, else the error text), deduplicated."""
    names: list[str] = []
    denials = result.get("permission_denials") if result else None
    if isinstance(denials, list):
        for denial in denials:
            name = _tool_name(denial.get("tool_name") or denial.get("name")) if isinstance(denial, dict) else None
            name = name or _tool_name(denial)
            if name and name not in names:
                names.append(name)
    if not names and text:
        for match in _PERMISSION_TOOL_RE.finditer(text):
            name = _tool_name(match.group(1))
            if name and name not in names:
                names.append(name)
    return names[:DENIED_TOOLS_MAX]


def permission_hint(agent: EffectiveAgent | str, denied: list[str]) -> str:
    """The exact command that grants the denied tools on top of the agent's current ones."""
    name = agent if isinstance(agent, str) else agent.name
    existing = [] if isinstance(agent, str) else list(agent.allowed_tools)
    tools = existing + [tool for tool in denied if tool not in existing]
    if not tools:
        return f"Grant the tools the agent needs: `agent-dispatch update {name} --allowed-tools <Tool,Tool>`."
    command = f"agent-dispatch update {shlex.quote(name)} --allowed-tools {shlex.quote(','.join(tools))}"
    return f"To allow {', '.join(denied) or 'the denied tools'}, run: `{command}`"


_TOO_LONG_RE = re.compile(r"prompt is too long", re.IGNORECASE)


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


# ---- classification --------------------------------------------------------------------------


def _failure_from_result(agent: EffectiveAgent | str, result: dict[str, Any], text: str) -> DispatchFailure:
    name = agent if isinstance(agent, str) else agent.name
    subtype = result.get("subtype") if isinstance(result.get("subtype"), str) else ""
    errors = result.get("errors")
    errors = errors if isinstance(errors, list) else []
    error_text = " ".join(str(e) for e in errors if isinstance(e, (str, int, float)))
    said = _quote(text or error_text or subtype or "the CLI reported an error without a message")
    everything = " ".join((subtype, text, error_text))
    status = result.get("api_error_status")
    if "budget" in subtype or _BUDGET_RE.search(everything):
        current = agent.max_budget_usd if not isinstance(agent, str) else None
        raise_to = f"{current * 2:g}" if current else "<amount>"
        return BudgetFailure(
            f"agent {name} stopped at its spend cap: {said}",
            f"Raise the cap with `agent-dispatch update {name} --max-budget {raise_to}`, or resume the "
            "session with a smaller task.",
        )
    if status == 429 or _USAGE_RE.search(everything):
        return UsageLimitFailure(
            f"the Claude account hit its usage or rate limit: {said}",
            "Wait until the limit resets, then dispatch again (the session can be resumed).",
        )
    denied = denied_tools(result, everything)
    if denied or _PERMISSION_RE.search(everything):
        return PermissionFailure(f"agent {name} was denied a tool: {said}", permission_hint(agent, denied))
    # The real CLI says subtype "success" on API errors; terminal_reason names what really happened.
    reason = result.get("terminal_reason") if isinstance(result.get("terminal_reason"), str) else ""
    if not subtype.startswith("error"):
        subtype = ""
    if status == 401 or result.get("api_error_type") == "authentication_error" or _LOGIN_RE.search(everything):
        return CliFailure(f"claude is not logged in, or the API refused its key (HTTP 401): {said}", LOGIN_HINT)
    hint = (f"Resume the session to continue; to see the CLI's own output, run `claude -p` by hand in "
            f"{agent.directory if not isinstance(agent, str) else 'the agent directory'}.")
    if subtype == "error_max_turns":
        hint = "The agent ran out of turns; resume the session to let it continue."
    elif reason == "prompt_too_long" or _TOO_LONG_RE.search(everything):
        hint = "The prompt is larger than the model's context window: shorten the task or context and dispatch again."
    elif reason == "api_error" or isinstance(status, int):
        hint = "The model API refused the request; check the message, then dispatch again."
    label = reason if reason and reason != "completed" else subtype or "is_error"
    return CliFailure(f"claude reported an error ({label}): {said}", hint)


def _failure_without_result(name: str, outcome: RunOutcome) -> DispatchFailure:
    stderr = _quote(outcome.stderr.strip()[-MESSAGE_MAX:]) if outcome.stderr.strip() else ""
    if _USAGE_RE.search(stderr):
        return UsageLimitFailure(
            f"the Claude account hit its usage or rate limit: {stderr}",
            "Wait until the limit resets, then dispatch again.",
        )
    if outcome.output_size == 0:
        what = "claude printed nothing"
    else:
        what = "claude's output held no result object (truncated or malformed JSON)"
    code = outcome.exit_code
    if code is not None and code < 0:
        what += f"; it was killed by signal {-code}"
    elif code is not None:
        what += f"; exit code {code}"
    if stderr:
        what += f"; stderr: {stderr}"
    if _LOGIN_RE.search(stderr):
        return CliFailure(f"claude is not logged in, or the API refused its key: {what}", LOGIN_HINT)
    option = _REFUSED_OPTION_RE.search(stderr)
    if option:
        return CliFailure(
            f"claude refused the command line agent-dispatch built: {what}",
            f"Run `agent-dispatch doctor`: it checks every option and permission mode against this claude "
            f"(for a refused permission mode: `agent-dispatch update {name} --permission-mode none`).",
        )
    hint = ("Run `agent-dispatch doctor`; to see the CLI's own output, run `claude -p` by hand in the agent's "
            "directory.")
    return CliFailure(what, hint)


_REFUSED_OPTION_RE = re.compile(r"option '[^']*' argument '[^']*' is invalid|unknown option|error: option", re.I)


def classify(agent: EffectiveAgent | str, outcome: RunOutcome, response_format: str = "") -> DispatchResult:
    """The DispatchResult for a finished run. Never raises."""
    name = agent if isinstance(agent, str) else agent.name
    result = outcome.result
    session = (_str(result.get("session_id")) if result else None) or outcome.session_id
    if result is None:
        if outcome.timed_out:
            exc: DispatchFailure = timeout_failure(name, outcome, session)
        else:
            exc = _failure_without_result(name, outcome)
        return DispatchResult.failure(
            name, exc, session_id=session, result=clean_text(outcome.last_text), duration_ms=outcome.duration_ms
        )

    text = result.get("result")
    text = clean_text(text) if isinstance(text, str) else ""
    cli_duration = _count(result.get("duration_ms"))
    fields: dict[str, Any] = {
        "session_id": session,
        "cost_usd": _cost(result.get("total_cost_usd")),
        "duration_ms": cli_duration if cli_duration is not None else outcome.duration_ms,
        "num_turns": _count(result.get("num_turns")),
        "result": text,
    }
    subtype = result.get("subtype")
    failed = result.get("is_error") is True or (isinstance(subtype, str) and subtype.startswith("error"))
    if failed:
        failure = _failure_from_result(agent, result, text)
        denied = denied_tools(result, text) if isinstance(failure, PermissionFailure) else []
        return DispatchResult.failure(name, failure, denied_tools=denied, **fields)
    denied = denied_tools(result)
    parsed = parse_json_answer(text) if response_format.strip().lower() == "json" else None
    return DispatchResult(
        agent=name,
        success=True,
        parsed_result=parsed,
        denied_tools=denied,
        hint=permission_hint(agent, denied) if denied else None,
        **fields,
    )
