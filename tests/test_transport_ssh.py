"""Agents on another machine, over a real network: namespaces, a veth link, sshd, system ssh.

The lab (tests/netlab.py) is one "remote host" for the whole module; each test gets its own
project directories there and points agent-dispatch at it through AGENT_DISPATCH_SSH. Without
root, sshd or iproute2 the tier is skipped with the reason; under CI it fails instead.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import signal
import time
from pathlib import Path

import anyio
import pytest

from agent_dispatch.models import AgentConfig, EffectiveAgent, SshOptions
from agent_dispatch.refs import open_store
from agent_dispatch.runner import RunSpec, run_claude
from agent_dispatch.transports import ssh as transport
from mcp_client import call, connect
from netlab import ABSENT_ADDR, BLACKHOLE_ADDR, REMOTE_ADDR, Lab, missing_requirements, wait_until

# A remote CLI that records its pid, starts a grandchild in its group, and sleeps: for the
# tests that end a run early and then look for survivors on the remote host.
SLEEPER = """
import subprocess
prompt = read_prompt()
record(prompt)
kid = subprocess.Popen(["sleep", "300"])
with open(".pids", "w") as fh:
    fh.write(f"{os.getpid()} {kid.pid}")
time.sleep(300)
"""

# Streams three steps a little apart, then answers.
STREAMER = """
prompt = read_prompt()
record(prompt)
sid = session_id()
emit({"type": "system", "subtype": "init", "session_id": sid, "tools": [], "cwd": os.getcwd()})
for step in ("reading the logs", "checking the disk", "writing it up"):
    emit({"type": "assistant", "session_id": sid, "message": {"content": [{"type": "text", "text": step}]}})
    time.sleep(0.3)
emit(result_object("streamed: " + prompt))
"""


@pytest.fixture(scope="module")
def lab():
    reason = missing_requirements()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"the remote-agent tier cannot run under CI: {reason}")
        pytest.skip(reason)
    lab = Lab().start()
    yield lab
    lab.close()


@pytest.fixture
def remote(lab, monkeypatch, tmp_path):
    """The lab wired into this test's environment; `remote.project(name, files, body)` makes a remote project."""
    for key, value in lab.env().items():
        monkeypatch.setenv(key, value)
    made: list[Path] = []

    class Remote:
        lab_ = lab

        @staticmethod
        def project(name: str = "proj", files: dict[str, str] | None = None, body: str | None = None) -> Path:
            path = lab.dir / "projects" / f"{tmp_path.name}-{name}"
            path.mkdir(parents=True)
            for rel, text in (files or {}).items():
                (path / rel).parent.mkdir(parents=True, exist_ok=True)
                (path / rel).write_text(text)
            if body is not None:
                (path / ".fake.py").write_text(body)
            made.append(path)
            return path

        @staticmethod
        def runs(path: Path) -> list[dict]:
            record = path / ".runs.jsonl"
            return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []

    yield Remote
    for path in made:
        pids = (path / ".pids").read_text().split() if (path / ".pids").exists() else []
        for pid in pids:  # a failing test must not leave its sleepers behind
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def remote_agent(directory: Path, host: str = "remote-box", timeout: int = 30, **options) -> EffectiveAgent:
    ssh_options = SshOptions(**options) if options else None
    return EffectiveAgent(name="far", directory=str(directory), timeout=timeout, host=host, ssh_options=ssh_options)


def run(agent: EffectiveAgent, prompt: str = "hello", **kw):
    return anyio.run(lambda: run_claude(RunSpec(agent=agent, prompt=prompt, claude="claude", **kw)))


def pids_of(path: Path) -> list[int]:
    assert wait_until(lambda: (path / ".pids").exists(), timeout=20), "the remote CLI never started"
    return [int(word) for word in (path / ".pids").read_text().split()]


def gone(pids: list[int], timeout: float = 15) -> bool:
    return wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids), timeout=timeout)


def config_for(write_config, directory: Path, host: str = "remote-box", extra: str = "") -> None:
    write_config(f"""
        agents:
          far:
            directory: {json.dumps(str(directory))}
            host: {host}
            timeout: 30{extra}
    """)


# ---- the quoting, without a network ------------------------------------------------------------


def test_every_remote_word_is_quoted_and_only_the_run_variables_travel():
    target = transport.SshTarget("ops@bastion", SshOptions(port=2222, jump_host="jump"))
    argv = transport.wrap(target, ["claude", "-p", "--model", "x y"], {"AGENT_DISPATCH_DEPTH": "2", "SECRET": "s"},
                          "/srv/it's here", 30, None)
    at = argv.index("--")
    assert argv[at + 1] == "ops@bastion" and ["-p", "2222"] == argv[argv.index("-p"):argv.index("-p") + 2]
    assert "BatchMode=yes" in argv and "ForwardAgent=no" in argv
    remote = argv[at + 2:]
    words = shlex.split(" ".join(remote))  # what a POSIX remote shell makes of the joined words
    assert words[:2] == ["env", "AGENT_DISPATCH_DEPTH=2"] and "SECRET=s" not in words
    assert words[-4:] == ["claude", "-p", "--model", "x y"]
    assert "/srv/it's here" in words


def test_ssh_options_refuse_values_that_would_be_options():
    for bad in ({"identity_file": "-oProxyCommand=x"}, {"jump_host": "-J x"}, {"jump_host": "a b"},
                {"port": 0}, {"port": True}, {"connect_timeout": 0}):
        with pytest.raises(ValueError):
            SshOptions(**bad)
    for bad_host in ("-oProxyCommand=touch", "a b", "x;y", "$(id)", "", "a\nb"):
        with pytest.raises(ValueError):
            AgentConfig(directory="/srv", host=bad_host)
    with pytest.raises(ValueError):
        AgentConfig(directory="/srv", ssh_options={"port": 22})  # options without a host
    assert AgentConfig(directory="/srv", host="ops@bastion.example.com").host == "ops@bastion.example.com"


# ---- runs across the link ----------------------------------------------------------------------


def test_dispatch_runs_in_the_remote_directory_with_the_depth_and_the_prompt_on_stdin(remote, monkeypatch):
    path = remote.project("plain")
    monkeypatch.setenv("AGENT_DISPATCH_SSH_SECRET_TEST", "not for the remote")
    result = run(remote_agent(path), prompt="what is up", depth=1, chain=("top",))
    assert result.success, result
    assert result.result == "echo: what is up" and result.host == "remote-box"
    [seen] = remote.runs(path)
    assert seen["cwd"] == str(path)
    assert seen["env"]["AGENT_DISPATCH_DEPTH"] == "2"
    assert seen["env"]["AGENT_DISPATCH_CHAIN"] == "top,far"
    assert "SSH_CONNECTION" in seen["env"] and seen["env"]["SSH_CONNECTION"].startswith("10.77.0.1 ")
    assert not {"AGENT_DISPATCH_SSH", "AGENT_DISPATCH_SSH_SECRET_TEST", "AGENT_DISPATCH_RUN_TOKEN"} & set(seen["env"])


def test_hostile_task_context_and_directory_arrive_as_text_with_nothing_executed(remote, lab):
    marks = [lab.dir / f"pwned-{n}" for n in range(4)]
    victim = lab.dir / "victim"
    victim.mkdir(exist_ok=True)
    path = remote.project(f"odd $(touch {marks[2]}) 'dir'; `touch {marks[3]}`")
    task = f"$(touch {marks[0]}) ; rm -rf {victim} `touch {marks[1]}` && echo hi"
    for prompt in (task, "--help -p --dangerously-skip-permissions", "-", "'\"\\ $HOME ${IFS}"):
        result = run(remote_agent(path), prompt=prompt)
        assert result.success and result.result == "echo: " + prompt
    assert remote.runs(path)[0]["cwd"] == str(path)
    assert not any(mark.exists() for mark in marks) and victim.is_dir()


def test_session_resume_continues_on_the_remote(remote):
    path = remote.project("session")
    first = run(remote_agent(path), prompt="remember 42")
    second = run(remote_agent(path), prompt="what was it", resume=first.session_id)
    assert second.success and second.session_id == first.session_id
    assert remote.runs(path)[1]["argv"][remote.runs(path)[1]["argv"].index("--resume") + 1] == first.session_id


async def test_stream_progress_and_async_job_through_the_server(remote, write_config):
    path = remote.project("stream", body=STREAMER)
    config_for(write_config, path)
    progress: list[str] = []

    async def on_progress(p, total, message):
        progress.append(message or "")

    async with connect() as client:
        answer = await client.call_tool("dispatch_stream", {"agent": "far", "task": "look"},
                                        progress_callback=on_progress)
        streamed = json.loads(answer.content[0].text)
        assert streamed["success"] and streamed["result"] == "streamed: look", streamed
        assert streamed["host"] == "remote-box"
        assert any("checking the disk" in text for text in progress), progress

        job = await call(client, "dispatch_async", agent="far", task="later")
        done = await call(client, "dispatch_wait", job_id=job["job_id"], timeout_seconds=60)
        assert done["status"] == "done" and done["result"]["result"] == "streamed: later"
        assert done["result"]["host"] == "remote-box"


def test_timeout_kills_the_remote_tree_and_keeps_the_session(remote):
    path = remote.project("slow", body=SLEEPER)
    started = time.monotonic()
    result = run(remote_agent(path, timeout=3))
    assert time.monotonic() - started < 15
    assert result.error_type == "timeout" and result.session_id
    assert gone(pids_of(path)), "the remote CLI or its child survived the timeout"


async def test_cancel_of_a_running_remote_job_leaves_no_remote_process(remote, write_config):
    path = remote.project("cancel", body=SLEEPER)
    config_for(write_config, path)
    async with connect() as client:
        job = await call(client, "dispatch_async", agent="far", task="long")
        pids = await anyio.to_thread.run_sync(pids_of, path)
        cancelled = await call(client, "dispatch_cancel", job_id=job["job_id"])
        assert cancelled["outcome"] == "cancelled_running"
    assert gone(pids)


def test_link_cut_mid_run_fails_cleanly_and_the_remote_run_ends(remote, lab):
    path = remote.project("cut", body=SLEEPER)
    box: dict = {}

    def dispatch():
        box["result"] = run(remote_agent(path, timeout=120))
        box["at"] = time.monotonic()

    import threading

    worker = threading.Thread(target=dispatch)
    worker.start()
    pids = pids_of(path)
    lab.cut()
    cut_at = time.monotonic()
    try:
        worker.join(timeout=60)
        assert not worker.is_alive(), "the run did not notice the cut link"
    finally:
        lab.mend()
    result = box["result"]
    assert box["at"] - cut_at < 30
    assert result.success is False and result.error_type == "cli_error", result
    assert "connection" in result.error and result.session_id
    assert "ssh" in (result.hint or "")
    assert gone(pids, timeout=30), "the remote run outlived the link"
    again = run(remote_agent(remote.project("after-cut")))  # a fresh connection takes over
    assert again.success, again


def test_unreachable_hosts_fail_fast_with_not_found_and_a_command_to_try(remote):
    path = remote.project("nowhere")
    started = time.monotonic()
    silent = run(remote_agent(path, host=BLACKHOLE_ADDR, connect_timeout=2))
    assert time.monotonic() - started < 12
    assert silent.error_type == "not_found", silent
    assert "ssh -o BatchMode=yes" in silent.hint and BLACKHOLE_ADDR in silent.hint
    absent = run(remote_agent(path, host=ABSENT_ADDR, connect_timeout=5))
    assert absent.error_type == "not_found" and ABSENT_ADDR in absent.error


def test_missing_cli_directory_and_rejected_key_are_named(remote, lab):
    path = remote.project("broken")
    missing_dir = run(remote_agent(path / "nope"))
    assert missing_dir.error_type == "not_found" and "nope" in missing_dir.error
    lab.install_remote_cli(None)
    try:
        no_cli = run(remote_agent(path))
    finally:
        lab.install_remote_cli(lab.launcher)
    assert no_cli.error_type == "not_found" and "claude" in no_cli.error
    assert "claude --version" in no_cli.hint
    keys = lab.remote_home / ".ssh" / "authorized_keys"
    saved = keys.read_text()
    keys.write_text("")
    lab.drop_connections()
    try:
        rejected = run(remote_agent(path, host=REMOTE_ADDR))
    finally:
        keys.write_text(saved)
    assert rejected.error_type == "cli_error" and "rejected the key" in rejected.error, rejected


def test_the_connection_is_shared_between_runs(remote, lab):
    lab.drop_connections()
    path = remote.project("shared")
    before = lab.sshd_log.read_text().count("Accepted publickey")
    for _ in range(3):
        assert run(remote_agent(path)).success
    assert lab.sshd_log.read_text().count("Accepted publickey") == before + 1, "each run made its own connection"
    [master] = lab.local_processes("ControlMaster=yes")
    socket = transport.control_path(transport.SshTarget("remote-box"))
    assert socket is not None and socket.exists()
    assert (socket.parent.stat().st_mode & 0o777) == 0o700
    assert master


def test_a_remote_job_survives_a_server_restart(remote, write_config):
    path = remote.project("restart", body=SLEEPER.replace("time.sleep(300)", "time.sleep(3); emit_result('paid')"))
    config_for(write_config, path)

    async def scenario():
        job: dict = {}
        with contextlib.suppress(Exception):  # the connection dies with its server
            async with connect() as client:
                job = await call(client, "dispatch_async", agent="far", task="survive")
                await anyio.to_thread.run_sync(pids_of, path)
                os.kill(open_store().get(job["job_id"]).owner["pid"], signal.SIGKILL)
        assert job, "the job never started"
        async with connect() as client:
            return await call(client, "dispatch_wait", job_id=job["job_id"], timeout_seconds=60)

    done = anyio.run(scenario)
    assert done["status"] == "done" and done["result"]["result"] == "paid", done


# ---- listings and health -----------------------------------------------------------------------


async def test_listing_reads_remote_projects_and_a_dead_host_only_marks_its_agent(remote, write_config):
    path = remote.project("listed", files={"CLAUDE.md": "# Ops\n\nRuns the bastion's containers.\n",
                                           ".mcp.json": json.dumps({"mcpServers": {"portainer": {}}}),
                                           "pyproject.toml": "[project]\nname='x'\n"})
    write_config(f"""
        agents:
          far:
            directory: {json.dumps(str(path))}
            host: remote-box
          gone:
            directory: /srv/nothing
            host: {BLACKHOLE_ADDR}
            ssh_options: {{connect_timeout: 2}}
          missing:
            directory: {json.dumps(str(path / "nope"))}
            host: remote-box
    """)
    async with connect() as client:
        started = time.monotonic()
        listed = {item["name"]: item for item in await call(client, "list_agents")}
        assert time.monotonic() - started < 15, "a dead host held the listing up"
        far = listed["far"]
        assert far["healthy"] and far["host"] == "remote-box" and far["directory"] == str(path)
        assert far["has_claude_md"] and far["mcp_servers"] == ["portainer"] and far["stacks"] == ["Python"]
        assert far["description"].startswith("Runs the bastion's containers.")
        assert listed["gone"]["healthy"] is False and BLACKHOLE_ADDR in listed["gone"]["problem"]
        assert listed["missing"]["healthy"] is False and "does not exist" in listed["missing"]["problem"]
        inspected = await call(client, "inspect_agent", name="far", preview_lines=1)
        assert inspected["claude_md_preview"] == "# Ops\n" and inspected["host"] == "remote-box"
        again = time.monotonic()
        await call(client, "list_agents")
        assert time.monotonic() - again < 5, "a second listing should come from the cache"


def test_cli_list_and_describe_show_the_host(remote, write_config):
    from click.testing import CliRunner

    from agent_dispatch.cli import cli

    path = remote.project("cli", files={"README.md": "# Box\n\nThe staging box.\n"})
    config_for(write_config, path, extra="\n            ssh_options: {port: 22, connect_timeout: 5}")
    listed = CliRunner().invoke(cli, ["list"], catch_exceptions=False)
    assert listed.exit_code == 0 and f"remote-box:{path}" in listed.output and "ok" in listed.output
    described = CliRunner().invoke(cli, ["describe", "far"], catch_exceptions=False)
    assert described.exit_code == 0, described.output
    assert "remote-box (over ssh: port 22, connect_timeout 5)" in described.output
    assert "The staging box." in described.output


# ---- adding, updating and checking remote agents ------------------------------------------------


def test_cli_add_checks_the_remote_directory_and_stores_host_and_ssh_options(remote, config_path):
    import yaml
    from click.testing import CliRunner

    from agent_dispatch.cli import cli

    path = remote.project("added", files={"CLAUDE.md": "# Added\n\nDeploys the staging stack.\n"})
    added = CliRunner().invoke(cli, ["add", "far", str(path), "--host", "remote-box",
                                     "--ssh-options", "connect_timeout=5,port=22"], catch_exceptions=False)
    assert added.exit_code == 0, added.output
    stored = yaml.safe_load(config_path.read_text())["agents"]["far"]
    assert stored == {"directory": str(path), "host": "remote-box", "ssh_options": {"port": 22, "connect_timeout": 5},
                      "description": "Deploys the staging stack."}
    before = config_path.read_bytes()
    for args, words in (
        (["add", "nope", str(path / "missing"), "--host", "remote-box"], "does not exist"),
        (["add", "rel", "relative/dir", "--host", "remote-box"], "absolute path"),
        (["add", "bad", str(path), "--host", "-oProxyCommand=touch /tmp/x"], "host"),
        (["add", "bad", str(path), "--host", "remote-box", "--ssh-options", "proxy_command=x"], "ssh_options"),
        (["add", "bad", str(path), "--host", "remote-box", "--ssh-options", "identity_file=-oX"], "ssh_options"),
        (["update", "far", "--ssh-options", "port=0"], "ssh_options"),
    ):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code in (1, 2) and words in result.output, (args, result.output)
        assert "Traceback" not in result.output
    assert config_path.read_bytes() == before, "a failing command changed agents.yaml"
    updated = CliRunner().invoke(cli, ["update", "far", "--ssh-options", "none"], catch_exceptions=False)
    assert updated.exit_code == 0 and "ssh_options" not in yaml.safe_load(config_path.read_text())["agents"]["far"]


async def test_add_agent_tool_takes_host_and_ssh_options(remote, write_config):
    path = remote.project("tool-added", files={"README.md": "# T\n\nA remote project.\n"})
    write_config("agents: {}\n")
    async with connect() as client:
        added = await call(client, "add_agent", name="far", directory=str(path), host="remote-box",
                           ssh_options="connect_timeout=4")
        assert added["host"] == "remote-box" and added["ssh_options"] == {"connect_timeout": 4}
        assert added["description"] == "A remote project."
        refused = await call(client, "add_agent", name="evil", directory=str(path), host="$(touch /tmp/x)")
        assert "error" in refused and "host" in refused["error"]
        answer = await call(client, "dispatch", agent="far", task="hi there")
        assert answer["success"] and answer["host"] == "remote-box"


def test_doctor_checks_each_host(remote, write_config, lab, fake_claude):
    from click.testing import CliRunner

    from agent_dispatch.cli import cli

    fake_claude("print('1.0.0 (Claude Code)') if '--version' in ARGV else sys.exit(1)")  # the local claude

    path = remote.project("doctor")
    write_config(f"""
        agents:
          far:
            directory: {json.dumps(str(path))}
            host: remote-box
          again:
            directory: {json.dumps(str(path))}
            host: remote-box
          gone:
            directory: /srv/x
            host: {ABSENT_ADDR}
            ssh_options: {{connect_timeout: 3}}
    """)
    lab.install_remote_cli(lab.launcher.replace("else:\n    main()",
                                                "elif '--version' in sys.argv:\n    print('9.9.9 (Fake Code)')\n"
                                                "else:\n    main()"))
    try:
        out = CliRunner().invoke(cli, ["doctor"]).output
    finally:
        lab.install_remote_cli(lab.launcher)
    assert out.count("host remote-box: reachable, key accepted in batch mode, claude 9.9.9 (Fake Code)") == 1, out
    assert f"FAIL  host {ABSENT_ADDR}" in out and "ssh -o BatchMode=yes" in out
    assert f"agent far: remote-box:{path}" in out


def our_servers() -> list[int]:
    """Pids of `agent-dispatch serve` processes this test process started."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"agent-dispatch\0serve" in (entry / "cmdline").read_bytes():
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


async def test_the_server_stopping_mid_dispatch_ends_the_remote_run(remote, write_config):
    path = remote.project("server-exit", body=SLEEPER)
    config_for(write_config, path)
    box: dict = {}
    with contextlib.suppress(Exception):  # the call dies with its server
        async with connect() as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(call, client, "dispatch", agent="far", task="long"))
                box["pids"] = await anyio.to_thread.run_sync(pids_of, path)
                [server] = our_servers()
                os.kill(server, signal.SIGTERM)  # an orderly stop: Claude Code quitting, a logout
                box["gone"] = await anyio.to_thread.run_sync(functools.partial(gone, box["pids"], timeout=30))
                tg.cancel_scope.cancel()
    assert box.get("pids"), "the remote run never started"
    assert box.get("gone", False) or gone(box["pids"], timeout=1), "the remote run outlived its server"
