"""The agent's start-up line about its session TimeZone: said only when the zone is the
agent's own (PGTZ, connect string, role setting), naming where it comes from."""

from __future__ import annotations

import pytest

from pyagent.agent.sessionzone import session_zone_line
from pyagent.store.records import SessionZoneFacts


def facts(zone: str, source: str, default: str | None = None) -> SessionZoneFacts:
    return SessionZoneFacts(zone, source, default, "pgagent", "postgres")


@pytest.mark.parametrize("source", ["default", "configuration file", "database", "global"])
def test_a_zone_every_session_gets_is_not_mentioned(source):
    assert session_zone_line(facts("Europe/Berlin", source), {}, "dbname=x") is None


def test_a_client_zone_equal_to_the_databases_default_is_not_mentioned():
    line = session_zone_line(facts("UTC", "client", "UTC"), {"PGTZ": "UTC"}, "dbname=x")
    assert line is None


def test_pgtz_is_named_with_what_it_means_for_jobs_without_a_zone():
    line = session_zone_line(
        facts("America/New_York", "client", "UTC"), {"PGTZ": "America/New_York"}, "dbname=x"
    )
    assert line is not None and "\n" not in line
    assert "session TimeZone is America/New_York" in line
    assert "PGTZ=America/New_York in the agent's environment" in line
    assert "database's default is UTC" in line
    assert "without @TIMEZONE" in line


def test_connect_string_options_are_named():
    conninfo = "dbname=x options='-c TimeZone=Asia/Tokyo'"
    line = session_zone_line(facts("Asia/Tokyo", "client"), {}, conninfo)
    assert line is not None and "options=-c TimeZone=... in the agent's connection string" in line
    # The server's own value is not readable: the line does not claim to know it.
    assert "overrides the database's default" in line


def test_pgtz_default_is_not_a_zone():
    conninfo = "postgresql:///x?options=--timezone%3DAsia/Tokyo"
    line = session_zone_line(facts("Asia/Tokyo", "client"), {"PGTZ": "default"}, conninfo)
    assert line is not None and "connection string" in line


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("user", "a setting of role pgagent (ALTER ROLE pgagent SET TimeZone)"),
        ("database user", "ALTER ROLE pgagent IN DATABASE postgres SET TimeZone"),
    ],
)
def test_role_settings_are_named(source, said):
    line = session_zone_line(facts("Asia/Tokyo", source, "UTC"), {}, "dbname=x")
    assert line is not None and said in line
