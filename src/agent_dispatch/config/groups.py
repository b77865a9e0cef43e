"""The group operations shared by the CLI and the MCP tools.

A group names agents that work together (`groups:` in agents.yaml): a `description` for the
caller choosing agents (never sent to members), a `shared_context` added to the context of every
dispatch made through the group, and `members` with what each is used for. Adding or updating
refuses members that are not registered agents; a member whose agent was removed later is
reported `unknown: true`, never an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from agent_dispatch.config.agents import agent_not_found
from agent_dispatch.config.store import ConfigStore, describe_validation
from agent_dispatch.errors import BadArgumentError, GroupExistsError, GroupNotFoundError

if TYPE_CHECKING:
    from agent_dispatch.models import AppConfig, GroupConfig

_LEAVE = object()


def parse_member(text: str) -> tuple[str, str]:
    """`AGENT` or `AGENT:use for` (the CLI's and the tools' member syntax) -> (agent, use_for)."""
    agent, _, use_for = str(text).partition(":")
    agent = agent.strip()
    from agent_dispatch.models import is_valid_agent_name

    if not is_valid_agent_name(agent):
        raise BadArgumentError(
            f"member {str(text)[:80]!r} does not start with an agent name",
            'Write a member as AGENT or AGENT:what it is used for, e.g. "infra:deploy, restart".',
        )
    return agent, use_for.strip()


def parse_members(items: Iterable[str] | str | None) -> list[tuple[str, str]]:
    """Members from a list of `AGENT[:use for]`, or from one string of them separated by ';'."""
    if items is None:
        return []
    if isinstance(items, str):
        items = [part for part in items.split(";") if part.strip()]
    return [parse_member(item) for item in items]


def find_group(config: AppConfig, name: str) -> GroupConfig:
    group = config.groups.get(name) if isinstance(name, str) else None
    if group is None:
        raise group_not_found(name, list(config.groups))
    return group


def group_not_found(name: object, available: list[str]) -> GroupNotFoundError:
    shown = name[:80] if isinstance(name, str) else name
    listed = ", ".join(available) if available else "no groups are defined"
    return GroupNotFoundError(f"no group named {shown!r}; available groups: {listed}")


def _text(value: object, field: str) -> Any:
    """"" / None leave a field, "none" clears it, else the text."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return _LEAVE
    if not isinstance(value, str):
        raise BadArgumentError(f"{field} must be text")
    if value.strip().lower() == "none":
        return ""
    return value.strip()


def _check_members(config: AppConfig, members: list[tuple[str, str]]) -> None:
    unknown = [agent for agent, _ in members if agent not in config.agents]
    if unknown:
        raise agent_not_found(unknown[0], list(config.agents))


def _build(data: dict[str, Any]) -> GroupConfig:
    from pydantic import ValidationError

    from agent_dispatch.models import GroupConfig

    try:
        return GroupConfig.model_validate(data)
    except ValidationError as exc:
        raise BadArgumentError(f"invalid group: {describe_validation(exc)}") from None


def add_group(
    store: ConfigStore,
    name: str,
    *,
    description: str = "",
    shared_context: str = "",
    members: Iterable[str] | str | None = None,
) -> GroupConfig:
    """Create group `name`. Members (`AGENT[:use for]`) must be registered agents."""
    from agent_dispatch.models import check_agent_name

    check_agent_name(name)
    parsed = parse_members(members)
    fields: dict[str, Any] = {"members": [{"agent": agent, "use_for": use} for agent, use in parsed]}
    for key, value in (("description", description), ("shared_context", shared_context)):
        text = _text(value, key)
        if text is not _LEAVE:
            fields[key] = text
    group = _build(fields)

    def add(config: AppConfig) -> GroupConfig:
        if name in config.groups:
            raise GroupExistsError(f"a group named {name!r} already exists")
        _check_members(config, parsed)
        config.groups[name] = group
        return group

    return store.modify(add)


def update_group(
    store: ConfigStore,
    name: str,
    *,
    description: str | None = None,
    shared_context: str | None = None,
    add_members: Iterable[str] | str | None = None,
    remove_members: Iterable[str] | str | None = None,
) -> GroupConfig:
    """Change group `name`: "" leaves a text, "none" clears it; `add_members` adds members or
    changes their use_for; `remove_members` (agent names) drops them, known or not."""
    added = parse_members(add_members)
    if isinstance(remove_members, str):
        remove_members = [part for part in remove_members.replace(";", ",").split(",") if part.strip()]
    removed = [str(agent).strip() for agent in remove_members or []]
    texts = {key: _text(value, key) for key, value in (("description", description),
                                                          ("shared_context", shared_context))}
    texts = {key: value for key, value in texts.items() if value is not _LEAVE}
    if not added and not removed and not texts:
        raise BadArgumentError(f"nothing to update for group {name!r}",
                               'Pass a description, shared context, members to add or remove; "none" clears a text.')

    def update(config: AppConfig) -> GroupConfig:
        group = find_group(config, name)
        missing = [agent for agent in removed if group.member(agent) is None]
        if missing:
            members = ", ".join(m.agent for m in group.members) or "none"
            raise BadArgumentError(f"{missing[0]!r} is not a member of group {name!r}; its members: {members}")
        _check_members(config, added)
        members = [m.model_dump() for m in group.members if m.agent not in removed]
        for agent, use_for in added:
            for member in members:
                if member["agent"] == agent:
                    member["use_for"] = use_for or member["use_for"]
                    break
            else:
                members.append({"agent": agent, "use_for": use_for})
        data = {**group.model_dump(), **texts, "members": members}
        new = _build(data)
        config.groups[name] = new
        return new

    return store.modify(update)


def remove_group(store: ConfigStore, name: str) -> GroupConfig:
    """Delete group `name` (its agents stay registered); returns what was removed."""

    def remove(config: AppConfig) -> GroupConfig:
        group = find_group(config, name)
        del config.groups[name]
        return group

    return store.modify(remove)


def member_listing(config: AppConfig, group: GroupConfig) -> list[dict[str, Any]]:
    """The members as tools answer them: `{agent, use_for, healthy, unknown?}`."""
    from agent_dispatch.detect import detect_project

    out = []
    for member in group.members:
        agent = config.agents.get(member.agent)
        item: dict[str, Any] = {"agent": member.agent, "use_for": member.use_for}
        if agent is None:
            item.update(healthy=False, unknown=True)
        else:
            item["healthy"] = detect_project(agent.directory).healthy
        out.append(item)
    return out


def group_listing(config: AppConfig) -> list[dict[str, Any]]:
    """The `list_groups` answer: `[{name, description, members}]`, in the file's order."""
    return [
        {"name": name, "description": group.description, "members": member_listing(config, group)}
        for name, group in config.groups.items()
    ]


def group_inspection(config: AppConfig, name: str) -> dict[str, Any]:
    """The `inspect_group` answer: `{name, description, shared_context, members}`."""
    group = find_group(config, name)
    return {
        "name": name,
        "description": group.description,
        "shared_context": group.shared_context,
        "members": member_listing(config, group),
    }


def through_group(config: AppConfig, agent: str, group_name: str, context: str) -> str:
    """The context of a dispatch to `agent` made through `group_name`: the group's shared context
    first, then the caller's. BadArgumentError (naming the members) when `agent` is not one."""
    group = find_group(config, group_name)
    if group.member(agent) is None:
        members = ", ".join(m.agent for m in group.members) or "none"
        raise BadArgumentError(
            f"agent {agent!r} is not a member of group {group_name!r}; its members: {members}",
            f"Dispatch to one of its members, or add it with `agent-dispatch group update {group_name} "
            f"--add-member {agent}:...`.",
        )
    if not group.shared_context.strip():
        return context
    shared = f"Shared context of group {group_name}:\n{group.shared_context.strip()}"
    return f"{shared}\n\n{context}" if context.strip() else shared
