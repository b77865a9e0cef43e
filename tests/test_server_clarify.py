"""A blocked agent's question put to the human through the SDK client's elicitation, over stdio,
in both protocol dialects: 2026-07-28 (an input_required round, the tool called again with the
answer) and 2025-11-25 (`elicitation/create` mid-call)."""

from __future__ import annotations

import json

import pytest
from mcp_types import ElicitResult

from mcp_client import call, connect, connect_with

# Blocked until the prompt carries an answer; each answer is echoed, and the agent asks again
# while the answer says "more".
ASKING_BODY = """
prompt = read_prompt(); record(prompt)
if "## Their answer" in prompt:
    answer = prompt.split("## Their answer\\n", 1)[1].split("\\n\\nContinue the task", 1)[0]
    if "more" in answer:
        emit_result("Thanks.\\nQUESTION: And the size?\\nSTATUS: blocked")
    else:
        emit_result("Deployed to " + answer + "\\nSTATUS: done")
else:
    emit_result("I need to know.\\n\\nQUESTION: Which region, eu or us?\\nSTATUS: blocked")
"""

MODES = [pytest.param({}, id="2026-07-28"), pytest.param({"mode": "legacy"}, id="2025-11-25")]


@pytest.fixture
def infra(write_config, project):
    def make(settings: str = "") -> None:
        write_config(f"""
            agents:
              infra: {{directory: {project("infra")}, timeout: 30}}
            settings:
              {settings or "max_concurrency: 2"}
        """)

    make()
    return make


def answering(*replies: tuple[str, str | None]):
    """An elicitation callback giving `replies` in order: (action, answer text)."""
    seen: list[str] = []

    async def callback(context, params):
        seen.append(params.message)
        action, text = replies[min(len(seen), len(replies)) - 1]
        return ElicitResult(action=action, content={"answer": text} if action == "accept" else None)

    callback.seen = seen
    return callback


@pytest.mark.parametrize("options", MODES)
async def test_an_accepted_answer_resumes_the_same_session(infra, fake_claude, options):
    fake = fake_claude(ASKING_BODY)
    callback = answering(("accept", "-eu-west"))
    async with connect_with({**options, "elicitation_callback": callback}) as client:
        assert client.protocol_version == ("2025-11-25" if options else "2026-07-28")
        out = await call(client, "dispatch", agent="infra", task="deploy the shop")
    assert len(callback.seen) == 1
    assert "Agent 'infra'" in callback.seen[0] and "Which region, eu or us?" in callback.seen[0]
    assert out["success"] is True and out["outcome"] == "done"
    assert out["result"] == "Deployed to -eu-west"
    assert out["clarifications"] == [{"question": "Which region, eu or us?", "answer": "-eu-west"}]
    first, resumed = fake.runs()
    assert resumed["argv"][resumed["argv"].index("--resume") + 1] == out["session_id"]
    assert first["argv"][first["argv"].index("--session-id") + 1] == out["session_id"]
    assert "-eu-west" in resumed["stdin"] and "-eu-west" not in resumed["argv"]


@pytest.mark.parametrize("options", MODES)
@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_declined_or_cancelled_returns_the_question_and_the_hint(infra, fake_claude, options, action):
    fake = fake_claude(ASKING_BODY)
    async with connect_with({**options, "elicitation_callback": answering((action, None))}) as client:
        out = await call(client, "dispatch_session", agent="infra", task="deploy")
    assert out["outcome"] == "blocked" and out["question"] == "Which region, eu or us?"
    assert f"session_id='{out['session_id']}'" in out["hint"] and "clarifications" not in out
    assert len(fake.runs()) == 1


@pytest.mark.parametrize("options", MODES)
async def test_a_client_without_elicitation_gets_the_blocked_result(infra, fake_claude, options):
    fake = fake_claude(ASKING_BODY)
    async with connect_with(options) as client:
        out = await call(client, "dispatch", agent="infra", task="deploy")
        again = await call(client, "dispatch", agent="infra", task="deploy")
    assert out["outcome"] == "blocked" and out["question"] == "Which region, eu or us?" and out["hint"]
    assert "cached" not in again and len(fake.runs()) == 2  # a question is never cached


@pytest.mark.parametrize("options", MODES)
async def test_max_clarifications_bounds_the_questions(infra, fake_claude, options):
    infra("max_clarifications: 1")
    fake = fake_claude(ASKING_BODY)
    callback = answering(("accept", "eu, and more"), ("accept", "big"))
    async with connect_with({**options, "elicitation_callback": callback}) as client:
        out = await call(client, "dispatch_stream", agent="infra", task="deploy")
    assert len(callback.seen) == 1 and len(fake.runs()) == 2
    assert out["outcome"] == "blocked" and out["question"] == "And the size?"
    assert out["clarifications"] == [{"question": "Which region, eu or us?", "answer": "eu, and more"}]


async def test_two_questions_in_one_call_and_parallel_items_ask_too(infra, fake_claude, config_path):
    fake = fake_claude(ASKING_BODY)
    callback = answering(("accept", "eu, and more"), ("accept", "big"), ("accept", "us"))
    async with connect_with({"elicitation_callback": callback}) as client:
        out = await call(client, "dispatch", agent="infra", task="deploy")
        assert out["outcome"] == "done" and out["result"] == "Deployed to big"
        assert [c["question"] for c in out["clarifications"]] == ["Which region, eu or us?", "And the size?"]
        assert len({run["argv"][run["argv"].index("--resume") + 1] for run in fake.runs()[1:]}) == 1
        items = await call(client, "dispatch_parallel", dispatches='[{"agent": "infra", "task": "other"}]')
    assert items[0]["result"] == "Deployed to us" and items[0]["clarifications"][0]["answer"] == "us"
    # Every run is its own usage record; the resumed ones say which clarification round they were.
    journal = [json.loads(line) for line in (config_path.parent / "usage.jsonl").read_text().splitlines()]
    assert [(r["tool"], r.get("clarification")) for r in journal] == [
        ("dispatch", None), ("dispatch", 1), ("dispatch", 2), ("dispatch_parallel", None), ("dispatch_parallel", 1)]
    assert {r["session_id"] for r in journal[:3]} == {out["session_id"]}
    assert sum(r["cost_usd"] for r in journal[:3]) == pytest.approx(out["cost_usd"])


async def test_zero_clarifications_never_asks(infra, fake_claude):
    infra("max_clarifications: 0")
    fake_claude(ASKING_BODY)
    callback = answering(("accept", "eu"))
    async with connect_with({"elicitation_callback": callback}) as client:
        out = await call(client, "dispatch", agent="infra", task="deploy")
    assert out["outcome"] == "blocked" and callback.seen == []


async def test_errors_still_answer_the_envelope(infra, fake_claude):
    fake_claude(ASKING_BODY)
    async with connect() as client:
        out = await call(client, "dispatch", agent="nobody", task="x")
    assert "nobody" in out["error"] and "infra" in out["error"] and out["hint"]
