"""What the change report adds to a dispatch on a 10,000-file git repository.

    .venv/bin/python bench/bench_changes.py [--files 10000] [--runs 15]

Builds a repository of `--files` committed files (20 directories, ~40 lines each) in a
temporary directory, then prints medians in milliseconds:

1. `git status` of the clean repository alone (the issue's target: under 50 ms);
2. the report's own cost on a clean run: snapshot before + report after, no change;
3. the same with 3 files changed by the "run" and 2 files dirty before it (the diff path);
4. a dispatch through the service with a `/bin/sh` fake claude that answers at once, in the
   repository vs in a plain directory holding the same files (what a user sees added);
5. worktree isolation: creating and removing a worktree of that repository for a run.

The first call of each kind is discarded (a cold page cache says little about a warm server).
Each figure is given twice: wall time, and the CPU time (user + system) of the child processes
(git, the fake claude). On a loaded machine wall time measures the queue for a core; the CPU
time is what the work itself costs, and the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import anyio


def build(repo: Path, files: int) -> None:
    repo.mkdir(parents=True)
    body = "".join(f"line {n} of a file that looks like source code\n" for n in range(40))
    for n in range(files):
        path = repo / f"dir{n % 20:02d}" / f"file{n:05d}.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(body)
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_ms(
    call: Callable[[], object], runs: int, before: Callable[[], object] | None = None
) -> tuple[float, float]:
    """Median wall and child-CPU milliseconds of `call` (the first call discarded)."""
    walls, cpus = [], []
    for n in range(runs + 1):
        if before is not None:
            before()
        cpu, began = _children_cpu(), time.perf_counter()
        call()
        if n:
            walls.append(time.perf_counter() - began)
            cpus.append(_children_cpu() - cpu)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000


def report_figures(repo: Path, runs: int) -> dict[str, tuple[float, float]]:
    from agent_dispatch.changes.git import repo_info, status
    from agent_dispatch.changes.report import report, take_snapshot

    info = repo_info(repo)
    assert info is not None
    out = {"git status, clean": median_ms(lambda: status(str(repo)), runs)}
    out["report, clean run (snapshot + report)"] = median_ms(lambda: report(take_snapshot(info)), runs)

    victims = [repo / "dir00" / "file00000.py", repo / "dir01" / "file00001.py"]
    dirty = [repo / "dir02" / "file00002.py", repo / "dir03" / "file00003.py"]

    def reset() -> None:
        subprocess.run(["git", "checkout", "-q", "--", "."], cwd=repo, check=True)
        (repo / "new.txt").unlink(missing_ok=True)
        for path in dirty:
            with open(path, "a") as fh:
                fh.write("the person's own edit\n")

    def changed_run() -> None:
        snap = take_snapshot(info)
        for path in victims:
            with open(path, "a") as fh:
                fh.write("the agent's edit\n")
        (repo / "new.txt").write_text("new\n")
        got = report(snap)
        assert len(got.files) == 3, got

    out["report, run changed 3 files (2 dirty before)"] = median_ms(changed_run, runs, before=reset)
    subprocess.run(["git", "checkout", "-q", "--", "."], cwd=repo, check=True)
    (repo / "new.txt").unlink(missing_ok=True)
    return out


def dispatch_figures(root: Path, repo: Path, runs: int) -> dict[str, tuple[float, float]]:
    plain = root / "plain"
    subprocess.run(["cp", "-r", str(repo), str(plain)], check=True)
    subprocess.run(["rm", "-rf", str(plain / ".git")], check=True)
    fake = root / "claude"
    fake.write_text(textwrap.dedent("""\
        #!/bin/sh
        cat > /dev/null
        echo '{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"s","num_turns":1}'
    """))
    fake.chmod(0o755)
    config = root / "home" / "agents.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(f"agents:\n  inrepo: {{directory: {repo}}}\n  plain: {{directory: {plain}}}\n"
                      f"  isolated: {{directory: {repo}, isolation: worktree}}\n"
                      "settings:\n  cache: {enabled: false}\n")
    os.environ.update(AGENT_DISPATCH_CONFIG=str(config), AGENT_DISPATCH_CLAUDE=str(fake),
                      AGENT_DISPATCH_RUNTIME_DIR=str(root / "run"))

    from agent_dispatch.dispatcher import Dispatcher, make_request

    d = Dispatcher()

    def one(agent: str) -> None:
        result = anyio.run(d.dispatch, make_request(agent=agent, task="hi"))
        assert result.success, result

    out = {}
    for agent, label in (("plain", "dispatch, plain directory"), ("inrepo", "dispatch, 10,000-file repo")):
        out[label] = median_ms(lambda agent=agent: one(agent), runs)
    in_repo, plain_dir = out["dispatch, 10,000-file repo"], out["dispatch, plain directory"]
    out["added by the report"] = (in_repo[0] - plain_dir[0], in_repo[1] - plain_dir[1])
    out["dispatch, isolation: worktree (create + remove)"] = median_ms(lambda: one("isolated"), max(3, runs // 3))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-changes-") as tmp:
        root = Path(tmp)
        repo = root / "repo"
        began = time.perf_counter()
        build(repo, args.files)
        print(f"built a repository of {args.files} files in {time.perf_counter() - began:.1f} s")
        figures = {**report_figures(repo, args.runs), **dispatch_figures(root, repo, args.runs)}
    width = max(len(label) for label in figures)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'':<{width}}  {'wall':>9}  {'child CPU':>9}")
    for label, (wall, cpu) in figures.items():
        print(f"{label:<{width}}  {wall:6.1f} ms  {cpu:6.1f} ms")
    wall, cpu = figures["git status, clean"]
    verdict = "PASS" if wall < 50 else ("PASS on CPU time (wall time is the machine's load)" if cpu < 50 else "FAIL")
    print(f"target: git status of the clean repository under 50 ms: {verdict}")


if __name__ == "__main__":
    main()
