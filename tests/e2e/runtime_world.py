"""Fixtures for the Codex and Gemini e2e tests: the pinned real CLI, its stand-in API, a world.

A CLI is found through env AGENT_DISPATCH_E2E_CODEX / AGENT_DISPATCH_E2E_GEMINI, else the
cache path of `scripts/install-agent-cli NAME`. When it is missing the test FAILS under CI
(env CI set) and is skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from standin_apis import GeminiStandIn, ResponsesStandIn

from conftest import _LEAKY_PREFIXES, E2E, REPO

INSTALLER = REPO / "scripts" / "install-agent-cli"
E2E_DIR = Path(__file__).resolve().parent


def pinned(name: str) -> str:
    return (E2E_DIR / f"{name.upper()}_CLI_VERSION").read_text().strip()


def locate(name: str) -> Path:
    """The pinned CLI `name`; fails under CI, skips locally, when it is not installed."""
    override = os.environ.get(f"AGENT_DISPATCH_E2E_{name.upper()}")
    why = ""
    if override:
        path = Path(override)
        why = f"AGENT_DISPATCH_E2E_{name.upper()}={override} is not executable"
    else:
        out = subprocess.run([str(INSTALLER), name, "--print-path"], capture_output=True, text=True, timeout=30)
        path = Path(out.stdout.strip())
        why = f"the {name} CLI {pinned(name)} is not installed at {path}; run scripts/install-agent-cli {name}"
    if os.access(path, os.X_OK):
        version = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=120,
                                 stdin=subprocess.DEVNULL).stdout
        if pinned(name) in version or not os.environ.get("CI"):
            return path
        why = f"the e2e tier pins {name} {pinned(name)} but {path} says {version.strip()!r}"
    if os.environ.get("CI"):
        pytest.fail(f"e2e tier cannot run in CI: {why}", pytrace=False)
    pytest.skip(f"e2e: {why}")


@pytest.fixture(scope="session")
def codex_cli() -> Path:
    return locate("codex")


@pytest.fixture(scope="session")
def gemini_cli() -> Path:
    return locate("gemini")


def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    for key in list(os.environ):
        if key.startswith((*_LEAKY_PREFIXES, "CODEX_", "OPENAI_", "GEMINI_", "GOOGLE_")):
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    config = home / ".config" / "agent-dispatch" / "agents.yaml"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AGENT_DISPATCH_CONFIG", str(config))
    monkeypatch.setenv("AGENT_DISPATCH_CLAUDE", str(tmp_path / "no-claude-here"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    return home, config


@pytest.fixture
def codex_world(codex_cli, tmp_path, monkeypatch) -> Iterator[E2E]:
    """HOME, config and CODEX_HOME pointing the real codex at a Responses API stand-in."""
    home, config = _isolate(tmp_path, monkeypatch)
    with ResponsesStandIn() as standin:
        codex_home = home / ".codex"
        codex_home.mkdir()
        (codex_home / "config.toml").write_text(
            'model = "standin-model"\nmodel_provider = "standin"\n\n[model_providers.standin]\n'
            f'name = "standin"\nbase_url = "http://127.0.0.1:{standin.port}/v1"\nwire_api = "responses"\n'
            'env_key = "STANDIN_API_KEY"\nrequest_max_retries = 0\nstream_max_retries = 0\n'
        )
        monkeypatch.setenv("CODEX_HOME", str(codex_home))
        monkeypatch.setenv("STANDIN_API_KEY", "test")
        monkeypatch.setenv("AGENT_DISPATCH_CODEX", str(codex_cli))
        yield E2E(home=home, root=tmp_path, config=config, cli=codex_cli, standin=standin)  # type: ignore[arg-type]


@pytest.fixture
def gemini_world(gemini_cli, tmp_path, monkeypatch) -> Iterator[E2E]:
    """HOME with an API-key Gemini setup pointing the real gemini at a Gemini API stand-in."""
    home, config = _isolate(tmp_path, monkeypatch)
    with GeminiStandIn() as standin:
        (home / ".gemini").mkdir()
        (home / ".gemini" / "settings.json").write_text(
            json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}}})
        )
        monkeypatch.setenv("GEMINI_API_KEY", "dummy")
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f"http://127.0.0.1:{standin.port}")
        monkeypatch.setenv("AGENT_DISPATCH_GEMINI", str(gemini_cli))
        yield E2E(home=home, root=tmp_path, config=config, cli=gemini_cli, standin=standin)  # type: ignore[arg-type]


def processes_in(directory: Path) -> list[int]:
    """Pids of processes whose working directory is `directory` (what a dispatch left running)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(os.readlink(entry / "cwd")) == directory:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found
