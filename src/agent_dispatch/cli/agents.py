"""`init`, `add`, `update`, `remove`, `list`, `describe`: the agents in agents.yaml.

Front-door code only: parse options, call `agent_dispatch.config`, print. Imports of the config
package happen inside the commands so `agent-dispatch --help` stays light.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any, TypeVar

import click

from agent_dispatch.cli._common import echo_error, echo_json, json_option, usage_errors

F = TypeVar("F", bound=Callable[..., Any])


def _agent_options(clearing: bool) -> Callable[[F], F]:
    """The options `add` and `update` share; with `clearing`, the help says "none" clears."""
    clear = ' "none" clears it.' if clearing else ""
    options = [
        click.option("-d", "--description", help="What the agent is for (generated from the project when omitted)."
                     if not clearing else f"What the agent is for.{clear}"),
        click.option("--timeout", metavar="SECONDS", help=f"Seconds a dispatch may run.{clear}"),
        click.option("--model", metavar="NAME", help=f"Model for this agent's dispatches, e.g. sonnet.{clear}"),
        click.option("--max-budget", metavar="USD", help=f"Spend cap per dispatch in US dollars.{clear}"),
        click.option("--permission-mode", metavar="MODE",
                     help=f"Claude Code permission mode, e.g. plan (see `agent-dispatch doctor`).{clear}"),
        click.option("--allowed-tools", metavar="LIST",
                     help=f'Comma-separated tools to allow, e.g. "Read,Grep"; "[]" for none.{clear}'),
        click.option("--disallowed-tools", metavar="LIST",
                     help=f'Comma-separated tools to deny; "[]" for none.{clear}'),
        click.option("--instructions", metavar="TEXT",
                     help=f"Standing orders added to the agent's system prompt on every run.{clear}"),
        click.option("--capabilities", metavar="LIST",
                     help=f'Comma-separated labels shown to callers, e.g. "docker_logs,deploy_debug".{clear}'),
        click.option("--risky-capabilities", metavar="LIST",
                     help=f"Comma-separated labels that call for care.{clear}"),
        click.option("--host", metavar="[USER@]HOST",
                     help=f"Run the agent on that machine over ssh (an ~/.ssh/config alias works); DIR is a path "
                          f"there.{clear}"),
        click.option("--ssh-options", metavar="K=V,...",
                     help=f"ssh settings for --host: port, identity_file, jump_host, connect_timeout, e.g. "
                          f'"port=2222,jump_host=admin@gw".{clear}'),
        click.option("--runtime", metavar="CLI",
                     help="Agent CLI that runs it: claude, codex or gemini "
                     + ("(default: what the project is set up for, else claude)." if not clearing
                        else f"(see README).{clear}")),
        click.option("--isolation", metavar="MODE",
                     help="worktree: run each dispatch in a fresh git worktree; none: in the directory itself."),
    ]

    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


_OPTION_NAMES = {"max_budget": "--max-budget", "description": "--description"}


def _changes(**values: Any) -> Any:
    from agent_dispatch.config import AgentChanges

    for key, value in values.items():
        if isinstance(value, str) and not value.strip():
            option = _OPTION_NAMES.get(key, "--" + key.replace("_", "-"))
            raise click.BadParameter('an empty value changes nothing; pass a value, or "none" to clear it.',
                                     param_hint=option)
    with usage_errors():
        return AgentChanges.from_inputs(
            description=values["description"],
            timeout=values["timeout"],
            max_budget_usd=values["max_budget"],
            model=values["model"],
            permission_mode=values["permission_mode"],
            allowed_tools=values["allowed_tools"],
            disallowed_tools=values["disallowed_tools"],
            instructions=values["instructions"],
            capabilities=values["capabilities"],
            risky_capabilities=values["risky_capabilities"],
            host=values.get("host"),
            ssh_options=values.get("ssh_options"),
            isolation=values["isolation"],
            runtime=values["runtime"],
            directory=values.get("directory"),
        )


def _check_mode(changes: Any, name: str | None = None) -> None:
    """A permission mode the installed claude would refuse is a usage error now, not a failed
    dispatch later. Skipped when claude is not there or does not list its modes."""
    mode = changes.values.get("permission_mode")
    if not mode:
        return
    runtime = changes.values.get("runtime")
    if runtime is None and name is not None:  # update: the agent's own runtime
        from agent_dispatch import config

        current = config.ConfigStore().load().agents.get(name)
        runtime = getattr(current, "runtime", None)
    if runtime not in (None, "claude"):
        return  # another CLI's modes; its runtime module checks them
    from agent_dispatch.cli import doctor

    modes = doctor.accepted_modes()
    if modes and mode not in modes:
        raise click.BadParameter(
            f"{mode!r} is not a permission mode the installed claude accepts; it accepts: {', '.join(modes)}.",
            param_hint="--permission-mode",
        )


def _check_name(name: str) -> None:
    from agent_dispatch.models import check_agent_name

    with usage_errors("NAME"):
        check_agent_name(name)


@click.command()
def init() -> None:
    """Create the config, register with Claude Code, and put agent-dispatch on PATH.

    An existing config is never overwritten; an existing registration is left as it is. When
    `agent-dispatch` on PATH is not this one, ~/.local/bin/agent-dispatch is linked to it.
    """
    from agent_dispatch import config
    from agent_dispatch.cli import doctor, onpath
    from agent_dispatch.errors import ConfigError

    store = config.ConfigStore()
    if store.create():
        click.echo(f"Created {store.path}")
    else:
        click.echo(f"Config {store.path} already exists; left unchanged.")
        try:
            store.load()
        except ConfigError as exc:  # registering still helps; the config needs fixing either way
            echo_error(exc.message, exc.hint, label="Warning")

    server = doctor.server_command()
    typed = "agent-dispatch"
    if server[0].endswith("agent-dispatch"):
        typed, told = onpath.ensure_on_path(server[0])
        for line in told:
            click.echo(line)
    _register(server, typed)
    click.echo(f"Next: `{typed} add NAME DIR`, then start a new Claude Code session and ask it to list the agents.")


def _register(server: list[str], typed: str) -> None:
    """Register `server` with Claude Code (user scope) unless a registration is there."""
    from agent_dispatch import config
    from agent_dispatch.cli import doctor
    from agent_dispatch.errors import AgentDispatchError

    args = doctor.registration_args(server)
    claude = config.claude_command()
    if claude is None:
        click.echo("Claude Code's `claude` command was not found, so agent-dispatch is not registered yet.")
        click.echo(f"Install Claude Code ({doctor.INSTALL_FIX}), then run:")
        click.echo("  " + shlex.join(["claude", *args]))
        return
    current = doctor.run_claude(claude, "mcp", "get", doctor.SERVER_NAME, timeout=doctor.MCP_TIMEOUT)
    if current.ok:
        shown = doctor.registered_command(current.out)
        click.echo(f"agent-dispatch is already registered with Claude Code{f' ({shown})' if shown else ''}.")
        if shown and not doctor.same_command(shown, server):
            click.echo(f"Note: that registration runs `{shown}`, not this agent-dispatch (`{' '.join(server)}`). "
                       "To switch:")
            click.echo(f"  claude mcp remove {doctor.SERVER_NAME} -s user && {typed} init")
        return
    added = doctor.run_claude(claude, *args, timeout=doctor.MCP_TIMEOUT)
    if not added.ok:
        raise AgentDispatchError(f"`claude mcp add` failed: {added.detail}",
                                 f"Run it by hand: {shlex.join([claude, *args])}")
    command = shlex.join(args[args.index("--") + 1 :])
    click.echo(f"Registered agent-dispatch with Claude Code for all your projects: {command}")


def _agent_json(name: str, agent: Any) -> dict[str, Any]:
    """The stored agent as add_agent / update_agent answer it."""
    return {"name": name, **agent.model_dump(exclude_none=True)}


@click.command()
@click.argument("name")
@click.argument("directory")
@_agent_options(clearing=False)
@json_option("Print the stored agent as JSON (errors too).")
def add(name: str, directory: str, as_json: bool, **options: Any) -> None:
    """Register project DIRECTORY as agent NAME."""
    from agent_dispatch import config

    _check_name(name)
    changes = _changes(**options)
    proposed = None if options["runtime"] else config.suggest_runtime(directory)
    _check_mode(changes)
    agent = config.add_agent_with_changes(config.ConfigStore(), name, directory, "", changes)
    if as_json:
        echo_json(_agent_json(name, agent))
        return
    click.echo(f"Added agent {name!r}: " + (f"{agent.host}:{agent.directory}" if agent.host else agent.directory))
    if proposed is not None and agent.runtime == proposed[0]:
        click.echo(f"Runtime: {agent.runtime} (proposed: {proposed[1]}; choose another with --runtime)")
    if not options["description"]:
        click.echo(f"Description (generated): {agent.description}")
        click.echo(f"Change it with: agent-dispatch update {shlex.quote(name)} -d \"...\"")


@click.command()
@click.argument("name")
@click.option("--directory", metavar="DIR", help="Move the agent to another existing project directory.")
@_agent_options(clearing=True)
@json_option("Print the updated agent as JSON (errors too).")
def update(name: str, as_json: bool, **options: Any) -> None:
    """Change agent NAME.

    Pass only the options to change; "none" clears a field (back to the default).
    """
    from agent_dispatch import config

    changes = _changes(**options)
    if not changes:
        raise click.UsageError("nothing to change: pass at least one option (see `agent-dispatch update --help`).")
    _check_mode(changes, name)
    agent = config.update_agent(config.ConfigStore(), name, changes)
    if as_json:
        echo_json(_agent_json(name, agent))
        return
    click.echo(f"Updated agent {name!r}:")
    for line in changes.summary():
        click.echo(f"  {line}")


@click.command()
@click.argument("name")
@json_option("Print {removed: NAME, directory} as JSON (errors too).")
def remove(name: str, as_json: bool) -> None:
    """Unregister agent NAME (its directory is not touched)."""
    from agent_dispatch import config

    store = config.ConfigStore()
    agent = config.remove_agent(store, name)
    if as_json:
        echo_json({"removed": name, "directory": agent.directory})
        return
    click.echo(f"Removed agent {name!r} ({agent.directory}); the directory itself was not touched.")
    groups = [group for group, spec in store.load().groups.items() if spec.member(name) is not None]
    for group in groups:  # the membership stays (listed as unknown) until the group is changed
        click.echo(f"Note: group {group!r} still lists {name!r}; drop it with "
                   f"`agent-dispatch group update {group} --remove-member {name}`.")


def _tools(value: list[str]) -> str:
    """A stored tool list exactly as stored: each name quoted, so `[Read` and `Read` look different."""
    return json.dumps(value, ensure_ascii=False) if value else "[] (explicitly none)"


@click.command("list")
@json_option("Print the list_agents answer as JSON (errors too).")
def list_agents(as_json: bool) -> None:
    """List every agent with its health and full directory."""
    from agent_dispatch import config
    from agent_dispatch.usage import describe_typical, with_typicals

    store = config.ConfigStore()
    items = with_typicals(config.usage_log_path(store.path), config.list_agents(store))
    if as_json:
        echo_json(items)
        return
    if not items:
        click.echo(f"No agents in {store.path}. Add one with: agent-dispatch add NAME DIR")
        return
    click.echo(f"{len(items)} agent(s) in {store.path}")
    width = max(len(item["name"]) for item in items)
    indent = " " * (width + 2)
    for item in items:
        health = "ok" if item["healthy"] else "UNHEALTHY"
        problem = f"  ({item['problem']})" if item.get("problem") else ""
        where = f"{item['host']}:{item['directory']}" if item.get("host") else item["directory"]
        click.echo(f"{item['name']:<{width}}  {health:<9}  {where}{problem}")
        if item["description"]:
            click.echo(indent + item["description"])
        extras = [f"runtime: {item['runtime']}"] if item.get("runtime", "claude") != "claude" else []
        if item.get("permission_mode"):
            extras.append(f"permission mode: {item['permission_mode']}")
        if "allowed_tools" in item or "disallowed_tools" in item:
            for key, label in (("allowed_tools", "allowed tools"), ("disallowed_tools", "disallowed tools")):
                extras.append(f"{label}: {_tools(item[key]) if key in item else 'inherited'}")
        for key, label in (("capabilities", "capabilities"), ("risky_capabilities", "risky")):
            if item.get(key):
                extras.append(f"{label}: {', '.join(item[key])}")
        if extras:
            click.echo(indent + "; ".join(extras))
        if item.get("typical"):
            click.echo(indent + "typical: " + describe_typical(item["typical"]))


def _host_line(info: dict[str, Any]) -> str:
    options = info.get("ssh_options") or {}
    extras = ", ".join(f"{key} {value}" for key, value in options.items())
    return f"{info['host']} (over ssh{': ' + extras if extras else ''})"


def _tool_state(value: list[str] | None, defaults: list[str]) -> str:
    if value is None:
        return f"inherited from settings ({_tools(defaults) if defaults else 'none set'})"
    return _tools(value)


@click.command()
@click.argument("name")
@json_option("Print the inspect_agent answer as JSON (errors too).")
@click.option("--preview-lines", type=click.IntRange(0, 200), default=0, show_default=True,
              help="Also show the first lines of CLAUDE.md and the README.")
def describe(name: str, as_json: bool, preview_lines: int) -> None:
    """Show every field of agent NAME.

    Effective values (settings defaults included) and what its project directory holds.
    """
    from agent_dispatch import config
    from agent_dispatch.usage import describe_typical, with_typicals

    store = config.ConfigStore()
    loaded = store.load()
    agent = config.find_agent(loaded, name)
    settings = loaded.settings
    info = with_typicals(config.usage_log_path(store.path), [config.agent_inspection(name, agent, settings,
                                                                                     preview_lines)])[0]
    if as_json:
        echo_json(info)
        return

    def default(value: object, unset: str) -> str:
        return f"{value} (settings default)" if value not in (None, "") else unset

    servers = info["mcp_servers"]
    runtime = info.get("runtime", "claude")
    cli_default = {"claude": "Claude Code's default", "codex": "Codex's default", "gemini": "Gemini CLI's default"}
    mode_default = {"codex": "read-only sandbox (Codex's default)"}.get(runtime, cli_default.get(runtime, "default"))
    rows = [
        ("name", name),
        ("directory", agent.directory),
        ("description", agent.description or f"{info['description']} (generated; none stored)"),
        ("timeout", f"{agent.timeout} s" if agent.timeout else f"{settings.default_timeout} s (settings default)"),
        ("model", agent.model or cli_default.get(runtime, "the CLI's default")),
        ("max budget", f"${agent.max_budget_usd:g} per dispatch" if agent.max_budget_usd
         else default(settings.default_max_budget_usd and f"${settings.default_max_budget_usd:g}", "no cap")),
        ("permission mode",
         agent.permission_mode or default(settings.default_permission_mode, mode_default)),
        ("allowed tools", _tool_state(agent.allowed_tools, settings.default_allowed_tools)),
        ("disallowed tools", _tool_state(agent.disallowed_tools, settings.default_disallowed_tools)),
        ("runtime", runtime if agent.runtime else f"{runtime} (default)"),
        ("health", "ok" if info["healthy"] else f"UNHEALTHY: {info.get('problem', '')}"),
        ("CLAUDE.md", "yes" if info["has_claude_md"] else "no"),
        *([(info["context_file"], "yes" if info["has_context_file"] else "no")] if "context_file" in info else []),
        ("README", "yes" if info["has_readme"] else "no"),
        ({"codex": ".codex/config.toml", "gemini": ".gemini/settings.json"}.get(runtime, ".mcp.json"),
         (f"yes: {', '.join(servers)}" if servers else "yes (no servers)") if info["has_mcp_config"] else "no"),
        ("stacks", ", ".join(info["stacks"]) or "none detected"),
        ("databases", ", ".join(info["dbs"]) or "none detected"),
        ("capabilities", ", ".join(agent.capabilities or []) or "none"),
        ("risky labels", ", ".join(agent.risky_capabilities or []) or "none"),
        ("instructions", " ".join((agent.instructions or "none").split())),
        ("isolation", "worktree (each dispatch in a fresh git worktree)" if agent.isolation == "worktree"
         else "none"),
        ("typical", describe_typical(info["typical"]) if "typical" in info
         else "not yet (3 recorded runs in the last 30 days are needed)"),
    ]
    if agent.host:
        rows.insert(2, ("host", _host_line(info)))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        click.echo(f"{label + ':':<{width + 1}}  {value}")
    titles = [("context_file_preview", info.get("context_file", "")), ("claude_md_preview", "CLAUDE.md"),
              ("readme_preview", "README")]
    for key, title in titles:
        if key in info:
            click.echo(f"\n--- {title} (first {preview_lines} lines) ---\n{info[key].rstrip()}")


@click.command()
def example() -> None:
    """Print a commented agents.yaml that documents every key."""
    from agent_dispatch.config.paths import example_path
    from agent_dispatch.errors import AgentDispatchError

    path = example_path()
    if path is None:
        raise AgentDispatchError("the example agents.yaml is missing from this installation",
                                 "Reinstall agent-dispatch; the README's 'Registering agents' lists every key.")
    click.echo(path.read_text(encoding="utf-8"), nl=False)


def register(group: click.Group) -> None:
    """Attach this module's commands to the top-level group."""
    for command in (init, add, update, remove, list_agents, describe, example):
        group.add_command(command)
