"""Project detection: what an agent's directory holds, and the descriptions built from it.

`detect_project(directory)` never raises: a missing or unreadable directory is an unhealthy
`ProjectInfo`, and unreadable files or odd encodings are treated as absent text. Results are
cached per directory and revalidated with a few `stat` calls (the directory itself plus the
text files it held), so listing many agents inside a long-running server costs only stats.

This module knows nothing of pydantic, files other than the project's, processes or MCP.
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any, NamedTuple

# Labels users see; the spellings are part of the contract.
STACK_MARKERS: dict[str, tuple[str, ...]] = {
    "Python": ("pyproject.toml", "setup.py", "setup.cfg", "requirements.txt", "Pipfile", "poetry.lock", "uv.lock"),
    "Node.js": ("package.json",),
    "Rust": ("Cargo.toml",),
    "Go": ("go.mod",),
    "Docker": ("Dockerfile", "docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml"),
}
DB_MARKERS: dict[str, tuple[str, ...]] = {
    "Prisma": ("prisma", "schema.prisma"),
    "Alembic": ("alembic.ini", "alembic"),
    "Migrations": ("migrations",),
}
CLAUDE_MD_NAMES = ("CLAUDE.md", ".claude/CLAUDE.md")
# The other agent CLIs' project files: instructions, MCP config, and what marks a project as set up.
AGENTS_MD = "AGENTS.md"
GEMINI_MD = "GEMINI.md"
CODEX_CONFIG = ".codex/config.toml"
GEMINI_SETTINGS = ".gemini/settings.json"
RUNTIME_MARKERS: dict[str, tuple[str, ...]] = {
    "claude": ("CLAUDE.md", ".claude", ".mcp.json"),
    "codex": (AGENTS_MD, ".codex"),
    "gemini": (GEMINI_MD, ".gemini"),
}
_CODEX_MCP_RE = re.compile(r'^\s*\[\s*mcp_servers\.(?:"([^"\n]+)"|([A-Za-z0-9_-]+))\s*\]', re.MULTILINE)
README_NAMES = ("README.md", "README.rst", "README.txt", "README", "readme.md", "Readme.md")
# Top-level entries whose content (not only presence) feeds a ProjectInfo: their stats key the
# cache (`.claude` for the CLAUDE.md inside it).
_CONTENT_NAMES = ("CLAUDE.md", ".claude", *README_NAMES, "pyproject.toml", "package.json", ".mcp.json",
                  AGENTS_MD, GEMINI_MD, ".codex", ".gemini")

TEXT_READ_LIMIT = 64 * 1024
PREVIEW_READ_LIMIT = 256 * 1024
DESCRIPTION_CHARS = 300
_CACHE_MAX = 1024


class ProjectInfo(NamedTuple):
    """What detection found in one directory. Sequences are tuples: a cached value is shared."""

    directory: str
    healthy: bool
    problem: str | None = None
    has_claude_md: bool = False
    has_readme: bool = False
    has_mcp_config: bool = False
    mcp_servers: tuple[str, ...] = ()
    stacks: tuple[str, ...] = ()
    dbs: tuple[str, ...] = ()
    description: str = ""
    claude_md_path: str | None = None
    readme_path: str | None = None
    # Per runtime (name, value) pairs: its context file's path, its MCP servers, its description.
    context_paths: tuple[tuple[str, str], ...] = ()
    runtime_servers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    runtime_descriptions: tuple[tuple[str, str], ...] = ()
    set_up_for: tuple[str, ...] = ()  # the runtimes whose project files are present

    def context_path(self, runtime: str) -> str | None:
        """The runtime's context file (CLAUDE.md, AGENTS.md, GEMINI.md), when the project has one."""
        return self.claude_md_path if runtime == "claude" else dict(self.context_paths).get(runtime)

    def servers_for(self, runtime: str) -> tuple[str, ...]:
        return self.mcp_servers if runtime == "claude" else dict(self.runtime_servers).get(runtime, ())

    def description_for(self, runtime: str) -> str:
        if runtime == "claude":
            return self.description
        return dict(self.runtime_descriptions).get(runtime, self.description)


_cache: dict[str, tuple[tuple[str, ...], tuple[Any, ...], ProjectInfo]] = {}


def detect_project(directory: str | os.PathLike[str]) -> ProjectInfo:
    """Describe the project in `directory` (`~` expanded). Never raises."""
    path = os.path.abspath(os.path.expanduser(os.fspath(directory)))
    cached = _cache.get(path)
    if cached is not None and cached[1] == _cache_key(path, cached[0]):
        return cached[2]
    info, rels, key = _scan(path)
    if key is not None:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[path] = (rels, key, info)
    return info


def generate_description(directory: str | os.PathLike[str], runtime: str = "claude") -> str:
    """The contract's generated description for the project in `directory` ("" when unreadable).

    For a Codex or Gemini agent its own context file (AGENTS.md, GEMINI.md) comes first and its
    own MCP config names the servers.
    """
    return detect_project(directory).description_for(runtime)


def suggest_runtime(directory: str | os.PathLike[str]) -> tuple[str, str] | None:
    """(runtime, why) when the project is set up for exactly one agent CLI other than Claude Code."""
    found = detect_project(directory).set_up_for
    if len(found) == 1 and found[0] != "claude":
        markers = [m for m in RUNTIME_MARKERS[found[0]] if os.path.exists(os.path.join(os.fspath(directory), m))]
        return found[0], f"the project has {' and '.join(markers)} and no CLAUDE.md"
    return None


def preview(path: str | os.PathLike[str] | None, lines: int) -> str | None:
    """The first `lines` lines of a text file, line endings kept; None when there is nothing to show."""
    if path is None or lines <= 0:
        return None
    text = read_text(path, limit=min(PREVIEW_READ_LIMIT, lines * 1000))
    if text is None:
        return None
    return "".join(text.splitlines(keepends=True)[:lines])


def read_text(path: str | os.PathLike[str], limit: int = TEXT_READ_LIMIT) -> str | None:
    """Up to `limit` bytes of a regular file as text, whatever its encoding; None when unreadable."""
    try:
        with open(path, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return None
            data = fh.read(limit)
    except (OSError, ValueError):
        return None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data:
        return None  # binary
    return data.decode("utf-8-sig", errors="replace")


# --- scanning -----------------------------------------------------------------------------


def _stat_key(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode)


def _cache_key(path: str, rels: tuple[str, ...]) -> tuple[Any, ...] | None:
    """Stats that change when anything detection read changes: creating or removing a top-level
    entry changes the directory's mtime, editing a file its own."""
    top = _stat_key(path)
    if top is None:
        return None
    return (top, *(_stat_key(os.path.join(path, rel)) for rel in rels))


def _scan(path: str) -> tuple[ProjectInfo, tuple[str, ...], tuple[Any, ...] | None]:
    """Detect from scratch: (info, the content files it read, the cache key or None)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ProjectInfo(path, healthy=False, problem="directory does not exist"), (), None
    except (OSError, ValueError) as exc:
        return ProjectInfo(path, healthy=False, problem=f"cannot access the directory: {_reason(exc)}"), (), None
    if not stat.S_ISDIR(st.st_mode):
        return ProjectInfo(path, healthy=False, problem="not a directory"), (), None
    try:
        with os.scandir(path) as entries:
            names = {entry.name for entry in entries}
    except OSError as exc:
        return ProjectInfo(path, healthy=False, problem=f"cannot read the directory: {_reason(exc)}"), (), None

    claude_md = _first_file(path, names, CLAUDE_MD_NAMES)
    readme = _first_file(path, names, README_NAMES)
    rels = tuple(name for name in _CONTENT_NAMES if name in names)
    if claude_md is not None and claude_md.endswith(CLAUDE_MD_NAMES[1]):
        rels += (CLAUDE_MD_NAMES[1],)
    rels += tuple(rel for rel in (CODEX_CONFIG, GEMINI_SETTINGS) if rel.split("/", 1)[0] in names)
    # Stats taken before reading: an edit racing this scan leaves a key that no longer matches.
    key = _cache_key(path, rels)
    has_mcp = ".mcp.json" in names
    servers = _mcp_servers(os.path.join(path, ".mcp.json")) if has_mcp else ()
    stacks = tuple(label for label, markers in STACK_MARKERS.items() if names.intersection(markers))
    dbs = tuple(label for label, markers in DB_MARKERS.items() if names.intersection(markers))
    text = (
        (_first_paragraph(read_text(claude_md) or "") if claude_md else "")
        or (_first_paragraph(read_text(readme) or "") if readme else "")
        or (_pyproject_description(os.path.join(path, "pyproject.toml")) if "pyproject.toml" in names else "")
        or (_package_description(os.path.join(path, "package.json")) if "package.json" in names else "")
    )
    others = _other_runtimes(path, names, readme, servers, stacks + dbs)
    info = ProjectInfo(
        directory=path,
        healthy=True,
        has_claude_md=claude_md is not None,
        has_readme=readme is not None,
        has_mcp_config=has_mcp,
        mcp_servers=servers,
        stacks=stacks,
        dbs=dbs,
        description=_compose(text, servers, stacks + dbs, path),
        claude_md_path=claude_md,
        readme_path=readme,
        **others,
    )
    return info, rels, key


def _other_runtimes(
    path: str, names: set[str], readme: str | None, servers: tuple[str, ...], labels: tuple[str, ...]
) -> dict[str, Any]:
    """The Codex and Gemini sides of a project: context files, MCP servers, descriptions."""
    contexts, runtime_servers, descriptions = [], [], []
    for runtime, context, config, read in (
        ("codex", AGENTS_MD, CODEX_CONFIG, _codex_servers),
        ("gemini", GEMINI_MD, GEMINI_SETTINGS, _mcp_servers),
    ):
        context_path = _first_file(path, names, (context,))
        own = read(os.path.join(path, config)) if config.split("/", 1)[0] in names else ()
        if context_path:
            contexts.append((runtime, context_path))
        if own:
            runtime_servers.append((runtime, own))
        text = (_first_paragraph(read_text(context_path) or "") if context_path else "") or (
            _first_paragraph(read_text(readme) or "") if readme else ""
        )
        descriptions.append((runtime, _compose(text, own, labels, path) if text or own else ""))
    set_up = tuple(runtime for runtime, markers in RUNTIME_MARKERS.items() if names.intersection(markers))
    return {
        "context_paths": tuple(contexts),
        "runtime_servers": tuple(runtime_servers),
        "runtime_descriptions": tuple((r, d) for r, d in descriptions if d),
        "set_up_for": set_up,
    }


def _codex_servers(path: str) -> tuple[str, ...]:
    """The `[mcp_servers.NAME]` tables of a Codex config.toml (read without a TOML parser)."""
    text = read_text(path, limit=1024 * 1024) or ""
    names = []
    for match in _CODEX_MCP_RE.finditer(text):
        name = _clean(match.group(1) or match.group(2))[:80]
        if name and name not in names:
            names.append(name)
    return tuple(names)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _first_file(path: str, names: set[str], candidates: tuple[str, ...]) -> str | None:
    for rel in candidates:
        if rel.split("/", 1)[0] in names:
            full = os.path.join(path, rel)
            if os.path.isfile(full):
                return full
    return None


def _mcp_servers(path: str) -> tuple[str, ...]:
    text = read_text(path, limit=1024 * 1024)
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return ()
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        return ()
    return tuple(_clean(name)[:80] for name in servers if isinstance(name, str) and _clean(name))


def _compose(text: str, servers: tuple[str, ...], stack: tuple[str, ...], path: str) -> str:
    parts = [_sentence(text or f"Project in {os.path.basename(path) or path}")]
    if servers:
        parts.append(_sentence("MCP: " + ", ".join(servers)))
    if stack:
        parts.append(_sentence("Stack: " + ", ".join(stack)))
    return " ".join(parts)


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?", "…")) else text + "."


# --- text extraction ----------------------------------------------------------------------

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2028\u2029\ufeff]")
_IMAGE_RE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK_RE = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_UNDERLINE_RE = re.compile(r"^([=\-~^\"'*+#`:.])\1{2,}$")
_RULE_RE = re.compile(r"^(?:[-*_]\s*){3,}$")
_LIST_MARK_RE = re.compile(r"^(?:[-*+>]\s+|\d+[.)]\s+)")
_BOILERPLATE = ("this file provides guidance to claude",)


def _clean(text: str) -> str:
    return " ".join(_CONTROL_RE.sub(" ", text).split())


def _shorten(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] or text[: limit - 1]
    return cut.rstrip(",;:") + "…"


def _meaningful(lines: list[str]) -> str:
    text = _clean(" ".join(lines))
    text = _LINK_RE.sub(r"\1", _IMAGE_RE.sub("", text)).replace("**", "").replace("__", "").strip()
    if len(text) < 12 or not any(ch.isalpha() for ch in text):
        return ""
    if text.lower().startswith(_BOILERPLATE):
        return ""
    return _shorten(text)


def _first_paragraph(text: str) -> str:
    """The first paragraph of Markdown / reST prose: headings, badges, code, HTML, tables skipped."""
    lines = text.splitlines()
    start = 0
    if lines and lines[0].strip() == "---":  # front matter
        for index in range(1, len(lines)):
            if lines[index].strip() in ("---", "..."):
                start = index + 1
                break
    paragraph: list[str] = []
    in_fence = in_comment = False
    for raw in lines[start:]:
        line = raw.strip()
        if in_comment:
            in_comment = "-->" not in line
            continue
        if line.startswith("<!--"):
            in_comment = "-->" not in line
            continue
        if line.startswith(("```", "~~~")):
            in_fence = not in_fence
            line = ""
        elif in_fence:
            continue
        if _UNDERLINE_RE.match(line) and paragraph:  # reST / setext heading: drop its title line
            paragraph.pop()
            line = ""
        if not line or line.startswith(("#", "![", "[![", "<", "|", "..", ":")) or _RULE_RE.match(line):
            found = _meaningful(paragraph)
            if found:
                return found
            paragraph = []
            continue
        paragraph.append(_LIST_MARK_RE.sub("", line))
    return _meaningful(paragraph)


_TOML_SECTION_RE = re.compile(r"^\s*\[([^\[\]]+)\]\s*(?:#.*)?$")
_TOML_DESCRIPTION_RE = re.compile(r"""^\s*description\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')\s*(?:#.*)?$""")


def _pyproject_description(path: str) -> str:
    """`description` of [project] or [tool.poetry]; a tiny reader, since 3.10 has no tomllib."""
    text = read_text(path) or ""
    section = ""
    for line in text.splitlines():
        header = _TOML_SECTION_RE.match(line)
        if header:
            section = header.group(1).strip()
            continue
        if section not in ("project", "tool.poetry"):
            continue
        found = _TOML_DESCRIPTION_RE.match(line)
        if found:
            if found.group(1) is not None:
                try:
                    value = json.loads(f'"{found.group(1)}"')
                except ValueError:
                    value = found.group(1)
            else:
                value = found.group(2)
            cleaned = _clean(value)
            if cleaned:
                return _shorten(cleaned)
    return ""


def _package_description(path: str) -> str:
    try:
        data = json.loads(read_text(path, limit=1024 * 1024) or "null")
    except ValueError:
        return ""
    value = data.get("description") if isinstance(data, dict) else None
    return _shorten(_clean(value)) if isinstance(value, str) else ""
