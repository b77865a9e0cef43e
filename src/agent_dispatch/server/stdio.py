"""Serving over stdio until the client leaves or a stop signal arrives (`agent-dispatch serve`)."""

from __future__ import annotations

import os
import signal

import anyio
from mcp.server.mcpserver import MCPServer

from agent_dispatch.server.tools import SHUTDOWN_REASON, State, build_server
from agent_dispatch.server.transport import run_stdio

STOP_GRACE = 5.0


async def _serve(server: MCPServer) -> None:
    """Serve stdio until the client goes away or a stop signal arrives; both end in an orderly shutdown.

    On SIGTERM/SIGINT/SIGHUP: queued jobs are failed with a reason, running dispatches are cancelled
    (their process trees killed), detached job runs are left for a later server to collect, and the
    process exits once no child is left, since the SDK's stdin reader thread cannot be interrupted.
    """
    state: State = server.agent_dispatch_state  # type: ignore[attr-defined]
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                async for _ in signals:
                    break
            with anyio.CancelScope(shield=True):
                if hasattr(state, "jobs"):
                    await state.jobs.shutdown(SHUTDOWN_REASON)
                tg.cancel_scope.cancel()
                limiter = state.dispatcher.limiter if hasattr(state, "dispatcher") else None
                with anyio.move_on_after(STOP_GRACE):
                    while limiter is not None and (limiter.active or limiter.waiting):
                        await anyio.sleep(0.02)
                os._exit(0)

        async def run() -> None:
            await run_stdio(server)  # our transport: every line answered, answers written without copies
            tg.cancel_scope.cancel()

        tg.start_soon(watch_signals)
        tg.start_soon(run)


def serve() -> None:
    """Entry point of `agent-dispatch serve`."""
    anyio.run(_serve, build_server())
