"""agents.yaml: paths, loading and its failures, atomic locked saving, and the agent operations."""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from agent_dispatch import config
from agent_dispatch.config import AgentChanges, AgentRecord, ConfigStore
from agent_dispatch.config import store as store_module
from agent_dispatch.errors import AgentExistsError, AgentNotFoundError, BadArgumentError, ConfigError


@pytest.fixture
def store(config_path):
    return ConfigStore()


def agent_yaml(*names: str, directory: str = "/srv/p") -> str:
    return "agents:\n" + "".join(f"  {name}:\n    directory: {directory}\n" for name in names)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- paths --------------------------------------------------------------------------------


def test_paths_follow_the_environment(monkeypatch, tmp_path, isolated_env):
    monkeypatch.delenv("AGENT_DISPATCH_CONFIG")
    assert config.config_path() == isolated_env / ".config" / "agent-dispatch" / "agents.yaml"
    assert config.jobs_dir() == isolated_env / ".config" / "agent-dispatch" / "jobs"
    monkeypatch.setenv("AGENT_DISPATCH_CONFIG", "~/elsewhere/a.yaml")
    assert config.config_path() == isolated_env / "elsewhere" / "a.yaml"
    assert config.jobs_dir() == isolated_env / "elsewhere" / "jobs"
    assert config.jobs_dir(tmp_path / "x" / "agents.yaml") == tmp_path / "x" / "jobs"
    monkeypatch.setenv("AGENT_DISPATCH_JOBS_DIR", str(tmp_path / "j"))
    assert config.jobs_dir() == tmp_path / "j"


def test_claude_command_prefers_the_override(monkeypatch, tmp_path):
    assert config.claude_command() == os.environ["AGENT_DISPATCH_CLAUDE"]
    monkeypatch.setenv("AGENT_DISPATCH_CLAUDE", str(tmp_path / "missing"))
    assert config.claude_command() is None
    monkeypatch.delenv("AGENT_DISPATCH_CLAUDE")
    assert config.claude_command().endswith("/tripwire-bin/claude")  # `claude` on PATH
    monkeypatch.setenv("PATH", str(tmp_path))
    assert config.claude_command() is None


# --- loading ------------------------------------------------------------------------------


def test_missing_file_is_an_empty_config(store):
    loaded = store.load()
    assert loaded.agents == {} and loaded.settings.default_timeout == 300
    assert not store.path.exists()


def test_load_reads_every_key(write_config, store):
    write_config("""
        # my agents
        agents:
          infra:
            directory: ~/infra
            description: Infra agent.
            timeout: 60
            model: sonnet
            max_budget_usd: 1.5
            permission_mode: plan
            allowed_tools: [Read, Grep]
            disallowed_tools: []
          rel:
            directory: ../projects/rel
        settings:
          default_timeout: 120
          max_concurrency: 2
          cache: {ttl: 10}
    """)
    loaded = store.load()
    infra = loaded.agents["infra"]
    assert infra.directory == os.path.expanduser("~/infra")
    assert (infra.timeout, infra.model, infra.max_budget_usd, infra.permission_mode) == (60, "sonnet", 1.5, "plan")
    assert (infra.allowed_tools, infra.disallowed_tools) == (["Read", "Grep"], [])
    # A relative directory is taken relative to the config file's directory.
    assert loaded.agents["rel"].directory == os.path.normpath(store.path.parent / "../projects/rel")
    assert loaded.agents["rel"].allowed_tools is None
    assert (loaded.settings.default_timeout, loaded.settings.max_concurrency, loaded.settings.cache.ttl) == (120, 2, 10)


def test_load_is_cached_until_the_file_changes(write_config, store):
    write_config(agent_yaml("a"))
    first = store.load()
    assert store.load() is first
    write_config(agent_yaml("a", "b"))
    assert list(store.load().agents) == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"agents:\n  a: [unclosed\n", "is not valid YAML"),
        (b"agents:\n  a:\n    directory: /p\n  a:\n    directory: /q\n", "duplicate key 'a'"),
        (b"- just\n- a list\n", "must hold a mapping with an `agents:` key at the top, not a list"),
        (b"hello\n", "not a string"),
        (b"agents: []\n", "agents: Input should be a valid dictionary"),
        (b"agents:\n  a:\n    directory: /p\n    colour: red\n", "unknown key 'colour' in agents.a"),
        (b"agent:\n  a: {}\n", "unknown key 'agent' at the top level"),
        (b"agents:\n  a:\n    description: no directory\n", "agents.a.directory: Field required"),
        (b"agents:\n  a:\n    directory: /p\n    timeout: -5\n", "timeout must be a whole number of seconds from 1"),
        (b"agents:\n  a:\n    directory: /p\n    timeout: 99999999\n", "from 1 to 604800 (7 days)"),
        (b"agents:\n  a:\n    directory: /p\n    max_budget_usd: 1.0e+300\n", "must be at most 1000"),
        (b"agents:\n  a:\n\tdirectory: /p\n", "a tab character (line 3, column 1): YAML does not allow tabs"),
        (b"agents:\n  a:\n    directory: /p\n    \tmodel: x\n", "YAML does not allow tabs for indentation"),
        (b"agents:\n  infra:\n  directory: /p\n", "`directory:` sits directly under `agents:`; indent it"),
        (b"agents:\n  infra:\n", "agents.infra: an agent must be a mapping of its keys (`directory:` ...), not empty"),
        (b"agents:\n  a:\n    directory: /p\n    timeuot: 5\n",
         "unknown key 'timeuot' in agents.a (did you mean 'timeout'?)"),
        (b"settings:\n  cache:\n    tll: 5\n", "unknown key 'tll' in settings.cache (did you mean 'ttl'?)"),
        (b"agent:\n  a: {}\n", "unknown key 'agent' at the top level (did you mean 'agents'?)"),
        (b"agents:\n  notes: {directory: /p}\n  Notes: {directory: /q}\n", "differ only in case"),
        (b"agents:\n  " + b"n" * 65 + b": {directory: /p}\n", "1 to 64 characters"),
        (b"agents:\n  a:\n    directory: /p\n    max_budget_usd: .nan\n", "must be a finite number"),
        (b"agents:\n  a:\n    directory: /p\n    max_budget_usd: .inf\n", "must be a finite number"),
        (b"agents:\n  a:\n    directory: /p\n    timeout: yes\n", "must be a number, not true/false"),
        (b"agents:\n  '-a':\n    directory: /p\n", "invalid agent name '-a'"),
        (b"agents:\n  \"a\\n\":\n    directory: /p\n", "invalid agent name 'a\\n'"),
        (b"agents:\n  2024:\n    directory: /p\n", "agent name 2024 must be text"),
        (b"agents:\n  a:\n    directory: caf\xe9\n", "is not UTF-8 text (byte 0xe9 on line 3)"),
        (b"\xff\xfeagents", "is not UTF-8 text"),
    ],
)
def test_every_load_failure_is_one_config_error(config_path, store, content, message):
    config_path.parent.mkdir(parents=True)
    config_path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        store.load()
    assert message in caught.value.message
    assert str(config_path) in caught.value.message and caught.value.hint
    assert "\n" not in caught.value.message


def test_many_schema_errors_are_summarised(write_config, store):
    write_config("agents:\n" + "".join(f"  a{i}:\n    directory: /p\n    bad{i}: 1\n" for i in range(6)))
    with pytest.raises(ConfigError, match=r"\(and 3 more\)"):
        store.load()


def test_unreadable_config_is_a_config_error(config_path, store):
    config_path.mkdir(parents=True)  # a directory where the file should be: unreadable as a file
    with pytest.raises(ConfigError, match="it is a directory") as caught:
        store.load()
    assert "AGENT_DISPATCH_CONFIG" in caught.value.hint


def test_fifo_at_the_config_path_does_not_hang(config_path, store):
    config_path.parent.mkdir(parents=True)
    os.mkfifo(config_path)
    with pytest.raises(ConfigError, match="not a regular file"):
        store.load()


def test_permission_denied_is_a_config_error(config_path, store, monkeypatch):
    config_path.parent.mkdir(parents=True)
    config_path.write_text(agent_yaml("a"))
    real_open = os.open

    def deny(path, *args, **kwargs):
        if os.fspath(path) == str(config_path):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)  # tests run as root, where chmod 000 still reads
    with pytest.raises(ConfigError, match="permission denied") as caught:
        store.load()
    assert f"chmod 600 {config_path}" in caught.value.hint


def test_empty_file_and_empty_sections(write_config, store):
    write_config("")
    assert store.load().agents == {}
    write_config("agents:\nsettings:\n")
    assert store.load().agents == {}


def test_yaml_merge_keys_may_override(write_config, store):
    write_config("agents:\n  a: &x {directory: /p, timeout: 5}\n  b:\n    <<: *x\n    timeout: 9\n")
    loaded = store.load()
    assert (loaded.agents["a"].timeout, loaded.agents["b"].timeout) == (5, 9)


# --- saving -------------------------------------------------------------------------------


def test_modify_writes_owner_only_and_prunes_empty_keys(store, project):
    path = project("p", {"CLAUDE.md": "A project for testing saves.\n"})
    config.add_agent(store, "a", str(path), description="Desc", allowed_tools="none", timeout=0)
    config.add_agent(store, "b", str(path), description="Other", disallowed_tools="[]", max_budget_usd="0.5")
    assert mode(store.path) == 0o600 and mode(store.path.parent) == 0o700
    data = yaml.safe_load(store.path.read_text())
    assert data == {"agents": {
        "a": {"directory": str(path), "description": "Desc"},
        "b": {"directory": str(path), "description": "Other", "max_budget_usd": 0.5, "disallowed_tools": []},
    }}
    assert "settings" not in store.path.read_text()


def test_existing_directory_is_tightened(config_path, store, project):
    config_path.parent.mkdir(parents=True, mode=0o755)
    os.chmod(config_path.parent, 0o755)  # noqa: S103 (a loose directory, on purpose)
    config_path.write_text(agent_yaml("a"))
    os.chmod(config_path, 0o644)
    config.remove_agent(store, "a")
    assert mode(config_path.parent) == 0o700 and mode(config_path) == 0o600


def test_a_shared_sticky_directory_is_left_alone(tmp_path, monkeypatch, project):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # noqa: S103 (a shared /tmp-like directory, on purpose)
    store = ConfigStore(shared / "agents.yaml")
    config.add_agent(store, "a", str(project("p")), description="x")
    assert mode(shared) == 0o1777 and mode(store.path) == 0o600


HAND_EDITED = """\
# Header comment kept.
agents:
  # the infrastructure box
  infra:
    directory: {infra}   # where it lives
    description: 'Infra, quoted by hand'
    timeout: 60          # seconds
    allowed_tools:
      - Read
      - Grep

  # the website; it goes away below
  web:
    directory: {web}

  # last one
  docs: {{directory: {docs}}}

settings:
  default_timeout: 120
  default_max_budget_usd: null
  cache:
    ttl: 60     # one minute
    max_size: 10
"""


def test_writes_keep_comments_order_style_and_number_types(write_config, store, project):
    dirs = {name: project(name) for name in ("infra", "web", "docs", "new")}
    write_config(HAND_EDITED.format(**dirs))
    config.update_agent(store, "infra", AgentChanges.from_inputs(model="sonnet", timeout=90))
    config.remove_agent(store, "web")
    config.add_agent(store, "new", str(dirs["new"]), description="Fresh", allowed_tools="Read,Grep")
    expected = HAND_EDITED.format(**dirs)
    expected = expected.replace("timeout: 60          # seconds\n",
                                "timeout: 90          # seconds\n")
    expected = expected.replace("      - Grep\n\n", "      - Grep\n    model: sonnet\n\n")
    # A removed entry's lines go; no comment is ever dropped, not even the one above it.
    expected = expected.replace(f"  web:\n    directory: {dirs['web']}\n", "")
    expected = expected.replace(
        f"  docs: {{directory: {dirs['docs']}}}\n",
        f"  docs: {{directory: {dirs['docs']}}}\n  new:\n    directory: {dirs['new']}\n"
        "    description: Fresh\n    allowed_tools: [Read, Grep]\n",
    )
    assert store.path.read_text() == expected
    assert mode(store.path) == 0o600
    assert store.load().settings.cache.ttl == 60


def test_a_new_agent_in_a_starter_file_is_a_block_mapping(store, project):
    store.create()
    config.add_agent(store, "a", str(project("a")), description="Line one\nline two", timeout=5)
    text = store.path.read_text()
    assert text == store_module.STARTER.replace("agents: {}\n", "") + (
        f"agents:\n  a:\n    directory: {project('a')}\n    description: |-\n      Line one\n      line two\n"
        "    timeout: 5\n"
    )
    assert store.load().agents["a"].description == "Line one\nline two"


def test_text_the_round_trip_cannot_edit_is_written_afresh(write_config, store, project, monkeypatch):
    from agent_dispatch.config import roundtrip

    write_config(f"# kept\nagents:\n  a: {{directory: {project('a')}}}\n  # lost: written afresh\n")
    monkeypatch.setattr(roundtrip, "render", lambda *a: "agents: {b: {directory: /elsewhere}}\n")
    config.update_agent(store, "a", AgentChanges.from_inputs(timeout=7))
    assert store.path.read_text() == f"# kept\nagents:\n  a:\n    directory: {project('a')}\n    timeout: 7\n"


def test_symlinked_config_stays_a_symlink(config_path, tmp_path, project):
    real = tmp_path / "dotfiles" / "agents.yaml"
    real.parent.mkdir()
    real.write_text(agent_yaml("a"))
    config_path.parent.mkdir(parents=True)
    config_path.symlink_to(real)
    store = ConfigStore()
    config.add_agent(store, "b", str(project("p")), description="x")
    assert config_path.is_symlink() and os.readlink(config_path) == str(real)
    assert set(yaml.safe_load(real.read_text())["agents"]) == {"a", "b"}
    assert mode(real) == 0o600
    assert [p.name for p in real.parent.iterdir()] == ["agents.yaml"]  # no temp file left


def test_dangling_symlink_target_is_created(config_path, tmp_path, project):
    real = tmp_path / "dotfiles" / "agents.yaml"
    real.parent.mkdir()
    config_path.parent.mkdir(parents=True)
    config_path.symlink_to(real)
    config.add_agent(ConfigStore(), "a", str(project("p")), description="x")
    assert config_path.is_symlink() and "a:" in real.read_text()


def test_interrupted_write_leaves_the_previous_file(write_config, store, project, monkeypatch):
    before = write_config(agent_yaml("a")).read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.os, "replace", broken_replace)
    with pytest.raises(ConfigError, match="No space left on device"):
        config.add_agent(store, "b", str(project("p")), description="x")
    assert store.path.read_bytes() == before
    assert not [p for p in store.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_write_killed_midway_leaves_the_previous_file(write_config, store, project, monkeypatch):
    before = write_config(agent_yaml("a")).read_bytes()

    def dies(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module.os, "fsync", dies)
    with pytest.raises(KeyboardInterrupt):
        config.add_agent(store, "b", str(project("p")), description="x")
    assert store.path.read_bytes() == before
    assert not [p for p in store.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_failing_change_writes_nothing(write_config, store, project):
    before = write_config(agent_yaml("a")).read_bytes()
    with pytest.raises(RuntimeError):
        store.modify(lambda cfg: (_ for _ in ()).throw(RuntimeError("boom")))

    def corrupt(cfg):
        cfg.agents["bad name"] = cfg.agents["a"]

    with pytest.raises(BadArgumentError, match="invalid agent name"):
        store.modify(corrupt)
    assert store.path.read_bytes() == before


def test_a_broken_config_is_never_overwritten(write_config, store, project):
    before = write_config("agents:\n  a: [oops\n").read_bytes()
    with pytest.raises(ConfigError):
        config.add_agent(store, "b", str(project("p")), description="x")
    assert store.path.read_bytes() == before


def test_lock_wait_is_bounded(store, project, monkeypatch):
    monkeypatch.setattr(store_module, "LOCK_TIMEOUT", 0.2)
    store.path.parent.mkdir(parents=True)
    holder = os.open(store.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        start = time.monotonic()
        with pytest.raises(ConfigError, match="being changed by another agent-dispatch process"):
            config.add_agent(store, "a", str(project("p")), description="x")
        assert time.monotonic() - start < 2
    finally:
        os.close(holder)
    config.add_agent(store, "a", str(project("p")), description="x")
    assert "a" in store.load().agents


ADDER = textwrap.dedent("""
    import os, sys, time
    from agent_dispatch import config
    store = config.ConfigStore()
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.005)
    for i in range(50):
        config.add_agent(store, f"{sys.argv[1]}{i}", sys.argv[3], description="x")
""")


def test_two_processes_adding_fifty_agents_each_lose_nothing(store, project, tmp_path):
    directory = str(project("p"))
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", ADDER, prefix, str(go), directory], stderr=subprocess.PIPE, text=True)
        for prefix in ("left", "right")
    ]
    time.sleep(0.3)  # both imported and waiting
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    names = set(ConfigStore().load().agents)
    assert len(names) == 100
    assert names == {f"{side}{i}" for side in ("left", "right") for i in range(50)}


# --- the validated-bytes stamp used by `agent-dispatch list` ------------------------------


def test_agents_come_from_the_stamp_only_for_the_exact_bytes(write_config, store):
    write_config(agent_yaml("a", "b"))
    store.load()  # validates and stamps
    fresh = ConfigStore()
    agents = fresh.agents()
    assert all(isinstance(agent, AgentRecord) for agent in agents.values())
    assert agents["a"].directory == "/srv/p" and agents["a"].allowed_tools is None and agents["a"].description == ""
    write_config(agent_yaml("a", "b") + "    timeout: -1\n")  # same stamp file, new bytes
    with pytest.raises(ConfigError, match="timeout"):
        ConfigStore().agents()


def test_a_forged_or_stale_stamp_is_not_trusted(write_config, store):
    write_config(agent_yaml("a"))
    store.load()
    store.stamp_path.write_text("0" * 64 + "\n")
    assert not any(isinstance(a, AgentRecord) for a in ConfigStore().agents().values())
    assert store.stamp_path.read_text().strip() != "0" * 64  # re-validated, re-stamped


# --- AgentChanges: the one parser of update semantics -------------------------------------


@pytest.mark.parametrize(
    ("inputs", "values"),
    [
        ({}, {}),
        ({"description": "", "timeout": 0, "max_budget_usd": 0, "model": "", "allowed_tools": ""}, {}),
        ({"description": "  ", "timeout": "", "max_budget_usd": 0.0, "permission_mode": None}, {}),
        ({"description": "none", "timeout": "None", "max_budget_usd": "NONE", "model": " none "},
         {"description": None, "timeout": None, "max_budget_usd": None, "model": None}),
        ({"allowed_tools": "none", "disallowed_tools": "[]"}, {"allowed_tools": None, "disallowed_tools": []}),
        ({"allowed_tools": "Read, Grep,Bash(git *)"}, {"allowed_tools": ["Read", "Grep", "Bash(git *)"]}),
        ({"allowed_tools": ["Read", " Grep "]}, {"allowed_tools": ["Read", "Grep"]}),
        ({"timeout": 600, "max_budget_usd": 0.25}, {"timeout": 600, "max_budget_usd": 0.25}),
        ({"timeout": "600", "max_budget_usd": "2"}, {"timeout": 600, "max_budget_usd": 2.0}),
        ({"timeout": 600.0, "model": "claude-sonnet-4", "permission_mode": "plan"},
         {"timeout": 600, "model": "claude-sonnet-4", "permission_mode": "plan"}),
        ({"description": "  Infra agent.  "}, {"description": "Infra agent."}),
        # The list syntax people type from agents.yaml means the names, not "[Read" and "Grep]".
        ({"allowed_tools": "[Read, Grep]"}, {"allowed_tools": ["Read", "Grep"]}),
        ({"disallowed_tools": ' [ "Bash(git *)", \'Write\' ] '}, {"disallowed_tools": ["Bash(git *)", "Write"]}),
        ({"allowed_tools": "[ ]"}, {"allowed_tools": []}),
        ({"timeout": "604800", "max_budget_usd": "1000"}, {"timeout": 604800, "max_budget_usd": 1000.0}),
        ({"max_budget_usd": ".5"}, {"max_budget_usd": 0.5}),
    ],
)
def test_changes_parse(inputs, values):
    assert AgentChanges.from_inputs(**inputs).values == values


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"timeout": -1}, "timeout must be a whole number"),
        ({"timeout": "-5"}, "timeout must be a whole number"),
        ({"timeout": 1.5}, "timeout must be a whole number"),
        ({"timeout": "soon"}, "timeout must be a whole number"),
        ({"timeout": True}, "timeout must be a whole number"),
        ({"timeout": float("nan")}, "timeout must be a whole number"),
        ({"max_budget_usd": float("nan")}, "max_budget_usd must be an amount"),
        ({"max_budget_usd": float("inf")}, "max_budget_usd must be an amount"),
        ({"max_budget_usd": "inf"}, "max_budget_usd must be an amount"),
        ({"max_budget_usd": "NaN"}, "max_budget_usd must be an amount"),
        ({"max_budget_usd": -0.5}, "max_budget_usd must be an amount"),
        ({"max_budget_usd": "1e999"}, "max_budget_usd must be an amount"),
        ({"model": "--dangerously-skip-permissions"}, "model must be a single word that does not start with '-'"),
        ({"model": "son net"}, "model must be a single word"),
        ({"permission_mode": "-x"}, "permission_mode must be a single word"),
        ({"permission_mode": "plan\n"}, None),
        ({"allowed_tools": "Read,-x"}, "allowed_tools must be tool names that do not start with '-'"),
        ({"disallowed_tools": ","}, "disallowed_tools must be a comma-separated list"),
        ({"allowed_tools": ["Read", ""]}, "allowed_tools must be tool names"),
        ({"allowed_tools": "Read,a\x00b"}, "allowed_tools must be tool names"),
        ({"description": "x" * 5000}, "description must be text of at most 4000"),
        ({"description": 5}, "description must be text"),
        ({"allowed_tools": "[Read, Grep"}, "brackets only around the whole list"),
        ({"allowed_tools": "Read, Grep]"}, "brackets only around the whole list"),
        ({"timeout": "99999999999999999999"}, "timeout must be a whole number of seconds from 1 to 604800"),
        ({"timeout": 604801}, "from 1 to 604800 (7 days)"),
        ({"timeout": "1e3"}, "timeout must be a whole number"),
        ({"timeout": "600.0"}, "timeout must be a whole number"),
        ({"max_budget_usd": "1e308"}, "max_budget_usd must be an amount"),
        ({"max_budget_usd": 1e308}, "at most 1000"),
        ({"max_budget_usd": "1_000"}, "max_budget_usd must be an amount"),
    ],
)
def test_changes_refuse_bad_values(inputs, message):
    if message is None:  # surrounding whitespace is trimmed, not refused
        assert AgentChanges.from_inputs(**inputs).values == {"permission_mode": "plan"}
        return
    with pytest.raises(BadArgumentError) as caught:
        AgentChanges.from_inputs(**inputs)
    assert message in caught.value.message and caught.value.hint


# --- agent operations ---------------------------------------------------------------------


def test_add_generates_the_description_and_stores_absolute_paths(store, project, monkeypatch):
    path = project("infra", {"CLAUDE.md": "Runs the infrastructure.\n", ".mcp.json": '{"mcpServers": {"pt": {}}}'})
    monkeypatch.chdir(path.parent)
    agent = config.add_agent(store, "infra", "infra", timeout=300, allowed_tools="Read")
    assert agent.directory == str(path) and agent.description == "Runs the infrastructure. MCP: pt."
    stored = store.load().agents["infra"]
    assert stored == agent
    monkeypatch.setenv("HOME", str(path.parent))
    assert config.add_agent(store, "home", "~/infra", description="d").directory == str(path)


@pytest.mark.parametrize(
    ("name", "directory", "error", "message"),
    [
        ("bad name", None, BadArgumentError, "invalid agent name"),
        ("ok\n", None, BadArgumentError, "invalid agent name"),
        ("-x", None, BadArgumentError, "invalid agent name"),
        ("ok", "/definitely/not/here", BadArgumentError, "directory /definitely/not/here does not exist"),
        ("ok", "", BadArgumentError, "directory must be a non-empty path"),
        ("taken", None, AgentExistsError, "an agent named 'taken' already exists"),
    ],
)
def test_add_refusals_leave_the_file_unchanged(store, project, name, directory, error, message):
    path = project("p")
    config.add_agent(store, "taken", str(path), description="x")
    before = store.path.read_bytes()
    with pytest.raises(error, match=message):
        config.add_agent(store, name, str(path) if directory is None else directory)
    assert store.path.read_bytes() == before


def test_add_refuses_a_file_as_directory(store, tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(BadArgumentError, match="is not a directory"):
        config.add_agent(store, "a", str(tmp_path / "f"))


def test_update_sets_and_clears(store, project):
    path = project("p")
    config.add_agent(store, "a", str(path), description="d", allowed_tools="Read", model="opus", timeout=5)
    updated = config.update_agent(store, "a", AgentChanges.from_inputs(
        allowed_tools="none", disallowed_tools="[]", model="none", timeout=9, permission_mode="plan"))
    assert (updated.allowed_tools, updated.disallowed_tools, updated.model) == (None, [], None)
    assert (updated.timeout, updated.permission_mode, updated.description) == (9, "plan", "d")
    assert yaml.safe_load(store.path.read_text())["agents"]["a"] == {
        "directory": str(path), "description": "d", "timeout": 9, "permission_mode": "plan", "disallowed_tools": [],
    }


def test_update_and_remove_unknown_agent_name_the_available_ones(store, project):
    config.add_agent(store, "alpha", str(project("p")), description="d")
    config.add_agent(store, "beta", str(project("q")), description="d")
    before = store.path.read_bytes()
    for call in (lambda: config.update_agent(store, "gamma", AgentChanges.from_inputs(timeout=3)),
                 lambda: config.remove_agent(store, "gamma")):
        with pytest.raises(AgentNotFoundError) as caught:
            call()
        assert caught.value.message == "no agent named 'gamma'; available agents: alpha, beta"
        assert "list_agents" in caught.value.hint and "agent-dispatch list" in caught.value.cli_hint
    with pytest.raises(BadArgumentError, match="nothing to update"):
        config.update_agent(store, "alpha", AgentChanges())
    assert store.path.read_bytes() == before


def test_remove_returns_the_removed_agent(store, project):
    config.add_agent(store, "a", str(project("p")), description="d")
    assert config.remove_agent(store, "a").description == "d"
    assert store.load().agents == {}
    with pytest.raises(AgentNotFoundError, match="no agents are registered"):
        config.remove_agent(store, "a")


def test_list_and_inspect_operations(store, project):
    path = project("p", {"CLAUDE.md": "line one of the project notes\nline two\n"})
    config.add_agent(store, "a", str(path), permission_mode="plan")
    [item] = config.list_agents(store)
    assert item["name"] == "a" and item["permission_mode"] == "plan" and item["healthy"]
    inspected = config.inspect_agent(store, "a", preview_lines=1)
    assert inspected["claude_md_preview"] == "line one of the project notes\n" and inspected["timeout"] == 300
    with pytest.raises(AgentNotFoundError):
        config.inspect_agent(store, "b")


def test_the_example_config_loads_and_shows_every_key(tmp_path):
    from agent_dispatch.models import AgentConfig, CacheSettings, Settings, SshOptions

    example = tmp_path / "agents.yaml"
    example.write_bytes((Path(__file__).resolve().parent.parent / "agents.example.yaml").read_bytes())
    loaded = ConfigStore(example).load()
    raw = yaml.safe_load(example.read_text())
    shown = set().union(*(set(agent) for agent in raw["agents"].values()))  # keys shown on any example agent
    assert shown == set(AgentConfig.model_fields)
    assert set(raw["agents"]["ops"]["ssh_options"]) == set(SshOptions.model_fields)
    assert set(raw["settings"]) == set(Settings.model_fields)
    assert set(raw["settings"]["cache"]) == set(CacheSettings.model_fields)
    from agent_dispatch.models import GroupConfig, GroupMember

    assert set(raw["groups"]["shop"]) == set(GroupConfig.model_fields)
    assert set(raw["groups"]["shop"]["members"][0]) == set(GroupMember.model_fields)
    assert loaded.agents["infra"].directory == os.path.expanduser("~/projects/infra")
    assert loaded.agents["web"].allowed_tools is None


def test_the_validation_stamp_covers_the_source_of_every_schema_module():
    # A stamp says "this file was valid under these rules": the rules are the models' source, so
    # an upgrade that changes any of them must invalidate every stamp written before.
    import agent_dispatch.models as models

    identity = store_module._schema_identity()  # noqa: SLF001
    sources = sorted(Path(models.__file__).parent.glob("*.py"))
    assert {path.name for path in sources} >= {"config.py", "checks.py"}
    for path in sources:
        assert path.read_bytes() in identity, path.name
