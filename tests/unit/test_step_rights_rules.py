"""The rules of --step-rights author as pure functions: how a step runs for each kind of
author, the messages, and the connection an author's step logs in with."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from pyagent import conninfo as ci
from pyagent.cli import _ROLE_NAMES, _role_list
from pyagent.schema.privileges import display_role
from pyagent.steps import rights
from pyagent.store.records import UNKNOWN_AUTHOR, Author, StepAuthors, StepDef

TRUSTED = Author("postgres", current=True, trusted=True)
MALLORY = Author("mallory", current=True, trusted=False)
STALE = Author("mallory", current=False, trusted=False)
STALE_TRUSTED = Author("postgres", current=False, trusted=True)


def step(kind: str = "s", *, connstr: str = "", authors: StepAuthors | None) -> StepDef:
    return StepDef(
        step_id=7,
        name="a",
        kind=kind,
        code="SELECT 1",
        connstr=connstr,
        dbname="" if connstr or kind == "b" else "app",
        onerror="f",
        desc="",
        authors=authors,
    )


@pytest.mark.parametrize(
    ("kind", "connstr"), [("s", ""), ("s", "host=elsewhere dbname=x"), ("b", "")]
)
def test_a_trusted_author_runs_everything_as_the_agent(kind, connstr):
    assert rights.rule(step(kind, connstr=connstr, authors=StepAuthors(TRUSTED, TRUSTED)), 3) == (
        rights.AsAgent()
    )


def test_an_untrusted_authors_sql_step_logs_in_as_the_author():
    ruling = rights.rule(step(authors=StepAuthors(MALLORY, TRUSTED)), 3)
    assert ruling == rights.AsAuthor("mallory")


@pytest.mark.parametrize(
    ("kind", "connstr", "reason", "what"),
    [
        ("b", "", rights.Refusal.BATCH, "batch steps"),
        ("s", "host=x user=postgres", rights.Refusal.CONNSTR, "connection-string steps"),
    ],
)
def test_an_untrusted_author_gets_no_batch_and_no_connection_string(kind, connstr, reason, what):
    ruling = rights.rule(step(kind, connstr=connstr, authors=StepAuthors(MALLORY, TRUSTED)), 3)
    assert isinstance(ruling, rights.Refused)
    assert ruling.reason is reason
    assert ruling.author == "mallory"
    assert ruling.message == (
        f"Step refused (--step-rights author): {what} run only for trusted authors, and this "
        'step was last changed by role "mallory", which is not the agent\'s role, not a '
        "superuser and not a member of a trusted role (--trusted-role)"
    )


def test_an_untrusted_job_author_bounds_a_trusted_step():
    """Someone who enabled (or moved) a trusted job does not get the agent's rights."""
    authors = StepAuthors(TRUSTED, MALLORY)
    assert rights.rule(step(authors=authors), 3) == rights.AsAuthor("mallory")
    batch = rights.rule(step("b", authors=authors), 3)
    assert isinstance(batch, rights.Refused)
    assert "the job's on/off switch or host agent was last changed by role" in batch.message


def test_the_steps_own_untrusted_author_wins_over_the_jobs():
    assert rights.rule(step(authors=StepAuthors(MALLORY, Author("bob", True, False))), 3) == (
        rights.AsAuthor("mallory")
    )


@pytest.mark.parametrize(
    ("authors", "fragment"),
    [
        (StepAuthors(UNKNOWN_AUTHOR, TRUSTED), "it has no recorded author"),
        (StepAuthors(STALE, TRUSTED), 'it was changed after its recorded author (role "mallory")'),
        (StepAuthors(STALE_TRUSTED, TRUSTED), "changed after its recorded author"),
        (StepAuthors(TRUSTED, UNKNOWN_AUTHOR), "the job's on/off switch and host agent have no"),
        (None, "it has no recorded author"),
    ],
)
def test_no_matching_record_means_no_run_and_says_how_to_adopt(authors, fragment):
    ruling = rights.rule(step(authors=authors), 42)
    assert isinstance(ruling, rights.Refused)
    assert ruling.reason is rights.Refusal.NO_AUTHOR
    assert fragment in ruling.message
    assert ruling.message.endswith("pyagent jobs adopt 42")


def test_an_invalid_kind_is_left_to_fail_as_in_pgagent():
    assert rights.rule(step("x", authors=StepAuthors(MALLORY, TRUSTED)), 3) == rights.AsAgent()


def test_role_names_are_shown_quoted_and_without_control_characters():
    assert display_role("mallory") == '"mallory"'
    assert display_role('a"b') == '"a""b"'
    assert display_role("x\n\x1b[31mred\u202e") == '"x\\x0a\\x1b[31mred\\u202e"'


def test_login_failure_is_one_line():
    message = rights.login_failed_message("mallory", "connection failed:\n  no password\n")
    assert message == (
        'Step not run (--step-rights author): cannot log in as its author, role "mallory": '
        "connection failed: no password; it never runs with the agent's rights"
    )


def test_an_author_logs_in_with_the_agents_options_and_no_password_of_the_agents():
    agent = "host=db port=5433 user=postgres password=agent-secret sslmode=require"
    target = ci.parse(rights.author_conninfo(agent, "pyagent", "app", "mal'lory"))
    assert target == {
        "host": "db",
        "port": "5433",
        "user": "mal'lory",
        "password": "",
        "sslmode": "require",
        "dbname": "app",
        "application_name": "pyagent step",
    }
    uri = ci.parse(rights.author_conninfo("postgresql://postgres:pw@db/x", "pyagent", "y", "m"))
    assert uri["user"] == "m" and uri["password"] == "" and uri["dbname"] == "y"


@click.command()
@click.option("--trusted-role", "roles", type=_ROLE_NAMES, multiple=True, envvar="TRUSTED")
def _show_roles(roles: tuple[tuple[str, ...], ...]) -> None:
    click.echo(repr(_role_list(roles)))


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--trusted-role", "dba", "--trusted-role", "ops"], {}, "('dba', 'ops')"),
        (["--trusted-role", "dba, ops,dba"], {}, "('dba', 'ops')"),
        ([], {"TRUSTED": "dba,ops team"}, "('dba', 'ops team')"),
        ([], {}, "()"),
    ],
)
def test_trusted_roles_are_repeatable_or_comma_separated(args, env, expected):
    result = CliRunner().invoke(_show_roles, args, env=env)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == expected


def test_an_empty_trusted_role_is_a_usage_error():
    result = CliRunner().invoke(_show_roles, ["--trusted-role", "dba,,ops"])
    assert result.exit_code == 2
    assert "an empty role name" in result.output


def _squeeze(text: str) -> str:
    """SQL without its comment lines, on one line."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return " ".join(" ".join(lines).split())


def test_the_author_variant_of_start_run_starts_runs_as_start_run_does():
    """agent.sql writes start_run twice (with and without the authors): the log row, the
    columns before the authors and the step order must stay the same in both."""
    from pyagent.store.agent_store import statement

    plain, authored = (
        _squeeze(statement("start_run")),
        _squeeze(statement("start_run_with_authors")),
    )
    log_cte = plain[: plain.index(") SELECT") + 1]
    assert authored.startswith(log_cte)
    columns = plain[plain.index("SELECT log.jlgid") : plain.index(" FROM log")]
    assert columns + ", sa.author" in authored
    joins = plain[plain.index(" FROM log") : plain.index(" ORDER BY")]
    assert joins in authored
    assert authored.endswith(plain[plain.index(" ORDER BY") :])


def test_what_a_reviewer_sees_has_no_control_characters():
    from pyagent.jobs.authorship import visible

    code = "SELECT 1;\n\x1b[2K\rDROP TABLE t; -- \u202e"
    assert visible(code, keep_newlines=True) == "SELECT 1;\n\\x1b[2K\\x0dDROP TABLE t; -- \\u202e"
    assert visible("a\nb\tc") == "a\\x0ab\tc"
