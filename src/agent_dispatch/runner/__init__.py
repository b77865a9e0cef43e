"""Running an agent CLI: prompt, spawning, the process tree, timeouts; the same for every runtime.

What differs per CLI (argv, output parsing, classification) lives in agent_dispatch.runtimes;
`build_argv` here asks the spec's runtime.

build_prompt / parse_json_answer    the text sent on stdin, and a JSON answer read back
RunSpec / build_argv / runtime_of   what to run (agent_dispatch.runs.spec); its runtime and argv
run_claude                          one supervised run -> DispatchResult (never raises for failures)
StreamEvent                         what `on_event` receives while a stream-json run goes
RunHandle                           what `on_spawn` receives; to_dict()/from_dict() for job records
collect_output / run_alive / kill_run   finishing a file-backed run from another process
"""

from agent_dispatch.runner.argv import build_argv, runtime_of
from agent_dispatch.runner.process import (
    CHAIN_ENV,
    DEPTH_ENV,
    child_env,
    collect_output,
    current_chain,
    current_depth,
    run_claude,
)
from agent_dispatch.runner.prompt import JSON_INSTRUCTION, build_prompt, parse_json_answer
from agent_dispatch.runner.tree import TOKEN_ENV, RunHandle, kill_run, run_alive, run_processes
from agent_dispatch.runs.events import StreamEvent
from agent_dispatch.runs.outcome import RunOutcome
from agent_dispatch.runs.spec import CLAUDE_ENV, RunSpec, check_value, claude_command, error_path_for

__all__ = [
    "CHAIN_ENV",
    "CLAUDE_ENV",
    "DEPTH_ENV",
    "JSON_INSTRUCTION",
    "TOKEN_ENV",
    "RunHandle",
    "RunOutcome",
    "RunSpec",
    "StreamEvent",
    "build_argv",
    "build_prompt",
    "check_value",
    "child_env",
    "claude_command",
    "collect_output",
    "current_chain",
    "current_depth",
    "error_path_for",
    "kill_run",
    "parse_json_answer",
    "run_alive",
    "run_claude",
    "run_processes",
    "runtime_of",
]
