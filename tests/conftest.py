"""Shared fixtures: an isolated config home, fake `claude` executables, and a tripwire that
fails any non-e2e test which would reach a real `claude` by accident."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent

TRIPWIRE = """#!/bin/sh
echo "$0 $*" >> "{marker}"
echo 'tripwire: a test reached the real claude CLI' >&2
exit 97
"""


@pytest.fixture(autouse=True)
def isolated_env(request, tmp_path_factory, monkeypatch):
    """Every test gets its own HOME, config path and a tripwire `claude` on PATH."""
    if request.node.get_closest_marker("e2e"):
        yield None
        return
    root = tmp_path_factory.mktemp("env")
    home = root / "home"
    home.mkdir()
    bindir = root / "tripwire-bin"
    bindir.mkdir()
    marker = root / "tripwire-hits"
    trip = bindir / "claude"
    trip.write_text(TRIPWIRE.format(marker=marker))
    trip.chmod(0o755)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("AGENT_DISPATCH_CONFIG", str(home / ".config" / "agent-dispatch" / "agents.yaml"))
    monkeypatch.setenv("AGENT_DISPATCH_CLAUDE", str(trip))
    for cli, env in (("codex", "AGENT_DISPATCH_CODEX"), ("gemini", "AGENT_DISPATCH_GEMINI")):
        other = bindir / cli
        other.write_text(TRIPWIRE.format(marker=marker).replace("claude", cli))
        other.chmod(0o755)
        monkeypatch.setenv(env, str(other))
    monkeypatch.delenv("AGENT_DISPATCH_JOBS_DIR", raising=False)
    monkeypatch.delenv("AGENT_DISPATCH_USAGE_LOG", raising=False)
    monkeypatch.setenv("AGENT_DISPATCH_RUNTIME_DIR", str(root / "run"))  # never the real user's slots
    monkeypatch.delenv("AGENT_DISPATCH_SLOT", raising=False)
    monkeypatch.delenv("AGENT_DISPATCH_DEPTH", raising=False)
    yield home
    if marker.exists():
        pytest.fail(f"test reached the real claude CLI: {marker.read_text()}")


@pytest.fixture
def config_path() -> Path:
    return Path(os.environ["AGENT_DISPATCH_CONFIG"])


@pytest.fixture
def write_config(config_path) -> Callable[[str], Path]:
    """Write agents.yaml text (dedented) to the isolated config path."""

    def write(text: str) -> Path:
        config_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        config_path.write_text(textwrap.dedent(text))
        config_path.chmod(0o600)
        return config_path

    return write


@pytest.fixture
def project(tmp_path) -> Callable[..., Path]:
    """Make an agent project directory, optionally with files: project("infra", {"CLAUDE.md": "..."})."""

    def make(name: str = "proj", files: dict[str, str] | None = None) -> Path:
        path = tmp_path / "projects" / name
        path.mkdir(parents=True, exist_ok=True)
        for rel, content in (files or {}).items():
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        return path

    return make


class FakeClaude:
    """A fake `claude` executable: `path`, and the records it wrote (one per run)."""

    def __init__(self, path: Path, record: Path):
        self.path = path
        self.record_file = record

    def runs(self) -> list[dict]:
        if not self.record_file.exists():
            return []
        return [json.loads(line) for line in self.record_file.read_text().splitlines() if line.strip()]


@pytest.fixture
def fake_claude(tmp_path, monkeypatch) -> Callable[..., FakeClaude]:
    """Install a fake `claude` as the command agent-dispatch runs.

    `fake_claude()` echoes the prompt; `fake_claude(body)` runs `body` (Python, with everything
    from tests/fakeclaude.py imported) instead. Environment variables FAKE_CLAUDE_REPLY and
    FAKE_CLAUDE_SLEEP shape the default behaviour.
    """
    counter = {"n": 0}

    def make(body: str | None = None, name: str = "claude") -> FakeClaude:
        counter["n"] += 1
        bindir = tmp_path / f"fake-bin-{counter['n']}"
        bindir.mkdir()
        record = bindir / "runs.jsonl"
        script = bindir / name
        code = textwrap.dedent(body) if body else "main()\n"
        script.write_text(
            f"#!{sys.executable}\n"
            "import sys\n"
            f"sys.path.insert(0, {str(TESTS_DIR)!r})\n"
            "from fakeclaude import *  # noqa\n"
            + code
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        monkeypatch.setenv("AGENT_DISPATCH_CLAUDE", str(script))
        monkeypatch.setenv("FAKE_CLAUDE_RECORD", str(record))
        return FakeClaude(script, record)

    return make


@pytest.fixture
def fake_cli(tmp_path, monkeypatch) -> Callable[..., FakeClaude]:
    """Install a fake `codex` or `gemini` (tests/fakeagents.py) as the command agent-dispatch runs.

    `fake_cli("codex")` answers with the prompt; `fake_cli("gemini", body)` runs `body` (Python,
    with everything from tests/fakeagents.py imported) instead.
    """
    counter = {"n": 0}

    def make(runtime: str, body: str | None = None) -> FakeClaude:
        counter["n"] += 1
        bindir = tmp_path / f"fake-{runtime}-{counter['n']}"
        bindir.mkdir()
        record = bindir / "runs.jsonl"
        script = bindir / runtime
        code = textwrap.dedent(body) if body else f"{runtime}_main()\n"
        script.write_text(
            f"#!{sys.executable}\n"
            "import sys\n"
            f"sys.path.insert(0, {str(TESTS_DIR)!r})\n"
            "from fakeagents import *  # noqa\n"
            + code
        )
        script.chmod(0o755)
        monkeypatch.setenv(f"AGENT_DISPATCH_{runtime.upper()}", str(script))
        monkeypatch.setenv("FAKE_AGENT_RECORD", str(record))
        return FakeClaude(script, record)

    return make
