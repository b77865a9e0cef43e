"""`agent-dispatch group add|list|inspect|update|remove`: groups of agents that work together."""

from __future__ import annotations

import json
from typing import Any

import click

from agent_dispatch.cli._common import json_option, usage_errors

MEMBER_HELP = "A member as AGENT or AGENT:what it is used for (repeat the option for more)."


@click.group("group")
def group() -> None:
    """Groups of agents that work together (list_groups, inspect_group, the `group` parameter)."""


def _members(values: tuple[str, ...], option: str) -> list[str]:
    from agent_dispatch import config

    with usage_errors(option):
        config.parse_members(list(values))  # a malformed member is a usage error, before any file is read
    return list(values)


@group.command("add")
@click.argument("name")
@click.option("-d", "--description", default="", help="What the group is for (shown to callers, never to members).")
@click.option("--shared-context", default="", help="Facts added to the context of every dispatch through the group.")
@click.option("--member", "members", multiple=True, metavar="AGENT[:USE_FOR]", help=MEMBER_HELP)
def add(name: str, description: str, shared_context: str, members: tuple[str, ...]) -> None:
    """Create group NAME; its members must be registered agents."""
    from agent_dispatch import config
    from agent_dispatch.models import check_agent_name

    with usage_errors("NAME"):
        check_agent_name(name)
    listed = _members(members, "--member")
    created = config.add_group(config.ConfigStore(), name, description=description, shared_context=shared_context,
                               members=listed)
    names = ", ".join(m.agent for m in created.members) or "no members yet"
    click.echo(f"Added group {name!r}: {names}")


@group.command("update")
@click.argument("name")
@click.option("-d", "--description", default="", help='New description; "none" clears it.')
@click.option("--shared-context", default="", help='New shared context; "none" clears it.')
@click.option("--add-member", "add_members", multiple=True, metavar="AGENT[:USE_FOR]",
              help="Add a member, or change what an existing member is used for (repeatable).")
@click.option("--remove-member", "remove_members", multiple=True, metavar="AGENT",
              help="Drop a member, also one whose agent was removed (repeatable).")
def update(name: str, description: str, shared_context: str, add_members: tuple[str, ...],
           remove_members: tuple[str, ...]) -> None:
    """Change group NAME; pass only what changes."""
    from agent_dispatch import config

    if not (description or shared_context or add_members or remove_members):
        raise click.UsageError("nothing to update: pass --description, --shared-context, --add-member or "
                               "--remove-member")
    listed = _members(add_members, "--add-member")
    changed = config.update_group(config.ConfigStore(), name, description=description, shared_context=shared_context,
                                  add_members=listed, remove_members=list(remove_members))
    names = ", ".join(m.agent for m in changed.members) or "no members"
    click.echo(f"Updated group {name!r}: {names}")


@group.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Delete group NAME (its agents stay registered)."""
    from agent_dispatch import config

    config.remove_group(config.ConfigStore(), name)
    click.echo(f"Removed group {name!r}; its agents are still registered.")


def _member_line(member: dict[str, Any]) -> str:
    state = "unknown agent (removed)" if member.get("unknown") else ("ok" if member["healthy"] else "UNHEALTHY")
    use = f"  {member['use_for']}" if member["use_for"] else ""
    return f"  - {member['agent']} ({state}){use}"


@group.command("list")
@json_option("Print the list_groups answer as JSON (errors too).")
def list_groups(as_json: bool) -> None:
    """List every group with its members."""
    from agent_dispatch import config

    store = config.ConfigStore()
    items = config.group_listing(store.load())
    if as_json:
        click.echo(json.dumps(items, indent=2, ensure_ascii=False))
        return
    if not items:
        click.echo(f"No groups in {store.path}. Add one with: agent-dispatch group add NAME --member AGENT")
        return
    for item in items:
        click.echo(f"{item['name']}: {item['description']}" if item["description"] else item["name"])
        for member in item["members"]:
            click.echo(_member_line(member))


@group.command("inspect")
@click.argument("name")
@json_option("Print the inspect_group answer as JSON (errors too).")
def inspect(name: str, as_json: bool) -> None:
    """Show group NAME: description, shared context and members."""
    from agent_dispatch import config

    info = config.group_inspection(config.ConfigStore().load(), name)
    if as_json:
        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    click.echo(f"name:           {info['name']}")
    click.echo(f"description:    {info['description'] or '(none)'}")
    click.echo(f"shared context: {info['shared_context'] or '(none)'}")
    click.echo("members:" if info["members"] else "members:        none")
    for member in info["members"]:
        click.echo(_member_line(member))


def register(top: click.Group) -> None:
    top.add_command(group)
