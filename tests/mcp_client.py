"""A real MCP client (the SDK's) talking to the installed `agent-dispatch serve` over stdio."""

from __future__ import annotations

import json
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path

from mcp import Client
from mcp.client.stdio import StdioServerParameters

SERVER = str(Path(sys.executable).parent / "agent-dispatch")


@asynccontextmanager
async def connect(**env: str):
    """Start the installed server with this process's environment (plus `env`) and connect."""
    params = StdioServerParameters(command=SERVER, args=["serve"], env={**os.environ, **env})
    async with Client(params, read_timeout_seconds=60) as client:
        yield client


async def call(client: Client, tool: str, **args):
    """Call a tool and return its JSON answer; structured content, when sent, must equal the text."""
    result = await client.call_tool(tool, args)
    value = json.loads(result.content[0].text)
    if result.structured_content is not None:
        assert result.structured_content == value, "structured content must equal the JSON text"
    return value


@asynccontextmanager
async def connect_with(options: dict, **env: str):
    """`connect`, with extra `Client` options (e.g. elicitation_callback, mode="legacy")."""
    params = StdioServerParameters(command=SERVER, args=["serve"], env={**os.environ, **env})
    async with Client(params, read_timeout_seconds=60, **options) as client:
        yield client
