"""pyagent.envconfig: connection string and option defaults from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from pyagent import envconfig
from pyagent.envconfig import (
    conninfo_from_env,
    enabled_from_env,
    option_defaults_from_env,
    read_env,
)


def secret_file(tmp_path: Path, content: str | bytes, name: str = "secret") -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode())
    return str(path)


def parsed(environ: dict[str, str]) -> dict[str, object]:
    return dict(conninfo_to_dict(conninfo_from_env(environ)))


# ---------------------------------------------------------------- read_env


def test_read_env_plain_value():
    assert read_env("X", {"X": "value"}) == "value"


def test_read_env_unset_and_empty_are_none():
    assert read_env("X", {}) is None
    assert read_env("X", {"X": ""}) is None
    assert read_env("X", {"X_FILE": ""}) is None


def test_read_env_keeps_whitespace_of_a_value():
    assert read_env("X", {"X": " a b \n"}) == " a b \n"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("s3cret\n", "s3cret"),
        ("s3cret", "s3cret"),
        ("s3cret\r\n", "s3cret"),
        ("s3cret\n\n", "s3cret\n"),  # only one newline is removed
        (" s3cret \n", " s3cret "),  # spaces may be part of a password
        ("\n", ""),
        ("", ""),
        ("pä ss 'w\\ord'\n", "pä ss 'w\\ord'"),
    ],
)
def test_read_env_file(tmp_path, content, expected):
    path = secret_file(tmp_path, content)
    assert read_env("X", {"X_FILE": path}) == expected


def test_read_env_empty_value_with_file_uses_the_file(tmp_path):
    path = secret_file(tmp_path, "from-file\n")
    assert read_env("X", {"X": "", "X_FILE": path}) == "from-file"


def test_read_env_both_set_is_an_error(tmp_path):
    path = secret_file(tmp_path, "from-file\n")
    with pytest.raises(ValueError, match="both X and X_FILE") as info:
        read_env("X", {"X": "value", "X_FILE": path})
    assert "from-file" not in str(info.value)
    assert "value" not in str(info.value).replace("X_FILE", "")


def test_read_env_missing_file_names_the_path(tmp_path):
    path = str(tmp_path / "nope")
    with pytest.raises(ValueError, match="X_FILE") as info:
        read_env("X", {"X_FILE": path})
    assert path in str(info.value)
    assert "\n" not in str(info.value)


def test_read_env_directory_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        read_env("X", {"X_FILE": str(tmp_path)})


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_read_env_unreadable_file_never_shows_the_content(tmp_path):
    path = secret_file(tmp_path, "topsecret\n")
    os.chmod(path, 0)
    try:
        with pytest.raises(ValueError) as info:
            read_env("X", {"X_FILE": path})
    finally:
        os.chmod(path, 0o600)
    assert path in str(info.value)
    assert "topsecret" not in str(info.value)


def test_read_env_invalid_utf8_never_shows_the_content(tmp_path):
    path = secret_file(tmp_path, b"top\xffsecret")
    with pytest.raises(ValueError, match="UTF-8") as info:
        read_env("X", {"X_FILE": path})
    assert "secret" not in str(info.value).replace(path, "")
    assert "\\xff" not in str(info.value)


def test_read_env_nul_in_file_is_an_error(tmp_path):
    path = secret_file(tmp_path, b"top\x00secret")
    with pytest.raises(ValueError, match="NUL"):
        read_env("X", {"X_FILE": path})


def test_read_env_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("PYAGENT_TEST_READ_ENV", "from-os")
    assert read_env("PYAGENT_TEST_READ_ENV") == "from-os"


# ------------------------------------------------------- conninfo_from_env


def test_nothing_set_gives_an_empty_conninfo():
    assert conninfo_from_env({}) == ""


def test_libpq_variables_are_not_read():
    env = {"PGHOST": "db", "PGPORT": "6432", "PGUSER": "u", "PGPASSWORD": "p", "PGDATABASE": "d"}
    assert conninfo_from_env(env) == ""


def test_pyagent_conninfo_is_returned_as_is():
    for value in ("host=db dbname=x user=y", "postgresql://u@db:5433/x?sslmode=require"):
        assert conninfo_from_env({"PYAGENT_CONNINFO": value}) == value


def test_pyagent_conninfo_wins_over_everything():
    env = {
        "PYAGENT_CONNINFO": "host=db dbname=chosen",
        "PGAGENT_DB": "pgagent_db",
        "PGAGENT_USER": "pgagent_user",
        "PGAGENT_PASSWORD": "pgagent_pw",
        "POSTGRES_DB": "postgres_db",
        "POSTGRES_USER": "postgres_user",
        "POSTGRES_PASSWORD": "postgres_pw",
    }
    assert conninfo_from_env(env) == "host=db dbname=chosen"


def test_pyagent_conninfo_file(tmp_path):
    path = secret_file(tmp_path, "host=db password='x y'\n")
    assert conninfo_from_env({"PYAGENT_CONNINFO_FILE": path, "PGAGENT_DB": "x"}) == (
        "host=db password='x y'"
    )


def test_pyagent_conninfo_and_file_both_set(tmp_path):
    path = secret_file(tmp_path, "host=db\n")
    with pytest.raises(ValueError, match="PYAGENT_CONNINFO and PYAGENT_CONNINFO_FILE"):
        conninfo_from_env({"PYAGENT_CONNINFO": "host=x", "PYAGENT_CONNINFO_FILE": path})


def test_pgagent_variables():
    env = {"PGAGENT_DB": "jobs", "PGAGENT_USER": "agent", "PGAGENT_PASSWORD": "pw"}
    assert parsed(env) == {"dbname": "jobs", "user": "agent", "password": "pw"}


def test_postgres_variables():
    env = {"POSTGRES_DB": "app", "POSTGRES_USER": "admin", "POSTGRES_PASSWORD": "pw"}
    assert parsed(env) == {"dbname": "app", "user": "admin", "password": "pw"}


def test_pgagent_wins_over_postgres_per_keyword():
    env = {
        "PGAGENT_DB": "jobs",
        "POSTGRES_DB": "app",
        "POSTGRES_USER": "admin",
        "PGAGENT_PASSWORD": "agent-pw",
        "POSTGRES_PASSWORD": "admin-pw",
    }
    assert parsed(env) == {"dbname": "jobs", "user": "admin", "password": "agent-pw"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PGAGENT_DB": "jobs"}, {"dbname": "jobs"}),
        ({"POSTGRES_USER": "admin"}, {"user": "admin"}),
        ({"PGAGENT_PASSWORD": "pw"}, {"password": "pw"}),
        ({"POSTGRES_DB": "app", "PGAGENT_USER": "agent"}, {"dbname": "app", "user": "agent"}),
    ],
)
def test_unset_keywords_are_left_to_libpq(env, expected):
    assert parsed(env) == expected


def test_pg_variables_do_not_override_pgagent_variables():
    env = {"PGAGENT_USER": "agent", "PGUSER": "other", "PGHOST": "db"}
    assert parsed(env) == {"user": "agent"}


def test_empty_pgagent_value_falls_back_to_postgres():
    assert parsed({"PGAGENT_DB": "", "POSTGRES_DB": "app"}) == {"dbname": "app"}


def test_file_variants(tmp_path):
    env = {
        "PGAGENT_DB_FILE": secret_file(tmp_path, "jobs\n", "db"),
        "PGAGENT_USER_FILE": secret_file(tmp_path, "agent\n", "user"),
        "PGAGENT_PASSWORD_FILE": secret_file(tmp_path, "agent pw\n", "pw"),
    }
    assert parsed(env) == {"dbname": "jobs", "user": "agent", "password": "agent pw"}


def test_postgres_file_variants(tmp_path):
    env = {
        "POSTGRES_DB_FILE": secret_file(tmp_path, "app\n", "db"),
        "POSTGRES_USER_FILE": secret_file(tmp_path, "admin\n", "user"),
        "POSTGRES_PASSWORD_FILE": secret_file(tmp_path, "admin-pw\n", "pw"),
    }
    assert parsed(env) == {"dbname": "app", "user": "admin", "password": "admin-pw"}


def test_pgagent_file_wins_over_postgres_value(tmp_path):
    env = {
        "PGAGENT_PASSWORD_FILE": secret_file(tmp_path, "agent-pw\n"),
        "POSTGRES_PASSWORD": "admin-pw",
    }
    assert parsed(env) == {"password": "agent-pw"}


def test_both_forms_of_one_variable_is_an_error(tmp_path):
    env = {"PGAGENT_PASSWORD": "a", "PGAGENT_PASSWORD_FILE": secret_file(tmp_path, "b\n")}
    with pytest.raises(ValueError, match="PGAGENT_PASSWORD and PGAGENT_PASSWORD_FILE"):
        conninfo_from_env(env)


def test_a_lower_level_is_not_read_when_a_higher_one_is_set(tmp_path):
    # POSTGRES_PASSWORD_FILE points nowhere, but PGAGENT_PASSWORD decides first.
    env = {
        "PGAGENT_PASSWORD": "pw",
        "POSTGRES_PASSWORD_FILE": str(tmp_path / "missing"),
    }
    assert parsed(env) == {"password": "pw"}


def test_unreadable_password_file_reports_the_path(tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="PGAGENT_PASSWORD_FILE") as info:
        conninfo_from_env({"PGAGENT_PASSWORD_FILE": missing})
    assert missing in str(info.value)


@pytest.mark.parametrize(
    "password",
    [
        "simple",
        "with space",
        "  leading and trailing  ",
        "it's",
        "'",
        "''",
        "back\\slash",
        "\\",
        "end\\",
        "\\'",
        "a=b c=d",
        "dbname=evil",
        "tab\there",
        "new\nline",
        '#;$`"!*?',
        "pässwörd ✓",
        "",
    ],
)
def test_passwords_are_quoted_for_libpq(password):
    env = {"PGAGENT_USER": "agent", "PGAGENT_PASSWORD": password, "PGAGENT_DB": "jobs"}
    if password == "":
        # empty counts as unset
        assert parsed(env) == {"user": "agent", "dbname": "jobs"}
        return
    assert parsed(env) == {"dbname": "jobs", "user": "agent", "password": password}


@pytest.mark.parametrize("value", ["my db", "o'brien", "c:\\dir", "ü"])
def test_names_are_quoted_too(value):
    env = {"PGAGENT_DB": value, "PGAGENT_USER": value}
    assert parsed(env) == {"dbname": value, "user": value}


def test_password_file_with_special_characters(tmp_path):
    password = "p a'ss\\wo\"rd"
    env = {"PGAGENT_PASSWORD_FILE": secret_file(tmp_path, password + "\n")}
    assert parsed(env) == {"password": password}


def test_quote_value():
    assert envconfig.quote_value("") == "''"
    assert envconfig.quote_value("a b") == "'a b'"
    assert envconfig.quote_value("it's") == "'it\\'s'"
    assert envconfig.quote_value("a\\b") == "'a\\\\b'"


# ------------------------------------------------ option_defaults_from_env


def test_no_option_defaults():
    assert option_defaults_from_env({}) == {}
    assert option_defaults_from_env({"PGAGENT_LOG_LEVEL": "", "PGAGENT_LOG_FILE_PATH": ""}) == {}


@pytest.mark.parametrize(("raw", "level"), [("0", 0), ("1", 1), ("2", 2), (" 2 ", 2)])
def test_log_level(raw, level):
    assert option_defaults_from_env({"PGAGENT_LOG_LEVEL": raw}) == {"log_level": level}


@pytest.mark.parametrize("raw", ["3", "-1", "debug", "1.0", "01x", "x" * 200])
def test_invalid_log_level(raw):
    with pytest.raises(ValueError, match="PGAGENT_LOG_LEVEL must be 0") as info:
        option_defaults_from_env({"PGAGENT_LOG_LEVEL": raw})
    message = str(info.value)
    assert "\n" not in message
    assert len(message) < 150


def test_log_file_path():
    env = {"PGAGENT_LOG_FILE_PATH": "/tmp/pgagent.log", "PGAGENT_LOG_LEVEL": "1"}
    assert option_defaults_from_env(env) == {"log_file": "/tmp/pgagent.log", "log_level": 1}


def test_pyagent_variables_are_left_to_click():
    # PYAGENT_LOG_LEVEL is click's envvar and wins over these defaults; not read here.
    env = {"PYAGENT_LOG_LEVEL": "2", "PYAGENT_LOG_FILE": "/x"}
    assert option_defaults_from_env(env) == {}


def test_option_defaults_are_names_of_run_options():
    from pyagent.cli import run_command

    names = {param.name for param in run_command.params}
    defaults = option_defaults_from_env({"PGAGENT_LOG_LEVEL": "1", "PGAGENT_LOG_FILE_PATH": "/x"})
    assert set(defaults) <= names


def test_click_precedence_with_default_map():
    """Used as click's default_map, PYAGENT_LOG_LEVEL and -l win over PGAGENT_LOG_LEVEL."""
    import click
    from click.testing import CliRunner

    @click.command()
    @click.option("-l", "--log-level", type=click.IntRange(0, 2), default=0, envvar="X_LEVEL")
    def cmd(log_level: int) -> None:
        click.echo(str(log_level))

    defaults = option_defaults_from_env({"PGAGENT_LOG_LEVEL": "2"})
    runner = CliRunner()
    assert runner.invoke(cmd, [], default_map=defaults, env={}).output == "2\n"
    assert runner.invoke(cmd, [], default_map=defaults, env={"X_LEVEL": "1"}).output == "1\n"
    assert runner.invoke(cmd, ["-l", "0"], default_map=defaults, env={"X_LEVEL": "1"}).output == (
        "0\n"
    )


# -------------------------------------------------------- enabled_from_env


def test_enabled_by_default():
    assert enabled_from_env({}) is True


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "Yes", "on", " on "])
@pytest.mark.parametrize("name", ["PGAGENT_ENABLED", "PYAGENT_ENABLED"])
def test_enabled_true_values(name, raw):
    assert enabled_from_env({name: raw}) is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "NO", "off", "", "  "])
@pytest.mark.parametrize("name", ["PGAGENT_ENABLED", "PYAGENT_ENABLED"])
def test_enabled_false_values(name, raw):
    assert enabled_from_env({name: raw}) is False


@pytest.mark.parametrize("raw", ["2", "enabled", "y", "t", "maybe"])
@pytest.mark.parametrize("name", ["PGAGENT_ENABLED", "PYAGENT_ENABLED"])
def test_enabled_invalid_values(name, raw):
    with pytest.raises(ValueError, match=name) as info:
        enabled_from_env({name: raw})
    assert "\n" not in str(info.value)


def test_pyagent_enabled_wins_over_pgagent_enabled():
    assert enabled_from_env({"PYAGENT_ENABLED": "0", "PGAGENT_ENABLED": "1"}) is False
    assert enabled_from_env({"PYAGENT_ENABLED": "1", "PGAGENT_ENABLED": "0"}) is True
    # An invalid PGAGENT_ENABLED does not matter once PYAGENT_ENABLED decides.
    assert enabled_from_env({"PYAGENT_ENABLED": "1", "PGAGENT_ENABLED": "bogus"}) is True


@pytest.mark.parametrize("role", ["replica", "REPLICA", " replica "])
def test_pg_role_replica_disables(role):
    assert enabled_from_env({"PG_ROLE": role}) is False
    assert enabled_from_env({"PG_ROLE": role, "PGAGENT_ENABLED": "true"}) is False


def test_pg_role_replica_can_be_overridden_by_pyagent_enabled():
    assert enabled_from_env({"PG_ROLE": "replica", "PYAGENT_ENABLED": "1"}) is True
    assert enabled_from_env({"PG_ROLE": "replica", "PYAGENT_ENABLED": "0"}) is False


@pytest.mark.parametrize("role", ["master", "primary", "", "main"])
def test_other_pg_roles_do_not_disable(role):
    assert enabled_from_env({"PG_ROLE": role}) is True
    assert enabled_from_env({"PG_ROLE": role, "PGAGENT_ENABLED": "0"}) is False


# ----------------------------------------------------------------- ENV_NAMES


def test_env_names_lists_every_variable_read():
    expected = {
        "PYAGENT_CONNINFO",
        "PGAGENT_DB",
        "PGAGENT_USER",
        "PGAGENT_PASSWORD",
        "POSTGRES_DB",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "PYAGENT_ALERT_WEBHOOK",  # read with its _FILE form by pyagent.control.cli
        "PYAGENT_STEP_CONNINFO",  # read with its _FILE form by pyagent.cli
    }
    expected |= {name + "_FILE" for name in expected}
    expected |= {
        "PGAGENT_LOG_LEVEL",
        "PGAGENT_LOG_FILE_PATH",
        "PGAGENT_ENABLED",
        "PYAGENT_ENABLED",
        "PG_ROLE",
    }
    assert expected == envconfig.ENV_NAMES
