"""The MCP front door (`agent-dispatch serve`): the tools, how they answer, serving over stdio."""

from agent_dispatch.server.stdio import serve
from agent_dispatch.server.tools import build_server

__all__ = ["build_server", "serve"]
