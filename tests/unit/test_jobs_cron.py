"""cron <-> pgAgent schedule mapping, native fields, refusals and schedules in words."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyagent.jobs import cron
from pyagent.schedule import in_words


def idx(*values: int, length: int) -> tuple[bool, ...]:
    return tuple(i in values for i in range(length))


def test_plain_expression_maps_to_one_schedule():
    (f,) = cron.from_cron("*/15 2 1,15 jan-mar *")
    assert f.minutes == idx(0, 15, 30, 45, length=60)
    assert f.hours == idx(2, length=24)
    assert f.monthdays == idx(0, 14, length=32)
    assert f.months == idx(0, 1, 2, length=12)
    assert not any(f.weekdays)


def test_weekday_indexes_start_on_sunday_and_7_is_sunday():
    (f,) = cron.from_cron("0 9 * * 7,mon")
    assert f.weekdays == idx(0, 1, length=7)


def test_last_day_of_month_is_index_31():
    (f,) = cron.from_cron("0 0 1,L * *")
    assert f.monthdays == idx(0, 31, length=32)


def test_day_of_month_or_day_of_week_becomes_two_schedules():
    days, weekdays = cron.from_cron("0 6 1 * mon")
    assert days.monthdays == idx(0, length=32) and not any(days.weekdays)
    assert weekdays.weekdays == idx(1, length=7) and not any(weekdays.monthdays)
    assert cron.to_cron(days) == "0 6 1 * *"
    assert cron.to_cron(weekdays) == "0 6 * * MON"


def test_or_with_every_day_on_one_side_is_every_day():
    (f,) = cron.from_cron("0 0 1-7 * 0-6")
    assert not any(f.monthdays) and not any(f.weekdays)


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ],
)
def test_macros(macro, equivalent):
    assert cron.from_cron(macro) == cron.from_cron(equivalent)


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("0 0 1 * * 5", "seconds"),
        ("0 0 1 * * * 2030", "year"),
        ("@reboot", "agent starts"),
        ("0 0 * * 5#2", "'#'"),
        ("0 0 15W * *", "'W'"),
        ("0 0 LW * *", "'W'"),
        ("0 0 * * 5L", "last weekday"),
        ("H 0 * * *", "'H'"),
        ("61 * * * *", "out of range"),
        ("* * *", "5"),
        ("", "empty"),
        ("@sometimes", "unknown macro"),
        ("0 0 * foo *", "not a valid cron expression"),
    ],
)
def test_what_pgagent_cannot_express_is_refused_with_the_reason(expression, reason):
    with pytest.raises(cron.CronError, match=reason):
        cron.from_cron(expression)


def test_and_combination_has_no_cron_form():
    f = cron.Fields(
        idx(0, length=60), idx(9, length=24), idx(1, length=7), idx(0, length=32), idx(length=12)
    )
    assert cron.to_cron(f) is None
    assert in_words(f) == "at 09:00 on day 1 of the month when it is a Mon"


def test_all_true_array_has_no_cron_form():
    f = cron.Fields(
        tuple([True] * 60), idx(3, length=24), idx(length=7), idx(length=32), idx(length=12)
    )
    assert cron.to_cron(f) is None
    assert cron.format_native("minutes", f.minutes) == "0-59"


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("minutes", "*/20", (0, 20, 40)),
        ("minutes", [0, "30"], (0, 30)),
        ("hours", "9-17/4", (9, 13, 17)),
        ("weekdays", "mon-fri", (1, 2, 3, 4, 5)),
        ("weekdays", "fri-sun", (0, 5, 6)),
        ("weekdays", "5-7", (0, 5, 6)),
        ("weekdays", "Sunday", (0,)),
        ("monthdays", "1,15,last", (0, 14, 31)),
        ("monthdays", "28-last", (27, 28, 29, 30)),
        ("months", "jan,jul", (0, 6)),
        ("months", 12, (11,)),
        ("minutes", "*", ()),
    ],
)
def test_native_fields(kind, value, expected):
    assert cron.parse_native(kind, value) == idx(*expected, length=cron.LENGTHS[kind])


@pytest.mark.parametrize(
    ("kind", "value"),
    [("minutes", 60), ("hours", "x"), ("months", 0), ("monthdays", "last-3"), ("minutes", True)],
)
def test_bad_native_values(kind, value):
    with pytest.raises(ValueError):
        cron.parse_native(kind, value)


flags = st.lists(st.booleans(), min_size=1)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(
    st.tuples(
        *(st.lists(st.booleans(), min_size=n, max_size=n).map(tuple) for n in (60, 24, 7, 32, 12))
    )
)
def test_native_and_cron_forms_are_exact(arrays):
    """format_native/parse_native round-trip any array; to_cron is given only when cron
    reads it back to the very same schedule."""
    f = cron.Fields(*arrays)
    for kind in ("minutes", "hours", "weekdays", "monthdays", "months"):
        text = cron.format_native(kind, f.get(kind))
        back = cron.parse_native(kind, text) if text is not None else f.get(kind)
        assert back == f.get(kind)
    text = cron.to_cron(f)
    if text is not None:
        assert cron.from_cron(text) == [f]


def test_never_matches():
    (f,) = cron.from_cron("0 0 30,31 2 *")
    assert cron.never_matches(f)
    (g,) = cron.from_cron("0 0 31 1-2 *")
    assert not cron.never_matches(g)
