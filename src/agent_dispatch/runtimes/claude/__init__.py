"""Claude Code (`claude -p`): the default runtime."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from agent_dispatch.runtimes.base import Runtime
from agent_dispatch.runtimes.claude import argv, classify, parse


class ClaudeRuntime(Runtime):
    name = "claude"
    label = "Claude Code"
    executable = "claude"
    command_env = "AGENT_DISPATCH_CLAUDE"
    install_hint = (
        "Install Claude Code (`npm install -g @anthropic-ai/claude-code`) or point "
        "AGENT_DISPATCH_CLAUDE at the claude executable."
    )
    context_file = "CLAUDE.md"
    system_prompt_option = True  # --append-system-prompt

    def new_session_id(self) -> str | None:
        return str(uuid.uuid4())

    def build_argv(self, spec: Any, session_id: str | None = None) -> list[str]:
        return argv.build_argv(spec, session_id)

    def reader(self, *, stream: bool, on_event: Callable[..., None] | None, on_change: Callable[[], None] | None):
        return parse.OutputReader(keep_raw=not stream, on_event=on_event, on_change=on_change)

    def find_result(self, data: bytes) -> tuple[dict[str, Any] | None, str | None]:
        return parse.find_result(data)

    def classify(self, agent: Any, outcome: Any, response_format: str = "") -> Any:
        return classify.classify(agent, outcome, response_format)


RUNTIME = ClaudeRuntime()
