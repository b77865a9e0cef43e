"""Project detection on sample projects: descriptions, MCP servers, stacks, health, odd files."""

from __future__ import annotations

import json
import os
import time

import pytest

from agent_dispatch.config.listing import agent_inspection, agent_listing
from agent_dispatch.detect import (
    detect_project,
    generate_description,
    preview,
    suggest_runtime,
)
from agent_dispatch.models import AgentConfig, Settings

CLAUDE_INIT_BOILERPLATE = (
    "# CLAUDE.md\n\nThis file provides guidance to Claude Code (claude.ai/code) when working with code in this "
    "repository.\n\n## Overview\n\nBilling service: invoices,\npayments and refunds.\n\nMore text.\n"
)


def test_claude_md_paragraph_wins_and_mcp_and_stack_follow(project):
    path = project("infra", {
        "CLAUDE.md": CLAUDE_INIT_BOILERPLATE,
        "README.md": "# Readme\n\nA readme line that should not be used here.\n",
        ".mcp.json": json.dumps({"mcpServers": {"portainer": {"command": "x"}, "grafana": {}}}),
        "pyproject.toml": '[project]\nname = "x"\ndescription = "not this"\n',
        "Dockerfile": "FROM scratch\n",
        "alembic.ini": "",
        "prisma/schema.prisma": "",
        "migrations/001.sql": "",
    })
    info = detect_project(path)
    assert info.healthy and info.problem is None
    assert (info.has_claude_md, info.has_readme, info.has_mcp_config) == (True, True, True)
    assert info.mcp_servers == ("portainer", "grafana")
    assert info.stacks == ("Python", "Docker")
    assert info.dbs == ("Prisma", "Alembic", "Migrations")
    assert info.description == (
        "Billing service: invoices, payments and refunds. MCP: portainer, grafana. "
        "Stack: Python, Docker, Prisma, Alembic, Migrations."
    )
    assert generate_description(path) == info.description


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"README.md": "[![ci](https://x/badge.svg)](https://x)\n# Title\n\nThe web shop front end.\n"},
         "The web shop front end."),
        ({"README.rst": "Tool\n====\n\nA command line tool for syncing calendars.\n"},
         "A command line tool for syncing calendars."),
        ({"CLAUDE.md": "---\ntitle: x\n---\n<!-- note\nhidden -->\n```\ncode here is skipped\n```\n"
                       "Real [docs](https://d) text here.\n"},
         "Real docs text here."),
        ({"pyproject.toml": '[tool.x]\ndescription = "wrong section"\n[project]\ndescription = "Parses \\"logs\\""\n'},
         'Parses "logs". Stack: Python.'),
        ({"pyproject.toml": "[tool.poetry]\ndescription = 'Poetry project thing'\n"},
         "Poetry project thing. Stack: Python."),
        ({"pyproject.toml": '[project]\ndescription = "  "\n', "package.json": '{"description": "Node service"}'},
         "Node service. Stack: Python, Node.js."),
        ({"package.json": '{"description": ""}', "Cargo.toml": "", "go.mod": ""},
         "Project in sample. Stack: Node.js, Rust, Go."),
        ({"CLAUDE.md": "# Only a heading\n\nshort\n", "README.md": "Readme wins when CLAUDE.md says nothing."},
         "Readme wins when CLAUDE.md says nothing."),
    ],
)
def test_description_sources(project, files, expected):
    assert generate_description(project("sample", files)) == expected


def test_long_paragraph_is_shortened_at_a_word(project):
    path = project("long", {"CLAUDE.md": "word " * 200})
    description = detect_project(path).description
    assert len(description) <= 300 and description.endswith("word…") and "  " not in description


@pytest.mark.parametrize(
    "content",
    [
        "Café crème service für alle Bürger.\n".encode("latin-1"),
        "\ufeffUTF-16 project description here.\n".encode("utf-16"),
        b"\x00\x01\x02binary\xff\xfe garbage",
        b"\xef\xbb\xbfBOM-prefixed description text.\n",
        b"",
    ],
)
def test_odd_encodings_never_crash(project, content):
    path = project("odd")
    (path / "CLAUDE.md").write_bytes(content)
    (path / ".mcp.json").write_bytes(content)
    (path / "package.json").write_bytes(content)
    info = detect_project(path)
    assert info.healthy and info.has_claude_md and info.mcp_servers == ()
    assert "\x00" not in info.description and info.description.isprintable()


def test_utf16_and_bom_text_is_read(project):
    path = project("u16")
    (path / "CLAUDE.md").write_bytes("\ufeffUTF-16 project description here.\n".encode("utf-16"))
    assert detect_project(path).description == "UTF-16 project description here."


@pytest.mark.parametrize("mcp", ['{"mcpServers": []}', "[1, 2]", "{not json", '{"mcpServers": {"\\u0007": {}}}'])
def test_malformed_mcp_json_lists_no_servers(project, mcp):
    info = detect_project(project("m", {".mcp.json": mcp}))
    assert info.has_mcp_config and info.mcp_servers == ()


def test_unreadable_marker_files_are_skipped(project):
    path = project("dirs")
    (path / "CLAUDE.md").mkdir()  # a directory where a file should be
    (path / "README.md").symlink_to(path / "missing")
    info = detect_project(path)
    assert info.healthy and not info.has_claude_md and not info.has_readme
    assert info.description == "Project in dirs."


def test_missing_and_non_directories_are_unhealthy(tmp_path):
    missing = detect_project(tmp_path / "nope")
    assert not missing.healthy and missing.problem == "directory does not exist"
    file = tmp_path / "file"
    file.write_text("x")
    assert detect_project(file).problem == "not a directory"
    assert detect_project("\x00bad").healthy is False


def test_home_is_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "go.mod").write_text("")
    info = detect_project("~/proj")
    assert info.healthy and info.directory == str(tmp_path / "proj") and info.stacks == ("Go",)


def _bump(path):
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_cached_result_follows_edits(project):
    path = project("c", {"CLAUDE.md": "First description of the project.\n"})
    first = detect_project(path)
    assert detect_project(path) is first  # nothing changed: served from the cache
    (path / "CLAUDE.md").write_text("Second description of the project.\n")
    _bump(path / "CLAUDE.md")
    assert detect_project(path).description == "Second description of the project."
    (path / "Cargo.toml").write_text("")
    _bump(path)
    assert detect_project(path).stacks == ("Rust",)
    (path / ".mcp.json").write_text('{"mcpServers": {"db": {}}}')
    _bump(path)
    assert detect_project(path).mcp_servers == ("db",)
    (path / ".mcp.json").write_text('{"mcpServers": {"db": {}, "web": {}}}')
    _bump(path / ".mcp.json")
    assert detect_project(path).mcp_servers == ("db", "web")


def test_nested_claude_md_is_found_and_followed(project):
    path = project("n", {".claude/CLAUDE.md": "Nested instructions for this agent.\n"})
    assert detect_project(path).description == "Nested instructions for this agent."
    (path / ".claude" / "CLAUDE.md").write_text("Changed nested instructions text.\n")
    _bump(path / ".claude" / "CLAUDE.md")
    assert detect_project(path).description == "Changed nested instructions text."


def test_a_removed_directory_turns_unhealthy(project):
    path = project("gone", {"CLAUDE.md": "Soon gone, this project is.\n"})
    assert detect_project(path).healthy
    for child in path.iterdir():
        child.unlink()
    path.rmdir()
    assert detect_project(path).problem == "directory does not exist"


def test_preview_lines(project, tmp_path):
    path = project("p", {"CLAUDE.md": "".join(f"line {i}\n" for i in range(500))})
    assert preview(path / "CLAUDE.md", 3) == "line 0\nline 1\nline 2\n"
    (path / "short.md").write_text("only\r\nline")
    assert preview(path / "short.md", 5) == "only\r\nline"
    assert preview(path / "CLAUDE.md", 0) is None
    assert preview(None, 5) is None
    assert preview(tmp_path / "missing", 5) is None


def test_listing_shape_and_tri_state_tools(project, tmp_path):
    path = project("l", {"CLAUDE.md": "Listing sample project text.\n", ".mcp.json": '{"mcpServers": {"a": {}}}'})
    inherit = agent_listing("x", AgentConfig(directory=str(path), description="Stored."))
    assert inherit == {
        "name": "x", "directory": str(path), "description": "Stored.", "healthy": True,
        "has_claude_md": True, "has_mcp_config": True, "mcp_servers": ["a"], "runtime": "claude",
    }
    explicit = agent_listing("y", AgentConfig(directory=str(path), allowed_tools=[], disallowed_tools=["Write"],
                                              permission_mode="plan"))
    assert explicit["allowed_tools"] == [] and explicit["disallowed_tools"] == ["Write"]
    assert explicit["permission_mode"] == "plan"
    assert explicit["description"] == "Listing sample project text. MCP: a."  # nothing stored: generated
    broken = agent_listing("z", AgentConfig(directory=str(tmp_path / "nope")))
    assert broken["healthy"] is False and broken["problem"] == "directory does not exist"


def test_inspection_is_flat_with_effective_timeout(project):
    path = project("i", {"CLAUDE.md": "one\ntwo\nthree\n", "README.md": "r1\nr2\n", "go.mod": ""})
    settings = Settings(default_timeout=77)
    out = agent_inspection("i", AgentConfig(directory=str(path), model="sonnet", allowed_tools=["Read"]), settings, 2)
    assert out == {
        "name": "i", "directory": str(path), "description": out["description"], "timeout": 77, "model": "sonnet",
        "allowed_tools": ["Read"], "healthy": True, "has_claude_md": True, "has_readme": True,
        "has_mcp_config": False, "mcp_servers": [], "stacks": ["Go"], "dbs": [],
        "claude_md_preview": "one\ntwo\n", "readme_preview": "r1\nr2\n", "runtime": "claude",
    }
    own = agent_inspection("i", AgentConfig(directory=str(path), timeout=5), settings, 0)
    assert own["timeout"] == 5 and "claude_md_preview" not in own and "readme_preview" not in own
    assert "claude_md_preview" in agent_inspection("i", AgentConfig(directory=str(path)), settings, 10_000)


def test_listing_fifty_agents_costs_only_stats(project):
    """list_agents inside a server: under 3 ms for 50 agents once detection is cached."""
    agents = {}
    for i in range(50):
        path = project(f"p{i}", {
            "CLAUDE.md": f"Project {i} with a description long enough.\n", "README.md": "Readme.\n",
            ".mcp.json": '{"mcpServers": {"a": {}, "b": {}}}', "pyproject.toml": "", "Dockerfile": "",
        })
        agents[f"a{i}"] = AgentConfig(directory=str(path), allowed_tools=["Read"])
    [agent_listing(name, agent) for name, agent in agents.items()]
    timings = []
    for _ in range(30):
        start = time.perf_counter()
        items = [agent_listing(name, agent) for name, agent in agents.items()]
        timings.append(time.perf_counter() - start)
    assert len(items) == 50 and all(item["healthy"] for item in items)
    assert min(timings) < 0.003, f"best of 30: {min(timings) * 1000:.2f} ms"


def test_codex_and_gemini_projects_get_their_own_files_servers_and_descriptions(project):
    path = project("multi", {
        "AGENTS.md": "# Agents\n\nBilling service, run by Codex.\n",
        "GEMINI.md": "Reporting jobs, run by Gemini.\n",
        ".codex/config.toml": '[mcp_servers.postgres]\ncommand = "pg"\n[mcp_servers."my docs"]\nurl = "x"\n',
        ".gemini/settings.json": '{"mcpServers": {"grafana": {}}}',
    })
    codex = agent_listing("c", AgentConfig(directory=str(path), runtime="codex"))
    assert codex["runtime"] == "codex" and codex["has_context_file"] is True
    assert codex["mcp_servers"] == ["postgres", "my docs"] and codex["has_mcp_config"] is True
    assert codex["description"] == "Billing service, run by Codex. MCP: postgres, my docs."
    gemini = agent_inspection("g", AgentConfig(directory=str(path), runtime="gemini"), Settings(), 5)
    assert gemini["context_file"] == "GEMINI.md"
    assert gemini["context_file_preview"] == "Reporting jobs, run by Gemini.\n"
    assert gemini["mcp_servers"] == ["grafana"] and gemini["description"].startswith("Reporting jobs")
    assert generate_description(path, "codex").startswith("Billing service")
    assert suggest_runtime(path) is None  # set up for two CLIs: nothing to propose


def test_a_project_set_up_for_one_other_cli_proposes_it(project):
    proposed = suggest_runtime(project("cx", {"AGENTS.md": "x\n"}))
    assert proposed == ("codex", "the project has AGENTS.md and no CLAUDE.md")
    assert suggest_runtime(project("gm", {".gemini/settings.json": "{}"}))[0] == "gemini"
    assert suggest_runtime(project("both", {"AGENTS.md": "x\n", "CLAUDE.md": "y\n"})) is None
    assert suggest_runtime(project("plain", {"README.md": "z\n"})) is None
