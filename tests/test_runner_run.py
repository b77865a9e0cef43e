"""run_claude against fake `claude` executables: input, environment, output reading, classification."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from agent_dispatch.models import DENIED_TOOLS_MAX, EffectiveAgent
from agent_dispatch.runner import TOKEN_ENV, RunOutcome, RunSpec, StreamEvent, build_prompt, run_claude
from agent_dispatch.runtimes.claude.classify import classify


@pytest.fixture
def agent(project) -> EffectiveAgent:
    return EffectiveAgent(name="infra", directory=str(project("infra")), timeout=30, allowed_tools=("Read",))


def spec(agent: EffectiveAgent, prompt: str = "hello", **kw) -> RunSpec:
    return RunSpec(agent=agent, prompt=prompt, claude=os.environ["AGENT_DISPATCH_CLAUDE"], **kw)


def result_line(**fields) -> str:
    obj = {"type": "result", "subtype": "success", "is_error": False, "result": "ok", "session_id": "sess-1"}
    obj.update(fields)
    return json.dumps(obj)


async def test_a_plain_run_succeeds_with_the_cli_fields(fake_claude, agent):
    fake = fake_claude()
    result = await run_claude(spec(agent, "what is up"))
    assert result.success is True
    assert result.result == "echo: what is up"
    assert (result.cost_usd, result.duration_ms, result.num_turns) == (0.0123, 42, 1)
    assert result.error_type is None and result.denied_tools == []
    [run] = fake.runs()
    assert result.session_id == run["argv"][run["argv"].index("--session-id") + 1]


async def test_child_runs_in_agent_directory_with_depth_token_and_own_group(fake_claude, agent, monkeypatch):
    monkeypatch.setenv("CLAUDECODE", "1")  # as inside a Claude Code session
    fake = fake_claude()
    await run_claude(spec(agent, depth=2))
    [run] = fake.runs()
    assert run["cwd"] == agent.directory
    assert run["env"]["AGENT_DISPATCH_DEPTH"] == "3"
    assert len(run["env"][TOKEN_ENV]) == 32
    assert "CLAUDECODE" not in run["env"]
    assert run["pgid"] == run["pid"] != os.getpgid(0)


async def test_child_stdin_is_a_fresh_pipe_not_ours(fake_claude, agent):
    fake = fake_claude(
        """
        prompt = read_prompt()
        record(prompt)
        emit_result(os.readlink("/proc/self/fd/0"))
        """
    )
    result = await run_claude(spec(agent, "x"))
    assert result.result.startswith("pipe:")
    assert result.result != os.readlink("/proc/self/fd/0")
    assert fake.runs()[0]["stdin"] == "x"


async def test_five_megabyte_context_arrives_intact_on_stdin(fake_claude, agent):
    fake = fake_claude()
    context = "".join(f"line {i} ünïcødé\n" for i in range(300_000))[: 5 * 1024 * 1024]
    prompt = build_prompt("summarise", context=context, caller="ops")
    result = await run_claude(spec(agent, prompt))
    assert result.success
    [run] = fake.runs()
    assert run["stdin"] == prompt
    assert all(context[:100] not in word for word in run["argv"])


async def test_flag_looking_task_reaches_the_agent_as_text(fake_claude, agent):
    fake = fake_claude()
    result = await run_claude(spec(agent, "--dangerously-skip-permissions"))
    [run] = fake.runs()
    assert run["stdin"] == "--dangerously-skip-permissions"
    assert "--dangerously-skip-permissions" not in run["argv"]
    assert result.result == "echo: --dangerously-skip-permissions"


async def test_dash_value_is_refused_before_anything_runs(fake_claude, agent):
    fake = fake_claude()
    result = await run_claude(spec(agent, resume="--permission-mode"))
    assert (result.success, result.error_type) == (False, "invalid_input")
    bad_tools = agent.model_copy(update={"allowed_tools": ("Read", "--dangerously-skip-permissions")})
    assert (await run_claude(spec(bad_tools))).error_type == "invalid_input"
    assert fake.runs() == []


async def test_resume_passes_the_session_and_keeps_it(fake_claude, agent):
    fake = fake_claude()
    result = await run_claude(spec(agent, resume="11111111-2222-3333-4444-555555555555"))
    argv = fake.runs()[0]["argv"]
    assert argv[argv.index("--resume") + 1] == "11111111-2222-3333-4444-555555555555"
    assert "--session-id" not in argv
    assert result.session_id == "11111111-2222-3333-4444-555555555555"


async def test_stderr_flood_while_stdin_is_written_does_not_deadlock(fake_claude, agent):
    fake_claude(
        """
        chunk = b"e" * (1024 * 1024)
        for _ in range(20):
            sys.stderr.buffer.write(chunk)
        sys.stderr.flush()
        prompt = read_prompt()
        emit_result(f"got {len(prompt)}")
        """
    )
    started = time.monotonic()
    result = await run_claude(spec(agent, "p" * (3 * 1024 * 1024)))
    assert result.success and result.result == f"got {3 * 1024 * 1024}"
    assert time.monotonic() - started < 10


async def test_child_that_never_reads_stdin_cannot_block_us(fake_claude, agent):
    fake_claude("emit_result('ignored the prompt')\n")
    result = await run_claude(spec(agent, "x" * (4 * 1024 * 1024)))
    assert result.success and result.result == "ignored the prompt"


async def test_invalid_utf8_and_lone_surrogates_are_replaced(fake_claude, agent):
    fake_claude(
        r"""
        read_prompt()
        sys.stdout.buffer.write(b'{"type":"result","subtype":"success","is_error":false,'
                                b'"result":"bad \xff\xfe \\ud800 end","session_id":"s1"}\n')
        sys.stderr.buffer.write(b"\xff\xfe noise")
        """
    )
    result = await run_claude(spec(agent))
    assert result.success
    assert result.result.startswith("bad \ufffd\ufffd ") and result.result.endswith(" end")
    json.dumps(result.to_json(), ensure_ascii=False).encode("utf-8")


async def test_stream_json_events_reach_on_event_and_malformed_lines_are_skipped(fake_claude, agent):
    fake_claude(
        """
        read_prompt()
        sid = session_id()
        emit({"type": "system", "subtype": "init", "session_id": sid, "tools": ["Bash"]})
        print("this is not json", flush=True)
        print('{"type": "assistant", "message": ', flush=True)
        emit({"type": "assistant", "message": {"content": [
            {"type": "text", "text": "Looking at the repo"},
            {"type": "tool_use", "name": "Bash", "input": {"command": "ls -la", "description": "list"}},
        ]}})
        emit({"type": "user", "message": {"content": [{"type": "tool_result", "content": "a b c"}]}})
        emit({"type": "assistant", "message": {"content": [{"type": "text", "text": "All good"}]}})
        emit(result_object("All good"))
        """
    )
    events: list[StreamEvent] = []
    result = await run_claude(spec(agent, stream=True), on_event=events.append)
    assert result.success and result.result == "All good"
    assert [e.kind for e in events] == ["init", "text", "tool_use", "text", "result"]
    assert events[0].session_id == result.session_id
    assert (events[2].tool, events[2].text) == ("Bash", "ls -la")
    assert events[2].describe() == "Bash: ls -la"


async def test_stream_flag_sets_stream_json_with_verbose(fake_claude, agent):
    fake = fake_claude()
    result = await run_claude(spec(agent, stream=True))
    argv = fake.runs()[0]["argv"]
    assert argv[argv.index("--output-format") + 1] == "stream-json" and "--verbose" in argv
    assert result.success


async def test_a_failing_on_event_callback_does_not_fail_the_run(fake_claude, agent):
    fake_claude()

    def explode(event):
        raise RuntimeError("client went away")

    assert (await run_claude(spec(agent, stream=True), on_event=explode)).success


async def test_json_response_format_fills_parsed_result(fake_claude, agent, monkeypatch):
    monkeypatch.setenv("FAKE_CLAUDE_REPLY", 'Sure:\n```json\n{"files": 3}\n```')
    fake_claude()
    result = await run_claude(spec(agent, response_format="json"))
    assert result.parsed_result == {"files": 3}
    monkeypatch.setenv("FAKE_CLAUDE_REPLY", "not json at all")
    result = await run_claude(spec(agent, response_format="json"))
    assert result.success and result.parsed_result is None


async def test_pretty_printed_json_result_is_read(fake_claude, agent):
    fake_claude("read_prompt(); print(json.dumps(result_object('multi'), indent=2))\n")
    result = await run_claude(spec(agent))
    assert result.success and result.result == "multi"


# ---- what counts as a failure --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("read_prompt(); sys.exit(1)", ["printed nothing", "exit code 1"]),
        ('read_prompt(); sys.stdout.write(\'{"type": "result", "result": "cut\'); sys.exit(0)', ["no result"]),
        ("read_prompt(); print('[1, 2, 3]')", ["no result"]),
        ("read_prompt(); print(json.dumps({'type': 'assistant', 'result': 'hi'}))", ["no result"]),
        ("read_prompt(); sys.stderr.write('boom: something broke'); sys.exit(3)", ["exit code 3", "boom"]),
    ],
)
async def test_output_without_a_result_object_is_a_clean_cli_error(fake_claude, agent, body, words):
    fake_claude(body + "\n")
    result = await run_claude(spec(agent))
    assert (result.success, result.error_type) == (False, "cli_error")
    for word in words:
        assert word in result.error
    assert result.hint


async def test_a_paid_result_survives_malformed_optional_fields(fake_claude, agent):
    line = result_line(total_cost_usd="abc", num_turns="x", duration_ms=-5, permission_denials="oops", usage=None)
    fake_claude(f"read_prompt(); print({line!r})\n")
    result = await run_claude(spec(agent))
    assert result.success and result.result == "ok" and result.session_id == "sess-1"
    assert result.cost_usd is None and result.num_turns is None
    assert isinstance(result.duration_ms, int) and result.duration_ms >= 0


async def test_success_with_denials_carries_denied_tools_and_the_grant_command(fake_claude, agent):
    denials = [{"tool_name": "Bash", "tool_input": {"command": "rm"}}, {"tool_name": "mcp__portainer__list"}]
    fake_claude(f"read_prompt(); print({result_line(result='partial answer', permission_denials=denials)!r})\n")
    result = await run_claude(spec(agent))
    assert result.success is True
    assert result.denied_tools == ["Bash", "mcp__portainer__list"]
    assert "agent-dispatch update infra --allowed-tools Read,Bash,mcp__portainer__list" in result.hint


async def test_error_with_denials_is_a_permission_failure(fake_claude, agent):
    denials = [{"tool_name": f"Tool{i}"} for i in range(DENIED_TOOLS_MAX + 20)]
    line = result_line(is_error=True, subtype="error_during_execution", result="denied", permission_denials=denials)
    fake_claude(f"read_prompt(); print({line!r})\n")
    result = await run_claude(spec(agent))
    assert (result.success, result.error_type, result.session_id) == (False, "permission", "sess-1")
    assert len(result.denied_tools) == DENIED_TOOLS_MAX
    assert "agent-dispatch update infra --allowed-tools Read,Tool0,Tool1," in result.hint


async def test_budget_stop_keeps_session_and_cost(fake_claude, agent):
    line = result_line(is_error=True, subtype="error_max_budget_usd", result="", total_cost_usd=1.02)
    fake_claude(f"read_prompt(); print({line!r}); sys.exit(1)\n")
    result = await run_claude(spec(agent))
    assert (result.error_type, result.session_id, result.cost_usd) == ("budget", "sess-1", 1.02)
    assert "agent-dispatch update infra --max-budget" in result.hint


@pytest.mark.parametrize(
    "body",
    [
        f"read_prompt(); print({result_line(is_error=True, result='Claude AI usage limit reached|1700000000')!r})",
        f"read_prompt(); print({result_line(is_error=True, result='API Error', api_error_status=429)!r})",
        "read_prompt(); sys.stderr.write('API Error: 429 rate_limit_error'); sys.exit(1)",
    ],
)
async def test_usage_limits_are_recognised(fake_claude, agent, body):
    fake_claude(body + "\n")
    result = await run_claude(spec(agent))
    assert (result.success, result.error_type) == (False, "usage_limit")


async def test_not_logged_in_is_a_cli_error_with_a_login_hint(fake_claude, agent):
    line = result_line(is_error=True, result="Not logged in · Please run /login")
    fake_claude(f"read_prompt(); print({line!r}); sys.exit(1)\n")
    result = await run_claude(spec(agent))
    assert (result.error_type, result.result) == ("cli_error", "Not logged in · Please run /login")
    assert "login" in result.hint.lower()


async def test_missing_cli_and_missing_directory_are_not_found(fake_claude, agent, tmp_path):
    fake = fake_claude()
    missing = RunSpec(agent=agent, prompt="x", claude=str(tmp_path / "no-such-claude"))
    assert (await run_claude(missing)).error_type == "not_found"
    gone = agent.model_copy(update={"directory": str(tmp_path / "vanished")})
    result = await run_claude(spec(gone))
    assert (result.error_type, fake.runs()) == ("not_found", [])
    assert "vanished" in result.error


async def test_a_non_executable_cli_is_a_clean_failure(agent, tmp_path):
    script = tmp_path / "claude"
    script.write_text("not a program")
    script.chmod(0o644)
    result = await run_claude(RunSpec(agent=agent, prompt="x", claude=str(script)))
    assert result.success is False and result.error_type in ("not_found", "cli_error")


async def test_file_backed_run_writes_private_files_and_reports_the_result(fake_claude, agent, tmp_path):
    fake_claude("prompt = read_prompt(); sys.stderr.write('some warning'); emit_result('filed: ' + prompt)\n")
    out = tmp_path / "jobs" / "abc.out"
    out.parent.mkdir()
    events: list[StreamEvent] = []
    result = await run_claude(spec(agent, "x", stream=True, output_path=out), on_event=events.append)
    assert result.success and result.result == "filed: x"
    assert [e.kind for e in events] == ["init", "text", "result"]
    err = out.with_suffix(".err")
    assert err.read_text() == "some warning"
    for path in (out, err):
        assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(Path(out).read_text().splitlines()[-1])["result"] == "filed: x"


# ---- classification rules on their own ------------------------------------------------------


def outcome(**result_fields) -> RunOutcome:
    result = {"type": "result", "subtype": "error_during_execution", "is_error": True, "session_id": "s-9"}
    result.update(result_fields)
    return RunOutcome(result=result)


@pytest.mark.parametrize(
    ("fields", "error_type"),
    [
        ({"result": "Claude requested permissions to use Bash, but you haven't granted it yet."}, "permission"),
        ({"result": "", "errors": ["Reached maximum budget ($1.00)"]}, "budget"),
        ({"result": "5-hour limit reached ∙ resets 3pm", "permission_denials": [{"tool_name": "Bash"}]}, "usage_limit"),
        ({"subtype": "error_max_turns", "result": ""}, "cli_error"),
        ({"subtype": "success", "is_error": True, "result": "API Error: 400 bad request"}, "cli_error"),
    ],
)
def test_error_results_are_classified(agent, fields, error_type):
    result = classify(agent, outcome(**fields))
    assert (result.success, result.error_type, result.session_id) == (False, error_type, "s-9")
    assert result.error and result.hint


def test_text_denial_names_the_tool_in_the_grant_command(agent):
    result = classify(agent, outcome(result="Claude requested permissions to use Bash, but you haven't granted it."))
    assert result.denied_tools == ["Bash"]
    assert "`agent-dispatch update infra --allowed-tools Read,Bash`" in result.hint


def test_grant_command_quotes_patterns_for_the_shell(agent):
    result = classify(agent, outcome(permission_denials=[{"tool_name": "Bash(git push:*)"}, {"tool_name": "-evil"}]))
    assert result.denied_tools == ["Bash(git push:*)"]  # a name that looks like an option is dropped
    assert "--allowed-tools 'Read,Bash(git push:*)'" in result.hint


def test_success_text_about_permissions_is_not_a_failure(agent):
    ok = RunOutcome(result={"type": "result", "subtype": "success", "is_error": False, "result": "permission denied"})
    result = classify(agent, ok)
    assert result.success and result.denied_tools == [] and result.hint is None


# Result objects as the real CLI 2.1.328 prints them (see tests/e2e): subtype stays "success".
REAL_API_ERROR = {
    "type": "result", "subtype": "success", "is_error": True, "result": "API Error: 400 bad request",
    "session_id": "5b1f9c7e-0000-4000-8000-000000000001", "terminal_reason": "api_error", "api_error_status": 400,
}
REAL_TOO_LONG = {
    "type": "result", "subtype": "success", "is_error": True, "result": "Prompt is too long",
    "session_id": "5b1f9c7e-0000-4000-8000-000000000002", "terminal_reason": "prompt_too_long",
    "api_error_status": None,
}


def test_real_cli_api_error_is_named_by_its_terminal_reason():
    out = classify("infra", RunOutcome(result=REAL_API_ERROR, exit_code=1))
    assert out.error_type == "cli_error" and "(api_error)" in out.error and "(success)" not in out.error
    assert out.session_id == REAL_API_ERROR["session_id"]


def test_real_cli_prompt_too_long_says_to_shorten_it():
    out = classify("infra", RunOutcome(result=REAL_TOO_LONG, exit_code=1))
    assert out.error_type == "cli_error" and "shorten" in out.hint and "Resume" not in out.hint
