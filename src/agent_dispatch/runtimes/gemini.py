"""Google Gemini CLI (`gemini -o stream-json`).

With stdin not a terminal gemini reads the prompt from it (no `-p`: a prompt there starting with
`-` would be an option); it gives up on a silent pipe after about half a second and drops
input that arrives late, so the runner writes the prompt at once and closes stdin. Events are
JSON lines: `init` (the session id), `message` (assistant text in deltas), `tool_use`,
`tool_result`, and last `result` (status and token stats). The exit status is no success
signal (a SIGTERM exits 0): only a `result` event with status `success` is.

`--skip-trust` lets a registered directory run headless (an untrusted one would exit 55); the
launcher ignores SIGTERM and shell commands leave its process group, which the runner's tree
kill handles. No spend cap or tool allow/deny lists, so agents holding them are refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from agent_dispatch.errors import CliFailure
from agent_dispatch.models import DispatchResult, EffectiveAgent
from agent_dispatch.runs.events import TEXT_MAX, StreamEvent
from agent_dispatch.runs.outcome import RunOutcome
from agent_dispatch.runs.spec import RunSpec, check_value
from agent_dispatch.runtimes import common
from agent_dispatch.runtimes.base import Runtime
from agent_dispatch.runtimes.lines import LineReader, read_all, short, text_of, tool_input

# permission_mode -> --approval-mode.
MODES: dict[str, str] = {
    "default": "default",
    "dontAsk": "default",
    "plan": "plan",
    "acceptEdits": "auto_edit",
    "bypassPermissions": "yolo",
    "auto_edit": "auto_edit",
    "yolo": "yolo",
}
USAGE_KEYS = ("input_tokens", "output_tokens", "cached", "total_tokens")
# Exit codes the CLI documents, for runs that ended without a result event.
EXIT_HINTS = {
    41: "gemini could not authenticate: set GEMINI_API_KEY (or log in by running `gemini` once in a terminal).",
    42: "gemini refused its input (a session that does not exist in this directory cannot be resumed): "
    "start a new session.",
    55: "gemini does not trust this directory: run `gemini` there once and trust it.",
}


class GeminiReader(LineReader):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.segment: list[str] = []  # assistant text since the last tool call: the answer so far
        self._tail = ""  # the end of that text, for progress (kept short: deltas can be many)
        self._tools: dict[str, str] = {}

    def _object(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "init":
            session = obj.get("session_id")
            if isinstance(session, str) and session:
                self.session_id = session
                self._emit(StreamEvent("init", session_id=session))
        elif kind == "message" and obj.get("role") == "assistant":
            text = text_of(obj.get("content"))
            if obj.get("delta") is not True:
                self.segment, self._tail = [], ""
            if text:
                self.segment.append(text)
                self._tail = (self._tail + text)[-TEXT_MAX:]
                self._last_text = self._tail
                if self._on_event is not None:
                    self._emit(StreamEvent("text", short(self._tail)))
        elif kind == "tool_use":
            tool = short(text_of(obj.get("tool_name")) or "?", 200)
            if isinstance(obj.get("tool_id"), str):
                self._tools[obj["tool_id"]] = tool
            self.segment, self._tail = [], ""
            self._emit(StreamEvent("tool_use", tool_input(obj.get("parameters")), tool))
        elif kind == "result":
            record = dict(obj)
            record["answer"] = "".join(self.segment)
            status = obj.get("status")
            error = obj.get("error") if isinstance(obj.get("error"), dict) else {}
            failed = status != "success"
            said = record["answer"] if not failed else text_of(error.get("message")) or str(status)
            self._emit(StreamEvent("result", short(said), session_id=self.session_id, is_error=failed))
            self._found(record)


class GeminiRuntime(Runtime):
    name = "gemini"
    label = "Gemini CLI"
    executable = "gemini"
    command_env = "AGENT_DISPATCH_GEMINI"
    install_hint = (
        "Install the Gemini CLI (`npm install -g @google/gemini-cli`) or point AGENT_DISPATCH_GEMINI at "
        "the gemini executable."
    )
    context_file = "GEMINI.md"
    modes = MODES

    def check_agent(self, agent: EffectiveAgent) -> None:
        common.refuse_unsupported(agent, self.label, MODES, "model and permission_mode (mapped onto --approval-mode)")

    def new_session_id(self) -> str | None:
        return str(uuid.uuid4())  # known before the run starts, so even a run cut short can be resumed

    def build_argv(self, spec: RunSpec, session_id: str | None = None) -> list[str]:
        agent = spec.agent
        self.check_agent(agent)
        argv = [spec.claude, "--skip-trust", "-o", "stream-json"]
        if agent.permission_mode:
            argv += ["--approval-mode", MODES[agent.permission_mode]]
        if agent.model:
            argv += ["-m", check_value(agent.model, "model")]
        if spec.resume:
            argv += ["--resume", check_value(spec.resume, "session_id")]
        elif session_id:
            argv += ["--session-id", check_value(session_id, "session_id")]
        return argv

    def reader(
        self, *, stream: bool, on_event: Callable[[StreamEvent], None] | None, on_change: Callable[[], None] | None
    ) -> GeminiReader:
        return GeminiReader(on_event=on_event, on_change=on_change)

    def find_result(self, data: bytes) -> tuple[dict[str, Any] | None, str | None]:
        return read_all(GeminiReader(), data)

    def classify(self, agent: EffectiveAgent | str, outcome: RunOutcome, response_format: str = "") -> DispatchResult:
        name = agent if isinstance(agent, str) else agent.name
        record = outcome.result
        session = outcome.session_id
        fields: dict[str, Any] = {"session_id": session, "duration_ms": outcome.duration_ms, "runtime": "gemini"}
        if record is None:
            hint = EXIT_HINTS.get(outcome.exit_code or 0, "")
            return common.unfinished("Gemini", name, outcome, fields, "gemini ended without a result", hint)
        stats = record.get("stats")
        if isinstance(stats, dict) and common.count(stats.get("duration_ms")) is not None:
            fields["duration_ms"] = common.count(stats.get("duration_ms"))
        fields["usage"] = common.usage_from(stats, USAGE_KEYS)
        if record.get("status") != "success":
            error = record.get("error") if isinstance(record.get("error"), dict) else {}
            message = " ".join(text_of(error.get(key)) for key in ("type", "message")).strip()
            failure = common.api_failure("Gemini", name, message) if message else CliFailure(
                f"gemini reported status {record.get('status')!r} without an error message"
            )
            return DispatchResult.failure(name, failure, result=outcome.last_text, **fields)
        return common.answered(name, str(record.get("answer") or ""), response_format, fields)


RUNTIME = GeminiRuntime()
