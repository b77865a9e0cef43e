"""Result refs: a dispatch's whole answer kept as a job record, answered as a short payload.

`fetch_result(ref)` reads the record back; the ref is the job id. `open_store()` is the one job
store of the configured jobs directory for this process, shared with the background jobs.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio

from agent_dispatch import config as configmod
from agent_dispatch.jobs import JobStore
from agent_dispatch.models import DispatchRequest, DispatchResult, Job

# The result fields a ref payload carries besides its summary (the answer's head).
PAYLOAD_FIELDS = (
    "session_id", "cost_usd", "duration_ms", "num_turns", "error", "error_type", "parsed_result", "cached",
    "denied_tools", "hint", "outcome", "question", "clarifications", "budget_exceeded", "changes", "warning",
)

_STORES: dict[str, JobStore] = {}


def open_store() -> JobStore:
    """The job store of the configured jobs directory, prepared once per directory and process."""
    directory = configmod.jobs_dir()
    key = str(directory)
    if key not in _STORES or not directory.is_dir():  # a removed directory is prepared again
        _STORES[key] = JobStore(directory)
    return _STORES[key]


async def keep(req: DispatchRequest, result: DispatchResult) -> dict[str, Any]:
    """Store `result` as a finished ref record and answer its payload."""
    now = time.time()
    job = Job(
        id=uuid.uuid4().hex,
        status="done" if result.success else "failed",
        agent=req.agent,
        task=req.task,
        created_at=now,
        started_at=now,
        completed_at=now,
        result=result,
        kind="ref",
    )
    store = open_store()
    await anyio.to_thread.run_sync(store.create, job)
    return ref_payload(job.id, result, req.summary_chars)


def ref_payload(ref: str, result: DispatchResult, summary_chars: int) -> dict[str, Any]:
    """What a dispatch with `return_ref` answers: the ref, the answer's size and head, and the
    result's other fields."""
    full = result.to_json()
    out: dict[str, Any] = {
        "ref": ref,
        "agent": result.agent,
        "success": result.success,
        "size": len(result.result),
        "summary": result.result[:summary_chars],
        "summary_chars": summary_chars,
    }
    for key in PAYLOAD_FIELDS:
        if key in full:
            out[key] = full[key]
    return out
