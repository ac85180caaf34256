"""`pyagent schema …`: install, check, print the schema, add pyagent's extras, grant a job
editor's rights. Only parses and delegates (to pyagent.schema, pyagent.extras); the
database comes as for `pyagent jobs` (pyagent.dboption)."""

from __future__ import annotations

import sys

import click

from pyagent import conninfo as ci
from pyagent.dboption import database_named, db_option, given_on_command_line, looks_like_conninfo
from pyagent.exitcodes import CHECK_CANNOT_CONNECT, CHECK_OK, CHECK_PROBLEMS, EXIT_FAILED


@click.group("schema")
def schema_group() -> None:
    """Install, check or print the pgagent schema.

    The database: -d/--db CONNINFO, else PYAGENT_CONNINFO, else libpq's PG* variables
    and ~/.pgpass, as for `pyagent jobs`; or a connection string as the first argument
    (DSN).
    """


def _schema_database(ctx: click.Context, conninfo: str | None, dsn: str | None) -> str:
    """The database a schema command works on: DSN, -d/--db, PYAGENT_CONNINFO, or the
    PG* variables (one of them must say something)."""
    if dsn is not None and given_on_command_line(ctx):
        raise click.UsageError("give the database once: DSN or -d/--db")
    chosen = dsn if dsn is not None else conninfo or ""
    if not database_named(chosen):
        raise click.UsageError(
            "which database? Give -d/--db CONNINFO (or DSN), or set PYAGENT_CONNINFO or "
            "libpq's PG* variables"
        )
    return chosen


@schema_group.command("install")
@click.option(
    "--with-extras",
    "--with-notify",
    "with_notify",
    is_flag=True,
    help="Also add pyagent's optional extras: the Run-now notify trigger, a due-jobs index, "
    "per-job time zones (@TIMEZONE) honoured by the schema's triggers.",
)
@db_option
@click.argument("dsn", required=False)
@click.pass_context
def schema_install(
    ctx: click.Context, conninfo: str | None, dsn: str | None, with_notify: bool
) -> None:
    """Create the pgagent schema (version 4) in the database, in one transaction."""
    from pyagent import schema

    database = _schema_database(ctx, conninfo, dsn)
    try:
        schema.install(database, with_notify=with_notify)
    except schema.SchemaExists as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:
        raise click.ClickException(f"install failed, nothing was changed: {_explain(exc)}") from exc
    click.echo(
        "pgagent schema version 4 installed" + (" with pyagent's extras" if with_notify else "")
    )


@schema_group.command("check")
@db_option
@click.argument("dsn", required=False)
@click.pass_context
def schema_check(ctx: click.Context, conninfo: str | None, dsn: str | None) -> None:
    """Report whether the pgagent schema in the database is usable by the agent, with the
    GRANT statements for missing privileges. Exit 0: usable; 1: problems found; 2: bad
    arguments; 3: could not connect or run the check."""
    from pyagent import schema

    database = _schema_database(ctx, conninfo, dsn)
    try:
        report = schema.check(database)
    except Exception as exc:
        click.echo(f"cannot check: {_explain(exc)}", err=True)
        sys.exit(CHECK_CANNOT_CONNECT)
    click.echo(report.render())
    sys.exit(CHECK_OK if report.ok else CHECK_PROBLEMS)


@schema_group.command("sql")
@click.option(
    "--with-extras",
    "--with-notify",
    "with_notify",
    is_flag=True,
    help="Include pyagent's optional extras (notify trigger, due-jobs index, time-zone trigger).",
)
def schema_sql(with_notify: bool) -> None:
    """Print the SQL that creates the schema, for a DBA to review and run with psql."""
    from pyagent import resources

    click.echo(resources.install_script(with_notify=with_notify), nl=False)


@schema_group.command("add-extras")
@click.option(
    "--change-log-retention",
    type=click.FloatRange(min=0, min_open=True),
    metavar="DAYS",
    help="How long pyagent.change_log keeps its entries (default 365 on the first run; "
    "later runs keep the current value unless this is given).",
)
@db_option
@click.argument("dsn", required=False)
@click.pass_context
def schema_add_extras(
    ctx: click.Context,
    conninfo: str | None,
    dsn: str | None,
    change_log_retention: float | None = None,
) -> None:
    """Add pyagent's optional extras to an existing schema (ours or the extension's): the
    Run-now notify trigger, an index on due jobs, a trigger that computes the next run of
    a job with @TIMEZONE=...; in that zone whoever edits it, and the authorship records
    (who last changed each job and step, and a change log; docs/security.md). Run it as the
    owner of the pgagent tables. Safe to run again."""
    _add_extras(_schema_database(ctx, conninfo, dsn), change_log_retention)


def _add_extras(database: str, change_log_retention: float | None) -> None:
    from pyagent import extras

    try:
        added = extras.add_notify_trigger(database)
        recorded = extras.add_authorship(database, change_log_days=change_log_retention)
    except Exception as exc:
        raise click.ClickException(_clean(exc)) from exc
    click.echo("pyagent extras added" if added else "pyagent extras already present (refreshed)")
    click.echo(
        "authorship is recorded from now on (schema pyagent; see docs/security.md)"
        if recorded
        else "authorship records already present (refreshed)"
    )


@schema_group.command("add-notify", hidden=True)
@db_option
@click.argument("dsn", required=False)
@click.pass_context
def schema_add_notify_old_name(ctx: click.Context, conninfo: str | None, dsn: str | None) -> None:
    """The earlier name of add-extras (hidden; kept so existing scripts work)."""
    _add_extras(_schema_database(ctx, conninfo, dsn), None)


@schema_group.command("grant-editor")
@click.option(
    "--dry-run", is_flag=True, help="Print the GRANT statements and the risks; change nothing."
)
@db_option
@click.argument("args", nargs=-1, required=True, metavar="[DSN] ROLE...")
@click.pass_context
def schema_grant_editor(
    ctx: click.Context, conninfo: str | None, args: tuple[str, ...], dry_run: bool
) -> None:
    """Let each ROLE create, edit, run and delete jobs in pgAdmin's dialogs (and with
    `pyagent jobs`), and nothing that could forge authorship (docs/security.md). Warns
    about what a role holds already that would let it forge authorship (exit 1).

    Without -d/--db, a first argument that is a connection string (key=value ... or a
    postgresql:// URI) names the database (DSN); with it, every argument is a role."""
    from pyagent.schema import editor

    dsn, roles = None, args
    if not given_on_command_line(ctx) and looks_like_conninfo(args[0]):
        dsn, roles = args[0], args[1:]
    if not roles:
        raise click.UsageError("Missing argument 'ROLE...'.")
    database = _schema_database(ctx, conninfo, dsn)
    risky = False
    for role in roles:
        try:
            grant = editor.grant_editor(database, role, dry_run=dry_run)
        except editor.UnknownRole as exc:
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:
            raise click.ClickException(f"nothing was granted: {_clean(exc)}") from exc
        for statement in grant.statements:
            click.echo(statement)
        shown = editor.shown_role(role)
        click.echo(f"-- {shown}: " + ("granted" if grant.applied else "dry run, nothing granted"))
        for risk in grant.risks:
            risky = True
            click.echo(
                f"pyagent: warning: {shown} {risk}: it could forge or erase authorship",
                err=True,
            )
    if risky:
        sys.exit(EXIT_FAILED)


def _clean(exc: BaseException) -> str:
    return ci.mask_text(str(exc).strip().replace("\n", " "))


def _explain(exc: BaseException) -> str:
    """A database error as one line with its cause and fix (pyagent.diagnose)."""
    import psycopg

    if not isinstance(exc, psycopg.Error):
        return _clean(exc)
    from pyagent import diagnose

    return diagnose.describe(exc).text()
