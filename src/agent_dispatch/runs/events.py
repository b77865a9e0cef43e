"""What a run reports while it goes, whatever CLI runs it: one StreamEvent per thing the agent did."""

from __future__ import annotations

from typing import Literal, NamedTuple

EventKind = Literal["init", "text", "tool_use", "result", "retry"]

TEXT_MAX = 4000  # characters of assistant text kept per event
TOOL_INPUT_MAX = 200  # characters of a tool's input shown in a tool_use event


class StreamEvent(NamedTuple):
    """One thing the agent did, from a stream-json line (a tuple: cheap to make, immutable).

    kind `init` (session_id set), `text` (assistant text), `tool_use` (tool = name, text = a
    short rendering of its input), `result` (text = the answer, is_error), `retry` (the CLI is
    retrying a failed API call; text says why).
    """

    kind: EventKind
    text: str = ""
    tool: str = ""
    session_id: str | None = None
    is_error: bool = False

    def describe(self, max_chars: int = 200) -> str:
        """A one-line summary for progress messages."""
        if self.kind == "init":
            line = "session started"
        elif self.kind == "tool_use":
            line = f"{self.tool}: {self.text}" if self.text else self.tool
        elif self.kind == "retry":
            line = self.text
        elif self.kind == "result":
            line = ("error: " if self.is_error else "done: ") + self.text
        else:
            line = self.text
        line = " ".join(line[: max_chars * 4].split())  # cut first: a busy stream calls this a lot
        return line if len(line) <= max_chars else line[: max(0, max_chars - 1)] + "…"
