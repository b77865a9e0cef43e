"""What `list_agents` and `inspect_agent` show of an agent: its settings and its project.

The project is read where the agent lives: `detect` for a local directory, the ssh probe for
an agent with a `host`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent_dispatch.detect import ProjectInfo, detect_project, preview

if TYPE_CHECKING:  # importing the config package stays free of pydantic and ssh
    from agent_dispatch.models import AgentConfig, Settings


def agent_listing(name: str, agent: AgentConfig) -> dict[str, Any]:
    """One item of the contract's `list_agents` answer (optional keys only when they hold a value).

    `allowed_tools` / `disallowed_tools` appear only when set on the agent, `[]` included, so a
    reader can tell "inherits the defaults" (absent) from "explicitly none" (`[]`).
    """
    info = project_of(agent)
    runtime = agent.runtime or "claude"
    item: dict[str, Any] = {
        "name": name,
        "directory": agent.directory,
        "description": agent.description or info.description_for(runtime),
        "healthy": info.healthy,
        "has_claude_md": info.has_claude_md,
        "has_mcp_config": info.has_mcp_config if runtime == "claude" else bool(info.servers_for(runtime)),
        "runtime": runtime,
    }
    if runtime != "claude":
        item["has_context_file"] = info.context_path(runtime) is not None
    if info.problem:
        item["problem"] = info.problem
    if info.servers_for(runtime):
        item["mcp_servers"] = list(info.servers_for(runtime))
    for key in ("stacks", "dbs"):
        if getattr(info, key):
            item[key] = list(getattr(info, key))
    if agent.permission_mode:
        item["permission_mode"] = agent.permission_mode
    if getattr(agent, "host", None):
        item["host"] = agent.host
    for key in ("allowed_tools", "disallowed_tools"):
        if getattr(agent, key) is not None:
            item[key] = list(getattr(agent, key))
    for key in ("capabilities", "risky_capabilities"):
        if getattr(agent, key, None):
            item[key] = list(getattr(agent, key))
    return item


def agent_inspection(name: str, agent: AgentConfig, settings: Settings, preview_lines: int) -> dict[str, Any]:
    """The contract's flat `inspect_agent` object. `timeout` is the effective one; spawns nothing.

    `preview_lines` is clamped to 0..200; 0 leaves the previews out.
    """
    info = project_of(agent)
    runtime = agent.runtime or "claude"
    out: dict[str, Any] = {
        "name": name,
        "directory": agent.directory,
        "description": agent.description or info.description_for(runtime),
        "timeout": agent.timeout or settings.default_timeout,
        "runtime": runtime,
    }
    for key in ("model", "max_budget_usd", "permission_mode", "allowed_tools", "disallowed_tools",
                "capabilities", "risky_capabilities", "instructions"):
        value = getattr(agent, key, None)
        if value is not None:
            out[key] = list(value) if isinstance(value, list) else value
    if getattr(agent, "host", None):
        out["host"] = agent.host
        options = agent.ssh_options
        if options is not None:
            out["ssh_options"] = options if isinstance(options, dict) else options.model_dump(exclude_none=True)
    if agent.isolation:
        out["isolation"] = agent.isolation
    out.update(
        healthy=info.healthy,
        has_claude_md=info.has_claude_md,
        has_readme=info.has_readme,
        has_mcp_config=info.has_mcp_config if runtime == "claude" else bool(info.servers_for(runtime)),
        mcp_servers=list(info.servers_for(runtime)),
        stacks=list(info.stacks),
        dbs=list(info.dbs),
    )
    if info.problem:
        out["problem"] = info.problem
    from agent_dispatch.models import PREVIEW_LINES_MAX, clamp

    lines = clamp(int(preview_lines), 0, PREVIEW_LINES_MAX)
    previews = [("claude_md_preview", info.claude_md_path), ("readme_preview", info.readme_path)]
    if runtime != "claude":
        from agent_dispatch.runtimes import get_runtime

        out["context_file"] = get_runtime(runtime).context_file
        out["has_context_file"] = info.context_path(runtime) is not None
        previews.insert(0, ("context_file_preview", info.context_path(runtime)))
    for key, path in previews:
        text = preview(path, lines)
        if text is not None:
            out[key] = text
    return out


def project_of(agent: Any) -> ProjectInfo:
    """What the agent's directory holds: read here, or over ssh for an agent with a `host`."""
    if getattr(agent, "host", None):
        from agent_dispatch.transports.probe import remote_project  # spawns ssh; only for remote agents

        return remote_project(agent)
    return detect_project(agent.directory)
