"""Groups of agents and agent labels: the config operations, and every tool over stdio."""

from __future__ import annotations

import pytest
import yaml

from agent_dispatch import config as configmod
from agent_dispatch.errors import AgentNotFoundError, BadArgumentError, GroupExistsError, GroupNotFoundError
from mcp_client import call, connect

ECHO_BODY = 'prompt = read_prompt(); record(prompt); emit_result("echo: " + prompt)'


@pytest.fixture
def shop(write_config, project):
    write_config(f"""
        agents:
          infra: {{directory: {project("infra")}, timeout: 30}}
          analytics: {{directory: {project("analytics")}, timeout: 30}}
          web: {{directory: {project("web")}, timeout: 30}}
        groups:
          shop:
            description: Deploy via infra, then verify via analytics.
            shared_context: Prod runs in the Portainer stack 'shop'.
            members:
              - agent: infra
                use_for: deploy, restart, container logs
              - agent: analytics
                use_for: verify traffic
    """)


def test_group_operations_and_bad_members(shop, config_path):
    store = configmod.ConfigStore()
    group = configmod.add_group(store, "ops", description="Night shift", members=["web:the site", "infra"])
    assert [(m.agent, m.use_for) for m in group.members] == [("web", "the site"), ("infra", "")]
    before = config_path.read_bytes()
    with pytest.raises(AgentNotFoundError, match="nobody.*available agents: infra, analytics, web"):
        configmod.add_group(store, "bad", members=["nobody:x"])
    with pytest.raises(GroupExistsError):
        configmod.add_group(store, "ops")
    with pytest.raises(BadArgumentError, match="agent name"):
        configmod.add_group(store, "bad", members=[":no agent"])
    with pytest.raises(BadArgumentError, match="not a member of group 'ops'; its members: web, infra"):
        configmod.update_group(store, "ops", remove_members=["analytics"])
    with pytest.raises(BadArgumentError, match="nothing to update"):
        configmod.update_group(store, "ops")
    with pytest.raises(GroupNotFoundError, match="available groups: shop, ops"):
        configmod.update_group(store, "nope", description="x")
    assert config_path.read_bytes() == before  # failed edits change nothing

    group = configmod.update_group(store, "ops", description="none", shared_context="Use UTC.",
                                   add_members=["infra:restarts", "analytics"], remove_members=["web"])
    assert group.description == "" and group.shared_context == "Use UTC."
    assert [(m.agent, m.use_for) for m in group.members] == [("infra", "restarts"), ("analytics", "")]
    configmod.update_agent(store, "web", configmod.AgentChanges.from_inputs(description="The site"))
    assert list(yaml.safe_load(config_path.read_text())["groups"]) == ["shop", "ops"]  # agent edits keep groups
    configmod.remove_group(store, "ops")
    assert list(yaml.safe_load(config_path.read_text())["groups"]) == ["shop"]


async def test_group_tools_and_dispatch_through_a_group(shop, fake_claude):
    fake = fake_claude(ECHO_BODY)
    async with connect() as client:
        groups = await call(client, "list_groups")
        assert groups == [{
            "name": "shop", "description": "Deploy via infra, then verify via analytics.",
            "members": [{"agent": "infra", "use_for": "deploy, restart, container logs", "healthy": True},
                        {"agent": "analytics", "use_for": "verify traffic", "healthy": True}],
        }]
        shown = await call(client, "inspect_group", name="shop")
        assert shown["shared_context"] == "Prod runs in the Portainer stack 'shop'." and len(shown["members"]) == 2
        missing = await call(client, "inspect_group", name="nope")
        assert "nope" in missing["error"] and "shop" in missing["error"]

        out = await call(client, "dispatch", agent="infra", task="deploy", context="v2 is tagged", group="shop")
        prompt = fake.runs()[-1]["stdin"]
        assert "Prod runs in the Portainer stack 'shop'." in prompt and "v2 is tagged" in prompt
        assert prompt.index("Portainer") < prompt.index("v2 is tagged")
        assert "Deploy via infra" not in prompt  # the description is for the caller only
        plain = await call(client, "dispatch", agent="infra", task="deploy", context="v2 is tagged")
        assert "cached" not in plain and out["success"]  # the cache keeps groups apart
        again = await call(client, "dispatch", agent="infra", task="deploy", context="v2 is tagged", group="shop")
        assert again["cached"] is True

        refused = await call(client, "dispatch_session", agent="web", task="x", group="shop")
        assert "not a member of group 'shop'" in refused["error"] and "infra, analytics" in refused["error"]
        runs = len(fake.runs())
        bad = await call(client, "dispatch_parallel", dispatches='[{"agent": "infra", "task": "a", "group": "shop"},'
                         ' {"agent": "web", "task": "b", "group": "shop"}]')
        assert bad["error"].startswith("dispatches[1]") and len(fake.runs()) == runs  # nothing ran
        items = await call(client, "dispatch_parallel",
                           dispatches='[{"agent": "analytics", "task": "count", "group": "shop"}]')
        assert "Portainer" in items[0]["result"]
        for tool in ("dispatch_stream", "dispatch_async"):
            answer = await call(client, tool, agent="web", task="x", group="shop")
            assert "not a member" in answer["error"], tool
        job = await call(client, "dispatch_async", agent="analytics", task="later", group="shop")
        record = await call(client, "dispatch_wait", job_id=job["job_id"], timeout_seconds=30)
        assert "Portainer" in record["result"]["result"]

        await call(client, "remove_agent", name="analytics")
        listed = await call(client, "list_groups")
        assert listed[0]["members"][1] == {"agent": "analytics", "use_for": "verify traffic", "healthy": False,
                                          "unknown": True}
        assert (await call(client, "inspect_group", name="shop"))["members"][1]["unknown"] is True


async def test_labels_on_the_agent_tools(shop, tmp_path):
    extra = tmp_path / "projects" / "extra"
    extra.mkdir(parents=True)
    async with connect() as client:
        added = await call(client, "add_agent", name="extra", directory=str(extra),
                           capabilities="docker_logs, deploy_debug", risky_capabilities="restart_services",
                           instructions="Read-only unless told otherwise.")
        assert added["capabilities"] == ["docker_logs", "deploy_debug"]
        assert added["risky_capabilities"] == ["restart_services"]
        listed = {a["name"]: a for a in await call(client, "list_agents")}
        assert listed["extra"]["capabilities"] == ["docker_logs", "deploy_debug"]
        assert listed["extra"]["risky_capabilities"] == ["restart_services"] and "capabilities" not in listed["web"]
        shown = await call(client, "inspect_agent", name="extra")
        assert shown["instructions"] == "Read-only unless told otherwise."
        assert shown["risky_capabilities"] == ["restart_services"]
        updated = await call(client, "update_agent", name="extra", capabilities="none", instructions="none")
        assert "capabilities" not in updated and "instructions" not in updated
        assert updated["risky_capabilities"] == ["restart_services"]
