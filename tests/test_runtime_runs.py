"""Codex and Gemini agents run through the same runner: real child processes, fake CLIs."""

from __future__ import annotations

import json
import os
import time

import anyio
import pytest

from agent_dispatch.models import EffectiveAgent
from agent_dispatch.runner import RunSpec, StreamEvent, run_claude
from agent_dispatch.runtimes import get_runtime


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def agent_on(runtime: str, directory, **kw) -> EffectiveAgent:
    return EffectiveAgent(name="ag", directory=str(directory), timeout=kw.pop("timeout", 30), runtime=runtime, **kw)


def run(agent: EffectiveAgent, prompt: str = "hello", **kw):
    spec = RunSpec(agent=agent, prompt=prompt, claude=get_runtime(agent.runtime).command(), **kw)
    return anyio.run(lambda: run_claude(spec))


def run_with_events(agent: EffectiveAgent, prompt: str = "hello", **kw):
    events: list[StreamEvent] = []
    spec = RunSpec(agent=agent, prompt=prompt, claude=get_runtime(agent.runtime).command(), stream=True, **kw)
    result = anyio.run(lambda: run_claude(spec, on_event=events.append))
    return result, events


# ---- codex ------------------------------------------------------------------------------------


def test_codex_answer_arrives_with_its_thread_and_token_usage(fake_cli, project):
    fake = fake_cli("codex")
    directory = project("cx")
    result = run(agent_on("codex", directory), "what is 2+2?")
    assert result.success, result
    assert result.result == "codex: what is 2+2?"
    assert result.runtime == "codex" and result.cost_usd is None
    assert result.usage == {"input_tokens": 120, "cached_input_tokens": 20, "output_tokens": 7,
                            "reasoning_output_tokens": 0}
    (entry,) = fake.runs()
    assert result.session_id and len(result.session_id) == 36
    assert entry["argv"][:2] == ["exec", "--json"] and entry["argv"][-1] == "-"
    assert entry["argv"][entry["argv"].index("-C") + 1] == str(directory)
    assert entry["argv"][entry["argv"].index("-s") + 1] == "read-only"
    assert entry["stdin"] == "what is 2+2?" and entry["cwd"] == str(directory)
    assert result.to_json()["runtime"] == "codex" and result.to_json()["usage"]["output_tokens"] == 7


def test_codex_task_that_looks_like_an_option_arrives_as_text(fake_cli, project):
    fake = fake_cli("codex")
    task = "--dangerously-bypass-approvals-and-sandbox -c x=1"
    result = run(agent_on("codex", project("cx")), task)
    assert result.success and result.result == "codex: " + task
    (entry,) = fake.runs()
    assert task not in entry["argv"] and "--dangerously-bypass-approvals-and-sandbox" not in entry["argv"]
    assert entry["stdin"] == task


def test_codex_resume_puts_the_directory_before_resume(fake_cli, project):
    fake = fake_cli("codex")
    result = run(agent_on("codex", project("cx")), "more", resume="0199a7c2-aaaa-bbbb-cccc-1234567890ab")
    assert result.success and result.session_id == "0199a7c2-aaaa-bbbb-cccc-1234567890ab"
    argv = fake.runs()[0]["argv"]
    assert argv.index("-C") < argv.index("resume") and argv[argv.index("resume") + 1] == result.session_id
    assert argv[-1] == "-"


def test_codex_flag_like_session_is_refused_before_anything_runs(fake_cli, project):
    fake = fake_cli("codex")
    result = run(agent_on("codex", project("cx")), "x", resume="--last")
    assert not result.success and result.error_type == "invalid_input"
    assert fake.runs() == []


@pytest.mark.parametrize(
    ("message", "error_type", "hint_word"),
    [
        ("unexpected status 400 Bad Request: model not supported", "cli_error", "refused"),
        ("exceeded retry limit, last status: 429 Too Many Requests", "usage_limit", "limit resets"),
        ("unexpected status 401 Unauthorized: invalid api key", "cli_error", "Log the Codex CLI in"),
    ],
)
def test_codex_turn_failed_is_classified_from_its_message(fake_cli, project, message, error_type, hint_word):
    fake_cli("codex", f"read_prompt(); thread = codex_start(); codex_api_error({message!r})")
    result = run(agent_on("codex", project("cx")))
    assert not result.success and result.error_type == error_type
    assert message.split(":")[0] in result.error and hint_word in result.hint
    assert result.session_id  # the thread can still be resumed


def test_codex_exit_without_events_names_the_exit_and_stderr(fake_cli, project):
    fake_cli("codex", "read_prompt(); sys.stderr.write('Missing environment variable: `OPENAI_API_KEY`'); sys.exit(1)")
    result = run(agent_on("codex", project("cx")))
    assert not result.success and result.error_type == "cli_error"
    assert "exit code 1" in result.error and "OPENAI_API_KEY" in result.error
    assert "Log the Codex CLI in" in result.hint


def test_codex_stream_reports_commands_and_messages(fake_cli, project):
    fake_cli("codex", """
        prompt = read_prompt()
        codex_start()
        codex_command("bash -lc 'ls -la'", "a\\nb\\n")
        codex_answer("two files")
    """)
    result, events = run_with_events(agent_on("codex", project("cx")))
    assert result.success and result.result == "two files"
    kinds = [(e.kind, e.tool) for e in events]
    assert kinds[0] == ("init", "") and ("tool_use", "shell") in kinds and kinds[-1] == ("result", "")
    assert any(e.kind == "tool_use" and "ls -la" in e.text for e in events)
    assert any(e.kind == "text" and e.text == "two files" for e in events)


def test_codex_run_waits_on_stdin_until_it_is_closed(fake_cli, project):
    # The fake, like codex, blocks on an open silent pipe: only a closed stdin lets it answer.
    fake_cli("codex", """
        import select
        ready, _, _ = select.select([sys.stdin], [], [], 20)
        codex_main()
    """)
    started = time.monotonic()
    result = run(agent_on("codex", project("cx"), timeout=25), "")
    assert result.success and time.monotonic() - started < 15


def test_codex_file_backed_run_reads_the_prompt_from_its_private_file(fake_cli, project, tmp_path):
    fake = fake_cli("codex")
    out = tmp_path / "job.out"
    result = run(agent_on("codex", project("cx")), "from a file", output_path=out)
    assert result.success and result.result == "codex: from a file"
    assert fake.runs()[0]["stdin"] == "from a file"
    from agent_dispatch.runner import collect_output

    again = collect_output(out, "ag", runtime="codex")
    assert again is not None and again.result == "codex: from a file" and again.session_id == result.session_id


# ---- gemini -----------------------------------------------------------------------------------


def test_gemini_answer_is_joined_from_deltas_with_the_session_we_assigned(fake_cli, project):
    fake = fake_cli("gemini")
    directory = project("gm")
    result = run(agent_on("gemini", directory, model="gemini-2.5-flash"), "summarise")
    assert result.success, result
    assert result.result == "gemini: summarise" and result.runtime == "gemini"
    (entry,) = fake.runs()
    argv = entry["argv"]
    assert "--skip-trust" in argv and argv[argv.index("-o") + 1] == "stream-json"
    assert argv[argv.index("-m") + 1] == "gemini-2.5-flash" and "-p" not in argv
    assert result.session_id == argv[argv.index("--session-id") + 1]
    assert result.usage == {"input_tokens": 100, "output_tokens": 30, "cached": 0, "total_tokens": 130}
    assert result.duration_ms == 1234 and entry["stdin"] == "summarise" and entry["cwd"] == str(directory)


def test_gemini_answer_is_the_text_after_the_last_tool_call(fake_cli, project):
    fake_cli("gemini", """
        prompt = read_prompt()
        gemini_start(prompt)
        gemini_say("Let me look.")
        gemini_tool("list_directory", {"path": "."}, output="a b")
        gemini_say("There are two files.")
        gemini_result()
    """)
    result, events = run_with_events(agent_on("gemini", project("gm")))
    assert result.success and result.result == "There are two files."
    assert any(e.kind == "tool_use" and e.tool == "list_directory" for e in events)
    assert events[0].kind == "init" and events[-1].kind == "result"


def test_gemini_resume_passes_the_session_and_no_new_id(fake_cli, project):
    fake = fake_cli("gemini")
    result = run(agent_on("gemini", project("gm")), "again", resume="4b1e6a5c-0000-4000-8000-00000000abcd")
    argv = fake.runs()[0]["argv"]
    assert argv[argv.index("--resume") + 1] == "4b1e6a5c-0000-4000-8000-00000000abcd" and "--session-id" not in argv
    assert result.success and result.session_id == "4b1e6a5c-0000-4000-8000-00000000abcd"


def test_gemini_exit_zero_without_a_result_event_is_a_failure(fake_cli, project):
    fake_cli("gemini", "prompt = read_prompt(); gemini_start(prompt); gemini_say('half an ans'); sys.exit(0)")
    result = run(agent_on("gemini", project("gm")))
    assert not result.success and result.error_type == "cli_error"
    assert "without a result" in result.error and result.result == "half an ans" and result.session_id


def test_gemini_api_error_result_is_classified(fake_cli, project):
    fake_cli("gemini", """
        prompt = read_prompt(); gemini_start(prompt)
        gemini_result("error", {"type": "ApiError", "message": "[429] Resource has been exhausted (quota)"})
        sys.exit(429 % 256)
    """)
    result = run(agent_on("gemini", project("gm")))
    assert not result.success and result.error_type == "usage_limit" and "exhausted" in result.error


@pytest.mark.parametrize(("code", "word"), [(41, "GEMINI_API_KEY"), (55, "trust"), (42, "new session")])
def test_gemini_documented_exit_codes_get_their_hint(fake_cli, project, code, word):
    fake_cli("gemini", f"read_prompt(); sys.stderr.write('boom\\n'); sys.exit({code})")
    result = run(agent_on("gemini", project("gm")))
    assert not result.success and f"exit code {code}" in result.error and word in result.hint


# A launcher that ignores SIGTERM (like gemini's) around a child doing the work.
LAUNCHER = """
import signal, subprocess
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
if os.environ.get("FAKE_CHILD"):
    prompt = read_prompt(); gemini_start(prompt); gemini_say("thinking")
    sleep_forever()
child = subprocess.Popen([sys.executable, __file__], env={**os.environ, "FAKE_CHILD": "1"})
with open(os.environ["FAKE_PIDS"], "w") as fh:
    json.dump([os.getpid(), child.pid], fh)
child.wait()
"""


def test_gemini_launcher_ignoring_sigterm_is_killed_at_the_timeout(fake_cli, project, tmp_path, monkeypatch):
    pids_file = tmp_path / "pids.json"
    monkeypatch.setenv("FAKE_PIDS", str(pids_file))
    fake_cli("gemini", LAUNCHER)
    started = time.monotonic()
    result = run(agent_on("gemini", project("gm"), timeout=3))
    elapsed = time.monotonic() - started
    assert not result.success and result.error_type == "timeout" and result.session_id
    assert elapsed < 3 + 8, elapsed  # SIGKILL follows the ignored SIGTERM
    pids = json.loads(pids_file.read_text())
    assert not [pid for pid in pids if alive(pid)]


# A child that leaves the process group AND loses the run token variable, as a CLI's shell tool
# does when it gives commands their own session and a sanitised environment.
ESCAPER = """
import subprocess
prompt = read_prompt()
env = {k: v for k, v in os.environ.items() if "TOKEN" not in k and "KEY" not in k}
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env, start_new_session=True)
with open(os.environ["FAKE_PIDS"], "w") as fh:
    json.dump([child.pid], fh)
if "exec" in ARGV:
    codex_start(); codex_answer("done")
else:
    gemini_start(prompt); gemini_say("done"); gemini_result()
"""


@pytest.mark.parametrize("runtime", ["codex", "gemini"])
def test_escaping_child_without_the_token_variable_is_killed_when_the_run_ends(
    fake_cli, project, tmp_path, monkeypatch, runtime
):
    pids_file = tmp_path / "pids.json"
    monkeypatch.setenv("FAKE_PIDS", str(pids_file))
    fake_cli(runtime, ESCAPER)
    result = run(agent_on(runtime, project("esc")))
    assert result.success and result.result == "done"
    (pid,) = json.loads(pids_file.read_text())
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), "the escaped child survived the run"


@pytest.mark.parametrize("runtime", ["codex", "gemini"])
def test_settings_the_cli_cannot_honour_are_refused_before_anything_runs(fake_cli, project, runtime):
    fake = fake_cli(runtime)
    for extra in ({"max_budget_usd": 1.0}, {"allowed_tools": ("Read",)}, {"permission_mode": "planless"}):
        result = run(agent_on(runtime, project("r"), **extra))
        assert not result.success and result.error_type == "invalid_input", extra
        assert "cannot honour" in result.error and "supports" in result.hint
    assert fake.runs() == []


def test_a_missing_cli_is_not_found_with_its_install_hint(project, monkeypatch, tmp_path):
    monkeypatch.setenv("AGENT_DISPATCH_CODEX", str(tmp_path / "no-codex"))
    result = run(agent_on("codex", project("cx")))
    assert result.error_type == "not_found" and "codex" in result.error and "@openai/codex" in result.hint
    assert os.environ["AGENT_DISPATCH_CODEX"] in result.error
