"""Change reports and worktrees with the real Claude Code CLI: the model edits files through its tools."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from standin import Reply

pytestmark = pytest.mark.e2e


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=repo,
                          check=True, capture_output=True, text=True).stdout


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "README.md").write_text("# project\n")
    (path / "CLAUDE.md").write_text("A project for tests.\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "start")
    return path


async def test_a_write_by_the_real_cli_is_reported(e2e):
    project = make_repo(e2e.root / "projects" / "docs")
    (project / "README.md").write_text("# project\nmy own edit\n")  # dirty before: not the agent's
    e2e.add_agent("docs", directory=str(project), allowed_tools=["Write"])
    e2e.standin.script(
        Reply(text="", tool_name="Write",
              tool_input={"file_path": str(project / "notes.md"), "content": "one\ntwo\nthree\n"},
              match="write the notes"),
        Reply(text="wrote notes.md", after_tool=True),
    )
    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch", agent="docs", task="write the notes")
    assert out["success"] is True and out["result"] == "wrote notes.md", out
    assert out["changes"]["files"] == [{"path": "notes.md", "status": "added", "insertions": 3, "deletions": 0}]
    assert (project / "notes.md").read_text() == "one\ntwo\nthree\n"
    assert "warning" not in out


async def test_an_isolated_run_works_in_its_worktree_and_its_session_continues_there(e2e):
    project = make_repo(e2e.root / "projects" / "app")
    e2e.add_agent("app", directory=str(project), allowed_tools=["Bash"], isolation="worktree")
    e2e.standin.script(
        Reply(text="", tool_name="Bash", tool_input={"command": "echo built > feature.txt", "description": "write"},
              match="add the feature"),
        Reply(text="feature added", after_tool=True),
        Reply(text="still in the same place", match="carry on"),
    )
    async with e2e.mcp() as client:
        out = await e2e.call(client, "dispatch", agent="app", task="add the feature")
        assert out["success"] is True, out
        changes = out["changes"]
        tree = Path(changes["worktree"])
        assert changes["files"] == [{"path": "feature.txt", "status": "added", "insertions": 1, "deletions": 0}]
        assert (tree / "feature.txt").read_text() == "built\n" and not (project / "feature.txt").exists()
        assert git(project, "status", "--porcelain") == ""
        again = await e2e.call(client, "dispatch_session", agent="app", task="carry on", session_id=out["session_id"])
    # Claude Code finds a session by its directory: resuming works only because it ran in the same worktree.
    assert again["success"] is True and again["result"] == "still in the same place", again
    assert again["session_id"] == out["session_id"]
    assert "add the feature" in e2e.standin.scripted_requests()[-1].all_text()
    assert again["changes"]["worktree"] == str(tree) and again["changes"]["files"] == []
    listing = e2e.agent_dispatch("worktrees", "--json")
    assert listing.returncode == 0 and changes["branch"] in listing.stdout
