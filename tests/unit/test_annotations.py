from __future__ import annotations

import pytest

from pyagent.annotations import (
    AnnotationError,
    job_options,
    job_timezone,
    parse_annotations,
    parse_duration,
    parse_timezone,
    step_options,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30 s", 30), ("500ms", 0.5), ("2m", 120), ("1 h", 3600), ("15", 15), ("1.5 S", 1.5)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5 s", "0", "5 days", "5 s 3"])
def test_bad_durations(text):
    with pytest.raises(AnnotationError):
        parse_duration(text)


def test_annotations_are_lines_of_a_description():
    desc = "Nightly load.\n@JOB_TIMEOUT=30 s;\n  @email_to=a@b.c;\nnot @X=1; inline\n"
    assert parse_annotations(desc) == {"JOB_TIMEOUT": "30 s", "EMAIL_TO": "a@b.c"}


def test_jpgagent_spelling_and_defaults():
    assert job_options("@JOB_TIMEOUT=2 m;").timeout == 120
    assert job_options("nothing here", 10).timeout == 10
    assert step_options("@JOB_STEP_TIMEOUT=5 s;").timeout == 5
    assert step_options("@STEP_TIMEOUT=250ms").timeout == 0.25
    bad = step_options("@JOB_STEP_TIMEOUT=forever;", 7)
    assert bad.timeout == 7 and "forever" in bad.problems[0]


@pytest.mark.parametrize(
    "name", ["Europe/Berlin", "America/New_York", "UTC", "Etc/GMT+3", "EST5EDT", "US/Eastern"]
)
def test_zone_names_of_the_tz_database(name):
    assert parse_timezone(f"  {name} ") == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "europe/berlin",  # the tz database's spelling only (PostgreSQL would accept it)
        "Europe/Berln",
        "UTC+3",  # a POSIX rule, not a zone
        "+02:00",
        "localtime",  # the host's own zone: the agent's host is not the server
        "posix/Europe/Berlin",
        "right/Europe/Berlin",  # leap seconds: PostgreSQL refuses them
        "../etc/passwd",
        "Europe/Berlin; DROP TABLE x",
    ],
)
def test_not_zone_names(name):
    with pytest.raises(AnnotationError, match="not a known time zone name"):
        parse_timezone(name)


def test_a_jobs_own_zone_is_its_last_timezone_line():
    desc = "Nightly.\n@TIMEZONE=UTC;\n@timezone = Europe/Berlin\n"
    assert job_timezone(desc).name == "Europe/Berlin"
    assert job_timezone("no zone").name is None and job_timezone("").problem is None
    bad = job_timezone("@TIMEZONE=Mars/Olympus;")
    assert bad.name is None and "Mars/Olympus" in (bad.problem or "")
    # One line per annotation: a zone inside other text is not an annotation.
    assert job_timezone("runs at 3 @TIMEZONE=Europe/Berlin;").name is None
