"""`worktrees`: the git worktrees that isolated runs left for review, listed or cleaned."""

from __future__ import annotations

import json

import click


def _age(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--clean", is_flag=True,
              help="Remove the kept worktrees and their branches (unmerged work included).")
@click.option("--merged", is_flag=True,
              help="With --clean: only those whose branch is merged and that hold nothing uncommitted.")
@click.argument("names", nargs=-1, metavar="[NAME]...")
def worktrees(as_json: bool, clean: bool, merged: bool, names: tuple[str, ...]) -> None:
    """List the worktrees kept by isolated runs (agent, branch, age, changed files), or remove them.

    NAME limits --clean to those worktrees (the names `worktrees` lists).
    """
    from agent_dispatch.changes import worktrees as wt

    if (merged or names) and not clean:
        raise click.UsageError("--merged and NAME go with --clean")
    if clean:
        removed = wt.clean(merged_only=merged, names=list(names) or None)
        if as_json:
            click.echo(json.dumps({"removed": removed}, indent=2, ensure_ascii=False))
            return
        for item in removed:
            work = len(item.get("changed_files", []))
            plural = "s" if work != 1 else ""
            click.echo(f"Removed {item['name']} (branch {item['branch']}, {work} changed file{plural})")
        click.echo(f"Removed {len(removed)} worktree{'s' if len(removed) != 1 else ''}.")
        return
    found = [wt.describe(record) for record in wt.kept()]
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo("No kept worktrees.")
        return
    click.echo(f"{'NAME':<30} {'AGENT':<16} {'AGE':>5} {'FILES':>5}  {'STATE':<8} BRANCH / PATH")
    for item in found:
        state = "error" if "error" in item else ("merged" if item.get("merged") else item["state"])
        files = len(item.get("changed_files", []))
        click.echo(f"{item['name']:<30} {item['agent']:<16} {_age(item['age_seconds']):>5} {files:>5}  "
                   f"{state:<8} {item['branch']}")
        click.echo(f"{'':<30} {item['path']}")
        if "error" in item:
            click.echo(f"{'':<30} {item['error']}")


def register(group: click.Group) -> None:
    """Attach this module's commands to the top-level group."""
    group.add_command(worktrees)
