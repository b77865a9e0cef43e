"""The console script in a subprocess, as a person types it: config writes, values, names, --json,
wording, exit codes (issue 8's "a CLI that fits people's habits")."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "agent-dispatch"


def on_terminal(*args: str, env: dict[str, str] | None = None, timeout: float = 90,
                tty_stdin: bool = False, typed: bytes = b"") -> tuple[int, str]:
    """Run the console script with stdout and stderr (and with `tty_stdin` stdin, where `typed` is
    typed once something was printed) on a pseudo-terminal; (exit code, all output)."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen([str(SCRIPT), *args], stdin=slave if tty_stdin else subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env={**os.environ, **(env or {})})
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the other side closed
                    break
                if not data:
                    break
                chunks.append(data)
                if typed:
                    time.sleep(0.5)
                    os.write(master, typed)
                    typed = b""
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            raise AssertionError(f"{args} did not finish within {timeout} s: {b''.join(chunks)!r}")
    finally:
        os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", errors="replace")


def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )


@pytest.fixture
def commented(write_config, project):
    """A hand-written agents.yaml with comments, block style and an int ttl."""
    directory = project("infra")
    return write_config(f"""\
        # my agents
        agents:
          # the infrastructure box
          infra:
            directory: {directory}   # where it lives
            timeout: 60              # seconds

        settings:
          cache:
            ttl: 60   # one minute
    """)


# --- 9: writes keep the file as its author wrote it ------------------------------------------


def test_cli_writes_keep_comments_block_style_and_int_numbers(commented, project):
    before = commented.read_text()
    assert cli("update", "infra", "--model", "sonnet").returncode == 0
    assert cli("add", "web", str(project("web")), "-d", "The website").returncode == 0
    text = commented.read_text()
    assert text == before.replace(
        "    timeout: 60              # seconds\n",
        "    timeout: 60              # seconds\n    model: sonnet\n",
    ).replace("\nsettings:", f"  web:\n    directory: {project('web')}\n    description: The website\n\nsettings:")
    assert "ttl: 60   # one minute" in text and "60.0" not in text


# --- 10: the list syntax of tool names -------------------------------------------------------


def test_bracketed_tool_lists_are_names_and_shown_as_stored(write_config, project, config_path):
    write_config("agents: {}\n")
    added = cli("add", "infra", str(project("infra")), "-d", "x", "--allowed-tools", "[Read, Grep]")
    assert added.returncode == 0, added.stderr
    assert "allowed_tools: [Read, Grep]" in config_path.read_text()
    shown = cli("describe", "infra")
    assert 'allowed tools:     ["Read", "Grep"]' in shown.stdout
    bad = cli("update", "infra", "--allowed-tools", "[Read, Grep")
    assert bad.returncode == 2 and "brackets only around the whole list" in bad.stderr


# --- 11: bounds on timeouts and budgets ------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--timeout", "99999999999999999999", "from 1 to 604800 (7 days)"),
        ("--timeout", "1e3", "timeout must be a whole number of seconds"),
        ("--timeout", "604801", "from 1 to 604800 (7 days)"),
        ("--max-budget", "1e308", "max_budget_usd must be an amount of US dollars"),
        ("--max-budget", "5000", "at most 1000"),
    ],
)
def test_out_of_bounds_numbers_are_refused_and_nothing_is_written(commented, option, value, message):
    before = commented.read_bytes()
    out = cli("update", "infra", option, value)
    assert out.returncode == 2, out
    assert message in out.stderr and "Traceback" not in out.stderr
    assert commented.read_bytes() == before


# --- 12: names ---------------------------------------------------------------------------------


def test_long_names_and_case_twins_are_refused_with_the_rule(commented, project):
    before = commented.read_bytes()
    long = cli("add", "n" * 300, str(project("x")), "-d", "x")
    assert long.returncode == 2 and "1 to 64 characters" in long.stderr
    twin = cli("add", "Infra", str(project("x")), "-d", "x")
    assert twin.returncode == 1
    assert "'infra' already exists; 'Infra' differs from it only in case" in twin.stderr
    assert commented.read_bytes() == before
    assert cli("add", "i" * 64, str(project("x")), "-d", "x").returncode == 0


# --- 5: an agent that cannot run is a failure, and add/update refuse a mode claude refuses -----


@pytest.fixture
def mcp_fake(fake_claude, monkeypatch, tmp_path):
    """A fake claude answering --version, --help (with its permission modes), `mcp get/add`."""
    from test_cli_agents import HELP, MCP_BODY

    monkeypatch.setenv("FAKE_MCP_STATE", str(tmp_path / "registered.json"))
    monkeypatch.setenv("FAKE_HELP", HELP)
    fake = fake_claude(MCP_BODY)
    fake.state = tmp_path / "registered.json"
    return fake


def test_doctor_fails_an_agent_whose_mode_claude_refuses(mcp_fake, write_config, project):
    mcp_fake.state.write_text(json.dumps([str(SCRIPT), "serve"]))
    write_config(f"agents:\n  old:\n    directory: {project('old')}\n    permission_mode: default\n")
    out = cli("doctor")
    assert out.returncode == 1, out.stdout
    assert "FAIL  agent old: cannot run: permission mode 'default' is not accepted" in out.stdout
    assert "fix: agent-dispatch update old --permission-mode acceptEdits" in out.stdout
    assert "All checks passed" not in out.stdout and "agent-dispatch test" not in out.stdout


def test_add_and_update_refuse_a_mode_the_installed_claude_refuses(mcp_fake, write_config, project, config_path):
    write_config(f"agents:\n  a:\n    directory: {project('a')}\n")
    before = config_path.read_bytes()
    added = cli("add", "b", str(project("b")), "-d", "x", "--permission-mode", "default")
    assert added.returncode == 2
    assert "'default' is not a permission mode the installed claude accepts; it accepts: acceptEdits, auto" \
           in " ".join(added.stderr.split())
    assert cli("update", "a", "--permission-mode", "default").returncode == 2
    assert config_path.read_bytes() == before
    assert cli("update", "a", "--permission-mode", "plan").returncode == 0


# --- 6: a registration through a symlink to this same script is this agent-dispatch -----------


def test_a_symlink_to_this_script_is_not_a_different_agent_dispatch(mcp_fake, write_config, project, tmp_path):
    link_dir = tmp_path / "bin-link"
    link_dir.mkdir()
    (link_dir / "agent-dispatch").symlink_to(SCRIPT)
    mcp_fake.state.write_text(json.dumps([str(link_dir / "agent-dispatch"), "serve"]))
    write_config(f"agents:\n  a:\n    directory: {project('a')}\n")
    doctor = cli("doctor")
    assert doctor.returncode == 0, doctor.stdout
    assert "not this agent-dispatch" not in doctor.stdout and "warn" not in doctor.stdout
    init = cli("init")
    assert init.returncode == 0 and "already registered" in init.stdout and "Note:" not in init.stdout
    elsewhere = tmp_path / "other" / "agent-dispatch"
    elsewhere.parent.mkdir()
    elsewhere.write_text("#!/bin/sh\n")
    elsewhere.chmod(0o755)
    mcp_fake.state.write_text(json.dumps([str(elsewhere), "serve"]))
    assert "not this agent-dispatch" in cli("doctor").stdout


# --- 7: `test` on a terminal is never silent ------------------------------------------------------

SLOW_STREAM = """
import time
prompt = read_prompt()
record(prompt)
if streaming():
    emit({"type": "system", "subtype": "init", "session_id": session_id()})
    emit({"type": "assistant", "message": {"content": [
        {"type": "tool_use", "name": "Read", "input": {"file_path": "notes.md"}}]}})
    time.sleep(2.5)
emit_result("all read")
"""


def test_test_on_a_terminal_shows_elapsed_time_and_the_latest_activity(fake_claude, write_config, project):
    fake_claude(SLOW_STREAM)
    write_config(f"agents:\n  infra:\n    directory: {project('infra')}\n")
    code, output = on_terminal("test", "infra", "read the notes")
    assert code == 0, output
    assert "infra:  " in output and "Read: notes.md" in output
    assert re.search(r"infra:  [1-9]s  [^\r]*Read: notes\.md", output), output
    assert "all read" in output


# --- 13: the set-up command leaves `agent-dispatch` on PATH ---------------------------------------


def test_init_links_agent_dispatch_into_a_fresh_home_and_says_what_to_type(mcp_fake, isolated_env, project):
    home = isolated_env
    link = home / ".local" / "bin" / "agent-dispatch"
    bare_path = f"{Path(os.environ['AGENT_DISPATCH_CLAUDE']).parent}:/usr/bin:/bin"
    first = cli("init", env={"PATH": bare_path})
    assert first.returncode == 0, first.stderr
    assert link.is_symlink() and os.path.samefile(link, SCRIPT)
    assert f"{home}/.local/bin is not on your PATH yet" in first.stdout
    [next_line] = [line for line in first.stdout.splitlines() if line.startswith("Next: ")]
    command = next_line.split("`")[1]
    assert command == f"{link} add NAME DIR"
    typed = command.replace("NAME", "infra").replace("DIR", str(project("infra")))
    assert subprocess.run(typed.split(), capture_output=True, env={**os.environ, "PATH": bare_path}).returncode == 0

    on_path = f"{home}/.local/bin:{bare_path}"
    again = cli("init", env={"PATH": on_path})
    assert "Next: `agent-dispatch add NAME DIR`" in again.stdout and "Linked" not in again.stdout
    by_name = subprocess.run(["agent-dispatch", "list"], capture_output=True, text=True,
                             env={**os.environ, "PATH": on_path})
    assert by_name.returncode == 0 and "infra" in by_name.stdout


# --- 14: wording, exit codes and options a person expects ------------------------------------------


def test_cli_errors_are_worded_for_the_command_line(fake_claude, write_config, project):
    fake_claude()
    write_config(f"agents:\n  infra:\n    directory: {project('infra')}\n    model: opus\n")
    unknown = cli("test", "ghost")
    assert unknown.returncode == 1 and "Run `agent-dispatch list`" in unknown.stderr
    assert "list_agents" not in unknown.stderr and "tool" not in unknown.stderr
    empty = cli("test", "infra", "  ")
    assert empty.returncode == 2 and "the task is empty" in empty.stderr
    blank = cli("update", "infra", "--model", "")
    assert blank.returncode == 2 and "an empty value changes nothing" in blank.stderr
    assert "nothing to change" not in blank.stderr
    missing = cli("cancel", "0" * 32)
    assert missing.returncode == 1 and missing.stderr.startswith("Error: no job 00000000")
    both = cli("gc", "--days", "1", "--all")
    assert both.returncode == 2 and "--days and --all exclude each other" in both.stderr


def test_update_directory_moves_an_agent_and_keeps_its_settings(write_config, project, config_path):
    write_config(f"agents:\n  infra:\n    directory: {project('old')}\n    model: opus   # mine\n")
    moved = cli("update", "infra", "--directory", str(project("new")))
    assert moved.returncode == 0, moved.stderr
    assert config_path.read_text() == f"agents:\n  infra:\n    directory: {project('new')}\n    model: opus   # mine\n"
    gone = cli("update", "infra", "--directory", str(project("new") / "nope"))
    assert gone.returncode == 2 and "does not exist" in gone.stderr


# --- 15: --json everywhere, prefixes, NO_COLOR, English, stdin, serve ------------------------------


def test_every_data_command_answers_json_and_so_do_its_errors(mcp_fake, write_config, project):
    mcp_fake.state.write_text(json.dumps([str(SCRIPT), "serve"]))
    write_config("agents: {}\n")
    added = json.loads(cli("add", "infra", str(project("infra")), "-d", "Infra", "--json").stdout)
    assert added == {"name": "infra", "directory": str(project("infra")), "description": "Infra"}
    updated = json.loads(cli("update", "infra", "--timeout", "60", "--json").stdout)
    assert updated["timeout"] == 60 and updated["name"] == "infra"
    doctor = json.loads(cli("doctor", "--json").stdout)
    assert doctor["ok"] is True and {c["status"] for c in doctor["checks"]} == {"ok"}
    assert json.loads(cli("gc", "--json").stdout) == {"deleted": 0}
    assert json.loads(cli("gc", "--dry-run", "--json").stdout) == {"deleted": 0, "would_delete": 0, "job_ids": []}
    assert json.loads(cli("remove", "infra", "--json").stdout) == {"removed": "infra",
                                                                    "directory": str(project("infra"))}
    failed = cli("remove", "infra", "--json")
    assert failed.returncode == 1 and failed.stderr == ""
    assert json.loads(failed.stdout)["error"] == "no agent named 'infra'; no agents are registered"
    usage = cli("update", "infra", "--timeout", "soon", "--json")
    assert usage.returncode == 2 and json.loads(usage.stdout)["usage_error"] is True
    parse = cli("jobs", "--limit", "0", "--json")
    assert parse.returncode == 2 and "--limit" in json.loads(parse.stdout)["error"]
    group = cli("group", "inspect", "ghost", "--json")
    assert group.returncode == 1 and "agent-dispatch group list" in json.loads(group.stdout)["hint"]
    cancelled = cli("cancel", "a" * 32, "--json")
    assert cancelled.returncode == 1 and json.loads(cancelled.stdout)["outcome"] == "not_found"


def test_job_ids_may_be_shortened_like_git(write_config, project):
    import uuid

    from agent_dispatch.config import jobs_dir
    from agent_dispatch.jobs import JobStore
    from agent_dispatch.models import DispatchResult, Job

    write_config(f"agents:\n  infra:\n    directory: {project('infra')}\n")
    store = JobStore(jobs_dir())
    ids = ["abcd" + uuid.uuid4().hex[4:], "abce" + uuid.uuid4().hex[4:], "abcf" + uuid.uuid4().hex[4:]]
    for job_id in ids:
        store.create(Job(id=job_id, status="done", agent="infra", task="t", created_at=1.0, completed_at=2.0,
                         result=DispatchResult(agent="infra", success=True, result="fine")))
    shown = cli("job", ids[0][:6])
    assert shown.returncode == 0 and f"job:       {ids[0]}" in shown.stdout
    assert "outcome:   succeeded" in shown.stdout and "True" not in shown.stdout
    ambiguous = cli("job", "abc")  # shorter than 4: a malformed id
    assert ambiguous.returncode == 2
    ambiguous = cli("cancel", "abc0")
    assert ambiguous.returncode == 1 and "no job id starts with abc0" in ambiguous.stderr
    store.create(Job(id=ids[0][:8] + "0" * 24, status="pending", agent="infra", task="t", created_at=3.0))
    twice = cli("job", ids[0][:8])
    assert twice.returncode == 2 and "more than one job id" in twice.stderr
    assert "Nothing to do: the job is already done." in cli("cancel", ids[1][:5]).stdout


def test_no_color_is_honoured_on_a_terminal(fake_claude, write_config, project):
    fake_claude()
    write_config(f"agents:\n  infra:\n    directory: {project('infra')}\n")
    _, coloured = on_terminal("test", "infra", "hi")
    assert "\x1b[" in coloured
    code, plain = on_terminal("test", "infra", "hi", env={"NO_COLOR": "1"})
    assert code == 0 and "echo: hi" in plain and "\x1b" not in plain
    assert "1 turn ·" in plain and "turns" not in plain


def test_test_reads_the_task_from_stdin_with_a_dash(fake_claude, write_config, project):
    fake = fake_claude()
    write_config(f"agents:\n  infra:\n    directory: {project('infra')}\n")
    out = cli("test", "infra", "-", stdin="a task\nof two lines\n")
    assert out.returncode == 0, out.stderr
    assert fake.runs()[0]["stdin"] == "a task\nof two lines\n"


def test_serve_on_a_terminal_says_what_it_is(write_config):
    write_config("agents: {}\n")
    code, output = on_terminal("serve", tty_stdin=True, typed=b"\x04", timeout=60)
    assert "speaks MCP (JSON-RPC) on stdin and stdout" in output
    assert "agent-dispatch init" in output and "claude mcp add -s user agent-dispatch --" in output
