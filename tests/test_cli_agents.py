"""The agents CLI (init, add, update, remove, list, describe, doctor) through click and the console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from agent_dispatch.cli import cli
from agent_dispatch.cli.doctor import missing_options, permission_modes, registered_command, registration_problem

SCRIPT = Path(sys.executable).parent / "agent-dispatch"

# Trimmed from `claude --help` of Claude Code 2.1.328: commander wraps long choice lists.
HELP = """\
Usage: claude [options] [command] [prompt]

Options:
  --allowedTools, --allowed-tools <tools...>
      Comma or space-separated list of tool names to allow (e.g. "Bash(git *)
      Edit")
  --disallowedTools, --disallowed-tools <tools...>
      Comma or space-separated list of tool names to deny (e.g. "Bash(git *)
      Edit")
  --fallback-model <model>              Models to fall back to
  --max-budget-usd <amount>             Maximum dollar amount to spend on API
                                        calls (only works with --print)
  --model <model>                       Model for the current session.
  --output-format <format>              Output format (only works with --print):
                                        "text" (default), "json" (single
                                        result), or "stream-json" (realtime
                                        streaming) (choices: "text", "json",
                                        "stream-json")
  --permission-mode <mode>              Permission mode to use for the session
                                        (choices: "acceptEdits", "auto",
                                        "bypassPermissions", "manual",
                                        "dontAsk", "plan")
  --permission-prompts <target>         Who answers permission prompts
                                        (choices: "host", "none", default:
                                        "host")
  -r, --resume [value]                  Resume a conversation by session ID
  --verbose                             Override the verbose setting
"""

# A fake `claude` for init and doctor: answers --version, --help, `mcp get` and `mcp add`,
# keeping the registration in $FAKE_MCP_STATE and recording every argv.
MCP_BODY = """
import json, os, sys
record("")
state = os.environ["FAKE_MCP_STATE"]
if ARGV == ["--version"]:
    print("2.1.328 (Claude Code)")
elif ARGV == ["--help"]:
    sys.stdout.write(os.environ.get("FAKE_HELP", ""))
elif ARGV[:2] == ["mcp", "get"]:
    if not os.path.exists(state):
        print(f'No MCP server named "{ARGV[2]}". Run `claude mcp add` to add one.', file=sys.stderr)
        sys.exit(1)
    command = json.load(open(state))
    status = os.environ.get("FAKE_MCP_STATUS", "✔ Connected")
    print(f"{ARGV[2]}:\\n  Scope: User config\\n  Status: {status}\\n  Type: stdio")
    print(f"  Command: {command[0]}\\n  Args: {' '.join(command[1:])}")
elif ARGV[:2] == ["mcp", "add"]:
    if os.environ.get("FAKE_ADD_FAILS"):
        print("cannot write ~/.claude.json", file=sys.stderr)
        sys.exit(1)
    with open(state, "w") as fh:
        json.dump(ARGV[ARGV.index("--") + 1:], fh)
    print("Added stdio MCP server")
else:
    sys.exit(3)
"""


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def mcp_claude(fake_claude, monkeypatch, tmp_path):
    """A fake claude that handles `mcp get/add`, `--help` and `--version`."""
    monkeypatch.setenv("FAKE_MCP_STATE", str(tmp_path / "registered.json"))
    monkeypatch.setenv("FAKE_HELP", HELP)
    fake = fake_claude(MCP_BODY)
    fake.state = tmp_path / "registered.json"
    return fake


def run(runner, *args):
    return runner.invoke(cli, list(args), catch_exceptions=False)


def stored(config_path):
    return yaml.safe_load(config_path.read_text())


# --- init ---------------------------------------------------------------------------------


def test_init_creates_the_config_and_registers(runner, mcp_claude, config_path, monkeypatch):
    monkeypatch.delenv("AGENT_DISPATCH_CONFIG")  # the default path: nothing to pass with -e
    monkeypatch.delenv("AGENT_DISPATCH_RUNTIME_DIR")
    result = run(runner, "init")
    assert result.exit_code == 0, result.output
    assert f"Created {config_path}" in result.output and "Registered agent-dispatch" in result.output
    assert stored(config_path) == {"agents": {}}
    assert oct(config_path.stat().st_mode & 0o777) == "0o600"
    runs = [r["argv"] for r in mcp_claude.runs()]
    assert runs == [
        ["mcp", "get", "agent-dispatch"],
        ["mcp", "add", "-s", "user", "agent-dispatch", "--", str(SCRIPT), "serve"],
    ]


def test_init_is_idempotent_and_never_overwrites(runner, mcp_claude, write_config):
    write_config("# mine\nagents: {}\n")
    assert run(runner, "init").exit_code == 0
    before = Path(os.environ["AGENT_DISPATCH_CONFIG"]).read_bytes()
    again = run(runner, "init")
    assert again.exit_code == 0
    assert "already exists; left unchanged" in again.output
    assert f"already registered with Claude Code ({SCRIPT} serve)" in again.output
    assert Path(os.environ["AGENT_DISPATCH_CONFIG"]).read_bytes() == before == b"# mine\nagents: {}\n"
    assert [r["argv"][:2] for r in mcp_claude.runs()] == [["mcp", "get"], ["mcp", "add"], ["mcp", "get"]]


def test_init_passes_a_custom_config_path_to_the_server(runner, mcp_claude, tmp_path, monkeypatch):
    custom = tmp_path / "custom" / "agents.yaml"
    monkeypatch.setenv("AGENT_DISPATCH_CONFIG", str(custom))
    assert run(runner, "init").exit_code == 0
    add = mcp_claude.runs()[-1]["argv"]
    assert add[:7] == ["mcp", "add", "-s", "user", "agent-dispatch", "-e", f"AGENT_DISPATCH_CONFIG={custom}"]
    assert custom.exists()


def test_init_notes_a_registration_of_another_command(runner, mcp_claude):
    mcp_claude.state.write_text(json.dumps(["/old/agent-dispatch", "serve"]))
    result = run(runner, "init")
    assert result.exit_code == 0
    assert "runs `/old/agent-dispatch serve`, not this agent-dispatch" in result.output
    link = Path(os.environ["HOME"]) / ".local" / "bin" / "agent-dispatch"  # not on PATH: typed in full
    assert f"claude mcp remove agent-dispatch -s user && {link} init" in result.output


def test_init_without_claude_prints_the_command(runner, monkeypatch, tmp_path, config_path):
    monkeypatch.setenv("AGENT_DISPATCH_CLAUDE", str(tmp_path / "no-claude"))
    monkeypatch.delenv("AGENT_DISPATCH_RUNTIME_DIR")
    result = run(runner, "init")
    assert result.exit_code == 0
    assert "`claude` command was not found" in result.output
    assert f"claude mcp add -s user agent-dispatch -- {SCRIPT} serve" in result.output
    assert config_path.exists()


def test_init_reports_a_failed_registration(runner, mcp_claude, monkeypatch):
    monkeypatch.setenv("FAKE_ADD_FAILS", "1")
    result = run(runner, "init")
    assert result.exit_code == 1
    assert "Error: `claude mcp add` failed: cannot write ~/.claude.json" in result.stderr
    assert f"Hint: Run it by hand: {mcp_claude.path} mcp add -s user agent-dispatch" in result.stderr


def test_init_warns_about_a_broken_existing_config(runner, mcp_claude, write_config):
    write_config("agents: [\n")
    result = run(runner, "init")
    assert result.exit_code == 0
    assert result.stderr.startswith("Warning: ") and "is not valid YAML" in result.stderr
    assert "Registered agent-dispatch" in result.stdout


# --- add / update / remove ----------------------------------------------------------------


def test_add_prints_the_generated_description(runner, project, config_path, mcp_claude):
    path = project("infra", {"CLAUDE.md": "Infrastructure agent for the homelab.\n", "go.mod": ""})
    result = run(runner, "add", "infra", str(path), "--timeout", "600", "--allowed-tools", "Read,Grep",
                 "--model", "sonnet", "--max-budget", "1.5", "--permission-mode", "plan")
    assert result.exit_code == 0, result.output
    assert f"Added agent 'infra': {path}" in result.output
    assert "Description (generated): Infrastructure agent for the homelab. Stack: Go." in result.output
    assert stored(config_path)["agents"]["infra"] == {
        "directory": str(path), "description": "Infrastructure agent for the homelab. Stack: Go.", "timeout": 600,
        "model": "sonnet", "max_budget_usd": 1.5, "permission_mode": "plan", "allowed_tools": ["Read", "Grep"],
    }
    given = run(runner, "add", "web", str(path), "-d", "The web shop.")
    assert given.exit_code == 0 and "Description (generated)" not in given.output
    assert stored(config_path)["agents"]["web"]["description"] == "The web shop."


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["add", "bad name", "{dir}"], 2, "invalid agent name 'bad name'"),
        (["add", "ok", "{dir}", "--timeout", "-5"], 2, "timeout must be a whole number"),
        (["add", "ok", "{dir}", "--max-budget", "nan"], 2, "max_budget_usd must be an amount"),
        (["add", "ok", "{dir}", "--model", "--evil"], 2, "model must be a single word"),
        (["add", "ok", "/no/such/dir"], 1, "directory /no/such/dir does not exist"),
        (["add", "taken", "{dir}"], 1, "an agent named 'taken' already exists"),
        (["add", "ok"], 2, "Missing argument 'DIRECTORY'"),
        (["update", "taken"], 2, "nothing to change"),
        (["update", "nobody", "--timeout", "5"], 1, "no agent named 'nobody'; available agents: taken"),
        (["update", "taken", "--allowed-tools", "Read,-x"], 2, "allowed_tools must be tool names"),
        (["remove", "nobody"], 1, "no agent named 'nobody'"),
        (["describe", "nobody"], 1, "no agent named 'nobody'"),
        (["list", "--bogus"], 2, "No such option"),
    ],
)
def test_failing_commands_leave_the_file_unchanged(runner, project, config_path, args, code, message):
    path = project("p")
    assert run(runner, "add", "taken", str(path), "-d", "x").exit_code == 0
    before = config_path.read_bytes()
    result = run(runner, *[arg.replace("{dir}", str(path)) for arg in args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert config_path.read_bytes() == before


def test_error_is_one_line_plus_a_fix(runner, project):
    result = run(runner, "remove", "ghost")
    assert result.stderr.splitlines() == [
        "Error: no agent named 'ghost'; no agents are registered",
        "Hint: Run `agent-dispatch list` to see them; add one with `agent-dispatch add NAME DIR`.",
    ]
    assert result.stdout == ""


def test_update_sets_clears_and_reports(runner, project, config_path):
    path = project("p")
    run(runner, "add", "a", str(path), "-d", "x", "--allowed-tools", "Read", "--model", "opus")
    result = run(runner, "update", "a", "--allowed-tools", "none", "--disallowed-tools", "[]", "--model", "none",
                 "--timeout", "30", "-d", "New text.")
    assert result.exit_code == 0, result.output
    assert "allowed_tools: cleared (inherits the default)" in result.output
    assert "disallowed_tools: [] (explicitly none)" in result.output
    assert stored(config_path)["agents"]["a"] == {
        "directory": str(path), "description": "New text.", "timeout": 30, "disallowed_tools": [],
    }


def test_remove(runner, project, config_path):
    path = project("p")
    run(runner, "add", "a", str(path), "-d", "x")
    result = run(runner, "remove", "a")
    assert result.exit_code == 0 and f"Removed agent 'a' ({path})" in result.output
    assert stored(config_path) == {"agents": {}}
    assert path.is_dir()


# --- list / describe ----------------------------------------------------------------------


def test_list_shows_full_paths_health_and_tool_states(runner, project, tmp_path, mcp_claude):
    deep = project("a" * 120, {"CLAUDE.md": "Deep project with a long path.\n"})
    gone = project("gone")
    run(runner, "add", "deep", str(deep))
    run(runner, "add", "tools", str(deep), "-d", "Tools.", "--allowed-tools", "Read,Grep", "--disallowed-tools", "[]")
    run(runner, "add", "half", str(deep), "-d", "Half.", "--disallowed-tools", "Write", "--permission-mode", "plan")
    run(runner, "add", "gone", str(gone), "-d", "Gone.")
    gone.rmdir()
    result = run(runner, "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("4 agent(s) in ")
    assert f"deep   ok         {deep}" in lines  # never cut, however long
    assert "       Deep project with a long path." in lines
    assert f"gone   UNHEALTHY  {gone}  (directory does not exist)" in lines
    assert '       allowed tools: ["Read", "Grep"]; disallowed tools: [] (explicitly none)' in lines
    assert '       permission mode: plan; allowed tools: inherited; disallowed tools: ["Write"]' in lines
    after_deep = lines[lines.index(f"deep   ok         {deep}") + 2]
    assert after_deep.startswith("tools  ")  # both lists inherited: no tools line for deep


def test_list_json_and_empty(runner, project):
    assert "No agents in" in run(runner, "list").output
    path = project("p")
    run(runner, "add", "a", str(path), "-d", "x", "--allowed-tools", "[]")
    [item] = json.loads(run(runner, "list", "--json").output)
    assert item["name"] == "a" and item["allowed_tools"] == [] and item["healthy"] is True


def test_describe_shows_every_field(runner, project, write_config):
    path = project("p", {"CLAUDE.md": "c1\nc2\n", "README.md": "r1\n", ".mcp.json": '{"mcpServers": {"db": {}}}',
                         "package.json": "{}", "migrations/x.sql": ""})
    write_config(f"""
        agents:
          a:
            directory: {path}
            model: sonnet
            allowed_tools: [Read]
        settings:
          default_timeout: 90
          default_disallowed_tools: [Write]
          default_permission_mode: plan
    """)
    result = run(runner, "describe", "a", "--preview-lines", "1")
    assert result.exit_code == 0, result.output
    expected = [
        "name:              a",
        f"directory:         {path}",
        "description:       Project in p. MCP: db. Stack: Node.js, Migrations. (generated; none stored)",
        "timeout:           90 s (settings default)",
        "model:             sonnet",
        "max budget:        no cap",
        "permission mode:   plan (settings default)",
        "allowed tools:     [\"Read\"]",
        "disallowed tools:  inherited from settings ([\"Write\"])",
        "runtime:           claude (default)",
        "health:            ok",
        "CLAUDE.md:         yes",
        "README:            yes",
        ".mcp.json:         yes: db",
        "stacks:            Node.js",
        "databases:         Migrations",
    ]
    assert result.output.splitlines()[: len(expected)] == expected
    assert "--- CLAUDE.md (first 1 lines) ---\nc1\n" in result.output
    as_json = json.loads(run(runner, "describe", "a", "--json").output)
    assert as_json["timeout"] == 90 and as_json["model"] == "sonnet" and "claude_md_preview" not in as_json


@pytest.mark.parametrize("command", [["list"], ["describe", "a"], ["add", "b", "/"], ["update", "a", "--timeout", "3"],
                                     ["remove", "a"]])
def test_every_command_reports_a_broken_config(runner, write_config, command):
    path = write_config("agents:\n  a:\n    directory: /p\n    colour: red\n")
    before = path.read_bytes()
    result = run(runner, *command)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {path} is not a valid agents.yaml: unknown key 'colour' in agents.a")
    assert "Hint: Edit" in result.stderr and "Traceback" not in result.output
    assert path.read_bytes() == before


# --- doctor -------------------------------------------------------------------------------


def test_doctor_all_good(runner, mcp_claude, project):
    assert run(runner, "init").exit_code == 0
    run(runner, "add", "a", str(project("p")), "-d", "x", "--permission-mode", "plan")
    result = run(runner, "doctor")
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"claude 2.1.328 (Claude Code) at {mcp_claude.path}" in out
    assert "claude supports every option agent-dispatch uses" in out
    assert "permission modes this claude accepts: acceptEdits, auto, bypassPermissions, manual, dontAsk, plan" in out
    assert f"registered with Claude Code as 'agent-dispatch': {SCRIPT} serve" in out
    assert "is valid (1 agent(s))" in out and "agent a: " in out
    assert out.rstrip().endswith("All checks passed.")
    assert {tuple(r["argv"][:2]) for r in mcp_claude.runs()} >= {("--version",), ("--help",), ("mcp", "get")}


def test_doctor_reports_each_problem_with_its_fix(runner, mcp_claude, project, write_config, monkeypatch):
    monkeypatch.setenv("FAKE_HELP", HELP.replace("--max-budget-usd", "--max-spend").replace('"manual",', ""))
    gone = project("gone")
    ok = project("ok")
    write_config(f"""
        agents:
          gone: {{directory: {gone}}}
          strict: {{directory: {ok}, permission_mode: manual}}
        settings: {{default_permission_mode: default}}
    """)
    gone.rmdir()
    result = run(runner, "doctor")
    assert result.exit_code == 1
    out = result.output
    assert "FAIL  this claude lacks options agent-dispatch uses: --max-budget-usd\n      fix: update Claude Code" in out
    assert "FAIL  agent-dispatch is not registered with Claude Code" in out
    assert "      fix: agent-dispatch init" in out
    assert f"FAIL  agent gone: {gone}: directory does not exist\n      fix: restore the directory, or point " \
           "the agent at its new place: agent-dispatch update gone --directory NEW_DIR" in out
    assert "FAIL  agent strict: cannot run: permission mode 'manual' is not accepted by this claude" in out
    assert "      fix: agent-dispatch update strict --permission-mode acceptEdits  (one of the accepted" in out
    assert "FAIL  settings.default_permission_mode 'default' is not accepted by this claude (it accepts " in out
    assert "so agents without their own mode cannot run (gone)" in out
    assert "5 problem(s) found." in out


def test_doctor_fails_when_claude_code_cannot_connect(runner, mcp_claude, monkeypatch):
    assert run(runner, "init").exit_code == 0
    monkeypatch.setenv("FAKE_MCP_STATUS", "✘ Failed to connect")
    result = run(runner, "doctor")
    assert result.exit_code == 1
    assert "FAIL  Claude Code cannot connect to the registered server: ✘ Failed to connect" in result.output
    assert f"fix: run `{SCRIPT} serve` by hand to see why" in result.output


def test_doctor_without_claude_or_config(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("AGENT_DISPATCH_CLAUDE", str(tmp_path / "nope"))
    result = run(runner, "doctor")
    assert result.exit_code == 1
    assert f"FAIL  AGENT_DISPATCH_CLAUDE={tmp_path / 'nope'} is not an executable" in result.output
    assert "FAIL  no config at" in result.output and "fix: agent-dispatch init" in result.output
    monkeypatch.delenv("AGENT_DISPATCH_CLAUDE")
    monkeypatch.setenv("PATH", str(tmp_path))
    result = run(runner, "doctor")
    assert "FAIL  claude (Claude Code) is not on PATH\n      fix: npm install -g @anthropic-ai/claude-code" \
        in result.output


def test_doctor_reports_a_broken_config_and_loose_modes(runner, mcp_claude, write_config):
    path = write_config("agents: {a: {directory: /p, timeout: 0}}\n")
    assert "FAIL  " + f"{path} is not a valid agents.yaml: agents.a.timeout" in run(runner, "doctor").output
    path.write_text("agents: {}\n")
    path.chmod(0o644)
    result = run(runner, "doctor")
    assert f"warn  {path} is readable by others (mode 644, expected 600)\n      fix: chmod 600 {path}" in result.output


def test_help_parsing_helpers():
    assert permission_modes(HELP) == ["acceptEdits", "auto", "bypassPermissions", "manual", "dontAsk", "plan"]
    assert permission_modes("--permission-mode <mode>  no list here\n  --other x") is None
    assert permission_modes("nothing") is None
    assert missing_options(HELP) == []
    assert missing_options(HELP.replace("  --model <model>", "  --modelx <model>")) == ["--model"]
    assert registered_command("x:\n  Command: /a b/c\n  Args: serve --x\n") == "/a b/c serve --x"
    assert registered_command("nothing") is None
    assert registration_problem("  Status: ✔ Connected\n") is None
    assert registration_problem("x") is None
    assert registration_problem("  Status: ✘ Failed to connect\n  Issue: CONNECTION_CLOSED\n") == \
        "✘ Failed to connect (CONNECTION_CLOSED)"


# --- the installed console script ---------------------------------------------------------


def script(*args, **kwargs):
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, **kwargs)


def test_console_script_round_trip(project, config_path):
    path = project("p", {"README.md": "Readme text of the sample project.\n"})
    added = script("add", "a", str(path))
    assert added.returncode == 0, added.stderr
    assert "Description (generated): Readme text of the sample project." in added.stdout
    listed = script("list")
    assert listed.returncode == 0 and f"a  ok         {path}" in listed.stdout
    assert script("update", "a", "--timeout", "5").returncode == 0
    assert "timeout:           5 s" in script("describe", "a").stdout
    missing = script("remove", "zzz")
    assert missing.returncode == 1 and missing.stderr.startswith("Error: no agent named 'zzz'")
    assert script("update", "a").returncode == 2
    assert script("--version").stdout.strip().startswith("agent-dispatch, version ")


def test_console_script_broken_config_has_no_traceback(write_config):
    path = write_config("agents:\n  a: {directory: /p}\n  a: {directory: /q}\n")
    result = script("list")
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: {path} is not valid YAML: found duplicate key 'a'")
    assert "Traceback" not in result.stderr


def test_list_imports_neither_mcp_nor_pydantic_once_validated(project, write_config):
    path = project("p")
    write_config(f"agents:\n  a: {{directory: {path}}}\n")
    assert script("list").returncode == 0  # validates once and stamps the bytes
    code = "import sys; sys.argv = ['agent-dispatch', 'list']; from agent_dispatch.cli import main; main()"
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time")}
    assert "agent_dispatch.config" in imported
    assert not {"mcp", "pydantic", "agent_dispatch.models", "agent_dispatch.dispatcher"} & imported
    assert f"a  ok         {path}" in result.stdout


@pytest.mark.parametrize("command", [["--help"], ["describe", "a"], ["update", "a", "--timeout", "5"], ["doctor"],
                                     ["add", "b", "{dir}"], ["remove", "a"]])
def test_agent_commands_never_import_mcp(project, write_config, command, monkeypatch, tmp_path):
    monkeypatch.setenv("AGENT_DISPATCH_CLAUDE", str(tmp_path / "no-claude"))
    path = project("p")
    write_config(f"agents:\n  a: {{directory: {path}}}\n")
    argv = [arg.replace("{dir}", str(path)) for arg in command]
    code = f"import sys; sys.argv = ['agent-dispatch', *{argv!r}]; from agent_dispatch.cli import main; main()"
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                            timeout=60)
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time")}
    assert "agent_dispatch.cli" in imported
    assert not {name for name in imported if name == "mcp" or name.startswith("mcp.")}
