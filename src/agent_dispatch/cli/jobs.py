"""`jobs`, `job`, `cancel`, `gc`: job control from the terminal.

These read and change the same job records the MCP servers write; a job left behind by a
server that died is resolved here too (collected from its output file, or failed with the reason).
"""

from __future__ import annotations

import datetime as _dt
import json
import sys

import click

from agent_dispatch.cli._common import usage_errors
from agent_dispatch.models import JOB_STATUSES


def _manager():
    from agent_dispatch.background import JobManager
    from agent_dispatch.dispatcher import Dispatcher

    return JobManager(Dispatcher())


def _check_id(job_id: str) -> None:
    """A malformed id is a usage error (exit 2), refused before any file is touched."""
    from agent_dispatch.models import check_job_id

    with usage_errors("ID"):
        check_job_id(job_id)


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return _dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


@click.command()
@click.option("--status", type=click.Choice(JOB_STATUSES), help="Only jobs in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the job summaries as JSON.")
def jobs(status: str | None, limit: int, as_json: bool) -> None:
    """List background jobs, newest first."""
    found = _manager().list(status, limit)
    if as_json:
        click.echo(json.dumps([job.summary() for job in found], indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo("No jobs." if not status else f"No {status} jobs.")
        return
    for job in found:
        line = job.summary(task_chars=60)
        click.echo(f"{job.id}  {job.status:<9}  {_when(job.created_at)}  {job.agent:<16} {line['task']}")


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
def job(job_id: str, as_json: bool) -> None:
    """Show one job: its state, times, progress and result."""
    import anyio

    _check_id(job_id)
    record = anyio.run(_manager().status, job_id)
    if as_json:
        click.echo(json.dumps(record.to_json(), indent=2, ensure_ascii=False))
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
        click.echo(f"success:   {res.success}" + (f" ({res.error_type})" if res.error_type else ""))
        if res.session_id:
            click.echo(f"session:   {res.session_id}")
        if res.hint:
            click.echo(f"hint:      {res.hint}")
        click.echo("")
        click.echo(res.result)


@click.command()
@click.argument("job_id", metavar="ID")
def cancel(job_id: str) -> None:
    """Cancel a job: a pending one never runs, a running one has its process tree killed."""
    import anyio

    _check_id(job_id)
    answer = anyio.run(_manager().cancel, job_id)
    outcome = answer["outcome"]
    messages = {
        "cancelled": "Cancelled; it had not started and will never run.",
        "cancelled_running": "Cancelled; its processes were killed.",
        "already_terminal": f"Nothing to do: the job is already {answer.get('job', {}).get('status', 'finished')}.",
        "running": "Still running: it is starting in another process; try again in a moment.",
        "not_found": f"No job {job_id}.",
    }
    click.echo(messages.get(outcome, outcome))
    sys.exit(0 if outcome in ("cancelled", "cancelled_running", "already_terminal") else 1)


@click.command()
@click.option("--days", type=float, default=7.0, show_default=True, help="Delete finished jobs older than this.")
@click.option("--all", "everything", is_flag=True, help="Delete every finished job, whatever its age.")
@click.option("--dry-run", is_flag=True, help="Only say how many would be deleted.")
def gc(days: float, everything: bool, dry_run: bool) -> None:
    """Delete finished job records (pending and running jobs are never deleted)."""
    manager = _manager()  # settles the jobs of dead servers first, so the count is true
    if everything:
        count = manager.gc(None, dry_run=dry_run)
    else:
        with usage_errors("--days"):
            count = manager.gc(days, dry_run=dry_run)
    verb = "Would delete" if dry_run else "Deleted"
    click.echo(f"{verb} {count} job record{'s' if count != 1 else ''}.")


def register(group: click.Group) -> None:
    """Attach this module's commands to the top-level group."""
    for command in (jobs, job, cancel, gc):
        group.add_command(command)
