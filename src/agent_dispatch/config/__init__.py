"""Configuration: where agents.yaml lives, reading and writing it, and the agent operations.

    paths    config_path(), jobs_dir(), usage_log_path(), runtime_dir(), claude_command()
    store    ConfigStore: load() (cached, validated), modify(fn) (locked, atomic), create()
    agents   AgentChanges.from_inputs(), add_agent(), update_agent(), remove_agent(), find_agent()
    groups   add_group(), update_group(), remove_group(), group_listing(), group_inspection(),
             through_group()
    listing  agent_listing(), agent_inspection(), project_of() (local, or over ssh for a `host`)
    detect   (agent_dispatch.detect) detect_project(), generate_description(), preview()

Everything is re-exported here: callers write `from agent_dispatch import config` and use
`config.ConfigStore`, `config.add_agent`, ...
"""

from __future__ import annotations

from agent_dispatch.config.agents import (
    AgentChanges,
    add_agent,
    add_agent_with_changes,
    agent_not_found,
    existing_directory,
    find_agent,
    inspect_agent,
    list_agents,
    remove_agent,
    update_agent,
)
from agent_dispatch.config.groups import (
    add_group,
    find_group,
    group_inspection,
    group_listing,
    parse_members,
    remove_group,
    through_group,
    update_group,
)
from agent_dispatch.config.listing import agent_inspection, agent_listing, project_of
from agent_dispatch.config.paths import (
    CLAUDE_ENV,
    CONFIG_ENV,
    JOBS_DIR_ENV,
    RUNTIME_DIR_ENV,
    USAGE_LOG_ENV,
    claude_command,
    config_path,
    default_config_path,
    jobs_dir,
    runtime_dir,
    usage_log_path,
)
from agent_dispatch.config.store import (
    LOCK_TIMEOUT,
    STARTER,
    AgentRecord,
    ConfigStore,
    describe_validation,
)
from agent_dispatch.detect import (
    ProjectInfo,
    detect_project,
    generate_description,
    preview,
    suggest_runtime,
)

__all__ = [
    "CLAUDE_ENV",
    "CONFIG_ENV",
    "JOBS_DIR_ENV",
    "RUNTIME_DIR_ENV",
    "USAGE_LOG_ENV",
    "LOCK_TIMEOUT",
    "STARTER",
    "AgentChanges",
    "AgentRecord",
    "ConfigStore",
    "ProjectInfo",
    "add_agent",
    "add_agent_with_changes",
    "add_group",
    "agent_inspection",
    "agent_listing",
    "project_of",
    "agent_not_found",
    "claude_command",
    "config_path",
    "default_config_path",
    "describe_validation",
    "detect_project",
    "existing_directory",
    "find_agent",
    "find_group",
    "generate_description",
    "group_inspection",
    "group_listing",
    "inspect_agent",
    "jobs_dir",
    "list_agents",
    "parse_members",
    "preview",
    "suggest_runtime",
    "remove_agent",
    "remove_group",
    "runtime_dir",
    "through_group",
    "update_agent",
    "update_group",
    "usage_log_path",
]
