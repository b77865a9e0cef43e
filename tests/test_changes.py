"""Change reports and worktree isolation, on real git repositories made here, through the service.

The fake agent edits files as its task says: the task is `OPS:` followed by a JSON list of
operations (write, append, rm, mv, sh, sleep), run in the directory it was started in.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import anyio
import pytest

from agent_dispatch.dispatcher import Dispatcher, make_request, multi

EDITOR_BODY = """
import json, os, shutil, subprocess, time
prompt = read_prompt()
record(prompt)
ops = json.loads(prompt.split("OPS:", 1)[1]) if "OPS:" in prompt else []
for op, *args in ops:
    if op == "write":
        os.makedirs(os.path.dirname(args[0]) or ".", exist_ok=True)
        open(args[0], "w").write(args[1])
    elif op == "append":
        open(args[0], "a").write(args[1])
    elif op == "rm":
        os.remove(args[0])
    elif op == "mv":
        shutil.move(args[0], args[1])
    elif op == "sh":
        subprocess.run(args[0], shell=True, check=True)
    elif op == "sleep":
        time.sleep(args[0])
emit_result("did " + str(len(ops)) + " ops in " + os.getcwd())
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture(autouse=True)
def git_identity(monkeypatch):
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(key, "Test")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, "test@example.invalid")


@pytest.fixture
def repo(project) -> Path:
    """A git repository with three committed files."""
    path = project("repo", {
        "README.md": "hello\n",
        "src/app.py": "".join(f"line {n}\n" for n in range(10)),
        "notes.txt": "one\ntwo\nthree\n",
    })
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "start")
    return path


@pytest.fixture
def editor(fake_claude):
    return fake_claude(EDITOR_BODY)


@pytest.fixture
def agents(write_config, repo):
    def make(extra: str = "", directory: Path | None = None) -> Dispatcher:
        write_config(f"""
            agents:
              coder: {{directory: {directory or repo}, timeout: 60{extra}}}
        """)
        return Dispatcher()

    return make


def ops(*items) -> str:
    return "OPS:" + json.dumps(list(items))


async def dispatch(d: Dispatcher, *items, agent: str = "coder", **fields) -> dict:
    result = await d.dispatch(make_request(agent=agent, task=ops(*items), **fields), use_cache=False)
    return result.to_json()


def files_of(out: dict) -> dict[str, dict]:
    return {change["path"]: change for change in out["changes"]["files"]}


async def test_each_status_kind_with_line_counts(agents, editor, repo):
    d = agents()
    out = await dispatch(
        d,
        ["write", "new.txt", "a\nb\n"],
        ["append", "notes.txt", "four\n"],
        ["rm", "README.md"],
        ["mv", "src/app.py", "src/main.py"],
        ["write", "logo.bin", "\x00\x01\x02"],
    )
    assert out["success"], out
    files = files_of(out)
    assert files["new.txt"] == {"path": "new.txt", "status": "added", "insertions": 2, "deletions": 0}
    assert files["notes.txt"] == {"path": "notes.txt", "status": "modified", "insertions": 1, "deletions": 0}
    assert files["README.md"] == {"path": "README.md", "status": "deleted", "insertions": 0, "deletions": 1}
    assert files["src/main.py"]["status"] == "renamed" and files["src/main.py"]["old_path"] == "src/app.py"
    assert files["logo.bin"] == {"path": "logo.bin", "status": "added", "binary": True}
    assert sorted(files) == ["README.md", "logo.bin", "new.txt", "notes.txt", "src/main.py"]
    assert out["changes"]["insertions"] == 3 and out["changes"]["deletions"] == 1
    assert "concurrent" not in out["changes"] and "warning" not in out
    # The real index was never touched: the new files are still untracked for the user.
    assert "?? new.txt" in git(repo, "status", "--porcelain")


async def test_a_clean_run_reports_no_files_and_commits_count(agents, editor, repo):
    d = agents()
    out = await dispatch(d)
    assert out["changes"] == {"files": [], "insertions": 0, "deletions": 0}
    out = await dispatch(d, ["write", "done.txt", "x\n"], ["sh", "git add done.txt && git commit -qm work"])
    assert files_of(out) == {"done.txt": {"path": "done.txt", "status": "added", "insertions": 1, "deletions": 0}}


async def test_files_dirty_before_the_run_are_not_blamed_unless_changed_again(agents, editor, repo):
    (repo / "notes.txt").write_text("one\ntwo\nthree\nmine\n")  # the person's own edit
    (repo / "scratch.txt").write_text("draft\n")  # and an untracked file of theirs
    (repo / "README.md").unlink()
    d = agents()
    out = await dispatch(d, ["write", "agent.txt", "x\n"])
    assert sorted(files_of(out)) == ["agent.txt"]
    out = await dispatch(d, ["append", "notes.txt", "agent\n"], ["rm", "scratch.txt"], ["write", "README.md", "back\n"])
    files = files_of(out)
    # Counted against the content before this run, not against HEAD.
    assert files["notes.txt"] == {"path": "notes.txt", "status": "modified", "insertions": 1, "deletions": 0}
    assert files["scratch.txt"] == {"path": "scratch.txt", "status": "deleted", "insertions": 0, "deletions": 1}
    assert files["README.md"] == {"path": "README.md", "status": "added", "insertions": 1, "deletions": 0}
    assert sorted(files) == ["README.md", "notes.txt", "scratch.txt"]


async def test_rewriting_a_dirty_file_with_the_same_content_is_no_change(agents, editor, repo):
    (repo / "notes.txt").write_text("mine\n")
    d = agents()
    out = await dispatch(d, ["write", "notes.txt", "mine\n"])
    assert out["changes"]["files"] == []


async def test_a_directory_outside_git_gets_no_report(agents, editor, project):
    plain = project("plain", {"a.txt": "x\n"})
    d = agents(directory=plain)
    out = await dispatch(d, ["write", "b.txt", "y\n"])
    assert out["success"] and "changes" not in out


async def test_an_agent_in_a_subdirectory_reports_paths_from_the_top(agents, editor, repo):
    d = agents(directory=repo / "src")
    out = await dispatch(d, ["write", "util.py", "pass\n"])
    assert sorted(files_of(out)) == ["src/util.py"]


async def test_two_runs_at_once_in_one_tree_are_concurrent(agents, editor, repo):
    d = agents()
    results: list[dict] = []

    async def one(name: str) -> None:
        results.append(await dispatch(d, ["write", f"{name}.txt", "x\n"], ["sleep", 1.5]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "first")
        tg.start_soon(one, "second")
    assert [r["changes"].get("concurrent") for r in results] == [True, True]
    alone = await dispatch(d, ["write", "third.txt", "x\n"])
    assert "concurrent" not in alone["changes"]


async def test_a_run_inside_another_marks_both(agents, editor, repo):
    d = agents()
    long_run: dict = {}

    async def long() -> None:
        long_run.update(await dispatch(d, ["sleep", 3]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(long)
        await anyio.sleep(1.0)
        short = await dispatch(d, ["write", "short.txt", "x\n"])
    assert short["changes"]["concurrent"] is True
    assert long_run["changes"]["concurrent"] is True  # it saw no marker at its start or end, only the flag


@pytest.mark.parametrize("setting", [
    ", permission_mode: plan",
    ", allowed_tools: [Read, Grep]",
    ", disallowed_tools: [Write, Edit, MultiEdit, NotebookEdit, Bash]",
])
async def test_a_read_only_agent_that_wrote_gets_a_warning(agents, editor, setting):
    d = agents(setting)
    out = await dispatch(d, ["write", "oops.txt", "x\n"])
    assert out["success"] and "oops.txt" in files_of(out)
    assert "agent coder changed 1 file(s)" in out["warning"], out
    quiet = await dispatch(d)
    assert "warning" not in quiet


async def test_a_writing_agent_gets_no_warning(agents, editor):
    d = agents(", allowed_tools: [Read, Edit], permission_mode: acceptEdits")
    out = await dispatch(d, ["write", "ok.txt", "x\n"])
    assert "warning" not in out and "ok.txt" in files_of(out)


async def test_results_that_changed_files_are_not_cached(agents, editor):
    d = agents()
    req = make_request(agent="coder", task=ops(["write", "c.txt", "x\n"]))
    first = await d.dispatch(req)
    second = await d.dispatch(req)
    assert not second.cached and len(editor.runs()) == 2
    clean = make_request(agent="coder", task=ops())
    await d.dispatch(clean)
    assert (await d.dispatch(clean)).cached
    assert first.changes is not None


# -- worktree isolation ---------------------------------------------------------------------------


def branches(repo: Path) -> list[str]:
    return git(repo, "branch", "--list", "agent-dispatch/*", "--format=%(refname:short)").split()


async def test_a_worktree_without_changes_is_removed_with_its_branch(agents, editor, repo):
    d = agents(", isolation: worktree")
    out = await dispatch(d)
    assert out["success"], out
    cwd = Path(editor.runs()[0]["cwd"])
    assert cwd != repo and "worktrees" in cwd.parts
    assert not cwd.exists() and branches(repo) == []
    assert out["changes"] == {"files": [], "insertions": 0, "deletions": 0}
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


async def test_a_worktree_with_changes_is_kept_and_the_checkout_untouched(agents, editor, repo):
    d = agents(", isolation: worktree")
    out = await dispatch(d, ["write", "feature.txt", "new\n"], ["append", "notes.txt", "more\n"])
    changes = out["changes"]
    assert sorted(files_of(out)) == ["feature.txt", "notes.txt"]
    tree = Path(changes["worktree"])
    assert (tree / "feature.txt").read_text() == "new\n"
    assert changes["branch"].startswith("agent-dispatch/coder-") and branches(repo) == [changes["branch"]]
    assert git(tree, "rev-parse", "--abbrev-ref", "HEAD").strip() == changes["branch"]
    assert git(repo, "status", "--porcelain") == "" and not (repo / "feature.txt").exists()


async def test_isolation_per_dispatch_overrides_the_agent(agents, editor, repo):
    d = agents()
    out = await dispatch(d, ["write", "x.txt", "x\n"], isolation="worktree")
    assert out["changes"]["worktree"] and not (repo / "x.txt").exists()
    d2 = agents(", isolation: worktree")
    out = await dispatch(d2, ["write", "y.txt", "y\n"], isolation="none")
    assert "worktree" not in out["changes"] and (repo / "y.txt").exists()


async def test_an_agent_in_a_subdirectory_runs_in_the_same_subdirectory_of_its_worktree(agents, editor, repo):
    d = agents(", isolation: worktree", directory=repo / "src")
    out = await dispatch(d, ["write", "util.py", "pass\n"])
    tree = Path(out["changes"]["worktree"])
    assert Path(editor.runs()[0]["cwd"]) == tree / "src"
    assert sorted(files_of(out)) == ["src/util.py"]


async def test_a_session_continues_in_its_worktree(agents, editor, repo):
    d = agents(", isolation: worktree")
    first = await dispatch(d, ["write", "step1.txt", "1\n"])
    tree = first["changes"]["worktree"]
    again = await d.dispatch_session(make_request(agent="coder", task=ops(["write", "step2.txt", "2\n"])),
                                     first["session_id"])
    out = again.to_json()
    assert editor.runs()[1]["cwd"] == tree
    assert sorted(files_of(out)) == ["step2.txt"]  # this run's own work; step1 was there before it
    assert out["changes"]["worktree"] == tree and branches(repo) == [first["changes"]["branch"]]


async def test_a_session_whose_worktree_was_removed_continues_at_the_same_path(agents, editor, repo):
    d = agents(", isolation: worktree")
    first = await dispatch(d)  # no changes: its worktree goes
    cwd = editor.runs()[0]["cwd"]
    assert not os.path.exists(cwd)
    again = (await d.dispatch_session(make_request(agent="coder", task=ops(["write", "late.txt", "x\n"])),
                                      first["session_id"])).to_json()
    assert editor.runs()[1]["cwd"] == cwd
    assert again["changes"]["worktree"] == cwd and (Path(cwd) / "late.txt").exists()


async def test_a_directory_that_is_not_a_checkout_refuses_isolation_before_anything_runs(agents, editor, project):
    plain = project("plain", {"a.txt": "x\n"})
    d = agents(", isolation: worktree", directory=plain)
    out = await dispatch(d, ["write", "b.txt", "y\n"])
    assert out["success"] is False and out["error_type"] == "invalid_input", out
    assert "not in a git checkout" in out["error"] and "--isolation none" in out["hint"]
    assert editor.runs() == []


async def test_a_repository_without_a_commit_refuses_isolation(agents, editor, project):
    empty = project("empty")
    git(empty, "init", "-q")
    d = agents(", isolation: worktree", directory=empty)
    out = await dispatch(d)
    assert out["error_type"] == "invalid_input" and "no commit yet" in out["error"]
    assert editor.runs() == []


async def test_parallel_items_each_get_their_own_worktree(agents, editor, repo):
    d = agents(", isolation: worktree")
    items = json.dumps([
        {"agent": "coder", "task": ops(["write", "a.txt", "a\n"], ["sleep", 0.5])},
        {"agent": "coder", "task": ops(["write", "b.txt", "b\n"], ["sleep", 0.5])},
    ])
    results = await multi.dispatch_parallel(d, multi.parse_parallel(d, items))
    trees = [r["changes"]["worktree"] for r in results]
    assert len(set(trees)) == 2 and len({r["changes"]["branch"] for r in results}) == 2
    assert [sorted(files_of(r)) for r in results] == [["a.txt"], ["b.txt"]]
    assert not any(r["changes"].get("concurrent") for r in results)  # separate trees do not overlap
    assert sorted(branches(repo)) == sorted(r["changes"]["branch"] for r in results)


# -- through the real MCP server: async jobs and refs ------------------------------------------------


async def test_an_async_job_in_a_worktree_reports_its_changes(agents, editor, repo):
    from mcp_client import call, connect

    agents()
    async with connect() as client:
        job = await call(client, "dispatch_async", agent="coder", task=ops(["write", "bg.txt", "x\n"]),
                         isolation="worktree")
        done = await call(client, "dispatch_wait", job_id=job["job_id"], timeout_seconds=60)
        ref = await call(client, "dispatch", agent="coder", task=ops(["write", "ref.txt", "r\n"]), return_ref=True)
    result = done["result"]
    assert done["status"] == "done", done
    assert [f["path"] for f in result["changes"]["files"]] == ["bg.txt"]
    branch = result["changes"]["branch"]
    assert branch == f"agent-dispatch/coder-{job['job_id'][:12]}"  # named after the agent and the job
    assert (Path(result["changes"]["worktree"]) / "bg.txt").exists() and not (repo / "bg.txt").exists()
    assert [f["path"] for f in ref["changes"]["files"]] == ["ref.txt"] and (repo / "ref.txt").exists()


async def test_an_async_job_refused_for_isolation_fails_without_running(agents, editor, project):
    from mcp_client import call, connect

    agents(directory=project("plain"))
    async with connect() as client:
        job = await call(client, "dispatch_async", agent="coder", task=ops(), isolation="worktree")
        done = await call(client, "dispatch_wait", job_id=job["job_id"], timeout_seconds=60)
    assert done["status"] == "failed" and done["result"]["error_type"] == "invalid_input"
    assert editor.runs() == []


# -- the `worktrees` command and gc ------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess:
    from mcp_client import SERVER

    return subprocess.run([SERVER, *args], capture_output=True, text=True, timeout=120)


async def test_worktrees_lists_and_cleans_and_gc_keeps_unmerged_work(agents, editor, repo):
    d = agents(", isolation: worktree")
    merged = (await dispatch(d, ["write", "m.txt", "m\n"], ["sh", "git add m.txt && git commit -qm merged"]))["changes"]
    open_work = (await dispatch(d, ["write", "u.txt", "u\n"]))["changes"]
    git(repo, "merge", "-q", "--ff-only", merged["branch"])

    listing = json.loads(cli("worktrees", "--json").stdout)
    by_branch = {item["branch"]: item for item in listing}
    assert set(by_branch) == {merged["branch"], open_work["branch"]}
    assert by_branch[open_work["branch"]]["changed_files"] == ["u.txt"]
    assert by_branch[open_work["branch"]]["merged"] is False and by_branch[merged["branch"]]["merged"] is True
    assert by_branch[merged["branch"]]["commits"] == 1
    assert all(item["agent"] == "coder" and item["age_seconds"] >= 0 for item in listing)
    text = cli("worktrees")
    assert text.returncode == 0 and open_work["branch"] in text.stdout and open_work["worktree"] in text.stdout

    gc = cli("gc", "--all")
    assert gc.returncode == 0, gc.stderr
    assert not Path(merged["worktree"]).exists() and Path(open_work["worktree"]).exists()
    assert branches(repo) == [open_work["branch"]]

    assert json.loads(cli("worktrees", "--clean", "--merged", "--json").stdout) == {"removed": []}
    assert Path(open_work["worktree"]).exists()
    cleaned = cli("worktrees", "--clean")
    assert cleaned.returncode == 0 and "Removed 1 worktree." in cleaned.stdout
    assert not Path(open_work["worktree"]).exists() and branches(repo) == []
    assert cli("worktrees").stdout.strip() == "No kept worktrees."


async def test_worktrees_clean_by_name_and_usage_errors(agents, editor, repo):
    d = agents(", isolation: worktree")
    one = (await dispatch(d, ["write", "1.txt", "1\n"]))["changes"]
    two = (await dispatch(d, ["write", "2.txt", "2\n"]))["changes"]
    name = Path(one["worktree"]).name
    out = cli("worktrees", "--clean", name)
    assert out.returncode == 0, out.stderr
    assert not Path(one["worktree"]).exists() and Path(two["worktree"]).exists()
    missing = cli("worktrees", "--clean", "nope-000000000000")
    assert missing.returncode == 1 and "no kept worktree named nope-000000000000" in missing.stderr
    assert cli("worktrees", "--merged").returncode == 2


async def test_isolation_is_set_and_cleared_from_the_cli(agents, config_path):
    agents()
    assert cli("update", "coder", "--isolation", "worktree").returncode == 0
    assert "isolation: worktree" in config_path.read_text()
    assert "worktree (each dispatch in a fresh git worktree)" in cli("describe", "coder").stdout
    assert json.loads(cli("describe", "coder", "--json").stdout)["isolation"] == "worktree"
    bad = cli("update", "coder", "--isolation", "sandbox")
    assert bad.returncode == 2 and "isolation must be one of none, worktree" in bad.stderr
    assert cli("update", "coder", "--isolation", "none").returncode == 0
    assert "isolation:" not in config_path.read_text()


async def test_a_cancelled_isolated_dispatch_leaves_no_empty_worktree(agents, editor, repo):
    d = agents(", isolation: worktree")
    with anyio.move_on_after(2):
        await dispatch(d, ["sleep", 30])
    cwd = Path(editor.runs()[0]["cwd"])
    assert not cwd.exists() and branches(repo) == []
    with anyio.move_on_after(2):
        await dispatch(d, ["write", "half.txt", "x\n"], ["sleep", 30])
    kept = json.loads(cli("worktrees", "--json").stdout)
    assert [item["changed_files"] for item in kept] == [["half.txt"]]  # work done before the cancel is kept


async def test_a_job_collected_after_its_server_died_settles_its_worktree(agents, editor, repo):
    import signal
    import time

    from agent_dispatch.refs import open_store
    from mcp_client import call, connect

    agents(", isolation: worktree")
    try:
        async with connect() as client:
            job_id = (await call(client, "dispatch_async", agent="coder",
                                 task=ops(["write", "late.txt", "x\n"], ["sleep", 2])))["job_id"]
            deadline = time.monotonic() + 30
            while open_store().get(job_id).status != "running" and time.monotonic() < deadline:
                await anyio.sleep(0.05)
            os.kill(open_store().get(job_id).owner["pid"], signal.SIGKILL)
    except Exception:  # noqa: BLE001, S110 - the connection dies with the server
        pass
    async with connect() as client:
        done = await call(client, "dispatch_wait", job_id=job_id, timeout_seconds=60)
    assert done["status"] == "done", done
    changes = done["result"]["changes"]
    assert [f["path"] for f in changes["files"]] == ["late.txt"]
    assert (Path(changes["worktree"]) / "late.txt").exists() and changes["branch"] in branches(repo)


async def test_a_remote_agent_is_never_read_with_local_git_and_refuses_isolation(agents, editor, repo):
    from agent_dispatch.changes import RunTracker
    from agent_dispatch.models import DispatchResult, EffectiveAgent

    remote = EffectiveAgent(name="far", directory=str(repo), timeout=30, host="build-box")
    tracker = RunTracker(remote, "0" * 32)
    assert tracker.begin() == str(repo) and tracker.snapshot is None  # same path here means nothing there
    (repo / "local.txt").write_text("x\n")
    assert tracker.end(DispatchResult(agent="far", success=True)).changes is None
    d = agents(", host: build-box, isolation: worktree")
    out = await dispatch(d)
    assert out["error_type"] == "invalid_input" and "runs on another machine" in out["error"], out
    assert editor.runs() == []


async def test_the_test_command_shows_what_changed(agents, editor, repo):
    agents(", isolation: worktree")
    out = cli("test", "coder", ops(["write", "t.txt", "1\n2\n"]))
    assert out.returncode == 0, out.stderr
    assert "changed 1 file (+2 -0): t.txt (added)" in out.stderr
    assert "kept worktree " in out.stderr and "on branch agent-dispatch/coder-" in out.stderr
