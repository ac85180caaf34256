"""Durations: one parser, one formatter, and what one writes the other reads back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyagent.duration import DurationError, format_duration, parse_duration, rounded


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30 s", 30), ("500ms", 0.5), ("2m", 120), ("1 h", 3600), ("15", 15), ("1.5 S", 1.5),
        ("1 h 30 m", 5400), ("1h30m", 5400), ("2 m 4.5 s", 124.5), ("1 s 250 ms", 1.25),
        ("  90  ", 90),
    ],
)  # fmt: skip
def test_durations_read(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "soon", "-5 s", "5 days", "5 s 3", "1 h 30", "30 m 1 h", "m", "1 m 2 m", "5e3 s"],
)
def test_not_durations(text):
    with pytest.raises(DurationError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0", "0 s", "00.000 ms", "0.0000001"])
def test_zero_only_where_allowed(text):
    with pytest.raises(DurationError, match="greater than zero"):
        parse_duration(text)
    assert parse_duration(text, allow_zero=True) == 0


def test_an_endless_number_is_refused():
    with pytest.raises(DurationError, match="too long"):
        parse_duration("9" * 400)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (0.5, "0.5 s"), (1, "1 s"), (30, "30 s"), (60, "1 m"), (61, "1 m 1 s"),
     (90, "1 m 30 s"), (120, "2 m"), (3600, "1 h"), (5400, "1 h 30 m"),
     (7504.123, "2 h 5 m 4.123 s"), (0.1 + 0.2, "0.3 s")],
)  # fmt: skip
def test_duration_wording(seconds, text):
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**12))
def test_what_is_written_reads_back_exactly(micro):
    seconds = micro / 1_000_000
    assert parse_duration(format_duration(seconds), allow_zero=True) == seconds


@pytest.mark.parametrize(
    ("measured", "shown"),
    [(1.2345, "1.23 s"), (12.345, "12.3 s"), (184.4, "3 m 4 s"), (7504.4, "2 h 5 m"),
     (0.0004, "0 s")],
)  # fmt: skip
def test_measured_durations_are_shown_rounded(measured, shown):
    assert format_duration(rounded(measured)) == shown
