"""The agent operations shared by the CLI and the MCP tools, so each rule is checked once.

`AgentChanges.from_inputs` is the one parser of the contract's update semantics ("" / 0 / None
leave a field, "none" clears it, tool lists are comma-separated names); `add_agent`,
`update_agent` and `remove_agent` change agents.yaml through `ConfigStore.modify`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent_dispatch.config.listing import agent_inspection, agent_listing
from agent_dispatch.config.paths import example_hint
from agent_dispatch.config.store import ConfigStore, describe_validation
from agent_dispatch.detect import generate_description, suggest_runtime
from agent_dispatch.errors import AgentExistsError, AgentNotFoundError, BadArgumentError

if TYPE_CHECKING:
    from agent_dispatch.models import AgentConfig, AppConfig

DESCRIPTION_MAX = 4000


_LEAVE = object()


class AgentChanges:
    """Parsed changes to one agent: `values` maps a field to its new value, None meaning "clear"
    (the key is removed and the agent inherits the defaults again)."""

    __slots__ = ("values",)

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self.values: dict[str, Any] = dict(values or {})

    def __bool__(self) -> bool:
        return bool(self.values)

    def __repr__(self) -> str:
        return f"AgentChanges({self.values!r})"

    @classmethod
    def from_inputs(
        cls,
        *,
        description: str | None = None,
        timeout: int | float | str | None = None,
        max_budget_usd: float | int | str | None = None,
        model: str | None = None,
        permission_mode: str | None = None,
        allowed_tools: str | list[str] | None = None,
        disallowed_tools: str | list[str] | None = None,
        instructions: str | None = None,
        capabilities: str | list[str] | None = None,
        risky_capabilities: str | list[str] | None = None,
        host: str | None = None,
        ssh_options: str | Mapping[str, Any] | None = None,
        runtime: str | None = None,
        directory: str | os.PathLike[str] | None = None,
        isolation: str | None = None,
    ) -> AgentChanges:
        """Parse front-door inputs with the contract's update semantics.

        "" / 0 / None leave a field as it is; "none" (any case) clears it; tool lists are
        comma-separated names ("[]" sets an explicitly empty list). Raises BadArgumentError for a
        negative, NaN or infinite number, a fractional timeout, or a value starting with '-'.
        """
        parsed = {
            "directory": _parse_directory(directory),
            "description": _parse_description(description),
            "timeout": _parse_timeout(timeout),
            "max_budget_usd": _parse_budget(max_budget_usd),
            "model": _parse_word(model, "model"),
            "permission_mode": _parse_word(permission_mode, "permission_mode"),
            "allowed_tools": _parse_tools(allowed_tools, "allowed_tools"),
            "disallowed_tools": _parse_tools(disallowed_tools, "disallowed_tools"),
            "instructions": _parse_instructions(instructions),
            "capabilities": _parse_labels(capabilities, "capabilities"),
            "risky_capabilities": _parse_labels(risky_capabilities, "risky_capabilities"),
            "host": _parse_host(host),
            "ssh_options": _parse_ssh_options(ssh_options),
            "runtime": _parse_runtime(runtime),
            "isolation": _parse_isolation(isolation),
        }
        return cls({key: value for key, value in parsed.items() if value is not _LEAVE})

    def apply(self, agent: AgentConfig) -> AgentConfig:
        """A new, validated AgentConfig with these changes applied to `agent`."""
        return _build_agent({**agent.model_dump(), **self.values})

    def summary(self) -> list[str]:
        """One human line per change."""
        lines = []
        for key, value in self.values.items():
            if value is None:
                lines.append(f"{key}: cleared (inherits the default)")
            elif isinstance(value, list):
                shown = json.dumps(value, ensure_ascii=False)
                lines.append(f"{key}: {shown}" if value else f"{key}: [] (explicitly none)")
            else:
                lines.append(f"{key}: {value}")
        return lines


def _parse_isolation(raw: object) -> Any:
    from agent_dispatch.models import ISOLATIONS

    if _is_leave(raw):
        return _LEAVE
    value = str(raw).strip().lower()
    if value not in ISOLATIONS:
        raise BadArgumentError(f"isolation must be one of {', '.join(ISOLATIONS)}, not {str(raw)[:40]!r}")
    return None if value == "none" else value  # none is the default: the key goes


def _is_leave(raw: object) -> bool:
    if raw is None:
        return True
    if isinstance(raw, str):
        return not raw.strip()
    return isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw == 0


def _is_clear(raw: object) -> bool:
    return isinstance(raw, str) and raw.strip().lower() == "none"


def _bad(field: str, raw: object, rule: str, example: str) -> BadArgumentError:
    shown = raw[:80] if isinstance(raw, str) else raw
    return BadArgumentError(f"{field} must be {rule}, not {shown!r}", example)


def _parse_directory(raw: object) -> Any:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return _LEAVE
    if _is_clear(raw):
        raise _bad("directory", raw, "an existing project directory", "An agent always has a directory: pass "
                   "the new one, or remove the agent with `agent-dispatch remove NAME`.")
    return existing_directory(raw)  # type: ignore[arg-type]


def _parse_description(raw: object) -> Any:
    if _is_leave(raw):
        return _LEAVE
    if _is_clear(raw):
        return None
    if not isinstance(raw, str):
        raise _bad("description", raw, "text", "Pass a short sentence saying what the agent is for.")
    text = raw.strip()
    if "\x00" in text or len(text) > DESCRIPTION_MAX:
        raise _bad("description", raw, f"text of at most {DESCRIPTION_MAX} characters without NUL",
                   "Pass a short sentence saying what the agent is for.")
    return text


# Text forms of numbers: whole seconds are digits only; dollars are a plain decimal. Exponents,
# signs, "inf", "nan" and digit separators are refused rather than read as something else.
_WHOLE_RE = re.compile(r"[0-9]{1,30}")
_DECIMAL_RE = re.compile(r"(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})")


def _number(raw: object, field: str, rule: str, example: str, pattern: re.Pattern[str]) -> float | int:
    """A positive finite number from a JSON number or its plain decimal text (see the patterns)."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise _bad(field, raw, rule, example)
    if isinstance(raw, str):
        text = raw.strip()
        if not pattern.fullmatch(text):
            raise _bad(field, raw, rule, example)
        value: float | int = int(text) if pattern is _WHOLE_RE else float(text)
    else:
        value = raw
    if isinstance(value, float) and not math.isfinite(value) or value <= 0:
        raise _bad(field, raw, rule, example)
    return value


def _parse_timeout(raw: object) -> Any:
    if _is_leave(raw):
        return _LEAVE
    if _is_clear(raw):
        return None
    from agent_dispatch.models import TIMEOUT_MAX

    rule = f"a whole number of seconds from 1 to {TIMEOUT_MAX} (7 days)"
    example = 'Pass e.g. 600, or "none" to use settings.default_timeout.'
    value = _number(raw, "timeout", rule, example, _WHOLE_RE)
    if isinstance(value, float):
        if not value.is_integer():
            raise _bad("timeout", raw, rule, example)
        value = int(value)
    if value > TIMEOUT_MAX:
        raise _bad("timeout", raw, rule, example)
    return value


def _parse_budget(raw: object) -> Any:
    if _is_leave(raw):
        return _LEAVE
    if _is_clear(raw):
        return None
    from agent_dispatch.models import BUDGET_MAX_USD

    rule = f"an amount of US dollars greater than 0 and at most {BUDGET_MAX_USD:g}, written like 0.5"
    example = 'Pass e.g. 0.5, or "none" to remove the cap.'
    value = float(_number(raw, "max_budget_usd", rule, example, _DECIMAL_RE))
    if value > BUDGET_MAX_USD:
        raise _bad("max_budget_usd", raw, rule, example)
    return value


def _check_word(value: str, field: str) -> str:
    if value.startswith("-") or len(value) > 200 or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise _bad(field, value, "a single word that does not start with '-'",
                   f'Pass e.g. {"sonnet" if field == "model" else "plan"}, or "none" to clear it.')
    return value


def _parse_word(raw: object, field: str) -> Any:
    if _is_leave(raw):
        return _LEAVE
    if _is_clear(raw):
        return None
    if not isinstance(raw, str):
        raise _bad(field, raw, "text", f'Pass a value, or "none" to clear {field}.')
    return _check_word(raw.strip(), field)


def _parse_runtime(raw: object) -> Any:
    """A runtime name from the table ("none" clears it: back to claude)."""
    from agent_dispatch.runtimes import RUNTIMES

    value = _parse_word(raw, "runtime")
    if isinstance(value, str) and value not in RUNTIMES:
        raise _bad("runtime", value, f"one of {', '.join(RUNTIMES)}", 'Pass e.g. codex, or "none" for claude.')
    return value


def check_runtime_fits(name: str, agent: AgentConfig, settings: Any) -> None:
    """BadArgumentError when `agent`'s runtime cannot honour one of its effective settings."""
    from agent_dispatch.errors import InvalidInputFailure
    from agent_dispatch.models import EffectiveAgent
    from agent_dispatch.runtimes import get_runtime

    effective = EffectiveAgent.resolve(name, agent, settings)
    try:
        get_runtime(effective.runtime).check_agent(effective)
    except InvalidInputFailure as exc:
        raise BadArgumentError(exc.message, exc.hint) from None


def _check_tool(name: object, field: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise _bad(field, name, "tool names", 'Pass names separated by commas, e.g. "Read,Grep,Bash(git *)".')
    name = name.strip()
    if name.startswith("-") or len(name) > 500 or any(not ch.isprintable() for ch in name):
        raise _bad(field, name, "tool names that do not start with '-'",
                   'Pass names separated by commas, e.g. "Read,Grep,Bash(git *)".')
    return name


def _parse_tools(raw: object, field: str) -> Any:
    if isinstance(raw, (list, tuple)):
        return [_check_tool(name, field) for name in raw]
    if _is_leave(raw):
        return _LEAVE
    if _is_clear(raw):
        return None
    if not isinstance(raw, str):
        raise _bad(field, raw, "a comma-separated list of tool names", 'e.g. "Read,Grep".')
    from agent_dispatch.models import split_tools

    text = raw.strip()
    listed = text.startswith("[") and text.endswith("]")
    if listed:
        text = text[1:-1]  # the list syntax `[Read, Grep]` means the names Read and Grep
        if not text.strip():
            return []
    names = [_unquote(name) for name in split_tools(text)]
    if not names:
        raise _bad(field, raw, "a comma-separated list of tool names", 'e.g. "Read,Grep", "[]" for none, '
                   'or "none" to inherit the defaults.')
    for name in names:
        if name.startswith("[") or name.endswith("]"):
            raise _bad(field, raw, "tool names separated by commas, with brackets only around the whole list",
                       'Pass e.g. "Read,Grep" or "[Read, Grep]".')
    return [_check_tool(name, field) for name in names]


def _parse_instructions(raw: object) -> Any:
    if _is_leave(raw):
        return _LEAVE
    if _is_clear(raw):
        return None
    if not isinstance(raw, str):
        raise _bad("instructions", raw, "text", "Pass the standing orders as text, or \"none\" to clear them.")
    return raw.strip()


def _parse_labels(raw: object, field: str) -> Any:
    """Labels: a comma-separated string or a list; "none" clears them."""
    if isinstance(raw, (list, tuple)):
        names = [str(item).strip() for item in raw]
    elif _is_leave(raw):
        return _LEAVE
    elif _is_clear(raw):
        return None
    elif isinstance(raw, str):
        names = [part.strip() for part in raw.split(",")]
    else:
        raise _bad(field, raw, "comma-separated labels", 'e.g. "docker_logs,deploy_debug".')
    names = [name for name in names if name]
    for name in names:
        if len(name) > 200 or any(not ch.isprintable() for ch in name):
            raise _bad(field, name, "printable labels of at most 200 characters", 'e.g. "docker_logs,deploy_debug".')
    return list(dict.fromkeys(names))


def _parse_host(raw: object) -> Any:
    if _is_leave(raw):
        return _LEAVE
    if _is_clear(raw):
        return None
    from agent_dispatch.models import check_ssh_host

    text = raw.strip() if isinstance(raw, str) else raw
    try:
        return check_ssh_host(text)  # type: ignore[arg-type]
    except ValueError as exc:
        raise _bad("host", raw, str(exc).removeprefix("host must be "),
                   'Pass e.g. ops@bastion or an alias from ~/.ssh/config, or "none" for this machine.') from None


_SSH_OPTION_EXAMPLE = 'Pass e.g. "port=2222,identity_file=~/.ssh/id_ops,jump_host=admin@gw,connect_timeout=10", ' \
    'or "none" to clear them.'


def _parse_ssh_options(raw: object) -> Any:
    """`ssh_options` from "key=value,..." text (or a mapping); validated by models.SshOptions."""
    if _is_leave(raw):
        return _LEAVE
    if _is_clear(raw):
        return None
    if isinstance(raw, str):
        pairs: dict[str, Any] = {}
        for part in (piece.strip() for piece in raw.split(",")):
            key, sep, value = part.partition("=")
            if not part or not sep or not key.strip() or not value.strip():
                raise _bad("ssh_options", raw, "key=value pairs separated by commas", _SSH_OPTION_EXAMPLE)
            pairs[key.strip()] = value.strip()
        raw = pairs
    if not isinstance(raw, Mapping):
        raise _bad("ssh_options", raw, "key=value pairs separated by commas", _SSH_OPTION_EXAMPLE)
    from pydantic import ValidationError

    from agent_dispatch.models import SshOptions

    try:
        return SshOptions.model_validate(dict(raw)).model_dump(exclude_none=True)
    except ValidationError as exc:
        raise BadArgumentError(f"invalid ssh_options: {describe_validation(exc)}", _SSH_OPTION_EXAMPLE) from None


def remote_directory(directory: str | os.PathLike[str], host: str, ssh_options: Any = None) -> tuple[str, str]:
    """(`directory`, its generated description) when it is a directory on `host`; else BadArgumentError.

    The path is the remote host's: not expanded here; it must be absolute or start with `~`.
    """
    text = os.fspath(directory).strip() if isinstance(directory, (str, os.PathLike)) else ""
    if not text or "\x00" in text or not (text.startswith("/") or text == "~" or text.startswith("~/")):
        raise BadArgumentError(f"directory {text or directory!r} must be an absolute path on {host} (or start with ~/)",
                               "Pass the project's path on the remote host, e.g. /srv/infra or ~/projects/infra.")
    from types import SimpleNamespace

    from agent_dispatch.transports.probe import remote_project

    info = remote_project(SimpleNamespace(host=host, ssh_options=ssh_options, directory=text), fresh=True)
    if not info.healthy:
        from agent_dispatch.transports.ssh import SshTarget, target_of

        target = target_of(SimpleNamespace(host=host, ssh_options=ssh_options)) or SshTarget(host)
        raise BadArgumentError(f"directory {text} on {host}: {info.problem}",
                               f"Check it by hand: `{target.manual_command('ls', '-ld', '--', text)}`.")
    return text, info.description


def _unquote(name: str) -> str:
    """`"Bash(git *)"` or `'Read'` inside a list: the quotes are YAML's, not part of the name."""
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "'\"":
        return name[1:-1].strip()
    return name


def _build_agent(data: Mapping[str, Any]) -> AgentConfig:
    from pydantic import ValidationError

    from agent_dispatch.models import AgentConfig

    try:
        return AgentConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise BadArgumentError(f"invalid agent settings: {describe_validation(exc)}",
                               f"Check the values given; {example_hint()}") from None


def find_agent(config: AppConfig, name: str) -> AgentConfig:
    """The agent called `name`, or AgentNotFoundError naming it and the available agents."""
    agent = config.agents.get(name) if isinstance(name, str) else None
    if agent is None:
        raise agent_not_found(name, list(config.agents))
    return agent


def agent_not_found(name: object, available: list[str]) -> AgentNotFoundError:
    shown = name[:80] if isinstance(name, str) else name
    listed = ", ".join(available[:100]) + (f" (and {len(available) - 100} more)" if len(available) > 100 else "")
    return AgentNotFoundError(
        f"no agent named {shown!r}; " + (f"available agents: {listed}" if available else "no agents are registered"),
        "Call list_agents to see them; add one with add_agent or `agent-dispatch add NAME DIR`.",
        "Run `agent-dispatch list` to see them; add one with `agent-dispatch add NAME DIR`.",
    )


def existing_directory(directory: str | os.PathLike[str]) -> str:
    """`directory` made absolute (~ expanded); BadArgumentError unless it is an existing directory."""
    if not isinstance(directory, (str, os.PathLike)):
        raise BadArgumentError(f"directory must be a path, not {directory!r}", "Pass the project's directory.")
    text = os.fspath(directory)
    if not text.strip() or "\x00" in text:
        raise BadArgumentError("directory must be a non-empty path", "Pass the project's directory.")
    path = os.path.abspath(os.path.expanduser(text))
    if not os.path.exists(path):
        raise BadArgumentError(f"directory {path} does not exist",
                               "Create it first, or pass the path of an existing project directory.")
    if not os.path.isdir(path):
        raise BadArgumentError(f"{path} is not a directory", "Pass the path of a project directory.")
    return path


def add_agent(
    store: ConfigStore,
    name: str,
    directory: str | os.PathLike[str],
    *,
    description: str = "",
    timeout: int | float | str | None = None,
    model: str | None = None,
    max_budget_usd: float | int | str | None = None,
    permission_mode: str | None = None,
    allowed_tools: str | list[str] | None = None,
    disallowed_tools: str | list[str] | None = None,
    instructions: str | None = None,
    capabilities: str | list[str] | None = None,
    risky_capabilities: str | list[str] | None = None,
    runtime: str | None = None,
) -> AgentConfig:
    """Register a new agent and return it. An empty description is generated from the project.

    Values are parsed like `AgentChanges.from_inputs` ("none" or empty = not set). Raises
    BadArgumentError (bad name or value, directory missing), AgentExistsError (name taken),
    ConfigError (config unreadable or unwritable).
    """
    changes = AgentChanges.from_inputs(
        timeout=timeout, max_budget_usd=max_budget_usd, model=model, permission_mode=permission_mode,
        allowed_tools=allowed_tools, disallowed_tools=disallowed_tools, instructions=instructions,
        capabilities=capabilities, risky_capabilities=risky_capabilities,
        runtime=runtime,
    )
    return add_agent_with_changes(store, name, directory, description, changes)


def add_agent_with_changes(
    store: ConfigStore,
    name: str,
    directory: str | os.PathLike[str],
    description: str = "",
    changes: AgentChanges | None = None,
) -> AgentConfig:
    """`add_agent` for a front door that parsed its options into `AgentChanges` already.

    Without a runtime the one the project is set up for is proposed (`suggest_runtime`: e.g.
    codex for a project with AGENTS.md and no CLAUDE.md), else claude.
    """
    from agent_dispatch.models import case_twin, check_agent_name

    check_agent_name(name)
    fields = {key: value for key, value in (changes.values if changes else {}).items() if value is not None}
    generated = None
    if fields.get("host"):
        _build_agent({"directory": "/", **fields})  # refuse bad ssh settings before reaching for the host
        path, generated = remote_directory(directory, fields["host"], fields.get("ssh_options"))
    else:
        path = existing_directory(directory)
    if "runtime" not in fields and not fields.get("host"):
        proposed = suggest_runtime(path)
        if proposed is not None:
            fields["runtime"] = proposed[0]
    text = _parse_description(description)
    if isinstance(text, str):
        fields["description"] = text
    if not fields.get("description"):
        runtime = fields.get("runtime") or "claude"
        fields["description"] = generated if generated is not None else generate_description(path, runtime)
    agent = _build_agent({"directory": path, **fields})

    def add(config: AppConfig) -> None:
        if name in config.agents:
            taken = config.agents[name].directory
            raise AgentExistsError(f"an agent named {name!r} already exists (directory {taken})")
        check_runtime_fits(name, agent, config.settings)
        twin = case_twin(name, config.agents)
        if twin is not None:
            raise AgentExistsError(
                f"an agent named {twin!r} already exists; {name!r} differs from it only in case",
                "Names that differ only in case would be confused: pick another name, or change "
                f"{twin!r} with `agent-dispatch update {twin}`.",
            )
        config.agents[name] = agent

    store.modify(add)
    return agent


def update_agent(store: ConfigStore, name: str, changes: AgentChanges) -> AgentConfig:
    """Apply `changes` to the agent `name` and return the stored result.

    Raises AgentNotFoundError, BadArgumentError (nothing to change, or an invalid result),
    ConfigError.
    """
    if not changes:
        raise BadArgumentError(f"nothing to update for {name!r}",
                               'Pass at least one new value, or "none" to clear a field.')

    def update(config: AppConfig) -> AgentConfig:
        agent = changes.apply(find_agent(config, name))
        check_runtime_fits(name, agent, config.settings)
        config.agents[name] = agent
        return agent

    return store.modify(update)


def remove_agent(store: ConfigStore, name: str) -> AgentConfig:
    """Unregister the agent `name` (its directory is not touched); returns what was removed."""

    def remove(config: AppConfig) -> AgentConfig:
        agent = find_agent(config, name)
        del config.agents[name]
        return agent

    return store.modify(remove)


def list_agents(store: ConfigStore) -> list[dict[str, Any]]:
    """The contract's `list_agents` answer, in the file's order (remote agents probed in parallel)."""
    agents = store.agents()
    if sum(1 for agent in agents.values() if getattr(agent, "host", None)) > 1:
        from agent_dispatch.transports.probe import prefetch

        prefetch(agents.values())
    return [agent_listing(name, agent) for name, agent in agents.items()]  # type: ignore[arg-type]


def inspect_agent(store: ConfigStore, name: str, preview_lines: int = 40) -> dict[str, Any]:
    """The contract's `inspect_agent` answer for `name`."""
    config = store.load()
    return agent_inspection(name, find_agent(config, name), config.settings, preview_lines)
