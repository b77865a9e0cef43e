"""The dispatch protocol: what a dispatched agent is told, and reading back how it ended.

Runtime-neutral: it works on text only. `system_prompt` is the text a runtime passes through
its system-prompt option; `read_status` lifts the trailing `STATUS:` line (and a `QUESTION:`
before it) out of an answer; `apply_outcome` applies both to a finished DispatchResult and is
called from one place (the runner's result funnel), so every runtime gets it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from agent_dispatch.models import DispatchResult, Outcome
from agent_dispatch.runs.text import parse_json_answer

OUTCOMES: tuple[Outcome, ...] = ("done", "partial", "blocked")

_PROTOCOL = """\
# You were dispatched by another agent
Another agent handed you this task through agent-dispatch. You run non-interactively: nobody \
reads your messages while you work and nobody can answer a question mid-run.
- Do not ask and wait. Where something is unclear, choose the most reasonable assumption, say \
which one you made, and carry on.
- Your time budget is {budget}; the run is stopped when it is spent. Scope the work to fit it.
- Lead with the answer, then the supporting detail. Do not end with offers or plans \
("I can also...", "Next I will...") - do the work now or say what is left.
- End your reply with exactly one last line saying how the task ended:
  `STATUS: done` - the task is complete;
  `STATUS: partial` - you did part of it; say above what is missing;
  `STATUS: blocked` - you cannot continue without an answer only a person can give. Then put \
the question on its own line just before the STATUS line: `QUESTION: <one clear question>`. \
The session is resumed with the answer."""

_JSON_RULE = """
- The task asks for JSON: your answer is exactly one JSON value and nothing else, except that \
the QUESTION and STATUS lines go after the JSON value, on their own lines, never inside it."""

_INSTRUCTIONS = "# Standing instructions for this agent\n{text}"


def _budget(seconds: float) -> str:
    seconds = max(1, int(seconds))
    if seconds < 120:
        return f"{seconds} seconds"
    minutes = seconds / 60
    return f"about {minutes:.0f} minutes ({seconds} seconds)"


def system_prompt(
    *, protocol: bool, timeout: float, response_format: str = "", instructions: str | None = None
) -> str | None:
    """The text added to the agent's system prompt, or None when there is nothing to add.

    The protocol (when `protocol`) comes first, then the agent's standing `instructions`.
    The text never starts with '-', so it is safe as the value of a command-line option.
    """
    parts = []
    if protocol:
        text = _PROTOCOL.format(budget=_budget(timeout))
        if response_format.strip().lower() == "json":
            text += _JSON_RULE
        parts.append(text)
    if instructions and instructions.strip():
        parts.append(_INSTRUCTIONS.format(text=instructions.strip()))
    return "\n\n".join(parts) or None


class Status(NamedTuple):
    """An answer with its trailing STATUS / QUESTION lines lifted out."""

    text: str
    outcome: Outcome | None = None
    question: str | None = None


# Markdown an agent may wrap a line in: emphasis, code ticks, quote marks, headings, bullets.
_DECOR = "*_`~"
_LEAD_RE = re.compile(r"^[\s>#\-+•]*")
_STATUS_RE = re.compile(r"^status\s*[:=]\s*(done|partial|blocked)\b[\s.!:;,)\]-]*(.*)$", re.IGNORECASE)
_QUESTION_RE = re.compile(r"^question\s*[:=]\s*(.*)$", re.IGNORECASE | re.DOTALL)
_RULE_RE = re.compile(r"^\s*(?:```+|~~~+|-{3,}|\*{3,}|_{3,})\s*$")  # a fence or rule alone on a line
_QUESTION_LOOKBACK = 12  # lines above the STATUS line searched for a multi-line question
_TAIL_LINES = 40  # lines at the end of an answer that are read for STATUS / QUESTION


def _plain(line: str) -> str:
    """A line without its markdown decoration, for matching a label."""
    line = _LEAD_RE.sub("", line)
    return "".join(ch for ch in line if ch not in _DECOR).strip()


def _is_blank(line: str) -> bool:
    return not line.strip() or _RULE_RE.match(line) is not None


def read_status(text: str) -> Status:
    """Lift the trailing STATUS line (and, when blocked, the QUESTION before it) out of `text`.

    Only the last non-blank line counts (a fence or rule after it is tolerated), so a STATUS
    line in the middle of an answer is left alone. Without one, nothing is invented. Only the
    last lines are looked at, so a huge answer costs no more than a short one.
    """
    if not isinstance(text, str) or "status" not in text[-2000:].lower():
        return Status(text)
    cut = len(text)
    for _ in range(_TAIL_LINES):  # the start of the last lines, found from the end: O(tail), not O(text)
        cut = text.rfind("\n", 0, cut)
        if cut < 0:
            break
    base = cut + 1 if cut >= 0 else 0
    lines = text[base:].split("\n")
    end = len(lines)
    closing_fence = False
    while end and _is_blank(lines[end - 1]):
        closing_fence = closing_fence or lines[end - 1].strip().startswith(("```", "~~~"))
        end -= 1
    match = _STATUS_RE.match(_plain(lines[end - 1])) if end else None
    if match is None:
        return Status(text)
    outcome: Outcome = match.group(1).lower()  # type: ignore[assignment]
    detail = match.group(2).strip(" " + _DECOR)
    start, question = _lift_question(lines, end - 1) if outcome == "blocked" else (end - 1, None)
    kept = lines[:start]
    while kept and _is_blank(kept[-1]) and not kept[-1].strip().startswith(("```", "~~~")):
        kept.pop()
    body = text[: base + len("\n".join(kept))].rstrip()  # one slice of the original, however long
    if closing_fence and _unbalanced_fence(body):  # the STATUS sat inside a closing fence: keep it closed
        body += "\n```"
    if detail:
        body = f"{body}\n\n{detail}" if body else detail
    return Status(body, outcome, question)


def _lift_question(lines: list[str], status_index: int) -> tuple[int, str | None]:
    """(index where the lifted part starts, the question) for the lines above a STATUS line."""
    index = status_index
    while index and _is_blank(lines[index - 1]):
        index -= 1
    for top in range(index - 1, max(-1, index - 1 - _QUESTION_LOOKBACK), -1):
        match = _QUESTION_RE.match(_plain(lines[top]))
        if match is not None:
            rest = [match.group(1)] + [_plain(line) for line in lines[top + 1 : index]]
            question = "\n".join(part for part in rest if part).strip()
            return (top, question) if question else (status_index, None)
    return status_index, None


def _unbalanced_fence(text: str) -> bool:
    return sum(1 for line in text.split("\n") if line.strip().startswith("```")) % 2 == 1


def continuation_hint(agent: str, session_id: str | None, outcome: str, question: str | None = None) -> str:
    """The exact dispatch_session call that continues a partial or blocked run."""
    if not session_id:
        return f"The agent ended {outcome}; dispatch again with what it needs."
    what = "with the answer to its question as the task" if outcome == "blocked" else "with what is still to do"
    call = f"dispatch_session(agent={agent!r}, session_id={session_id!r}, task=...)"
    asked = f" It asks: {question}" if question else ""
    return f"The agent ended {outcome}.{asked} Continue the same session with {call}, {what}."


def apply_outcome(result: DispatchResult, response_format: str = "") -> DispatchResult:
    """`result` with its STATUS / QUESTION lifted into `outcome` / `question` and, for partial or
    blocked, a hint naming the call that continues it. Failed results are returned as they are."""
    if not result.success or result.outcome is not None:
        return result
    status = read_status(result.result)
    if status.outcome is None:
        return result
    update: dict[str, object] = {"result": status.text, "outcome": status.outcome, "question": status.question}
    if response_format.strip().lower() == "json":
        update["parsed_result"] = parse_json_answer(status.text)
    if status.outcome != "done":
        hint = continuation_hint(result.agent, result.session_id, status.outcome, status.question)
        update["hint"] = f"{result.hint} {hint}" if result.hint else hint
    return result.model_copy(update=update)


def with_system_text(system: str, prompt: str) -> str:
    """The prompt of a runtime that has no system-prompt option: the protocol text first."""
    return f"{system}\n\n---\n\n{prompt}"


def answer_prompt(question: str, answer: str) -> str:
    """The prompt that resumes a blocked session with the human's answer (sent on stdin)."""
    return (
        "The person behind the dispatch answered your question.\n\n"
        f"## Your question\n{question}\n\n## Their answer\n{answer}\n\n"
        "Continue the task with this answer, and end with the STATUS line as before."
    )


def with_clarifications(
    final: DispatchResult, runs: list[DispatchResult], rounds: list[dict[str, str]]
) -> DispatchResult:
    """The last run's result carrying the questions asked and the totals of every run."""
    costs = [run.cost_usd for run in runs if run.cost_usd is not None]
    durations = [run.duration_ms for run in runs if run.duration_ms is not None]
    turns = [run.num_turns for run in runs if run.num_turns is not None]
    return final.model_copy(update={
        "clarifications": [dict(item) for item in rounds],
        "cost_usd": round(sum(costs), 6) if costs else None,
        "duration_ms": sum(durations) if durations else None,
        "num_turns": sum(turns) if turns else None,
        "session_id": final.session_id or runs[0].session_id,
    })
