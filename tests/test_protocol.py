"""The dispatch protocol: the system prompt agents get, STATUS / QUESTION read back into
`outcome` / `question`, caching and the continuation hint, clarifications, and cycles.

The text-level rules are tested on `read_status`; every behaviour a caller sees goes through the
Dispatcher and a fake `claude` that records its argv, environment and stdin.
"""

from __future__ import annotations

import json

import pytest

from agent_dispatch.dispatcher import Dispatcher, make_request
from agent_dispatch.protocol import read_status

# A fake claude that answers whatever $FAKE_ANSWER holds (its \\n are newlines).
ANSWER_BODY = """
import os
prompt = read_prompt(); record(prompt)
emit_result(os.environ["FAKE_ANSWER"])
"""

# Blocked on a question until the prompt carries an answer; then done, echoing what it was told.
ASKING_BODY = """
import os
prompt = read_prompt(); record(prompt)
if "Their answer" in prompt:
    asked = int(os.environ.get("FAKE_ASK_AGAIN", "0"))
    if asked and prompt.count("Their answer") and os.environ.get("FAKE_ROUND_FILE"):
        path = os.environ["FAKE_ROUND_FILE"]
        n = int(open(path).read() or 0) if os.path.exists(path) else 0
        open(path, "w").write(str(n + 1))
        if n + 1 < asked:
            emit_result(f"Still unsure.\\nQUESTION: Question {n + 2}?\\nSTATUS: blocked")
            raise SystemExit(0)
    emit_result("Deployed with: " + prompt.split("## Their answer\\n", 1)[1].split("\\n\\n")[0] + "\\nSTATUS: done")
else:
    emit_result("I need one thing.\\n\\nQUESTION: Which region, eu or us?\\nSTATUS: blocked")
"""


@pytest.fixture
def agent(write_config, project):
    def make(settings: str = "", agent_extra: str = "") -> None:
        directory = project("infra")
        web = project("web")
        write_config(f"""
            agents:
              infra:
                directory: {directory}
                timeout: 120
            {agent_extra}
              web: {{directory: {web}, timeout: 30}}
            settings:
              max_concurrency: 2
            {settings}
        """)

    return make


def req(**fields):
    return make_request(**{"agent": "infra", "task": "deploy", **fields})


# ---- reading STATUS / QUESTION ---------------------------------------------------------------


@pytest.mark.parametrize("line", [
    "STATUS: done", "**STATUS: done**", "**STATUS:** done", "`STATUS: done`", "> STATUS: done",
    "- STATUS: done.", "### Status: Done", "_status_: DONE", "STATUS = done",
])
def test_decorated_status_lines_are_read(line):
    status = read_status(f"The disk is 40% full.\n\n{line}\n")
    assert status.outcome == "done"
    assert status.text == "The disk is 40% full."


def test_a_status_line_in_the_middle_is_not_an_outcome():
    text = "Write STATUS: done at the end, the docs say.\nThen I checked the logs and found nothing."
    assert read_status(text) == (text, None, None)
    text = "STATUS: blocked\nbut then it worked"
    assert read_status(text).outcome is None


def test_no_status_invents_nothing():
    assert read_status("just an answer") == ("just an answer", None, None)
    assert read_status("") == ("", None, None)
    assert read_status("STATUS: finished").outcome is None  # not one of the three words


def test_blocked_lifts_the_question_even_over_several_lines():
    status = read_status("Half done.\n\n**QUESTION:** Which region:\n- eu\n- us\n\n**STATUS: blocked**")
    assert status == ("Half done.", "blocked", "Which region:\neu\nus")


def test_partial_keeps_what_the_agent_said_after_the_word():
    status = read_status("Ran the unit tests.\nSTATUS: partial - e2e tests not run")
    assert status == ("Ran the unit tests.\n\ne2e tests not run", "partial", None)


def test_a_status_inside_a_trailing_fence_or_after_a_rule():
    assert read_status("Answer.\n\n---\nSTATUS: done\n---\n").text == "Answer."
    status = read_status('```json\n{"a": 1}\n```\nSTATUS: done\n```')
    assert status.outcome == "done" and status.text == '```json\n{"a": 1}\n```'


# ---- the protocol reaches the agent ------------------------------------------------------------


async def test_protocol_then_instructions_in_the_system_prompt_and_not_again_on_resume(agent, fake_claude,
                                                                                      monkeypatch):
    agent(agent_extra="    instructions: '-Read-only unless told otherwise.'")
    monkeypatch.setenv("FAKE_ANSWER", "fine\nSTATUS: done")
    fake = fake_claude(ANSWER_BODY)
    d = Dispatcher()
    first = await d.dispatch_session(req(task="--first"))
    await d.dispatch_session(req(task="second"), first.session_id)
    start, resume = fake.runs()
    system = start["argv"][start["argv"].index("--append-system-prompt") + 1]
    assert "nobody can answer a question mid-run" in system and "STATUS: blocked" in system
    assert "2 minutes" in system  # the agent's timeout is its time budget
    assert system.index("STATUS: done") < system.index("-Read-only unless told otherwise.")
    assert start["stdin"] == "--first"  # the prompt stays on stdin, outside the option
    assert "--append-system-prompt" not in resume["argv"]  # the CLI keeps a session's system prompt
    assert "--resume" in resume["argv"]


async def test_protocol_off_sends_only_the_instructions(agent, fake_claude, monkeypatch):
    agent(settings="  dispatch_protocol: false", agent_extra="    instructions: Be brief.")
    monkeypatch.setenv("FAKE_ANSWER", "fine")
    fake = fake_claude(ANSWER_BODY)
    await Dispatcher().dispatch(req())
    argv = fake.runs()[0]["argv"]
    system = argv[argv.index("--append-system-prompt") + 1]
    assert "Be brief." in system and "STATUS" not in system
    await Dispatcher().dispatch(req(agent="web"))
    assert "--append-system-prompt" not in fake.runs()[1]["argv"]


# ---- outcomes, caching and the hint -----------------------------------------------------------


async def test_each_outcome_shape_through_a_dispatch(agent, fake_claude, monkeypatch):
    agent()
    fake_claude(ANSWER_BODY)
    d = Dispatcher()
    shapes = {
        "Disk at 40%.\n\n**STATUS: done**": ("Disk at 40%.", "done"),
        "Wrote STATUS: done into the log.\nAll good.": ("Wrote STATUS: done into the log.\nAll good.", None),
        "No status at all.": ("No status at all.", None),
    }
    for index, (answer, (text, outcome)) in enumerate(shapes.items()):
        monkeypatch.setenv("FAKE_ANSWER", answer)
        out = (await d.dispatch(req(task=f"t{index}"))).to_json()
        assert out["result"] == text
        assert out.get("outcome") == outcome
        assert "hint" not in out and "question" not in out


async def test_json_mode_reads_the_value_before_the_status_line(agent, fake_claude, monkeypatch):
    agent()
    fake = fake_claude(ANSWER_BODY)
    monkeypatch.setenv("FAKE_ANSWER", '{"free_gb": 12}\nSTATUS: done')
    out = (await Dispatcher().dispatch(req(response_format="json"))).to_json()
    assert out["parsed_result"] == {"free_gb": 12} and out["outcome"] == "done"
    assert json.loads(out["result"]) == {"free_gb": 12}
    argv = fake.runs()[0]["argv"]
    assert "never inside it" in argv[argv.index("--append-system-prompt") + 1]


async def test_only_done_is_cached_and_partial_or_blocked_carry_the_continuing_call(agent, fake_claude,
                                                                                    monkeypatch):
    agent()
    fake = fake_claude(ANSWER_BODY)
    d = Dispatcher()
    monkeypatch.setenv("FAKE_ANSWER", "Half of it.\nSTATUS: partial")
    partial = await d.dispatch(req())
    assert partial.outcome == "partial" and partial.success
    assert f"dispatch_session(agent='infra', session_id='{partial.session_id}'" in partial.hint
    again = await d.dispatch(req())
    assert not again.cached and len(fake.runs()) == 2

    monkeypatch.setenv("FAKE_ANSWER", "Need input.\nQUESTION: eu or us?\nSTATUS: blocked")
    blocked = (await d.dispatch(req(task="other"))).to_json()
    assert blocked["question"] == "eu or us?" and blocked["outcome"] == "blocked"
    assert blocked["session_id"] in blocked["hint"] and "eu or us?" in blocked["hint"]
    assert not (await d.dispatch(req(task="other"))).cached

    monkeypatch.setenv("FAKE_ANSWER", "Fine.\nSTATUS: done")
    await d.dispatch(req(task="third"))
    assert (await d.dispatch(req(task="third"))).cached
    assert len(fake.runs()) == 5


# ---- clarifications through the ask callable ----------------------------------------------------


async def test_an_answered_question_resumes_the_same_session(agent, fake_claude):
    agent()
    fake = fake_claude(ASKING_BODY)
    asked = []

    async def ask(name: str, question: str) -> str | None:
        asked.append((name, question))
        return "-eu, and hurry"

    d = Dispatcher()
    out = (await d.dispatch(req(), ask=ask)).to_json()
    assert asked == [("infra", "Which region, eu or us?")]
    assert out["outcome"] == "done" and out["result"] == "Deployed with: -eu, and hurry"
    assert out["clarifications"] == [{"question": "Which region, eu or us?", "answer": "-eu, and hurry"}]
    first, second = fake.runs()
    assert second["argv"][second["argv"].index("--resume") + 1] == out["session_id"]
    assert "-eu, and hurry" in second["stdin"] and "-eu, and hurry" not in " ".join(second["argv"])
    assert out["cost_usd"] == pytest.approx(2 * 0.0123) and out["num_turns"] == 2
    assert not (await d.dispatch(req(), ask=ask)).cached  # a person's answer is never served to others


async def test_no_answer_returns_the_blocked_result_with_its_question(agent, fake_claude):
    agent()
    fake = fake_claude(ASKING_BODY)

    async def decline(name: str, question: str) -> str | None:
        return None

    out = (await Dispatcher().dispatch(req(), ask=decline)).to_json()
    assert out["outcome"] == "blocked" and out["question"] == "Which region, eu or us?"
    assert "clarifications" not in out and out["session_id"] in out["hint"]
    assert len(fake.runs()) == 1


async def test_max_clarifications_bounds_the_rounds(agent, fake_claude, tmp_path, monkeypatch):
    agent(settings="  max_clarifications: 2")
    monkeypatch.setenv("FAKE_ASK_AGAIN", "5")
    monkeypatch.setenv("FAKE_ROUND_FILE", str(tmp_path / "rounds"))
    fake = fake_claude(ASKING_BODY)
    asked = []

    async def ask(name: str, question: str) -> str:
        asked.append(question)
        return f"answer {len(asked)}"

    out = (await Dispatcher().dispatch(req(), ask=ask)).to_json()
    assert len(asked) == 2 and len(fake.runs()) == 3
    assert out["outcome"] == "blocked" and out["question"] == "Question 3?"
    assert [c["answer"] for c in out["clarifications"]] == ["answer 1", "answer 2"]


async def test_zero_clarifications_never_asks(agent, fake_claude):
    agent(settings="  max_clarifications: 0")
    fake_claude(ASKING_BODY)

    async def ask(name: str, question: str) -> str:
        raise AssertionError("must not ask")

    assert (await Dispatcher().dispatch(req(), ask=ask)).outcome == "blocked"


# ---- cycles ----------------------------------------------------------------------------------


async def test_a_child_gets_the_chain_and_a_cycle_starts_nothing(agent, fake_claude, monkeypatch):
    agent()
    monkeypatch.setenv("FAKE_ANSWER", "ok")
    fake = fake_claude(ANSWER_BODY)
    monkeypatch.setenv("AGENT_DISPATCH_CHAIN", "infra")
    d = Dispatcher()
    assert (await d.dispatch(req(agent="web"))).success
    assert fake.runs()[0]["env"]["AGENT_DISPATCH_CHAIN"] == "infra,web"

    monkeypatch.setenv("AGENT_DISPATCH_CHAIN", "infra,web")
    out = (await Dispatcher().dispatch(req())).to_json()
    assert out["success"] is False and out["error_type"] == "recursion"
    assert "infra -> web -> infra" in out["error"] and out["hint"]
    assert len(fake.runs()) == 1

    monkeypatch.setenv("AGENT_DISPATCH_CHAIN", " ,bad name!,web")  # damage is ignored, never blocks
    assert (await Dispatcher().dispatch(req())).success
    assert fake.runs()[-1]["env"]["AGENT_DISPATCH_CHAIN"] == "web,infra"


async def test_the_depth_limit_still_holds_without_a_cycle(agent, fake_claude, monkeypatch):
    agent(settings="  max_dispatch_depth: 2")
    fake = fake_claude(ANSWER_BODY)
    monkeypatch.setenv("AGENT_DISPATCH_DEPTH", "2")
    monkeypatch.setenv("AGENT_DISPATCH_CHAIN", "a,b")
    out = await Dispatcher().dispatch(req())
    assert out.error_type == "recursion" and "max_dispatch_depth" in out.error
    assert fake.runs() == []


def test_a_runtime_without_a_system_prompt_option_reads_the_protocol_first(write_config, project):
    write_config(f"""
        agents:
          cx: {{directory: {project("cx")}, runtime: codex, instructions: Be brief.}}
    """)
    d = Dispatcher()
    agent = d.agent("cx")
    spec = d.spec(agent, req(agent="cx", task="--list the files"))
    assert spec.system_prompt is None
    assert spec.prompt.startswith("# You were dispatched by another agent")
    assert spec.prompt.index("Be brief.") < spec.prompt.index("--list the files")
    assert d.spec(agent, req(agent="cx", task="more"), resume="abc").prompt == "more"  # once per session


def test_a_long_answer_keeps_everything_above_the_status_line():
    lines = [f"line {n}" for n in range(500)]
    status = read_status("\n".join(lines) + "\n\nQUESTION: go on?\nSTATUS: blocked\n")
    assert status.text == "\n".join(lines) and status.question == "go on?"
    fenced = "```\n" + "\n".join(lines) + "\nSTATUS: done\n```"
    assert read_status(fenced).text == "```\n" + "\n".join(lines) + "\n```"
