"""Fixtures for the e2e tier: the real Claude Code CLI against a local stand-in API.

The CLI is found through env AGENT_DISPATCH_E2E_CLAUDE, else the cache path of
scripts/install-claude-cli. When it is missing the tier FAILS under CI (env CI set) and is
skipped with a reason otherwise. Each test gets its own HOME, config, stand-in server and
environment pointing the CLI (and our server's agents) at that stand-in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from standin import StandIn

E2E_DIR = Path(__file__).resolve().parent
REPO = E2E_DIR.parents[1]
INSTALLER = REPO / "scripts" / "install-claude-cli"
CLI_VERSION = (E2E_DIR / "CLAUDE_CLI_VERSION").read_text().strip()
AGENT_DISPATCH = Path(sys.executable).with_name("agent-dispatch")

# Variables of an enclosing Claude Code session or a real account must not reach the runs.
_LEAKY_PREFIXES = ("ANTHROPIC_", "CLAUDE", "AGENT_DISPATCH_", "MCP_")


def _locate_cli() -> tuple[Path | None, str]:
    """The real CLI's path, or None and why it was not found."""
    override = os.environ.get("AGENT_DISPATCH_E2E_CLAUDE")
    if override:
        path = Path(override)
        if os.access(path, os.X_OK):
            return path, ""
        return None, f"AGENT_DISPATCH_E2E_CLAUDE={override} is not executable"
    try:
        out = subprocess.run([str(INSTALLER), "--print-path"], capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{INSTALLER} --print-path failed: {exc}"
    path = Path(out.stdout.strip())
    if os.access(path, os.X_OK):
        return path, ""
    return None, f"the Claude Code CLI {CLI_VERSION} is not installed at {path}; run scripts/install-claude-cli"


@pytest.fixture(scope="session")
def claude_cli() -> Path:
    """Path of the real `claude` (pinned version). Fails under CI when missing, skips locally."""
    path, why = _locate_cli()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"e2e tier cannot run in CI: {why}", pytrace=False)
        pytest.skip(f"e2e: {why} (set AGENT_DISPATCH_E2E_CLAUDE or run scripts/install-claude-cli)")
    version = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "DISABLE_AUTOUPDATER": "1"}).stdout.strip()
    if not version.startswith(CLI_VERSION) and os.environ.get("CI"):
        pytest.fail(f"e2e tier pins Claude Code {CLI_VERSION} but {path} is {version!r}", pytrace=False)
    return path


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


@dataclass
class E2E:
    """One test's world: HOME, config, the real CLI and the stand-in it talks to."""

    home: Path
    root: Path
    config: Path
    cli: Path
    standin: StandIn

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(extra)
        return env

    def add_agent(self, name: str, **fields: Any) -> Path:
        """Register agent `name` with a fresh project directory (unless `directory` is given)."""
        directory = Path(fields.pop("directory", self.root / "projects" / name))
        directory.mkdir(parents=True, exist_ok=True)
        data = yaml.safe_load(self.config.read_text()) if self.config.exists() else None
        data = data or {}
        data.setdefault("agents", {})[name] = {"directory": str(directory), "description": f"{name} agent", **fields}
        self.config.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config.write_text(yaml.safe_dump(data))
        self.config.chmod(0o600)
        return directory

    def claude(self, *args: str, prompt: str | None = None, cwd: Path | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real CLI directly (prompt on stdin; stdin closed when there is none)."""
        return subprocess.run(
            [str(self.cli), *args],
            input=prompt,
            stdin=None if prompt is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=cwd or self.home,
            env=self.env(),
            timeout=timeout,
        )

    def agent_dispatch(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(AGENT_DISPATCH), *args], capture_output=True, text=True, cwd=self.home,
                              env=self.env(), stdin=subprocess.DEVNULL, timeout=timeout)

    @asynccontextmanager
    async def mcp(self, **env: str) -> AsyncIterator[Any]:
        """An MCP client session with `agent-dispatch serve` over stdio (`env`: extra variables)."""
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters

        params = StdioServerParameters(command=str(AGENT_DISPATCH), args=["serve"], env=self.env(**env),
                                       cwd=str(self.home))
        async with Client(params) as client:
            yield client

    async def call(self, client: Any, tool: str, timeout: float = 60, progress: Any = None, **arguments: Any) -> Any:
        """Call an MCP tool and return its JSON answer.

        Claude Code hands the model only the structured content, so when there is some it must carry
        everything the text does (directly, or wrapped as {"result": ...} for non-object answers).
        """
        result = await client.call_tool(tool, arguments, read_timeout_seconds=timeout, progress_callback=progress)
        answer = tool_json(result)
        structured = result.structured_content
        if structured is not None and structured != answer:
            assert structured.get("result") == answer or (
                isinstance(answer, dict) and answer.items() <= structured.items()
            ), f"{tool}: structured content {structured!r} does not carry the answer {answer!r}"
        return answer


def tool_json(result: Any) -> Any:
    """The one JSON value a tool answered, from its text content (structured content as fallback)."""
    for block in result.content or []:
        text = getattr(block, "text", None)
        if text is not None:
            return json.loads(text)
    if result.structured_content is not None:
        return result.structured_content
    raise AssertionError(f"tool answered no JSON: {result!r}")


@pytest.fixture
def e2e(claude_cli, standin, tmp_path, monkeypatch) -> E2E:
    """Isolated HOME/config, env pointing the real CLI at the stand-in, and helpers."""
    for key in list(os.environ):
        if key.startswith(_LEAKY_PREFIXES):
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    config = home / ".config" / "agent-dispatch" / "agents.yaml"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "claude").symlink_to(claude_cli)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", standin.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test")
    monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
    monkeypatch.setenv("DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("DISABLE_AUTOUPDATER", "1")
    monkeypatch.setenv("AGENT_DISPATCH_CONFIG", str(config))
    monkeypatch.setenv("AGENT_DISPATCH_CLAUDE", str(claude_cli))
    monkeypatch.setenv("AGENT_DISPATCH_RUNTIME_DIR", str(tmp_path / "run"))  # never the real user's slots
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    return E2E(home=home, root=tmp_path, config=config, cli=claude_cli, standin=standin)
