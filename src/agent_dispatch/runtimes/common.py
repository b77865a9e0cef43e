"""What the Codex and Gemini runtimes share: refusing unsupported settings, permission mapping,
reading token usage, naming a failure from a CLI's message, and the results of a run that
never finished or that answered."""

from __future__ import annotations

import math
import re
from typing import Any

from agent_dispatch.errors import CliFailure, DispatchFailure, InvalidInputFailure, UsageLimitFailure
from agent_dispatch.models import DispatchResult, EffectiveAgent
from agent_dispatch.runs.outcome import RunOutcome, timeout_failure
from agent_dispatch.runs.text import parse_json_answer

MESSAGE_MAX = 1000  # characters of CLI text quoted in an error message

USAGE_RE = re.compile(
    r"usage limit|rate[ _-]?limit|too many requests|\b429\b|quota|resource[ _]exhausted|insufficient[ _]quota",
    re.IGNORECASE,
)
LOGIN_RE = re.compile(
    r"\b401\b|unauthori[sz]ed|invalid api key|api[ _-]?key|not logged in|authenticat|missing environment variable|"
    r"\blog ?in\b",
    re.IGNORECASE,
)

# Claude Code's permission modes (what users write in agents.yaml) -> the closest mode of a CLI.
# Each runtime also accepts its own CLI's mode names as they are.
CLAUDE_MODES = ("default", "acceptEdits", "plan", "dontAsk", "bypassPermissions")


def quote(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "…"


def refuse_unsupported(agent: EffectiveAgent, label: str, modes: dict[str, Any], supports: str) -> None:
    """InvalidInputFailure naming the first setting `agent` holds that the runtime cannot honour.

    `modes` maps the permission_mode values the runtime accepts; `supports` says in a few words
    what it does support, for the error message.
    """
    refused = []
    if agent.max_budget_usd is not None:
        refused.append("max_budget_usd (a per-run spend cap)")
    if agent.allowed_tools:
        refused.append("allowed_tools")
    if agent.disallowed_tools:
        refused.append("disallowed_tools")
    if agent.permission_mode and agent.permission_mode not in modes:
        refused.append(f"permission_mode {agent.permission_mode!r}")
    if refused:
        raise InvalidInputFailure(
            f"agent {agent.name} runs on {label}, which cannot honour: {', '.join(refused)}",
            f"{label} supports {supports}; permission_mode one of {', '.join(modes)}. Leave the others out "
            f"(on an existing agent: `agent-dispatch update {agent.name} --max-budget none --allowed-tools none "
            "--disallowed-tools none`), unset the settings.default_* they come from, or use --runtime claude.",
        )


def count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value):
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def usage_from(stats: Any, keys: tuple[str, ...]) -> dict[str, int] | None:
    """The token counts under `keys` in a CLI's stats object, or None when it has none."""
    if not isinstance(stats, dict):
        return None
    usage = {key: n for key in keys if (n := count(stats.get(key))) is not None}
    return usage or None


def api_failure(cli: str, name: str, message: str) -> DispatchFailure:
    """The failure for an error the CLI reported from the model API (or its own checks)."""
    said = quote(message or f"{cli} reported an error without a message")
    if USAGE_RE.search(message):
        return UsageLimitFailure(
            f"the {cli} account hit its usage or rate limit: {said}",
            "Wait until the limit resets, then dispatch again (the session can be resumed).",
        )
    if LOGIN_RE.search(message):
        return CliFailure(
            f"{cli} could not authenticate: {said}",
            f"Log the {cli} CLI in (run it once in a terminal) or set its API key variable, then "
            f"`agent-dispatch test {name}`.",
        )
    return CliFailure(
        f"{cli} reported an error: {said}",
        "The model API or the CLI refused the run; check the message, then dispatch again "
        "(the session can be resumed).",
    )


def exit_failure(cli: str, name: str, outcome: RunOutcome, what: str, hint: str = "") -> DispatchFailure:
    """The failure of a run that ended without its final record."""
    stderr = quote(outcome.stderr.strip()[-MESSAGE_MAX:]) if outcome.stderr.strip() else ""
    code = outcome.exit_code
    if code is not None and code < 0:
        what += f"; it was killed by signal {-code}"
    elif code is not None:
        what += f"; exit code {code}"
    if stderr:
        what += f"; stderr: {stderr}"
    if stderr and USAGE_RE.search(stderr):
        return UsageLimitFailure(what, "Wait until the limit resets, then dispatch again.")
    if not hint and stderr and LOGIN_RE.search(stderr):
        hint = f"Log the {cli} CLI in (run it once in a terminal) or set its API key variable."
    return CliFailure(what, hint or f"Run `agent-dispatch test {name}` to see what the CLI does in that directory.")


def unfinished(cli: str, name: str, outcome: RunOutcome, fields: dict[str, Any], what: str,
               hint: str = "") -> DispatchResult:
    """The result of a run that left no final record: timed out, or ended (see `exit_failure`)."""
    if outcome.timed_out:
        failure: DispatchFailure = timeout_failure(name, outcome, outcome.session_id)
    else:
        failure = exit_failure(cli, name, outcome, what, hint)
    return DispatchResult.failure(name, failure, result=outcome.last_text, **fields)


def answered(name: str, text: str, response_format: str, fields: dict[str, Any]) -> DispatchResult:
    """The result of a run that answered `text` (parsed too when JSON was asked for)."""
    parsed = parse_json_answer(text) if response_format.strip().lower() == "json" else None
    return DispatchResult(agent=name, success=True, result=text, parsed_result=parsed, **fields)
