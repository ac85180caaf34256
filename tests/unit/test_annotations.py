"""The one reader of annotations: the table, the rule for repeated options, writing."""

from __future__ import annotations

import pytest

from pyagent.annotations import (
    JOB_OPTIONS,
    OPTIONS,
    STEP_OPTIONS,
    AnnotationError,
    JobOptions,
    StepOptions,
    job_timezone,
    parse_timeout,
    parse_timezone,
    read_job,
    read_step,
    run_options,
    write,
)


@pytest.mark.parametrize("text", ["", "soon", "-5 s", "0", "5 days", "5 s 3"])
def test_bad_timeouts(text):
    with pytest.raises(AnnotationError):
        parse_timeout(text)


def test_options_are_lines_of_a_description():
    desc = "Nightly load.\n@JOB_TIMEOUT=30 s;\n  @email_to=a@b.c;\nnot @JOB_TIMEOUT=1; inline\n"
    read = read_job(desc)
    assert read.values == JobOptions(timeout=30)
    assert read.texts() == {"timeout": "30 s"}
    # Unknown names and lines that are not annotations stay in the text.
    assert read.text == "Nightly load.\n  @email_to=a@b.c;\nnot @JOB_TIMEOUT=1; inline"


def test_jpgagent_spelling_and_defaults():
    assert run_options(read_job("@JOB_TIMEOUT=2 m;"), None).timeout == 120
    assert run_options(read_job("nothing here"), 10).timeout == 10
    assert run_options(read_step("@JOB_STEP_TIMEOUT=5 s;"), None).timeout == 5
    assert run_options(read_step("@STEP_TIMEOUT=250ms"), None).timeout == 0.25
    bad = run_options(read_step("@JOB_STEP_TIMEOUT=forever;"), 7)
    assert bad.timeout == 7 and bad.problems == (
        "@JOB_STEP_TIMEOUT: 'forever' is not a duration (examples: 30 s, 500 ms, 2 m, 1 h 30 m)",
    )


@pytest.mark.parametrize(
    ("desc", "seconds"),
    [
        ("@STEP_TIMEOUT=10 s;\n@JOB_STEP_TIMEOUT=20 s;", 20),
        ("@JOB_STEP_TIMEOUT=20 s;\n@STEP_TIMEOUT=10 s;", 10),
        ("@STEP_TIMEOUT=10 s;\n@STEP_TIMEOUT=30 s;", 30),
        # A bad last line decides too: it is ignored, and the default applies.
        ("@STEP_TIMEOUT=10 s;\n@JOB_STEP_TIMEOUT=never;", None),
    ],
)
def test_the_last_line_of_an_option_decides_under_any_of_its_names(desc, seconds):
    read = read_step(desc)
    assert read.values.timeout == seconds and read.text == ""
    assert len(read.texts()) == 1


def test_every_name_is_read_once_and_the_first_name_is_written():
    names = [name for option in OPTIONS for name in option.names]
    assert len({(name, option.place) for option in OPTIONS for name in option.names}) == len(
        names
    )
    assert {o.place for o in JOB_OPTIONS} == {"job"} and {o.place for o in STEP_OPTIONS} == {
        "step"
    }
    assert write("", StepOptions(timeout=90)) == "@JOB_STEP_TIMEOUT=1 m 30 s;"


def test_what_is_written_reads_back():
    values = JobOptions(
        timeout=1800, retries=0, retry_delay=0, alert="never", timezone="UTC", managed_by="pyagent"
    )
    desc = write("Nightly.\n", values)
    assert desc == (
        "Nightly.\n@JOB_TIMEOUT=30 m;\n@RETRIES=0;\n@RETRY_DELAY=0 s;\n@ALERT=never;\n"
        "@TIMEZONE=UTC;\n@MANAGED_BY=pyagent;"
    )
    read = read_job(desc)
    assert read.values == values and read.text == "Nightly." and read.means("Nightly.", values)
    assert read_job("@RETRY_DELAY=60;").means("", JobOptions(retry_delay=60))
    assert not read_job("@RETRIES=lots;").means("", JobOptions())


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
