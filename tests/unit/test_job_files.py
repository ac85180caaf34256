"""Job files: what a valid file means, and every problem named by file, line and field."""

from __future__ import annotations

import textwrap
from datetime import date, time

import pytest

from pyagent.annotations import read_job
from pyagent.jobs import loading
from pyagent.jobs.model import FileJob
from pyagent.jobs.validation import JobFileError
from pyagent.store.records import OnError, StepKind

GOOD = """\
name: nightly
class: Data Export
comment: |
  Export the day.
timeout: 30 m
retries: 2
retry_delay: 90
alert: failure
steps:
  - name: 10 dump
    database: app
    timeout: 5 m
    code: COPY t TO '/tmp/t.csv'
  - name: 20 ship
    kind: batch
    on_error: ignore
    code: |
      scp /tmp/t.csv backup:
schedules:
  - name: night
    cron: "30 2 * * *"
    start: 2025-01-01 00:00
    end: 2030-01-01 00:00:00+00:00
    exceptions:
      - 2025-12-25
      - "02:30"
      - {date: 2026-01-01, time: "02:30"}
  - name: native
    minutes: [0, 30]
    hours: 9-17
    weekdays: mon-fri
"""


def parse(text: str) -> list[FileJob]:
    return loading.parse_text(textwrap.dedent(text), "jobs.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(JobFileError) as info:
        parse(text)
    return [str(p) for p in info.value.problems]


def test_a_complete_file():
    (job,) = parse(GOOD)
    assert job.name == "nightly" and job.job_class == "Data Export"
    assert job.desc(True) == (
        "Export the day.\n@JOB_TIMEOUT=30 m;\n@RETRIES=2;\n@RETRY_DELAY=1 m 30 s;\n"
        "@ALERT=failure;\n@MANAGED_BY=pyagent;"
    )
    # Durations are numbers of seconds from here on (apply compares and writes them).
    assert (job.options.timeout, job.options.retry_delay, job.options.retries) == (1800, 90, 2)
    dump, ship = job.steps
    assert dump.options.timeout == 300
    assert (dump.kind, dump.database, dump.on_error) == (StepKind.SQL, "app", OnError.FAIL)
    assert dump.desc() == "@JOB_STEP_TIMEOUT=5 m;"
    assert (ship.kind, ship.on_error, ship.code) == (
        StepKind.BATCH,
        OnError.IGNORE,
        "scp /tmp/t.csv backup:\n",
    )
    night, native = job.schedules
    assert night.start is not None and night.start.aware is None  # read in the session zone
    assert night.end is not None and night.end.aware is not None
    assert [(e.date, e.time) for e in night.exceptions] == [
        (date(2025, 12, 25), None),
        (None, time(2, 30)),
        (date(2026, 1, 1), time(2, 30)),
    ]
    assert native.fields.weekdays == (False, True, True, True, True, True, False)


def test_a_jobs_own_time_zone_is_an_annotation_line():
    (job,) = parse(
        """
        name: j
        comment: Nightly.
        timezone: Europe/Berlin
        schedules:
          - cron: 0 3 * * *
        """
    )
    assert job.timezone == "Europe/Berlin"
    assert job.desc(True) == "Nightly.\n@TIMEZONE=Europe/Berlin;\n@MANAGED_BY=pyagent;"
    read = read_job(job.desc(False))
    assert (read.text, read.texts()) == ("Nightly.", {"timezone": "Europe/Berlin"})


def test_or_rule_gives_two_named_schedules():
    (job,) = parse(
        """
        name: j
        schedules:
          - name: s
            cron: 0 6 1 * mon
        """
    )
    assert [s.name for s in job.schedules] == ["s", "s (weekdays)"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: j\nfoo: 1\n", "jobs.yaml:2: foo: unknown field"),
        ("name: j\nenabled: maybe\n", "jobs.yaml:2: enabled: must be true or false"),
        ("name: 12\n", "jobs.yaml:1: name: must be text, not a number"),
        ("comment: x\n", "jobs.yaml:1: name: this field is required"),
        (
            "name: j\nschedules:\n  - cron: '0 0 * * * *'\n",
            "jobs.yaml:3: schedules[1].cron: '0 0 * * * *': 6 fields",
        ),
        (
            "name: j\nschedules:\n  - name: s\n    cron: '@reboot'\n",
            "jobs.yaml:4: schedules[1].cron: '@reboot'",
        ),
        (
            "name: j\nschedules:\n  - name: s\n    minutes: 61\n",
            "jobs.yaml:4: schedules[1].minutes: 61 is out of range 0-59",
        ),
        (
            "name: j\nschedules:\n  - name: s\n    cron: '* * * * *'\n    hours: 1\n",
            "either 'cron' or pgAgent's fields",
        ),
        (
            "name: j\nschedules:\n  - name: s\n    cron: '0 0 31 2 *'\n",
            "never runs",
        ),
        (
            "name: j\nschedules:\n  - name: s\n    cron: '0 0 1 * mon'\n    exceptions: ['2025-01-01 00:00']\n",
            "unique index",
        ),
        (
            "name: j\nschedules:\n  - cron: '* * * * *'\n    exceptions: ['2025-13-01']\n",
            "jobs.yaml:4: schedules[1].exceptions: '2025-13-01' is not a date",
        ),
        (
            "name: j\nschedules:\n  - cron: '* * * * *'\n    start: tomorrow\n",
            "jobs.yaml:4: schedules[1].start: 'tomorrow' is not a timestamp",
        ),
        (
            "name: j\nsteps:\n  - name: a\n    code: SELECT 1\n",
            "jobs.yaml:3: steps[1]: an SQL step needs a 'database'",
        ),
        (
            "name: j\nsteps:\n  - name: a\n    kind: batch\n    database: x\n    code: ls\n",
            "jobs.yaml:5: steps[1].database: a batch step runs on the agent's host",
        ),
        (
            "name: j\nsteps:\n  - name: a\n    kind: shell\n    code: ls\n",
            "jobs.yaml:4: steps[1].kind: must be one of sql, batch",
        ),
        ("name: j\ntimeout: soon\n", "jobs.yaml:2: timeout: 'soon' is not a duration"),
        ("name: j\nretries: -1\n", "jobs.yaml:2: retries: must be a whole number from 0 to 100"),
        (
            "name: j\ntimezone: Europe/Berln\n",
            "jobs.yaml:2: timezone: 'Europe/Berln' is not a known time zone name",
        ),
        ("name: j\ntimezone: 3\n", "jobs.yaml:2: timezone: must be a time zone name as text"),
        (
            "name: j\ncomment: |\n  hi\n  @TIMEZONE=UTC;\n",
            "jobs.yaml:2: comment: write the annotation as the field 'timezone'",
        ),
        ("name: j\nretries: 101\n", "jobs.yaml:2: retries: must be a whole number from 0 to 100"),
        (
            "name: j\nalert: sometimes\n",
            "jobs.yaml:2: alert: must be one of failure, always, never",
        ),
        (
            "name: j\ncomment: |\n  hi\n  @JOB_TIMEOUT=1 s;\n",
            "jobs.yaml:2: comment: write the annotation as the field 'timeout'",
        ),
        ("name: j\nsteps: {}\n", "jobs.yaml:2: steps: must be a list"),
        ("name: j\n  bad: [\n", "jobs.yaml:2: not valid YAML"),
        ("name: j\nname: k\n", "jobs.yaml:2: field 'name' is given twice"),
        ("- 1\n- 2\n", "jobs.yaml:1: document: must be a mapping of fields"),
    ],
)
def test_problems_name_file_line_and_field(text, expected):
    found = problems(text)
    assert any(expected in p for p in found), found


def test_step_order_must_be_name_order():
    found = problems(
        """
        name: j
        steps:
          - {name: extract, database: d, code: '1'}
          - {name: load, database: d, code: '2'}
          - {name: clean, database: d, code: '3'}
        """
    )
    assert len(found) == 1
    assert "jobs.yaml:3: steps: pgAgent runs a job's steps in name order" in found[0]
    assert "'clean', 'extract', 'load'" in found[0]


def test_yaml_types_stay_text():
    """02:30, 12:30, yes, 0755 and dates are text, not YAML 1.1 numbers/booleans/dates."""
    (job,) = parse(
        """
        name: yes
        host_agent: 0755
        steps:
          - {name: 12:30, database: on, code: 2025-01-01}
        """
    )
    assert (job.name, job.host_agent) == ("yes", "0755")
    assert (job.steps[0].name, job.steps[0].database, job.steps[0].code) == (
        "12:30",
        "on",
        "2025-01-01",
    )


def test_load_checks_names_and_exceptions_across_files(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "name: j\nschedules:\n  - cron: '* * * * *'\n    exceptions: ['2030-01-01 10:00']\n"
    )
    (tmp_path / "b.yml").write_text(
        "name: j\n---\nname: k\nschedules:\n  - cron: '* * * * *'\n"
        "    exceptions: ['2030-01-01 10:00']\n"
    )
    (tmp_path / "notes.txt").write_text("not a job file")
    with pytest.raises(JobFileError) as info:
        loading.load([str(tmp_path)])
    text = "\n".join(str(p) for p in info.value.problems)
    assert (
        f"{tmp_path / 'b.yml'}:1: name: job 'j' is also defined at {tmp_path / 'a.yaml'}:1" in text
    )
    assert "unique index on pga_exception" in text


def test_missing_path():
    with pytest.raises(JobFileError, match="no such file"):
        loading.load(["/nonexistent/jobs"])


@pytest.mark.parametrize("doc", ["README.md", "docs/jobs.md"])
def test_the_documented_example_files_are_valid(doc):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / doc).read_text(encoding="utf-8")
    examples = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert examples
    for example in examples:
        assert loading.parse_text(example, doc)
