"""The prompt an agent receives (reading a JSON answer back is agent_dispatch.runs.text)."""

from __future__ import annotations

from agent_dispatch.runs.text import clean_text, clean_value, parse_json_answer

JSON_INSTRUCTION = (
    "## Response format\n"
    "Answer with exactly one JSON value (an object, array, string, number, boolean or null) and nothing "
    "else: no prose before or after it, no Markdown code fence."
)


def build_prompt(task: str, context: str = "", caller: str = "", goal: str = "", response_format: str = "") -> str:
    """The text sent to the agent on stdin.

    With a caller, goal or context the prompt is made of the sections `## Goal`, `## Dispatched by`,
    `## Context` and `## Task`, in that order, blank ones left out; without them it is the task
    itself. `response_format="json"` appends an instruction to answer with one JSON value only.
    """
    sections = [
        ("Goal", goal),
        ("Dispatched by", caller),
        ("Context", context),
    ]
    present = [f"## {title}\n{text}" for title, text in sections if text and text.strip()]
    prompt = "\n\n".join([*present, f"## Task\n{task}"]) if present else task
    if response_format.strip().lower() == "json":
        prompt = f"{prompt}\n\n{JSON_INSTRUCTION}"
    return prompt


__all__ = ["JSON_INSTRUCTION", "build_prompt", "clean_text", "clean_value", "parse_json_answer"]
