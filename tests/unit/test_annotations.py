from __future__ import annotations

import pytest

from pyagent.annotations import (
    AnnotationError,
    job_options,
    parse_annotations,
    parse_duration,
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
