"""Project detection for remote agents: the few files detection reads, fetched over ssh.

One short ssh command (through the shared connection when there is one) runs the PROBE program
on the host; its answer is laid out as a small private mirror of the project's top level (the
marker names, and the text of CLAUDE.md, the README, pyproject.toml, package.json, .mcp.json),
and `detect.detect_project` reads the mirror as it reads any directory. Answers are cached per
(host, directory) for REMOTE_TTL seconds, failures for FAILED_TTL, and no probe waits longer than
PROBE_TIMEOUT: a dead host marks its agents unhealthy quickly and never holds a listing up for long.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent_dispatch.detect import (
    CLAUDE_MD_NAMES,
    DB_MARKERS,
    PREVIEW_READ_LIMIT,
    README_NAMES,
    STACK_MARKERS,
    ProjectInfo,
    detect_project,
)
from agent_dispatch.transports import ssh
from agent_dispatch.transports.remote import PROBE

REMOTE_TTL = 30.0  # seconds a remote project's answer is reused
FAILED_TTL = 10.0  # seconds before an unreachable host is asked again
PROBE_TIMEOUT = 8.0  # seconds one probe may take, connection included
PROBE_CONNECT_TIMEOUT = 5  # seconds to reach a host that has no shared connection yet
_TEXT_NAMES = (*CLAUDE_MD_NAMES, *README_NAMES, "pyproject.toml", "package.json", ".mcp.json")
_MARKERS = frozenset(
    {name for names in (*STACK_MARKERS.values(), *DB_MARKERS.values()) for name in names}
    | {name.split("/", 1)[0] for name in _TEXT_NAMES}
)

_lock = threading.Lock()
_cache: dict[tuple[str, str], tuple[float, ProjectInfo]] = {}
_mirror_root: Path | None = None


def remote_project(agent: Any, fresh: bool = False) -> ProjectInfo:
    """The ProjectInfo of a remote agent's directory (cached; never raises, never waits past PROBE_TIMEOUT)."""
    target = ssh.target_of(agent)
    if target is None:
        return detect_project(agent.directory)
    key = (target.key, agent.directory)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(key)
    if cached is not None and not fresh and cached[0] > now:
        return cached[1]
    info = _probe(target, agent.directory)
    ttl = REMOTE_TTL if info.healthy or info.problem == "directory does not exist" else FAILED_TTL
    with _lock:
        _cache[key] = (time.monotonic() + ttl, info)
    return info


def prefetch(agents: Iterable[Any]) -> None:
    """Probe every remote agent at once, so a listing waits for the slowest host, not their sum."""
    remote = [agent for agent in agents if getattr(agent, "host", None)]
    if len(remote) < 2:
        return
    with ThreadPoolExecutor(max_workers=min(16, len(remote))) as pool:
        list(pool.map(remote_project, remote))


def forget() -> None:
    """Drop every cached answer (the next listing asks each host again)."""
    with _lock:
        _cache.clear()


def _unhealthy(directory: str, problem: str) -> ProjectInfo:
    return ProjectInfo(directory, healthy=False, problem=problem)


def _probe(target: ssh.SshTarget, directory: str) -> ProjectInfo:
    started = time.monotonic()
    socket, failure = ssh.start_master_now(target, connect_timeout=PROBE_CONNECT_TIMEOUT)
    if failure is not None:
        return _unhealthy(directory, f"cannot reach {target.host}: {failure.message}")
    argv = ssh.probe_argv(target, socket, PROBE, directory, json.dumps(list(_TEXT_NAMES)), str(PREVIEW_READ_LIMIT))
    left = max(1.0, PROBE_TIMEOUT - (time.monotonic() - started))
    try:
        proc = subprocess.run(  # noqa: S603 (argument list; every remote word is quoted by probe_argv)
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=left, start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return _unhealthy(directory, f"{target.host} did not answer within {PROBE_TIMEOUT:g} s")
    except OSError as exc:
        return _unhealthy(directory, f"cannot run ssh: {exc}")
    stderr = proc.stderr.decode("utf-8", errors="replace")
    try:
        answer = json.loads(proc.stdout.decode("utf-8", errors="replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        failure = ssh.classify_ssh_failure(target, proc.returncode, stderr)
        why = failure.message if failure is not None else (stderr.strip().splitlines() or ["no answer"])[-1][:300]
        return _unhealthy(directory, f"cannot read the project on {target.host}: {why}")
    if not isinstance(answer, dict) or not answer.get("ok"):
        problem = answer.get("problem") if isinstance(answer, dict) else None
        return _unhealthy(directory, str(problem or "unreadable answer from the host"))
    return _from_mirror(target, directory, answer)


def _mirror_dir() -> Path:
    global _mirror_root
    if _mirror_root is None:
        _mirror_root = Path(tempfile.mkdtemp(prefix="agent-dispatch-remote-"))  # 0o700
        atexit.register(shutil.rmtree, _mirror_root, True)
    return _mirror_root


def _from_mirror(target: ssh.SshTarget, directory: str, answer: dict[str, Any]) -> ProjectInfo:
    """Lay the answer out as a local mirror and detect from it; paths in the result say `directory`."""
    digest = hashlib.sha256(f"{target.key}\0{directory}".encode()).hexdigest()[:16]
    base = os.path.basename(directory.rstrip("/")) or "project"
    with _lock:
        root = _mirror_dir() / digest
        shutil.rmtree(root, ignore_errors=True)
        mirror = root / base
        mirror.mkdir(parents=True)
        for name in _names(answer.get("dirs")):
            (mirror / name).mkdir(exist_ok=True)
        for name in _names(answer.get("files")):
            (mirror / name).touch()
        texts = answer.get("texts") if isinstance(answer.get("texts"), dict) else {}
        for rel, text in texts.items():
            if rel in _TEXT_NAMES and isinstance(text, str):
                path = mirror / rel
                if path.parent == mirror or path.parent.is_dir():
                    with contextlib.suppress(OSError, UnicodeEncodeError):
                        path.write_bytes(text.encode("latin-1"))
        info = detect_project(mirror)
    return info._replace(directory=directory)


def _names(value: Any) -> list[str]:
    """Only the marker names detection looks at; nothing else of the remote listing is mirrored."""
    if not isinstance(value, list):
        return []
    return [name for name in value if isinstance(name, str) and name in _MARKERS]
