"""Command line: `pyagent [options] <connect-string>` (pgagent's syntax), `pyagent run`,
and the command table (`schema` is pyagent.schema.cli, `jobs` pyagent.jobs.cli). Only parses
and delegates; the core never imports this."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from pyagent import __version__
from pyagent import conninfo as ci
from pyagent.control.cli import control_options, control_settings, secrets_of
from pyagent.dboption import database_named
from pyagent.envconfig import ALERT_WEBHOOK_VAR, CONNINFO_VAR, STEP_CONNINFO_VAR
from pyagent.exitcodes import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
)
from pyagent.liveness import MAX_LEASE, MIN_LEASE
from pyagent.settings import DEFAULTS, ControlSettings, Settings

COMMANDS = ("run", "schema", "version", "healthcheck", "demo", "jobs")
# Set by the re-exec that hides a password from the process's argument list.
_HIDDEN_CONNINFO_ENV = "PYAGENT__HIDDEN_CONNINFO"
# click's ctx.obj key: the command line used pgagent's form (no command name).
_PGAGENT_FORM = "pgagent_form"

# pgagent's usage text, with pyagent's real defaults; printed for the pgagent form
# without a connect string.
PGAGENT_USAGE = """\
Usage:
pyagent [options] <connect-string>
options:
-v (display version info and then exit)
-f run in the foreground (do not detach from the terminal)
-t <poll time interval in seconds (default 5)>
-r <retry period after connection abort in seconds (>=10, default 30)>
-s <log file (messages are logged to STDOUT if not specified)>
-l <logging verbosity (ERROR=0, WARNING=1, DEBUG=2, default 0)>
All options: pyagent run --help; commands: pyagent --help"""


def _join_conninfo(parts: Sequence[str]) -> str:
    return " ".join(parts).strip()


def _version_text() -> str:
    return f"PostgreSQL Scheduling Agent (pyagent)\nVersion: {__version__}"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(_version_text())
        ctx.exit(0)


class _PyagentGroup(click.Group):
    """The top-level group; `jobs` is imported only when used, so the agent never loads the
    management commands (nor their libraries)."""

    _LAZY = {
        "jobs": ("pyagent.jobs.cli", "jobs_group"),
        "schema": ("pyagent.schema.cli", "schema_group"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._LAZY:
            import importlib

            module, attr = self._LAZY[cmd_name]
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_PyagentGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-v",
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Display version info and exit.",
)
def main_group() -> None:
    """pyagent: a drop-in replacement for the pgAgent job scheduler.

    \b
    Run the agent with pgagent's syntax:  pyagent [options] <connect-string>
      -f         stay in the foreground (without -f the agent detaches, like pgagent)
      -t N       poll interval in seconds (default 5)
      -r N       longest wait between reconnection attempts, seconds (>= 10, default 30)
      -s FILE    log file (default: stdout)
      -l 0|1|2   log level: 0 = ERROR, 1 = WARNING, 2 = DEBUG (default 0)
    All agent options (--max-jobs, --http, --log-format, ...): pyagent run --help

    \b
    pyagent run [options] [<connect-string>] is the same agent for containers and
    systemd: it always stays in the foreground, and without a connect string it reads
    the connection from the environment (PYAGENT_CONNINFO, PGAGENT_*, PG*).
    """


class _RoleNames(click.ParamType):  # type: ignore[type-arg]
    """Role names, comma-separated (PYAGENT_TRUSTED_ROLE=dba,ops; --trusted-role dba,ops)."""

    name = "role"
    envvar_list_splitter = ","

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, ...]:
        names = [part.strip() for part in str(value).split(",")]
        if not all(names):
            self.fail(f"an empty role name in {value!r}", param, ctx)
        return tuple(names)


_ROLE_NAMES = _RoleNames()


def _role_list(values: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    """The trusted roles in the order given, each once."""
    return tuple(dict.fromkeys(name for names in values for name in names))


@main_group.command("run")
@click.option(
    "-f",
    "--foreground",
    is_flag=True,
    envvar="PYAGENT_FOREGROUND",
    help="Run in the foreground (do not detach from the terminal). Only the pgagent form "
    "(pyagent [options] <connect-string>) detaches without it; pyagent run never detaches.",
)
@click.option(
    "-t",
    "--poll",
    "poll",
    type=click.IntRange(min=1),
    default=int(DEFAULTS.poll_interval),
    show_default=True,
    envvar="PYAGENT_POLL",
    help="Poll interval in seconds (a safety net: the agent "
    "also wakes when the next job is due and, with the notify trigger, on Run now).",
)
@click.option(
    "-r",
    "--retry",
    "retry",
    type=click.IntRange(min=10),
    default=int(DEFAULTS.retry_interval),
    show_default=True,
    envvar="PYAGENT_RETRY",
    help="Longest wait between reconnection attempts, in seconds (>= 10).",
)
@click.option(
    "-s",
    "--log-file",
    type=click.Path(dir_okay=False),
    envvar="PYAGENT_LOG_FILE",
    help="Log file (messages go to stdout if not given).",
)
@click.option(
    "-l",
    "--log-level",
    type=click.IntRange(0, 2),
    default=DEFAULTS.log_level,
    show_default=True,
    envvar="PYAGENT_LOG_LEVEL",
    help="Verbosity: 0=ERROR, 1=WARNING, 2=DEBUG.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=DEFAULTS.log_format,
    show_default=True,
    envvar="PYAGENT_LOG_FORMAT",
    help="text: pgAgent-style lines; json: one structured event per line.",
)
@click.option(
    "--station",
    envvar="PYAGENT_STATION",
    help="Name written to pga_jobagent.jagstation and matched against "
    "jobhostagent (default: the host name).",
)
@click.option(
    "--max-jobs",
    type=click.IntRange(min=1),
    default=DEFAULTS.max_jobs,
    show_default=True,
    envvar="PYAGENT_MAX_JOBS",
    help="Most jobs this agent runs at once.",
)
@click.option(
    "--max-connections-per-target",
    type=click.IntRange(min=1),
    default=DEFAULTS.max_connections_per_target,
    show_default=True,
    envvar="PYAGENT_MAX_CONNECTIONS_PER_TARGET",
    help="Most connections open at once to one step target database.",
)
@click.option(
    "--grace-period",
    type=click.FloatRange(min=0),
    default=DEFAULTS.grace_period,
    show_default=True,
    envvar="PYAGENT_GRACE_PERIOD",
    help="On SIGTERM, seconds running jobs may take before they are aborted.",
)
@click.option(
    "--lease",
    type=click.FloatRange(min=MIN_LEASE, max=MAX_LEASE),
    default=None,
    envvar="PYAGENT_LEASE",
    help="Seconds without a lease renewal after which other agents may take this agent's "
    "jobs over; it stops its own runs before then [default: 3 poll intervals, at least 15].",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=1),
    default=DEFAULTS.connect_timeout,
    show_default=True,
    envvar="PYAGENT_CONNECT_TIMEOUT",
    help="Seconds to wait for a connection to a step's database.",
)
@click.option(
    "--job-timeout",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    envvar="PYAGENT_JOB_TIMEOUT",
    help="Default job timeout in seconds (0 = none); a job's @JOB_TIMEOUT=...; wins.",
)
@click.option(
    "--step-timeout",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    envvar="PYAGENT_STEP_TIMEOUT",
    help="Default step timeout in seconds (0 = none); a step's @JOB_STEP_TIMEOUT=...; wins.",
)
@click.option(
    "--log-retention",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    envvar="PYAGENT_LOG_RETENTION",
    help="Delete job history (pga_joblog, pga_jobsteplog) older than this many days "
    "(off by default).",
)
@click.option(
    "--no-batch",
    is_flag=True,
    envvar="PYAGENT_NO_BATCH",
    help="Refuse to run batch (shell) steps; they fail with a clear message.",
)
@click.option(
    "--batch-env",
    type=click.Choice(["inherit", "clean"]),
    default=DEFAULTS.batch_env,
    show_default=True,
    envvar="PYAGENT_BATCH_ENV",
    help="inherit: batch steps get the agent's environment (as in pgAgent); "
    "clean: only a minimal, secret-free environment.",
)
@click.option(
    "--step-rights",
    type=click.Choice(["agent", "author"]),
    default=DEFAULTS.step_rights,
    show_default=True,
    envvar="PYAGENT_STEP_RIGHTS",
    help="agent: every step runs with the agent's rights (as in pgAgent); author: a step "
    "runs with no more rights than the role that last changed it (docs/security.md; needs "
    "pyagent schema add-extras).",
)
@click.option(
    "--trusted-role",
    "trusted_roles",
    type=_ROLE_NAMES,
    multiple=True,
    envvar="PYAGENT_TRUSTED_ROLE",
    metavar="ROLE[,ROLE...]",
    help="With --step-rights author: members of this role are trusted (their steps run "
    "as the agent, batch and connection-string steps included). Repeatable or "
    "comma-separated.",
)
@click.option(
    "--no-listen",
    is_flag=True,
    envvar="PYAGENT_NO_LISTEN",
    help="Do not LISTEN for Run now notifications; rely on polling only.",
)
@click.option(
    "--step-conninfo",
    metavar="CONNINFO",
    help="Connection options for SQL steps that name a database (their database replaces "
    "its dbname), e.g. a PgBouncer in transaction mode while the agent connects directly. "
    f"Default: the agent's connect string. Also {STEP_CONNINFO_VAR} or "
    f"{STEP_CONNINFO_VAR}_FILE; a password in it is kept out of ps and the logs.",
)
@click.option(
    "--http",
    "http_listen",
    envvar="PYAGENT_HTTP",
    help="Serve /livez, /readyz and /metrics on HOST:PORT (off by default).",
)
@control_options  # Job control: --retries, --retry-delay, --alert-*
@click.argument("connect_string", nargs=-1)
@click.pass_context
def run_command(ctx: click.Context, /, connect_string: tuple[str, ...], **options: Any) -> None:
    """Run the agent in the foreground: pyagent run [options] [<connect-string>].

    Without a connect string the connection comes from the environment (PYAGENT_CONNINFO,
    PGAGENT_*/POSTGRES_*, then libpq's PG* variables and ~/.pgpass)."""
    pgagent_form = bool((ctx.obj or {}).get(_PGAGENT_FORM))
    if pgagent_form and not connect_string and _HIDDEN_CONNINFO_ENV not in os.environ:
        # Like pgagent: the connect string is required; only `pyagent run` reads the
        # environment (a forgotten argument must not start a daemon on PG* defaults).
        click.echo(
            "pyagent: error: a connect string is required"
            " (`pyagent run` reads it from PYAGENT_CONNINFO or the PG* variables instead)",
            err=True,
        )
        click.echo(PGAGENT_USAGE, err=True)
        sys.exit(EXIT_USAGE)
    _idle_unless_enabled()
    conninfo = _run_conninfo(connect_string)
    control = control_settings(options)  # reads the alert webhook secret
    options["step_conninfo"] = _step_conninfo(options["step_conninfo"])
    # pyagent's own secrets are not part of the environment batch steps inherit.
    for name in _CONFIG_SECRETS:
        os.environ.pop(name, None)
    settings = _run_settings(conninfo, options, control)
    # Only the pgagent form detaches (without -f), as pgagent does; `pyagent run` is the
    # entrypoint of containers and systemd units and always stays in the foreground.
    _start(settings, foreground=options["foreground"] or not pgagent_form)


def _idle_unless_enabled() -> None:
    """Stay idle (never connect) while the environment disables the agent."""
    from pyagent import envconfig

    try:
        enabled = envconfig.enabled_from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if not enabled:
        _idle_while_disabled()


def _run_conninfo(connect_string: tuple[str, ...]) -> str:
    """The connect string to run with: the one a re-exec hid, the arguments, or the
    environment. Re-executes (and does not return) when the arguments hold a password."""
    from pyagent import envconfig

    hidden = os.environ.pop(_HIDDEN_CONNINFO_ENV, None)
    from_argv = _join_conninfo(connect_string)
    try:
        conninfo = hidden if hidden is not None else from_argv or envconfig.conninfo_from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if not database_named(conninfo):
        raise click.UsageError("a connection string is required (or set PYAGENT_CONNINFO)")
    try:
        ci.parse(conninfo)
    except ci.ConninfoError as exc:
        raise click.UsageError(
            f"Primary connection string is not valid! {ci.mask_text(str(exc))}"
        ) from exc
    if hidden is None:
        _hide_argv_secrets(conninfo if from_argv else "")
    return conninfo


def _step_conninfo(given: str | None) -> str | None:
    """--step-conninfo, or PYAGENT_STEP_CONNINFO(_FILE); checked like the connect string."""
    from pyagent import envconfig

    try:
        value = given or envconfig.read_env(STEP_CONNINFO_VAR)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if not value:
        return None
    try:
        ci.parse(value)
    except ci.ConninfoError as exc:
        raise click.UsageError(
            f"--step-conninfo is not a valid connection string: {ci.mask_text(str(exc))}"
        ) from exc
    return value


def _run_settings(conninfo: str, options: dict[str, Any], control: ControlSettings) -> Settings:
    """`pyagent run`'s options as the agent's Settings."""
    station = options["station"]
    if options["trusted_roles"] and options["step_rights"] != "author":
        click.echo(
            "pyagent: warning: --trusted-role has no effect without --step-rights author", err=True
        )
    return Settings(
        conninfo=conninfo,
        step_conninfo=options["step_conninfo"],
        poll_interval=float(options["poll"]),
        retry_interval=float(options["retry"]),
        log_level=options["log_level"],
        log_file=options["log_file"],
        log_format=options["log_format"],
        max_jobs=options["max_jobs"],
        max_connections_per_target=options["max_connections_per_target"],
        grace_period=options["grace_period"],
        lease=options["lease"],
        connect_timeout=options["connect_timeout"],
        allow_batch=not options["no_batch"],
        batch_env=options["batch_env"],
        step_rights=options["step_rights"],
        trusted_roles=_role_list(options["trusted_roles"]),
        listen=not options["no_listen"],
        job_timeout=options["job_timeout"] or None,
        http_listen=_parse_http(options["http_listen"]),
        log_retention_days=options["log_retention"],
        step_timeout=options["step_timeout"] or None,
        control=control,
        **({"station": station} if station else {}),
    )


_CONFIG_SECRETS = tuple(
    f"{name}{suffix}"
    for name in (
        CONNINFO_VAR,
        "PGAGENT_PASSWORD",
        "POSTGRES_PASSWORD",
        ALERT_WEBHOOK_VAR,
        STEP_CONNINFO_VAR,
    )
    for suffix in ("", "_FILE")
)


def _idle_while_disabled() -> None:
    """PGAGENT_ENABLED/PYAGENT_ENABLED say no (or PG_ROLE=replica): stay up doing nothing
    until stopped, so a container restart policy does not loop."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(EXIT_OK))
    click.echo("pyagent is disabled by PYAGENT_ENABLED / PGAGENT_ENABLED / PG_ROLE; idling")
    while True:
        signal.pause()


# Flags whose value is a secret: a re-exec moves them to their environment variable.
_SECRET_FLAGS = {"--alert-webhook": ALERT_WEBHOOK_VAR, "--step-conninfo": STEP_CONNINFO_VAR}


def _hide_argv_secrets(conninfo_from_argv: str) -> None:
    """Start again with the secrets out of argv (visible in ps): a password of the connect
    string, an --alert-webhook URL and a --step-conninfo travel in the environment
    instead, which only this user and root can read. Returns when argv holds no secret;
    otherwise does not return."""
    secrets = ci.secrets_of(conninfo_from_argv)
    args = sys.argv[1:]
    flag_given = any(a == flag or a.startswith(flag + "=") for a in args for flag in _SECRET_FLAGS)
    if not secrets and not flag_given:
        return
    argv: list[str] = []
    rest = iter(args)
    for arg in rest:
        flag, eq, value = arg.partition("=")
        if flag in _SECRET_FLAGS:
            os.environ[_SECRET_FLAGS[flag]] = value if eq else next(rest, "")
            os.environ.pop(_SECRET_FLAGS[flag] + "_FILE", None)  # the flag wins
            continue
        masked = arg
        for secret in secrets:
            masked = masked.replace(secret, "*****")
        argv.append(masked)
    if secrets:
        os.environ[_HIDDEN_CONNINFO_ENV] = conninfo_from_argv
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "pyagent", *argv])  # noqa: S606


def _parse_http(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    from pyagent.ops.health import parse_listen

    try:
        return parse_listen(value)
    except ValueError as exc:
        raise click.UsageError(f"--http: {exc}") from exc


def _daemonize() -> None:
    """Detach like a well-mannered daemon: fork, new session, stdin from /dev/null.
    The working directory and stdout are kept, as pgAgent keeps them (batch steps and the
    log without -s depend on them)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def _start(settings: Settings, foreground: bool) -> None:
    from pyagent import logsetup as plog
    from pyagent.agent import run_agent

    plog.configure(settings.log_level, settings.log_file, settings.log_format)
    # Job control: the webhook URL is a secret too.
    plog.register_secrets(
        [
            *ci.secrets_of(settings.conninfo),
            *ci.secrets_of(settings.step_conninfo or ""),
            *secrets_of(settings.control),
        ]
    )
    if not foreground:
        _daemonize()
    code = asyncio.run(run_agent(settings))
    sys.exit(code)


@main_group.command("version")
def version_command() -> None:
    """Print the version."""
    click.echo(_version_text())


@main_group.command("healthcheck")
@click.option("--url", help="Endpoint to query (default: from PYAGENT_HTTP, path /readyz).")
@click.option("--live", is_flag=True, help="Check liveness (/livez) instead of readiness.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
def healthcheck_command(url: str | None, live: bool, timeout: float) -> None:
    """Exit 0 if the local agent's health endpoint says ready (or live), else 1."""
    from pyagent.ops import healthcheck

    try:
        target = url or healthcheck.default_url(live=True if live else None)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    ok, reason = healthcheck.check(target, timeout)
    click.echo(reason)
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


@main_group.command("demo")
@click.option(
    "--seconds",
    type=click.FloatRange(min=1),
    default=8.0,
    show_default=True,
    help="How long the agent runs before the results are shown.",
)
def demo_command(seconds: float) -> None:
    """Run a job end to end on a throwaway PostgreSQL cluster (needs the server binaries)."""
    from pyagent.demo import run_demo

    run_demo(seconds)




def _unknown_command_message(word: str) -> str | None:
    """For a first argument that is neither a command nor a possible connect string (a
    bare word, such as a mistyped command), the error to print; else None."""
    import difflib

    if word.startswith("-") or "=" in word or "://" in word or not word.strip():
        return None
    try:
        ci.parse(word)
        return None
    except ci.ConninfoError:
        pass
    close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    if close:
        return f"Unknown command '{word}'. Did you mean '{close[0]}'?"
    return (
        f"Unknown command '{word}', and not a connect string (key=value ... or "
        f"postgresql://...). Commands: {', '.join(COMMANDS)}; see pyagent --help"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point; pgagent-style invocations are routed to `run`."""
    args = list(sys.argv[1:] if argv is None else argv)
    obj: dict[str, bool] = {}
    if not args or (args[0] not in COMMANDS and args[0] not in ("-h", "--help", "-v", "--version")):
        unknown = _unknown_command_message(args[0]) if args else None
        if unknown is not None:
            click.echo(f"pyagent: error: {unknown}", err=True)
            sys.exit(EXIT_USAGE)
        args = ["run", *args]
        obj[_PGAGENT_FORM] = True
    from pyagent import envconfig

    try:
        defaults = envconfig.option_defaults_from_env()
    except ValueError as exc:
        click.echo(f"pyagent: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    try:
        main_group.main(
            args=args,
            prog_name="pyagent",
            standalone_mode=False,
            default_map={"run": defaults},
            obj=obj,
        )
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(EXIT_FAILED)
    except click.UsageError as exc:
        click.echo(f"pyagent: error: {exc.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        click.echo(f"pyagent: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
