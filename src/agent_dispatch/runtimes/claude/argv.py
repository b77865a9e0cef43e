"""The `claude -p` argv."""

from __future__ import annotations

from agent_dispatch.runs.spec import RunSpec, check_tool, check_value, format_budget


def build_argv(spec: RunSpec, session_id: str | None = None) -> list[str]:
    """The argv for `spec` (argv[0] is `spec.claude` as given; the prompt is not in it).

    `session_id` (a new session's UUID) adds `--session-id`; it is ignored when resuming.
    Raises InvalidInputFailure, before anything runs, for any value that would follow an option
    and starts with '-' (or holds a NUL byte).
    """
    agent = spec.agent
    argv = [spec.claude, "-p", "--output-format"]
    argv += ["stream-json", "--verbose"] if spec.stream else ["json"]
    if spec.resume:
        argv += ["--resume", check_value(spec.resume, "session_id")]
    elif session_id:
        argv += ["--session-id", check_value(session_id, "session_id")]
    if spec.system_prompt and not spec.resume:
        # The CLI stores a session's system prompt and ignores this option on --resume.
        argv += ["--append-system-prompt", check_value(spec.system_prompt, "system prompt")]
    if agent.model:
        argv += ["--model", check_value(agent.model, "model")]
    if agent.max_budget_usd is not None:
        argv += ["--max-budget-usd", format_budget(agent.max_budget_usd)]
    if agent.permission_mode:
        argv += ["--permission-mode", check_value(agent.permission_mode, "permission_mode")]
    # Variadic options: each tool is its own word; nothing but options may follow them.
    for option, tools in (("--allowedTools", agent.allowed_tools), ("--disallowedTools", agent.disallowed_tools)):
        if tools:
            argv += [option, *(check_tool(tool) for tool in tools)]
    return argv
