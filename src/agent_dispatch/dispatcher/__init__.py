"""The service: every dispatch workflow, behind both front doors (MCP and the CLI).

    service   Dispatcher: the one run path, dispatch, session, stream, clarifications, the journal,
              the limits; make_request(), check_total_usd(); the AskFn and Watch callables
    multi     parse_parallel(), dispatch_parallel(), check_dialogue(), dialogue(): several runs

It knows nothing of MCP or click. Async jobs and recovery live in `agent_dispatch.background`,
result refs in `agent_dispatch.refs`.
"""

from agent_dispatch.dispatcher.multi import check_dialogue, dialogue, dispatch_parallel, parse_parallel
from agent_dispatch.dispatcher.service import (
    CALL_JOB,
    RESOLVED_MARK,
    AskFn,
    Dispatcher,
    Watch,
    check_total_usd,
    describe_event,
    make_request,
)

__all__ = [
    "CALL_JOB",
    "RESOLVED_MARK",
    "AskFn",
    "Dispatcher",
    "Watch",
    "check_dialogue",
    "check_total_usd",
    "describe_event",
    "dialogue",
    "dispatch_parallel",
    "make_request",
    "parse_parallel",
]
