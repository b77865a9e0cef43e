"""Every line on the server's stdin gets an answer: raw bytes into the real `agent-dispatch serve`.

The SDK's stdio transport dropped a line it could not validate (a lone-surrogate escape was
enough) and its caller waited forever; our transport answers it with a JSON-RPC error.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

SERVER = str(Path(sys.executable).parent / "agent-dispatch")

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}


def call_line(request_id, tool: str, arguments: str = "{}") -> bytes:
    return (f'{{"jsonrpc":"2.0","id":{request_id},"method":"tools/call",'
            f'"params":{{"name":"{tool}","arguments":{arguments}}}}}').encode()


class RawServer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([SERVER, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=os.environ)
        self._pending = b""

    def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def answers(self, count: int, timeout: float = 30.0) -> list[dict]:
        """The next `count` messages the server writes (fails if they do not all come)."""
        out: list[dict] = []
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while len(out) < count:
            while b"\n" in self._pending and len(out) < count:
                line, self._pending = self._pending.split(b"\n", 1)
                out.append(json.loads(line))
            if len(out) >= count:
                break
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {len(out)} of {count} answers came: {out}"
            if select.select([fd], [], [], remaining)[0]:
                chunk = os.read(fd, 1 << 16)
                assert chunk, f"the server closed stdout after {out}"
                self._pending += chunk
        return out

    def close(self) -> str:
        self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.stderr.read().decode(errors="replace")  # type: ignore[union-attr]


@pytest.fixture
def server(write_config, project):
    write_config(f"agents:\n  infra: {{directory: {project('infra')}}}\n")
    raw = RawServer()
    raw.send(json.dumps(INITIALIZE).encode())
    assert raw.answers(1)[0]["id"] == 1
    raw.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
    yield raw
    stderr = raw.close()
    assert "Traceback" not in stderr, stderr


def by_id(answers: list[dict]) -> dict:
    return {answer.get("id"): answer for answer in answers}


def test_a_lone_surrogate_request_gets_an_error_and_the_next_request_its_result(server):
    server.send(call_line(2, "inspect_agent", '{"name":"\\ud800"}'))  # the escape, as the client sends it
    server.send(call_line(3, "list_agents"))
    answers = by_id(server.answers(2))
    assert answers[2]["error"]["code"] == -32600 and "surrogate" in answers[2]["error"]["message"]
    assert [agent["name"] for agent in json.loads(answers[3]["result"]["content"][0]["text"])] == ["infra"]


def test_every_invalid_line_is_answered_and_valid_ones_still_get_results(server):
    server.send(b'{"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": ')  # cut short
    server.send(b"[" + call_line(5, "list_agents") + b"]")  # a batch
    server.send(b'"just a string"')
    server.send(b'{"jsonrpc": "2.0", "id": 6}')  # neither request nor response
    server.send(b'{"jsonrpc":"2.0","id":"\\udc00","method":"ping"}')  # an id that cannot be echoed
    server.send(b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"\\udc00"}}')
    server.send(call_line(7, "inspect_agent", b'{"name":"infra\xff"}'.decode("latin-1")).replace(
        "infra\u00ff".encode(), b"infra\xff"))  # not UTF-8: replaced, then answered as the SDK did
    server.send(b"")  # blank lines are skipped
    server.send(call_line(8, "list_agents"))
    answers = server.answers(7)
    nulls = [answer for answer in answers if answer.get("id") is None]
    assert sorted(answer["error"]["code"] for answer in nulls) == [-32700, -32600, -32600, -32600]
    keyed = by_id(answers)
    assert keyed[6]["error"]["code"] == -32600
    assert json.loads(keyed[7]["result"]["content"][0]["text"])["error"].startswith("unknown agent 'infra\ufffd'")
    assert json.loads(keyed[8]["result"]["content"][0]["text"])[0]["name"] == "infra"
    server.send(b'{"jsonrpc":"2.0","id":9,"method":"ping"}')
    assert server.answers(1) == [{"jsonrpc": "2.0", "id": 9, "result": {}}]  # nothing else was pending
