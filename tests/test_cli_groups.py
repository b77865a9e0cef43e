"""`agent-dispatch group add|list|inspect|update|remove` through click, and one run of the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from agent_dispatch.cli import cli

SCRIPT = Path(sys.executable).parent / "agent-dispatch"


@pytest.fixture
def agents(write_config, project):
    write_config(f"""
        agents:
          infra: {{directory: {project("infra")}}}
          analytics: {{directory: {project("analytics")}}}
    """)


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_every_group_command(agents, config_path):
    added = run("group", "add", "shop", "-d", "Deploy, then verify", "--shared-context", "Stack 'shop'.",
                "--member", "infra:deploy, restart", "--member", "analytics")
    assert added.exit_code == 0, added.output
    assert "Added group 'shop': infra, analytics" in added.output
    data = yaml.safe_load(config_path.read_text())["groups"]["shop"]
    assert data == {"description": "Deploy, then verify", "shared_context": "Stack 'shop'.",
                    "members": [{"agent": "infra", "use_for": "deploy, restart"}, {"agent": "analytics"}]}

    listed = run("group", "list")
    assert listed.exit_code == 0 and "shop: Deploy, then verify" in listed.output
    assert "  - infra (ok)  deploy, restart" in listed.output
    as_json = json.loads(run("group", "list", "--json").output)
    assert as_json[0]["members"][1] == {"agent": "analytics", "use_for": "", "healthy": True}

    shown = run("group", "inspect", "shop")
    assert "shared context: Stack 'shop'." in shown.output
    assert json.loads(run("group", "inspect", "shop", "--json").output)["shared_context"] == "Stack 'shop'."

    updated = run("group", "update", "shop", "--add-member", "analytics:verify traffic", "--remove-member", "infra",
                  "--shared-context", "none")
    assert updated.exit_code == 0, updated.output
    inspected = json.loads(run("group", "inspect", "shop", "--json").output)
    assert inspected["shared_context"] == "" and inspected["members"] == [
        {"agent": "analytics", "use_for": "verify traffic", "healthy": True}]

    removed_agent = run("remove", "analytics")  # removing the agent leaves the membership: unknown
    assert removed_agent.exit_code == 0 and "group 'shop' still lists 'analytics'" in removed_agent.output
    listed = run("group", "list")
    assert listed.exit_code == 0 and "analytics (unknown agent (removed))" in listed.output
    assert json.loads(run("group", "list", "--json").output)[0]["members"][0]["unknown"] is True

    removed = run("group", "remove", "shop")
    assert removed.exit_code == 0 and "shop" not in yaml.safe_load(config_path.read_text()).get("groups", {})


def test_bad_members_and_names_leave_the_config_as_it_was(agents, config_path):
    assert run("group", "add", "shop", "--member", "infra").exit_code == 0
    before = config_path.read_bytes()
    unknown = run("group", "add", "other", "--member", "nobody:x")
    assert unknown.exit_code == 1 and "nobody" in unknown.output and "infra, analytics" in unknown.output
    malformed = run("group", "add", "other", "--member", ":x")
    assert malformed.exit_code == 2 and "agent name" in malformed.output
    assert run("group", "add", "bad name").exit_code == 2
    taken = run("group", "add", "shop")
    assert taken.exit_code == 1 and "already exists" in taken.output
    assert run("group", "update", "shop").exit_code == 2  # nothing to update
    not_member = run("group", "update", "shop", "--remove-member", "analytics")
    assert not_member.exit_code == 1 and "its members: infra" in not_member.output
    missing = run("group", "inspect", "nope")
    assert missing.exit_code == 1 and "available groups: shop" in missing.output
    assert run("group", "remove", "nope").exit_code == 1
    assert config_path.read_bytes() == before


def test_the_console_script_lists_groups(agents):
    assert run("group", "add", "shop", "--member", "infra:deploy").exit_code == 0
    proc = subprocess.run([str(SCRIPT), "group", "list", "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["members"][0]["use_for"] == "deploy"
    empty = subprocess.run([str(SCRIPT), "group", "inspect", "nope"], capture_output=True, text=True, timeout=60)
    assert empty.returncode == 1 and "Traceback" not in empty.stderr and "nope" in empty.stderr


def test_labels_through_add_update_list_and_describe(agents, project, config_path):
    directory = project("extra")
    added = run("add", "extra", str(directory), "-d", "Extra", "--capabilities", "docker_logs, deploy_debug",
                "--risky-capabilities", "restart_services", "--instructions", "-Read-only unless told.")
    assert added.exit_code == 0, added.output
    stored = yaml.safe_load(config_path.read_text())["agents"]["extra"]
    assert stored["capabilities"] == ["docker_logs", "deploy_debug"]
    assert stored["instructions"] == "-Read-only unless told."
    listed = run("list")
    assert "capabilities: docker_logs, deploy_debug; risky: restart_services" in listed.output
    assert json.loads(run("list", "--json").output)[-1]["risky_capabilities"] == ["restart_services"]
    described = run("describe", "extra")
    assert "risky labels:" in described.output and "-Read-only unless told." in described.output
    assert run("update", "extra", "--capabilities", "none", "--instructions", "none").exit_code == 0
    stored = yaml.safe_load(config_path.read_text())["agents"]["extra"]
    assert "capabilities" not in stored and "instructions" not in stored
    assert stored["risky_capabilities"] == ["restart_services"]
