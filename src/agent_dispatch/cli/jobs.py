"""`jobs`, `job`, `cancel`, `gc`: job control from the terminal.

These read and change the same job records the MCP servers write; a job left behind by a
server that died is resolved here too (collected from its output file, or failed with the reason).
"""

from __future__ import annotations

import datetime as _dt
import sys

import click

from agent_dispatch.cli._common import echo_json, fail, json_option, usage_errors
from agent_dispatch.models import JOB_STATUSES

PREFIX_MIN = 4  # hex characters a job id may be shortened to on the command line


def _manager():
    from agent_dispatch.background import JobManager
    from agent_dispatch.dispatcher import Dispatcher

    return JobManager(Dispatcher())


def _check_id(job_id: str) -> None:
    """A malformed id is a usage error (exit 2), refused before any file is touched."""
    from agent_dispatch.models import check_job_id

    with usage_errors("ID"):
        check_job_id(job_id)


def _resolve_id(manager, job_id: str) -> str:
    """A whole job id, or a unique prefix of one (at least PREFIX_MIN hex characters, like git).
    A malformed id or an ambiguous prefix is a usage error; a prefix of no job, a failure."""
    import re

    text = job_id  # never case-folded or trimmed: exactly what the contract allows, or refused
    if len(text) == 32 or not re.fullmatch(rf"[0-9a-f]{{{PREFIX_MIN},31}}", text):
        _check_id(text)
        return text
    found = manager.store.ids_starting_with(text, limit=5)
    if not found:
        fail(f"no job id starts with {text}", "Run `agent-dispatch jobs` to list the known jobs.")
    if len(found) > 1:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise click.BadParameter(f"{text} is the start of more than one job id ({shown}); give more of it.",
                                 param_hint="ID")
    return found[0]


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return _dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


@click.command()
@click.option("--status", type=click.Choice(JOB_STATUSES), help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option("Print the job summaries as JSON (errors too).")
def jobs(status: str | None, limit: int, as_json: bool) -> None:
    """List background jobs, newest first."""
    found = _manager().list(status, limit)
    if as_json:
        echo_json([job.summary() for job in found])
        return
    if not found:
        click.echo("No jobs." if not status else f"No {status} jobs.")
        return
    click.echo(f"{'ID':<32}  {'STATUS':<9}  {'CREATED':<19}  {'AGENT':<16} TASK")
    for job in found:
        line = job.summary(task_chars=60)
        click.echo(f"{job.id}  {job.status:<9}  {_when(job.created_at)}  {job.agent:<16} {line['task']}")


@click.command()
@click.argument("job_id", metavar="ID")
@json_option("Print the job record as JSON (errors too).")
def job(job_id: str, as_json: bool) -> None:
    """Show one job: its state, times, progress and result. ID may be a unique prefix."""
    import anyio

    manager = _manager()
    job_id = _resolve_id(manager, job_id)
    record = anyio.run(manager.status, job_id)
    if as_json:
        echo_json(record.to_json())
        return
    click.echo(f"job:       {record.id}")
    click.echo(f"agent:     {record.agent}")
    click.echo(f"status:    {record.status}")
    click.echo(f"created:   {_when(record.created_at)}")
    click.echo(f"started:   {_when(record.started_at)}")
    click.echo(f"completed: {_when(record.completed_at)}")
    click.echo(f"task:      {record.task}")
    if record.error:
        click.echo(f"error:     {record.error}")
    for line in record.progress[-5:]:
        click.echo(f"progress:  {line}")
    if record.result is not None:
        res = record.result
        click.echo("outcome:   " + ("succeeded" if res.success else "failed")
                   + (f" ({res.error_type})" if res.error_type else ""))
        if res.session_id:
            click.echo(f"session:   {res.session_id}")
        if res.hint:
            click.echo(f"hint:      {res.hint}")
        click.echo("")
        click.echo(res.result)


@click.command()
@click.argument("job_id", metavar="ID")
@json_option("Print the dispatch_cancel answer as JSON (errors too).")
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel a job: a pending one never runs, a running one has its process tree killed.

    ID may be a unique prefix of the job id.
    """
    import anyio

    manager = _manager()
    job_id = _resolve_id(manager, job_id)
    answer = anyio.run(manager.cancel, job_id)
    outcome = answer["outcome"]
    ok = outcome in ("cancelled", "cancelled_running", "already_terminal")
    if as_json:
        echo_json(answer)
        sys.exit(0 if ok else 1)
    if outcome == "not_found":
        fail(f"no job {job_id}", "Run `agent-dispatch jobs` to list the known jobs.")
    if outcome == "running":
        fail(f"job {job_id} could not be cancelled yet: it is starting in another process",
             f"Try again in a moment: agent-dispatch cancel {job_id}")
    messages = {
        "cancelled": "Cancelled; it had not started and will never run.",
        "cancelled_running": "Cancelled; its processes were killed.",
        "already_terminal": f"Nothing to do: the job is already {answer.get('job', {}).get('status', 'finished')}.",
    }
    click.echo(messages.get(outcome, outcome))
    sys.exit(0 if ok else 1)


@click.command()
@click.option("--days", type=float, default=None, help="Delete finished jobs older than this many days [default: 7].")
@click.option("--all", "everything", is_flag=True, help="Delete every finished job, whatever its age.")
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted (the job ids); delete nothing.")
@json_option("Print {deleted: N} (with --dry-run {deleted: 0, would_delete: N, job_ids}) as JSON (errors too).")
def gc(days: float | None, everything: bool, dry_run: bool, as_json: bool) -> None:
    """Delete finished job records (pending and running jobs are never deleted), and the records of
    kept worktrees that were removed or merged."""
    if everything and days is not None:
        raise click.UsageError("--days and --all exclude each other: --all deletes every finished job, "
                               "whatever its age.")
    manager = _manager()  # settles the jobs of dead servers first, so the count is true
    ids: list[str] = []
    if everything:
        count = manager.gc(None, dry_run=dry_run, ids=ids)
    else:
        with usage_errors("--days"):
            count = manager.gc(7.0 if days is None else days, dry_run=dry_run, ids=ids)
    if as_json:
        echo_json({"deleted": 0, "would_delete": count, "job_ids": ids} if dry_run else {"deleted": count})
        return
    verb = "Would delete" if dry_run else "Deleted"
    click.echo(f"{verb} {count} job record{'s' if count != 1 else ''}.")
    if dry_run:
        for job_id in ids:
            click.echo(f"  {job_id}")
    from agent_dispatch.changes import worktrees as wt

    pruned = wt.prune(0 if everything else days, dry_run=dry_run)  # kept unmerged work is never touched
    if pruned:
        click.echo(f"{verb} {pruned} worktree record{'s' if pruned != 1 else ''} (removed or merged worktrees).")


def register(group: click.Group) -> None:
    """Attach this module's commands to the top-level group."""
    for command in (jobs, job, cancel, gc):
        group.add_command(command)
