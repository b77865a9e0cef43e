"""Agents on other runtimes through the front doors: the CLI, the MCP tools and the service."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from agent_dispatch.cli import cli
from mcp_client import call, connect


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def stored(config_path) -> dict:
    return yaml.safe_load(config_path.read_text())["agents"]


def test_add_with_runtime_and_update_back_to_claude(project, config_path):
    path = project("svc", {"README.md": "A service.\n"})
    out = invoke("add", "svc", str(path), "--runtime", "gemini", "--permission-mode", "acceptEdits")
    assert out.exit_code == 0, out.output
    assert stored(config_path)["svc"]["runtime"] == "gemini"
    assert invoke("update", "svc", "--runtime", "none").exit_code == 0
    assert "runtime" not in stored(config_path)["svc"]
    described = invoke("describe", "svc").output
    assert "runtime:" in described and "claude (default)" in described


def test_add_proposes_the_runtime_the_project_is_set_up_for_and_says_so(project, config_path):
    path = project("billing", {"AGENTS.md": "# Billing\n\nInvoices and payments, handled by Codex.\n"})
    out = invoke("add", "billing", str(path))
    assert out.exit_code == 0, out.output
    assert "Runtime: codex (proposed: the project has AGENTS.md and no CLAUDE.md" in out.output
    agent = stored(config_path)["billing"]
    assert agent["runtime"] == "codex" and agent["description"].startswith("Invoices and payments")
    listed = invoke("list").output
    assert "runtime: codex" in listed
    explicit = invoke("add", "billing2", str(path), "--runtime", "claude")
    assert explicit.exit_code == 0 and "proposed" not in explicit.output
    assert stored(config_path)["billing2"]["runtime"] == "claude"


def test_settings_a_runtime_cannot_honour_are_refused_at_add_and_update(project, config_path, write_config):
    path = project("cx")
    refused = invoke("add", "cx", str(path), "--runtime", "codex", "--max-budget", "2")
    assert refused.exit_code != 0 and "cannot honour: max_budget_usd" in refused.output
    assert "Codex supports model and permission_mode" in refused.output
    assert not config_path.exists() or "cx" not in (stored(config_path) or {})
    assert invoke("add", "cx", str(path), "--runtime", "codex").exit_code == 0
    before = config_path.read_text()
    for args in (("--allowed-tools", "Read"), ("--permission-mode", "auto"), ("--max-budget", "1")):
        out = invoke("update", "cx", *args)
        assert out.exit_code != 0 and "cannot honour" in out.output, (args, out.output)
    assert config_path.read_text() == before  # a refused update leaves agents.yaml as it was
    unknown = invoke("add", "other", str(path), "--runtime", "copilot")
    assert unknown.exit_code == 2 and "claude, codex, gemini" in unknown.output


def test_a_settings_default_the_runtime_cannot_honour_is_named(project, write_config):
    path = project("g")
    write_config("""
        agents: {}
        settings:
          default_max_budget_usd: 3.0
    """)
    out = invoke("add", "g", str(path), "--runtime", "gemini")
    assert out.exit_code != 0 and "max_budget_usd" in out.output and "settings.default_" in out.output


async def test_tools_take_runtime_and_dispatch_runs_the_agents_cli(project, write_config, fake_cli):
    fake = fake_cli("codex")
    path = project("tooling", {"AGENTS.md": "Tooling.\n"})
    write_config("agents: {}\n")
    async with connect() as client:
        added = await call(client, "add_agent", name="tooling", directory=str(path), runtime="codex")
        assert added["runtime"] == "codex"
        refused = await call(client, "update_agent", name="tooling", max_budget_usd=1.5)
        assert "cannot honour" in refused["error"] and "hint" in refused
        listed = await call(client, "list_agents")
        assert listed[0]["runtime"] == "codex" and listed[0]["has_context_file"] is True
        out = await call(client, "dispatch", agent="tooling", task="-rf everything")
        assert out["success"] is True and out["runtime"] == "codex", out
        assert out["result"].startswith("codex: # You were dispatched") and out["result"].endswith("\n-rf everything")
        again = await call(client, "dispatch", agent="tooling", task="-rf everything")
        assert again["cached"] is True  # the cache works the same for every runtime
        session = await call(client, "dispatch_session", agent="tooling", task="next", session_id=out["session_id"])
        assert session["session_id"] == out["session_id"]
        job = await call(client, "dispatch_async", agent="tooling", task="later")
        done = await call(client, "dispatch_wait", job_id=job["job_id"], timeout_seconds=30)
        assert done["status"] == "done" and done["result"]["result"].endswith("later")
        assert done["result"]["runtime"] == "codex"
        back = await call(client, "update_agent", name="tooling", runtime="gemini")
        assert back["runtime"] == "gemini"
    runs = fake.runs()
    assert len(runs) == 3 and runs[1]["argv"][runs[1]["argv"].index("resume") + 1] == out["session_id"]
    assert runs[1]["stdin"] == "next"  # a resumed session already has the protocol


# A fake codex / gemini for doctor: version, help, the headless start and login status.
DOCTOR_BODY = """
if ARGV == ["--version"]:
    print({version!r})
elif ARGV[-1] == "--help":
    print({help!r})
elif ARGV[:2] == ["login", "status"]:
    print("Not logged in"); sys.exit(1)
else:
    sys.stderr.write({start!r} + "\\\\n"); sys.exit({code})
"""


def test_doctor_checks_each_runtime_in_use(project, write_config, fake_cli, monkeypatch, tmp_path):
    monkeypatch.setenv("AGENT_DISPATCH_CLAUDE", str(tmp_path / "no-claude"))  # claude's own checks just fail
    fake_cli("codex", DOCTOR_BODY.format(
        version="codex-cli 0.169.0", start="No prompt provided via stdin.", code=1,
        help="--json --skip-git-repo-check --cd --sandbox --model --dangerously-bypass-approvals-and-sandbox resume"))
    fake_cli("gemini", DOCTOR_BODY.format(
        version="0.61.0", help="--skip-trust --output-format --approval-mode --model --resume",
        start="Please set an Auth method in your settings.json", code=41))
    write_config(f"""
        agents:
          cx: {{directory: {project("cx")}, runtime: codex}}
          gm: {{directory: {project("gm")}, runtime: gemini}}
    """)
    out = invoke("doctor").output
    assert "codex codex-cli 0.169.0" in out and "codex supports every option" in out
    assert "codex starts headless" in out and "codex login status: Not logged in" in out
    assert "gemini 0.61.0" in out and "this gemini lacks options agent-dispatch uses: --session-id" in out
    assert "gemini cannot start a headless run" in out and "Please set an Auth method" in out


def test_doctor_names_a_missing_runtime_cli(project, write_config, monkeypatch, tmp_path):
    monkeypatch.setenv("AGENT_DISPATCH_CLAUDE", str(tmp_path / "no-claude"))
    monkeypatch.setenv("AGENT_DISPATCH_GEMINI", str(tmp_path / "nowhere" / "gemini"))
    write_config(f"agents:\n  gm: {{directory: {project('gm')}, runtime: gemini}}\n")
    result = invoke("doctor")
    assert result.exit_code == 1 and "Gemini CLI (`gemini`, used by gm) was not found" in result.output
    assert "npm install -g @google/gemini-cli" in result.output
