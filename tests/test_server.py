"""The installed server driven by the SDK's MCP client over stdio: every tool, and hostile input."""

from __future__ import annotations

import json
import math
import time

import anyio
import pytest

from mcp_client import call, connect


@pytest.fixture
def agents(write_config, project):
    infra = project("infra", {"CLAUDE.md": "# Infra\n\nRuns the servers with Terraform.\n", ".mcp.json":
                              json.dumps({"mcpServers": {"portainer": {"command": "x"}}})})
    web = project("web", {"README.md": "# Web\n\nThe public web site.\n", "package.json": "{}"})
    write_config(f"""
        agents:
          infra:
            directory: {infra}
            description: Infrastructure agent
            timeout: 30
          web:
            directory: {web}
            timeout: 30
        settings:
          max_concurrency: 3
    """)
    return {"infra": infra, "web": web}


# Echoes the prompt, but never the dialogue's end mark, so a dialogue runs all its rounds.
ECHO_BODY = 'prompt = read_prompt(); record(prompt); emit_result("echo: " + prompt.replace("[RESOLVED]", "[R]"))'


async def test_every_tool_over_stdio(agents, fake_claude, tmp_path):
    fake = fake_claude(ECHO_BODY)
    extra = tmp_path / "projects" / "extra"
    extra.mkdir(parents=True)
    async with connect() as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert {
            "list_agents", "inspect_agent", "add_agent", "update_agent", "remove_agent", "dispatch",
            "dispatch_session", "dispatch_parallel", "dispatch_stream", "dispatch_dialogue", "cache_stats",
            "cache_clear", "dispatch_async", "dispatch_status", "dispatch_wait", "dispatch_cancel",
            "dispatch_jobs", "dispatch_gc", "fetch_result",
        } <= names

        listed = await call(client, "list_agents")
        assert [a["name"] for a in listed] == ["infra", "web"]
        assert listed[0]["mcp_servers"] == ["portainer"]

        inspected = await call(client, "inspect_agent", name="infra", preview_lines=2)
        assert inspected["name"] == "infra" and inspected["timeout"] == 30
        assert inspected["claude_md_preview"].splitlines() == ["# Infra", ""]

        added = await call(client, "add_agent", name="extra", directory=str(extra), allowed_tools="Read, Grep")
        assert added["allowed_tools"] == ["Read", "Grep"]
        updated = await call(client, "update_agent", name="extra", timeout=12, allowed_tools="none")
        assert updated["timeout"] == 12 and "allowed_tools" not in updated

        first = await call(client, "dispatch", agent="infra", task="check disk", caller="ops", goal="a report")
        assert first["success"] is True and first["agent"] == "infra"
        assert "## Goal\na report" in first["result"] and "## Task\ncheck disk" in first["result"]
        assert first["session_id"] and first["cost_usd"] == pytest.approx(0.0123)
        again = await call(client, "dispatch", agent="infra", task="check disk", caller="ops", goal="a report")
        assert again["cached"] is True and again["result"] == first["result"]
        stats = await call(client, "cache_stats")
        assert stats["hits"] == 1 and stats["size"] == 1 and set(stats) >= {"misses", "evictions", "hit_rate", "ttl"}
        assert (await call(client, "cache_clear")) == {"cleared": 1}

        session = await call(client, "dispatch_session", agent="web", task="hello")
        cont = await call(client, "dispatch_session", agent="web", task="more", session_id=session["session_id"])
        assert cont["session_id"] == session["session_id"]
        assert fake.runs()[-1]["argv"][fake.runs()[-1]["argv"].index("--resume") + 1] == session["session_id"]

        items = [{"agent": "infra", "task": "one"}, {"agent": "web", "task": "two", "return_ref": True}]
        par = await call(client, "dispatch_parallel", dispatches=json.dumps(items))
        assert par[0]["result"] == "echo: one" and par[1]["summary"] == "echo: two"
        fetched = await call(client, "fetch_result", ref=par[1]["ref"], max_chars=3)
        assert fetched["result"] == "ech" and fetched["truncated"] is True and fetched["full_size"] == 9
        agg = await call(client, "dispatch_parallel", dispatches=json.dumps(items[:1]), aggregate="web")
        assert agg["individual_results"][0]["success"] and "Combine the results" in agg["aggregated"]["result"]

        progress: list[str] = []

        async def on_progress(p, total, message):
            progress.append(message)

        streamed = await client.call_tool(
            "dispatch_stream", {"agent": "infra", "task": "stream me"}, progress_callback=on_progress
        )
        assert json.loads(streamed.content[0].text)["result"] == "echo: stream me"
        assert progress and "stream me" in progress[-1]

        dialogue = await call(client, "dispatch_dialogue", requester="infra", responder="web", topic="ports?",
                              max_rounds=2)
        assert dialogue["rounds"] == 2 and len(dialogue["conversation"]) == 4
        assert [m["role"] for m in dialogue["conversation"]] == ["responder", "requester"] * 2

        job = await call(client, "dispatch_async", agent="web", task="later")
        assert job["status"] == "pending" and len(job["job_id"]) == 32
        waited = await call(client, "dispatch_wait", job_id=job["job_id"], timeout_seconds=20)
        assert waited["status"] == "done" and waited["result"]["result"] == "echo: later"
        assert (await call(client, "dispatch_status", job_id=job["job_id"]))["status"] == "done"
        assert (await call(client, "dispatch_cancel", job_id=job["job_id"]))["outcome"] == "already_terminal"
        assert job["job_id"] in [j["id"] for j in await call(client, "dispatch_jobs", status="done")]
        assert (await call(client, "dispatch_gc", max_age_days=30))["deleted"] == 0

        assert (await call(client, "remove_agent", name="extra"))
        assert [a["name"] for a in await call(client, "list_agents")] == ["infra", "web"]


async def test_errors_are_json_envelopes(agents, fake_claude):
    fake = fake_claude()
    async with connect() as client:
        unknown = await call(client, "dispatch", agent="nope", task="x")
        assert "nope" in unknown["error"] and "infra" in unknown["error"] and "web" in unknown["error"]
        assert unknown["hint"]

        wrong_type = await client.call_tool("dispatch", {"agent": "infra", "task": {"not": "text"}})
        body = json.loads(wrong_type.content[0].text)
        assert "error" in body and "task" in body["error"]

        nested = "[" * 100_000 + "]" * 100_000
        assert "error" in await call(client, "dispatch_parallel", dispatches=nested)
        assert "error" in await call(client, "dispatch_parallel", dispatches="not json")
        bad_item = json.dumps([{"agent": "infra", "task": "ok"}, {"agent": "ghost", "task": "x"}])
        assert "ghost" in (await call(client, "dispatch_parallel", dispatches=bad_item))["error"]
        assert fake.runs() == [], "a rejected parallel call must start nothing"

        for days in (0, -1, math.inf):
            assert "error" in await call(client, "dispatch_gc", max_age_days=days)
        for hostile in ("../x", "A" * 32, "a" * 31, "a" * 32 + "\n", "a" * 31 + "\x00"):
            assert "error" in await call(client, "dispatch_status", job_id=hostile)
            assert "error" in await call(client, "fetch_result", ref=hostile)

        assert (await call(client, "dispatch_cancel", job_id="b" * 32))["outcome"] == "not_found"

        flag = await call(client, "dispatch_session", agent="infra", task="x", session_id="--dangerously-skip")
        assert flag["success"] is False and flag["error_type"] == "invalid_input"
        assert fake.runs() == []

        nul = await call(client, "dispatch", agent="infra", task="a\x00b")
        assert "success" in nul or "error" in nul
        big = "x" * (8 * 1024 * 1024)
        huge = await call(client, "dispatch", agent="infra", task="size", context=big)
        assert huge["success"] is True and len(huge["result"]) > len(big)
        assert (await call(client, "list_agents"))[0]["name"] == "infra"


async def test_unreadable_config_is_an_envelope(write_config, fake_claude):
    write_config("agents: [this is: not a mapping\n")
    async with connect() as client:
        for tool, args in (("list_agents", {}), ("dispatch", {"agent": "a", "task": "b"}), ("cache_stats", {})):
            answer = await call(client, tool, **args)
            assert "error" in answer and answer.get("hint"), (tool, answer)


async def test_server_answers_while_dispatches_run(agents, fake_claude, monkeypatch):
    fake_claude()
    monkeypatch.setenv("FAKE_CLAUDE_SLEEP", "3")
    async with connect() as client:
        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(lambda n=n: call(client, "dispatch", agent="infra", task=f"slow {n}"))
            await anyio.sleep(0.5)
            started = time.monotonic()
            listed = await call(client, "list_agents")
            stats = await call(client, "cache_stats")
            elapsed = time.monotonic() - started
            assert listed and "size" in stats
            assert elapsed < 1.0, f"other calls waited {elapsed:.2f}s behind running dispatches"
