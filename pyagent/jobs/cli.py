"""`pyagent jobs ...`: pgAgent jobs from the terminal and as code.

Only click is imported at module level: `pyagent run` loads this module to build its
command table, and the agent must not pay for croniter or PyYAML.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import psycopg

from pyagent.dboption import db_option
from pyagent.exitcodes import (
    EXIT_CHANGES,
    EXIT_CONFLICT,
    EXIT_FAILED,
    EXIT_LOCK_TIMEOUT,
    EXIT_NO_AGENT,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
)
from pyagent.jobs.applylock import DEFAULT_LOCK_TIMEOUT
from pyagent.jobs.connection import connect
from pyagent.jobs.errors import JobsError, friendly_db_error, handle_errors
from pyagent.jobs.zones import session_zone

if TYPE_CHECKING:
    from pyagent.jobs.model import FileJob

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = f"""\b
Exit status: {EXIT_OK} ok; {EXIT_FAILED} error (or the job run failed);
{EXIT_USAGE} bad usage; {EXIT_CHANGES} apply --dry-run found changes;
{EXIT_TIMEOUT} run --wait timed out; {EXIT_NO_AGENT} run --wait: no live agent can run the job;
{EXIT_NOT_RUNNING} cancel: the job is not running (nothing changed);
{EXIT_LOCK_TIMEOUT} apply: gave up waiting for another apply (--lock-timeout);
{EXIT_CONFLICT} apply: a job was edited meanwhile (nothing changed)."""


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(func)


def _print(as_json: bool, data: Any, text: str) -> None:
    if as_json:
        from pyagent.jobs.render import to_json

        click.echo(to_json(data))
    else:
        click.echo(text)


@click.group(
    "jobs",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
    invoke_without_command=True,
)
@click.pass_context
def jobs_group(ctx: click.Context) -> None:
    """Inspect, run and manage pgAgent jobs; keep them as YAML files.

    \b
    Look and operate:
      pyagent jobs list                     all jobs, their schedules, next and last run
      pyagent jobs show nightly-vacuum      steps, schedules, next runs, recent runs
      pyagent jobs run nightly-vacuum --wait    run now and wait for the result
      pyagent jobs history / logs RUN       past runs and their step output
      pyagent jobs enable|disable JOB...
      pyagent jobs cancel nightly-vacuum    stop its running run, on whichever agent
      pyagent jobs changes [JOB]            who changed which job, what and when
      pyagent jobs adopt JOB...             attribute jobs with no recorded author
    \b
    Jobs as code (see docs/jobs.md for the file format):
      pyagent jobs export --dir jobs/       one YAML file per job
      pyagent jobs validate jobs/           check files without a database
      pyagent jobs apply jobs/ --dry-run    show what would change
      pyagent jobs apply jobs/              make the database match the files

    JOB is a job id or its exact name. Times are shown in the database session's
    TimeZone, the zone pgAgent reads schedules in.
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@jobs_group.command("list", short_help="List jobs with schedules, next run, last run, agent.")
@db_option
@json_option
@click.option("--failed", is_flag=True, help="Only jobs whose last run failed or was aborted.")
@click.option("--running", is_flag=True, help="Only jobs running now.")
@click.option("--disabled", is_flag=True, help="Only disabled jobs.")
@handle_errors
def list_command(
    conninfo: str | None, as_json: bool, failed: bool, running: bool, disabled: bool
) -> None:
    """List jobs: schedule (in words, and as cron where cron can say it), next run, last
    run with status and duration, and the agent running it now."""
    from pyagent.jobs import listing

    with connect(conninfo) as catalog:
        zone = session_zone(catalog)
        data, text = listing.list_jobs(
            catalog, zone, failed=failed, running=running, disabled=disabled
        )
    _print(as_json, data, text)


@jobs_group.command("show", short_help="Show a job: steps, schedules, next runs, recent runs.")
@click.argument("job")
@db_option
@json_option
@click.option(
    "-n",
    "--next",
    "count",
    type=click.IntRange(0, 1000),
    default=5,
    show_default=True,
    help="How many upcoming run times to compute.",
)
@click.option(
    "--runs",
    type=click.IntRange(0, 10000),
    default=5,
    show_default=True,
    help="How many recent runs to show.",
)
@handle_errors
def show_command(conninfo: str | None, as_json: bool, job: str, count: int, runs: int) -> None:
    """Show one job: steps in execution order, schedules and exceptions, annotations, the
    next run times, recent runs."""
    from pyagent.jobs import show

    with connect(conninfo) as catalog:
        zone = session_zone(catalog)
        data, text = show.show_job(catalog, zone, job, count=count, runs=runs)
    _print(as_json, data, text)


@jobs_group.command("run", short_help='Run a job now ("Run now"); --wait for its result.')
@click.argument("job")
@db_option
@json_option
@click.option("--wait", is_flag=True, help="Wait for the run to end; print each step's result.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help=f"With --wait: give up after this long (exit status {EXIT_TIMEOUT}). Default: no limit.",
)
@handle_errors
def run_command(
    conninfo: str | None, as_json: bool, job: str, wait: bool, timeout: float | None
) -> None:
    """Run JOB now, exactly as pgAdmin's "Run now" does (its next run becomes now()).

    \b
    With --wait, follow the run this request started and exit with
      0  the job succeeded
      1  it failed or was aborted
      4  --timeout passed first
      5  no live agent can pick it up (none connected, or none with the
         job's host agent station); the job is then not started.
    Without --wait the request is recorded even when no agent is connected
    (with a warning): the job runs when an agent starts.
    """
    from pyagent.jobs import runner

    if timeout is not None and not wait:
        raise click.UsageError("--timeout needs --wait")

    def emit(line: str) -> None:
        if not as_json:
            click.echo(line)

    def warn(line: str) -> None:
        click.echo(line, err=True)

    with connect(conninfo) as catalog:
        zone = session_zone(catalog)
        outcome = runner.run_job(
            catalog, zone, job, wait=wait, timeout=timeout, emit=emit, warn=warn
        )
    if as_json:
        _print(True, outcome.data, "")
    sys.exit(outcome.exit_code)


@jobs_group.command("cancel", short_help="Stop a job's running run, on whichever agent runs it.")
@click.argument("job")
@db_option
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Wait this long for the running agent to stop the run (0: do not wait).",
)
@click.option("--who", help="How the cancel is signed in the step's output (default: user@host).")
@handle_errors
def cancel_command(conninfo: str | None, job: str, wait: float, who: str | None) -> None:
    """Cancel JOB's running run, whichever agent (on whichever host) runs it: a SQL step
    is cancelled on the server, a batch step's process group is terminated, the step and
    the run end 'd' (aborted) with an output saying who cancelled it and when, later steps
    do not run, and the job goes back to its schedule (no retry).

    \b
    Exit status:
      0  cancelled
      1  unknown or ambiguous job, or no database
      6  the job is not running: nothing was changed
    The same from pgAdmin's query tool: one SQL statement (README, "Cancelling").
    """
    from pyagent.control.cancel import request_cancel

    result = request_cancel(conninfo or "", job, who=who, wait=wait)
    click.echo(result.message, err=result.exit_status == EXIT_FAILED)
    sys.exit(result.exit_status)


@jobs_group.command("history", short_help="Recent runs, newest first.")
@click.argument("job", required=False)
@db_option
@json_option
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--failed", is_flag=True, help="Only failed, aborted or internal-error runs.")
@handle_errors
def history_command(
    conninfo: str | None, as_json: bool, job: str | None, limit: int, failed: bool
) -> None:
    """Recent runs of all jobs, or of JOB, newest first."""
    from pyagent.jobs import runs

    with connect(conninfo) as catalog:
        zone = session_zone(catalog)
        data, text = runs.history(catalog, zone, job, limit=limit, failed=failed)
    _print(as_json, data, text)


@jobs_group.command("logs", short_help="Step results and output of one run.")
@click.argument("run_or_job", metavar="RUN | JOB --last")
@db_option
@json_option
@click.option("--last", is_flag=True, help="The argument is a job: show its newest run.")
@handle_errors
def logs_command(conninfo: str | None, as_json: bool, run_or_job: str, last: bool) -> None:
    """Step results and output of one run (a run id from `history`), or of a job's newest
    run with --last."""
    from pyagent.jobs import runs

    with connect(conninfo) as catalog:
        zone = session_zone(catalog)
        data, text = runs.logs(catalog, zone, run_or_job, last=last)
    _print(as_json, data, text)


@jobs_group.command("changes", short_help="Who changed which job, what and when.")
@click.argument("job", required=False)
@db_option
@json_option
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@handle_errors
def changes_command(conninfo: str | None, as_json: bool, job: str | None, limit: int) -> None:
    """The change log of all jobs, or of JOB (a deleted job by its id), newest first:
    who (the role that logged in) changed which job, step, schedule or exception, which
    fields, and when. Kept by pyagent's authorship records (pyagent schema add-extras;
    docs/security.md)."""
    from pyagent.jobs import authorship

    with connect(conninfo) as catalog:
        zone = session_zone(catalog)
        data, text = authorship.changes(catalog, zone, job, limit=limit)
    _print(as_json, data, text)


@jobs_group.command("adopt", short_help="Attribute jobs that have no recorded author.")
@click.argument("jobs", nargs=-1, metavar="[JOB]...")
@db_option
@json_option
@click.option(
    "--unrecorded",
    is_flag=True,
    help="Also every job of which the job or a step has no record that matches it.",
)
@click.option(
    "--as",
    "author",
    metavar="ROLE",
    help="The role to attribute them to (default: the role running this). Steps then run "
    "with this role's rights under --step-rights author.",
)
@click.option("--dry-run", is_flag=True, help="Show what would be attributed; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
def adopt_command(
    *,
    conninfo: str | None,
    as_json: bool,
    jobs: tuple[str, ...],
    unrecorded: bool,
    author: str | None,
    dry_run: bool,
    yes: bool,
) -> None:
    """Attribute JOBs, and all their steps as they are now, to a role: for jobs written
    before authorship was recorded (or changed while it was bypassed), which
    --step-rights author otherwise refuses to run. Only the owner of schema pyagent (or a
    superuser) can. Every step's code is shown first, and the jobs are locked until you
    answer, so what you reviewed is exactly what is attributed.

    \b
    Exit status: 0 adopted (or nothing to adopt); 1 error or declined;
    3 --dry-run found jobs to adopt."""
    from pyagent.jobs import authorship

    if not jobs and not unrecorded:
        raise click.UsageError("name the jobs to adopt, or give --unrecorded")
    if not (yes or dry_run) and not sys.stdin.isatty():
        raise click.UsageError("adopt asks for confirmation: add --yes (review with --dry-run)")

    def confirm(text: str, plan: authorship.Adoption) -> bool:
        if not as_json:
            click.echo(text)
            click.echo("")
        if dry_run:
            return False
        if yes:
            return True
        count = len(plan.jobs)
        what = (
            "this job and all its steps"
            if count == 1
            else f"these {count} jobs and all their steps"
        )
        return click.confirm(f"Attribute {what} to role {plan.author!r}?", default=False)

    with connect(conninfo) as catalog:
        result = authorship.adopt(
            catalog, list(jobs), unrecorded=unrecorded, author=author, confirm=confirm
        )
    if as_json:
        _print(True, result.as_dict(), "")
    elif not result.jobs:
        click.echo("nothing to adopt")
    elif result.applied:
        click.echo(f"adopted {len(result.jobs)} job(s): attributed to role {result.author!r}")
    else:
        click.echo("dry run: nothing was changed" if dry_run else "nothing was changed")
    if dry_run and result.jobs:
        sys.exit(EXIT_CHANGES)
    if not result.applied and result.jobs and not dry_run:
        sys.exit(EXIT_FAILED)


def _enable_command(enabled: bool) -> Callable[..., None]:
    @click.argument("jobs", nargs=-1, required=True, metavar="JOB...")
    @db_option
    @json_option
    @handle_errors
    def command(conninfo: str | None, as_json: bool, jobs: tuple[str, ...]) -> None:
        from pyagent.jobs import enable

        with connect(conninfo) as catalog:
            zone = session_zone(catalog)
            data, text = enable.set_enabled(catalog, zone, list(jobs), enabled)
        _print(as_json, data, text)

    return command


jobs_group.command(
    "enable",
    help="Enable jobs (the schema then computes their next run).",
    short_help="Enable jobs.",
)(_enable_command(True))
jobs_group.command(
    "disable",
    help="Disable jobs (they keep their schedules; no run starts until enabled).",
    short_help="Disable jobs.",
)(_enable_command(False))


@jobs_group.command("export", short_help="Write jobs as YAML job files.")
@click.argument("jobs", nargs=-1, metavar="[JOB]...")
@db_option
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one <job-name>.yaml per job into this directory instead of stdout.",
)
@handle_errors
def export_command(conninfo: str | None, jobs: tuple[str, ...], directory: Path | None) -> None:
    """Write jobs (all, or those named) as YAML job files, as `apply` reads them."""
    from pyagent.jobs import export

    with connect(conninfo) as catalog:
        zone = session_zone(catalog)
        found = export.documents(catalog, zone, list(jobs))
    if directory is None:
        if found:
            click.echo(export.dump([doc for _, doc in found]), nl=False)
        return
    for path in export.write_directory(found, directory):
        click.echo(f"wrote {path}")


def _load_job_files(paths: tuple[str, ...], *, changing: bool = True) -> list[FileJob]:
    from pyagent.jobs.loading import load
    from pyagent.jobs.validation import JobFileError

    try:
        return load(paths)
    except JobFileError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        count = len(exc.problems)
        tail = "; nothing was changed" if changing else ""
        raise JobsError(f"{count} problem{'s' if count != 1 else ''} found{tail}") from None


@jobs_group.command("validate", short_help="Check job files without a database.")
@click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR...")
@handle_errors
def validate_command(paths: tuple[str, ...]) -> None:
    """Check job files without a database: YAML, fields, types, cron expressions, step
    order. (Job classes and databases are checked by apply.)"""
    specs = _load_job_files(paths, changing=False)
    steps = sum(len(s.steps) for s in specs)
    schedules = sum(len(s.schedules) for s in specs)
    click.echo(f"ok: {len(specs)} jobs, {steps} steps, {schedules} pgAgent schedules")


@jobs_group.command("apply", short_help="Make the database match job files (one transaction).")
@click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR...")
@db_option
@json_option
@click.option(
    "--dry-run",
    is_flag=True,
    help=f"Print the plan and change nothing; exit status {EXIT_CHANGES} if there are changes.",
)
@click.option(
    "--prune",
    is_flag=True,
    help="Also delete jobs that apply manages (@MANAGED_BY=pyagent; in their comment) and "
    "that are in none of the files. Hand-made jobs are never deleted.",
)
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_LOCK_TIMEOUT,
    show_default=True,
    envvar="PYAGENT_APPLY_LOCK_TIMEOUT",
    metavar="SECONDS",
    help="Wait this long for another apply to finish (and for rows others hold) "
    f"before giving up with exit status {EXIT_LOCK_TIMEOUT} (env PYAGENT_APPLY_LOCK_TIMEOUT).",
)
@handle_errors
def apply_command(  # noqa: PLR0917 - click passes options as keywords
    conninfo: str | None,
    as_json: bool,
    paths: tuple[str, ...],
    dry_run: bool,
    prune: bool,
    lock_timeout: float,
) -> None:
    """Make the database match the job files, in one transaction.

    Prints the plan first: jobs created, changed (field by field) and deleted. Jobs are
    matched by name and updated in place, so their ids and run history stay. Applying
    the same files again changes nothing.

    Applies run one at a time: one started while another runs waits for it (saying so),
    then plans from its result. A job edited by someone else (pgAdmin) after apply read it
    is not written over: apply stops and changes nothing (exit status 8). A dry run never
    waits.
    """
    from pyagent.jobs.apply import apply_job_files
    from pyagent.jobs.plan import Plan
    from pyagent.jobs.validation import JobFileError

    specs = _load_job_files(paths)

    def show(plan: Plan) -> None:
        if not as_json:
            click.echo(plan.text())

    with connect(conninfo) as catalog:
        try:
            plan = apply_job_files(
                catalog,
                specs,
                prune=prune,
                dry_run=dry_run,
                show=show,
                say=lambda line: click.echo(line, err=True),
                lock_timeout=lock_timeout,
            )
        except JobFileError as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            raise JobsError("nothing was changed") from None
        except psycopg.Error as exc:
            raise JobsError(f"{friendly_db_error(exc).message}; nothing was changed") from None
    if as_json:
        _print(True, plan.as_dict() | {"applied": plan.has_changes and not dry_run}, "")
    elif plan.has_changes:
        click.echo("dry run: nothing was changed" if dry_run else "applied")
    if dry_run and plan.has_changes:
        sys.exit(EXIT_CHANGES)
