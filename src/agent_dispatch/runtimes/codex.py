"""OpenAI Codex CLI (`codex exec --json`).

The prompt goes on stdin (`-` as the prompt argument; an open silent pipe would make codex wait
forever, so the runner always closes it). Events are JSON lines: `thread.started` (the session
id), `item.started` / `item.completed` (commands, file changes, the agent's messages), and last
`turn.completed` (token usage) or `turn.failed` (an API error). No cost is reported.

Permissions map onto the sandbox; codex exec never asks for approval. Codex has no options for a
spend cap or tool allow/deny lists, so agents holding them are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent_dispatch.models import DispatchResult, EffectiveAgent
from agent_dispatch.runs.events import StreamEvent
from agent_dispatch.runs.outcome import RunOutcome
from agent_dispatch.runs.spec import RunSpec, check_value
from agent_dispatch.runtimes import common
from agent_dispatch.runtimes.base import Runtime
from agent_dispatch.runtimes.lines import LineReader, read_all, short, text_of, tool_input

BYPASS = "--dangerously-bypass-approvals-and-sandbox"
# permission_mode -> the sandbox argv.
MODES: dict[str, list[str]] = {
    "default": ["-s", "read-only"],
    "plan": ["-s", "read-only"],
    "dontAsk": ["-s", "read-only"],
    "acceptEdits": ["-s", "workspace-write"],
    "bypassPermissions": [BYPASS],
    "read-only": ["-s", "read-only"],
    "workspace-write": ["-s", "workspace-write"],
    "danger-full-access": ["-s", "danger-full-access"],
}
USAGE_KEYS = (
    "input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens", "reasoning_output_tokens"
)


class CodexReader(LineReader):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.answer = ""
        self._error = ""  # the newest `error` event's message: a turn.failed may carry none

    def _object(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "thread.started":
            thread = obj.get("thread_id")
            if isinstance(thread, str) and thread and self.session_id is None:
                self.session_id = thread
                self._emit(StreamEvent("init", session_id=thread))
        elif kind in ("item.started", "item.completed"):
            item = obj.get("item")
            if isinstance(item, dict):
                self._item(item, done=kind == "item.completed")
        elif kind == "error":
            self._error = text_of(obj.get("message")) or self._error
        elif kind == "turn.completed":
            record = {"type": kind, "usage": obj.get("usage"), "answer": self.answer}
            self._emit(StreamEvent("result", short(self.answer), session_id=self.session_id))
            self._found(record)
        elif kind == "turn.failed":
            error = obj.get("error")
            message = text_of(error.get("message")) if isinstance(error, dict) else ""
            record = {"type": kind, "message": message or self._error}
            self._emit(StreamEvent("result", short(record["message"]), session_id=self.session_id, is_error=True))
            self._found(record)

    def _item(self, item: dict[str, Any], *, done: bool) -> None:
        kind = item.get("type")
        if kind == "agent_message" and done:
            text = text_of(item.get("text"))
            if text.strip():
                self.answer = text
                self._last_text = short(text)
                self._emit(StreamEvent("text", short(text)))
        elif kind == "command_execution" and not done:
            self._emit(StreamEvent("tool_use", tool_input(item.get("command")), "shell"))
        elif kind == "file_change" and done:
            changes = item.get("changes")
            paths = [c.get("path") for c in changes if isinstance(c, dict)] if isinstance(changes, list) else []
            self._emit(StreamEvent("tool_use", tool_input(", ".join(p for p in paths if isinstance(p, str))), "edit"))
        elif kind == "mcp_tool_call" and not done:
            name = f"{text_of(item.get('server'))}.{text_of(item.get('tool'))}".strip(".") or "mcp"
            self._emit(StreamEvent("tool_use", tool_input(item.get("arguments")), short(name, 200)))
        elif kind == "web_search" and not done:
            self._emit(StreamEvent("tool_use", tool_input(item.get("query")), "web_search"))


class CodexRuntime(Runtime):
    name = "codex"
    label = "Codex"
    executable = "codex"
    command_env = "AGENT_DISPATCH_CODEX"
    install_hint = (
        "Install the Codex CLI (`npm install -g @openai/codex`) or point AGENT_DISPATCH_CODEX at the codex executable."
    )
    context_file = "AGENTS.md"
    modes = MODES

    def check_agent(self, agent: EffectiveAgent) -> None:
        common.refuse_unsupported(agent, self.label, MODES, "model and permission_mode (mapped onto its sandbox)")

    def build_argv(self, spec: RunSpec, session_id: str | None = None) -> list[str]:
        agent = spec.agent
        self.check_agent(agent)
        argv = [spec.claude, "exec", "--json", "--skip-git-repo-check"]
        argv += ["-C", check_value(agent.directory, "directory")]
        argv += MODES[agent.permission_mode or "default"]
        if agent.model:
            argv += ["-m", check_value(agent.model, "model")]
        if spec.resume:
            argv += ["resume", check_value(spec.resume, "session_id")]
        return [*argv, "-"]

    def reader(
        self, *, stream: bool, on_event: Callable[[StreamEvent], None] | None, on_change: Callable[[], None] | None
    ) -> CodexReader:
        return CodexReader(on_event=on_event, on_change=on_change)

    def find_result(self, data: bytes) -> tuple[dict[str, Any] | None, str | None]:
        return read_all(CodexReader(), data)

    def classify(self, agent: EffectiveAgent | str, outcome: RunOutcome, response_format: str = "") -> DispatchResult:
        name = agent if isinstance(agent, str) else agent.name
        record = outcome.result
        session = outcome.session_id
        fields: dict[str, Any] = {"session_id": session, "duration_ms": outcome.duration_ms, "runtime": "codex"}
        if record is None:
            return common.unfinished("Codex", name, outcome, fields, "codex ended without finishing its turn")
        if record.get("type") == "turn.failed":
            failure = common.api_failure("Codex", name, str(record.get("message") or ""))
            return DispatchResult.failure(name, failure, result=outcome.last_text, **fields)
        fields["usage"] = common.usage_from(record.get("usage"), USAGE_KEYS)
        return common.answered(name, str(record.get("answer") or ""), response_format, fields)


RUNTIME = CodexRuntime()
