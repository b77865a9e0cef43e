"""The prompt, the JSON answer reader and the argv guards (no process needed)."""

from __future__ import annotations

import itertools

import pytest

from agent_dispatch.errors import InvalidInputFailure
from agent_dispatch.models import EffectiveAgent
from agent_dispatch.runner import JSON_INSTRUCTION, RunSpec, build_argv, build_prompt, parse_json_answer

OPTIONS = {
    "-p",
    "--output-format",
    "--verbose",
    "--resume",
    "--session-id",
    "--model",
    "--max-budget-usd",
    "--permission-mode",
    "--allowedTools",
    "--disallowedTools",
}


def test_plain_task_is_the_whole_prompt():
    assert build_prompt("Fix the bug") == "Fix the bug"


def test_sections_come_in_contract_order_and_blank_ones_are_left_out():
    prompt = build_prompt("do it", context="ctx", caller="infra", goal="ship", response_format="")
    assert prompt == "## Goal\nship\n\n## Dispatched by\ninfra\n\n## Context\nctx\n\n## Task\ndo it"
    prompt = build_prompt("do it", context="  ", caller="infra")
    assert prompt == "## Dispatched by\ninfra\n\n## Task\ndo it"


def test_json_format_appends_the_instruction():
    assert build_prompt("list files", response_format="json") == f"list files\n\n{JSON_INSTRUCTION}"
    assert build_prompt("x", goal="g", response_format="json").endswith(JSON_INSTRUCTION)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("  [1, 2]\n", [1, 2]),
        ('```json\n{"ok": true}\n```', {"ok": True}),
        ('Here you go:\n```json\n{"ok": true}\n```\nDone.', {"ok": True}),
        ("```\n[3]\n```", [3]),
        ('"just a string"', "just a string"),
    ],
)
def test_json_answers_are_parsed(text, expected):
    assert parse_json_answer(text) == expected


@pytest.mark.parametrize("text", ["", "no json here", '{"a": ', "NaN", '{"x": Infinity}', "[" * 100_000])
def test_unparseable_answers_give_none(text):
    assert parse_json_answer(text) is None


def test_lone_surrogates_in_a_json_answer_are_replaced():
    value = parse_json_answer('{"k": "a\\ud800b"}')
    value["k"].encode("utf-8")  # would raise on a lone surrogate
    assert value["k"].startswith("a") and value["k"].endswith("b")


def _agent(tmp_path, **kw) -> EffectiveAgent:
    return EffectiveAgent(name="infra", directory=str(tmp_path), timeout=30, **kw)


def test_argv_with_every_option(tmp_path):
    agent = _agent(
        tmp_path,
        model="sonnet",
        max_budget_usd=1.5,
        permission_mode="plan",
        allowed_tools=("Read", "Bash(git *)"),
        disallowed_tools=("Write",),
    )
    argv = build_argv(RunSpec(agent=agent, prompt="p", claude="claude", stream=True, resume="abc-123"))
    assert argv == [
        "claude", "-p", "--output-format", "stream-json", "--verbose", "--resume", "abc-123",
        "--model", "sonnet", "--max-budget-usd", "1.5", "--permission-mode", "plan",
        "--allowedTools", "Read", "Bash(git *)", "--disallowedTools", "Write",
    ]  # fmt: skip


def test_argv_minimal_uses_json_and_a_new_session_id(tmp_path):
    spec = RunSpec(agent=_agent(tmp_path), prompt="--dangerously-skip-permissions", claude="claude")
    assert build_argv(spec) == ["claude", "-p", "--output-format", "json"]
    argv = build_argv(spec, session_id="0b6f8c1e-55a5-4b8e-9a55-0d6b5f0d1c2e")
    assert argv[-2:] == ["--session-id", "0b6f8c1e-55a5-4b8e-9a55-0d6b5f0d1c2e"]
    assert spec.prompt not in argv


NASTY = ["-x", "--dangerously-skip-permissions", "-", "--", "-1"]
FIELDS = ["resume", "model", "permission_mode", "allowed_tools", "disallowed_tools", "session_id"]


def _spec_with(tmp_path, field: str, value: str) -> tuple[RunSpec, str | None]:
    agent_kw: dict = {}
    spec_kw: dict = {}
    session = None
    if field == "resume":
        spec_kw["resume"] = value
    elif field == "session_id":
        session = value
    elif field in ("allowed_tools", "disallowed_tools"):
        agent_kw[field] = ("Read", value)
    else:
        agent_kw[field] = value
    return RunSpec(agent=_agent(tmp_path, **agent_kw), prompt="x", claude="claude", **spec_kw), session


@pytest.mark.parametrize(("field", "value"), list(itertools.product(FIELDS, NASTY)))
def test_every_value_after_an_option_that_starts_with_a_dash_is_refused(tmp_path, field, value):
    spec, session = _spec_with(tmp_path, field, value)
    with pytest.raises(InvalidInputFailure) as info:
        build_argv(spec, session_id=session)
    assert info.value.error_type == "invalid_input"


def test_no_position_after_an_option_holds_a_dash_value(tmp_path):
    """Over many combinations of benign values, every non-option word is a value that cannot be an option."""
    values = ["sonnet", "plan", "Read", "Bash(rm -rf *)", "x-y", "a b"]
    for model, mode, tool in itertools.product(values, values, values):
        agent = _agent(tmp_path, model=model, permission_mode=mode, allowed_tools=(tool, "Grep"), max_budget_usd=0.25)
        argv = build_argv(RunSpec(agent=agent, prompt="-p --x", claude="claude", resume="s-1"))
        for word in argv[1:]:
            assert word in OPTIONS or not word.startswith("-"), argv


@pytest.mark.parametrize(
    "agent_kw",
    [{"model": "a\x00b"}, {"allowed_tools": ("",)}, {"disallowed_tools": ("  ",)}, {"max_budget_usd": -1.0}],
)
def test_nul_bytes_blank_tools_and_bad_budgets_are_refused(tmp_path, agent_kw):
    with pytest.raises(InvalidInputFailure):
        build_argv(RunSpec(agent=_agent(tmp_path, **agent_kw), prompt="x", claude="claude"))
