"""The runtime table and each runtime's argv, permission mapping and output reading (no processes)."""

from __future__ import annotations

import json

import pytest

from agent_dispatch.errors import InvalidInputFailure
from agent_dispatch.models import RUNTIME_NAMES, AgentConfig, EffectiveAgent, Settings
from agent_dispatch.runner import RunHandle, RunSpec
from agent_dispatch.runs.outcome import RunOutcome
from agent_dispatch.runtimes import RUNTIMES, get_runtime


def spec(runtime: str, **agent_kw) -> RunSpec:
    resume = agent_kw.pop("resume", None)
    agent = EffectiveAgent(name="a", directory="/srv/proj", timeout=60, runtime=runtime, **agent_kw)
    return RunSpec(agent=agent, prompt="-p do it", claude=runtime, resume=resume)


def test_the_table_names_every_runtime_and_agents_default_to_claude():
    assert set(RUNTIMES) == {"claude", "codex", "gemini"}
    assert tuple(RUNTIMES) == RUNTIME_NAMES  # what a config may name is what can run
    assert all(impl.name == name for name, impl in RUNTIMES.items())
    agent = EffectiveAgent.resolve("a", AgentConfig(directory="/x"), Settings())
    assert agent.runtime == "claude" and get_runtime(None).name == "claude"


def test_an_unknown_runtime_in_agents_yaml_is_a_validation_error_listing_the_known_ones():
    with pytest.raises(ValueError, match="known runtimes: claude, codex, gemini"):
        AgentConfig(directory="/x", runtime="copilot")


@pytest.mark.parametrize(
    ("mode", "codex", "gemini"),
    [
        (None, ["-s", "read-only"], None),
        ("default", ["-s", "read-only"], "default"),
        ("plan", ["-s", "read-only"], "plan"),
        ("dontAsk", ["-s", "read-only"], "default"),
        ("acceptEdits", ["-s", "workspace-write"], "auto_edit"),
        ("bypassPermissions", ["--dangerously-bypass-approvals-and-sandbox"], "yolo"),
    ],
)
def test_permission_modes_map_onto_each_cli(mode, codex, gemini):
    argv = get_runtime("codex").build_argv(spec("codex", permission_mode=mode))
    assert argv[argv.index("-C") + 2 : argv.index("-C") + 2 + len(codex)] == codex
    gargv = get_runtime("gemini").build_argv(spec("gemini", permission_mode=mode))
    if gemini is None:
        assert "--approval-mode" not in gargv
    else:
        assert gargv[gargv.index("--approval-mode") + 1] == gemini


def test_native_mode_names_pass_through():
    assert "danger-full-access" in get_runtime("codex").build_argv(spec("codex", permission_mode="danger-full-access"))
    gargv = get_runtime("gemini").build_argv(spec("gemini", permission_mode="auto_edit"))
    assert gargv[gargv.index("--approval-mode") + 1] == "auto_edit"


@pytest.mark.parametrize("runtime", ["codex", "gemini"])
def test_no_argv_holds_the_prompt_and_flag_like_values_are_refused(runtime):
    impl = get_runtime(runtime)
    assert "-p do it" not in impl.build_argv(spec(runtime, model="m1"))
    for bad in ({"model": "-x"}, {"resume": "--last"}):
        with pytest.raises(InvalidInputFailure):
            impl.build_argv(spec(runtime, **bad))


def test_refusal_names_the_setting_and_where_it_comes_from():
    settings = Settings(default_max_budget_usd=2.0)
    agent = EffectiveAgent.resolve("a", AgentConfig(directory="/x", runtime="codex"), settings)
    with pytest.raises(InvalidInputFailure) as info:
        get_runtime("codex").check_agent(agent)
    assert "max_budget_usd" in info.value.message and "settings.default_" in info.value.hint
    get_runtime("claude").check_agent(agent)  # claude honours all of it


def test_run_handles_remember_their_runtime():
    handle = RunHandle(pid=1234, start_time=5, token="a" * 32, runtime="gemini")
    assert RunHandle.from_dict(json.loads(json.dumps(handle.to_dict()))).runtime == "gemini"
    old = {k: v for k, v in handle.to_dict().items() if k != "runtime"}
    assert RunHandle.from_dict(old).runtime == "claude"  # records written before runtimes existed


def test_codex_reader_copes_with_split_lines_and_noise():
    reader = get_runtime("codex").reader(stream=False, on_event=None, on_change=None)
    data = (
        b"Reading additional input from stdin...\n"
        b'{"type":"thread.started","thread_id":"t-1"}\nnot json\n[1,2]\n'
        b'{"type":"item.completed","item":{"type":"agent_message","text":"caf\xc3\xa9 \xff"}}\n'
        b'{"type":"turn.completed","usage":{"input_tokens":3,"output_tokens":true}}'
    )
    for i in range(0, len(data), 7):
        reader.feed(data[i : i + 7])
    assert reader.result is None  # the last line is not terminated yet
    reader.finish()
    result = get_runtime("codex").classify("a", RunOutcome(result=reader.result, session_id=reader.session_id))
    assert result.success and result.result == "café \ufffd" and result.session_id == "t-1"
    assert result.usage == {"input_tokens": 3}  # a malformed count is left out, never fails the answer


def test_gemini_json_answer_is_parsed():
    data = (
        b'{"type":"init","session_id":"s-1"}\n'
        b'{"type":"message","role":"assistant","content":"```json\\n{\\"ok\\": ","delta":true}\n'
        b'{"type":"message","role":"assistant","content":"true}\\n```","delta":true}\n'
        b'{"type":"result","status":"success","stats":{"duration_ms":"x"}}\n'
    )
    result, session = get_runtime("gemini").find_result(data)
    out = get_runtime("gemini").classify("a", RunOutcome(result=result, session_id=session, duration_ms=7), "json")
    assert out.success and out.parsed_result == {"ok": True} and out.duration_ms == 7 and out.session_id == "s-1"
