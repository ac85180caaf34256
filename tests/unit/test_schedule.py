"""Pure-logic tests of pyagent.schedule (no database)."""

from __future__ import annotations

import time as _time
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from pyagent.schedule import (
    HORIZON,
    ScheduleException,
    ScheduleSpec,
    describe,
    next_run,
    next_run_for_schedules,
)

UTC_TZ = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2030, 6, 12, 10, 17, 42, tzinfo=UTC)  # a Wednesday
PAST = datetime(2020, 1, 1, tzinfo=UTC)


def flags(enabled: set[int] | None, size: int, base: int = 0) -> list[bool]:
    return [i + base in (enabled or set()) for i in range(size)]


def spec(
    start: datetime = PAST,
    *,
    minutes: set[int] | None = None,
    hours: set[int] | None = None,
    weekdays: set[int] | None = None,  # 0 = Sunday
    monthdays: set[int] | None = None,  # 1..31, 32 = last day
    months: set[int] | None = None,  # 1..12
    end: datetime | None = None,
    exceptions: list[tuple[date | None, time | None]] | None = None,
    jscid: int = 7,
) -> ScheduleSpec:
    row = (
        jscid,
        start,
        end,
        flags(minutes, 60),
        flags(hours, 24),
        flags(weekdays, 7),
        flags(monthdays, 32, 1),
        flags(months, 12, 1),
    )
    return ScheduleSpec.from_row(row, exceptions or [])


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_every_minute_is_the_next_minute() -> None:
    assert next_run(spec(), NOW, UTC_TZ) == utc(2030, 6, 12, 10, 18)
    assert next_run(spec(minutes=set(range(60))), NOW, UTC_TZ) == utc(2030, 6, 12, 10, 18)


def test_now_on_a_minute_boundary_still_moves_on() -> None:
    assert next_run(spec(), utc(2030, 6, 12, 10, 17), UTC_TZ) == utc(2030, 6, 12, 10, 18)


def test_minute_five() -> None:
    assert next_run(spec(minutes={5}), NOW, UTC_TZ) == utc(2030, 6, 12, 11, 5)


def test_daily_at_three() -> None:
    assert next_run(spec(minutes={0}, hours={3}), NOW, UTC_TZ) == utc(2030, 6, 13, 3, 0)


def test_hour_restriction_starts_at_the_first_allowed_minute() -> None:
    # pgAgent would answer 03:30 here (its minute search starts near the current minute)
    sched = spec(minutes={0, 30}, hours={3})
    assert next_run(sched, NOW, UTC_TZ) == utc(2030, 6, 13, 3, 0)


def test_monday_at_0930() -> None:
    assert next_run(spec(minutes={30}, hours={9}, weekdays={1}), NOW, UTC_TZ) == utc(
        2030, 6, 17, 9, 30
    )


def test_only_sunday_is_sunday_midnight() -> None:
    assert next_run(spec(weekdays={0}), NOW, UTC_TZ) == utc(2030, 6, 16, 0, 0)


def test_last_day_of_february_in_a_leap_year() -> None:
    sched = spec(datetime(2028, 2, 1, tzinfo=UTC), minutes={0}, hours={0}, monthdays={32})
    assert next_run(sched, NOW.replace(year=2027), UTC_TZ) == utc(2028, 2, 29)


def test_first_and_last_day_is_an_or() -> None:
    sched = spec(datetime(2031, 4, 5, tzinfo=UTC), minutes={0}, hours={0}, monthdays={1, 32})
    assert next_run(sched, NOW, UTC_TZ) == utc(2031, 4, 30)


def test_feb_29_that_is_a_monday() -> None:
    sched = spec(
        datetime(2073, 1, 1, tzinfo=UTC),
        minutes={0},
        hours={0},
        weekdays={1},
        monthdays={29},
        months={2},
    )
    assert next_run(sched, NOW, UTC_TZ) == utc(2112, 2, 29)


@pytest.mark.parametrize(
    ("monthdays", "months"),
    [({30}, {2}), ({31}, {4}), ({31}, {2, 4, 6, 9, 11}), ({30, 31}, {2})],
)
def test_impossible_dates_are_none_quickly(monthdays: set[int], months: set[int]) -> None:
    started = _time.perf_counter()
    assert next_run(spec(monthdays=monthdays, months=months), NOW, UTC_TZ) is None
    assert _time.perf_counter() - started < 1.0  # static check, not a 400-year walk


def test_possible_rare_date_is_found() -> None:
    # Apr 30 or Feb 30: April makes it possible
    assert next_run(spec(minutes={0}, hours={0}, monthdays={30}, months={2, 4}), NOW, UTC_TZ) == (
        utc(2031, 4, 30)
    )


def test_end_cuts_off() -> None:
    sched = spec(minutes={0}, hours={3}, end=utc(2030, 6, 13, 2, 59))
    assert next_run(sched, NOW, UTC_TZ) is None
    sched = spec(minutes={0}, hours={3}, end=utc(2030, 6, 13, 3, 0))
    assert next_run(sched, NOW, UTC_TZ) == utc(2030, 6, 13, 3, 0)


def test_end_in_the_past() -> None:
    assert next_run(spec(end=utc(2030, 1, 1)), NOW, UTC_TZ) is None


def test_start_in_the_future() -> None:
    start = utc(2031, 1, 1, 12, 0, 30)
    # the lower bound is the start truncated to the minute
    assert next_run(spec(start), NOW, UTC_TZ) == utc(2031, 1, 1, 12, 0)
    assert next_run(spec(start, minutes={15}), NOW, UTC_TZ) == utc(2031, 1, 1, 12, 15)


def test_exception_at_a_date_and_time() -> None:
    sched = spec(minutes={0}, hours={3}, exceptions=[(date(2030, 6, 13), time(3, 0))])
    assert next_run(sched, NOW, UTC_TZ) == utc(2030, 6, 14, 3, 0)


def test_exception_for_a_whole_day() -> None:
    sched = spec(minutes={0}, hours={3, 4}, exceptions=[(date(2030, 6, 13), None)])
    assert next_run(sched, NOW, UTC_TZ) == utc(2030, 6, 14, 3, 0)


def test_exception_at_a_time_of_every_day() -> None:
    sched = spec(minutes={0}, hours={3, 4}, exceptions=[(None, time(3, 0))])
    assert next_run(sched, NOW, UTC_TZ) == utc(2030, 6, 13, 4, 0)


def test_exception_times_compare_exactly() -> None:
    sched = spec(minutes={0}, hours={3}, exceptions=[(None, time(3, 0, 30))])
    assert next_run(sched, NOW, UTC_TZ) == utc(2030, 6, 13, 3, 0)


def test_exceptions_that_exclude_every_time_give_none() -> None:
    sched = spec(minutes={0}, hours={3}, exceptions=[(None, time(3, 0))])
    assert next_run(sched, NOW, UTC_TZ) is None


def test_exceptions_are_read_in_the_schedule_time_zone() -> None:
    # 03:00 New York on 2030-06-13 is 07:00 UTC
    sched = spec(minutes={0}, hours={3}, exceptions=[(date(2030, 6, 13), time(3, 0))])
    assert next_run(sched, NOW, NEW_YORK) == utc(2030, 6, 14, 7, 0)


def test_fields_are_wall_clock_in_the_time_zone() -> None:
    assert next_run(spec(minutes={0}, hours={3}), NOW, NEW_YORK) == utc(2030, 6, 13, 7, 0)
    kolkata = ZoneInfo("Asia/Kolkata")
    assert next_run(spec(minutes={0}, hours={3}), NOW, kolkata) == utc(2030, 6, 12, 21, 30)


def test_dst_gap_is_skipped() -> None:
    # 2030-03-10: New York springs forward from 02:00 to 03:00; 02:30 does not exist that day
    start = datetime(2030, 3, 10, 0, 0, tzinfo=NEW_YORK)
    result = next_run(spec(start, minutes={30}, hours={2}), NOW.replace(year=2029), NEW_YORK)
    assert result == datetime(2030, 3, 11, 2, 30, tzinfo=NEW_YORK)


def test_dst_ambiguous_hour_matches_twice() -> None:
    # 2030-11-03: New York falls back from 02:00 EDT to 01:00 EST; 01:30 occurs twice
    sched_at = spec(datetime(2030, 11, 3, 0, 0, tzinfo=NEW_YORK), minutes={30}, hours={1})
    first = next_run(sched_at, NOW, NEW_YORK)
    assert first == utc(2030, 11, 3, 5, 30)  # 01:30 EDT
    later = spec(utc(2030, 11, 3, 5, 31), minutes={30}, hours={1})
    assert next_run(later, NOW, NEW_YORK) == utc(2030, 11, 3, 6, 30)  # 01:30 EST
    after = spec(utc(2030, 11, 3, 6, 31), minutes={30}, hours={1})
    assert next_run(after, NOW, NEW_YORK) == utc(2030, 11, 4, 6, 30)  # next day


def test_dst_earlier_local_time_can_come_later() -> None:
    # from 01:45 EDT, the next 01:00 is 01:00 EST (06:00 UTC), before 01:30 EST
    sched = spec(utc(2030, 11, 3, 5, 45), minutes={0, 30}, hours={1})
    assert next_run(sched, NOW, NEW_YORK) == utc(2030, 11, 3, 6, 0)


def test_lord_howe_half_hour_dst() -> None:
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    # 2030-10-06 02:00 -> 02:30 (+10:30 -> +11): 02:15 does not exist
    start = datetime(2030, 10, 6, 0, 0, tzinfo=lord_howe)
    result = next_run(spec(start, minutes={15}, hours={2}), NOW, lord_howe)
    assert result == datetime(2030, 10, 7, 2, 15, tzinfo=lord_howe)


def test_santiago_midnight_gap() -> None:
    santiago = ZoneInfo("America/Santiago")
    # 2030-09-08 00:00 does not exist (clocks go from 24:00 Saturday to 01:00 Sunday)
    start = datetime(2030, 9, 7, 12, 0, tzinfo=santiago)
    result = next_run(spec(start, minutes={0}, hours={0}), NOW, santiago)
    assert result == datetime(2030, 9, 9, 0, 0, tzinfo=santiago)


def test_horizon_is_400_years() -> None:
    assert HORIZON.days == 146097
    # always in the DST gap: New York, 2nd Sunday of March at 02:30
    sched = spec(minutes={30}, hours={2}, weekdays={0}, monthdays=set(range(8, 15)), months={3})
    assert next_run(sched, NOW, NEW_YORK) is None


def test_next_run_for_schedules_takes_the_minimum() -> None:
    a = spec(minutes={0}, hours={3})
    b = spec(minutes={5})
    c = spec(monthdays={30}, months={2})
    assert next_run_for_schedules([a, b, c], NOW, UTC_TZ) == utc(2030, 6, 12, 11, 5)
    assert next_run_for_schedules([c], NOW, UTC_TZ) is None
    assert next_run_for_schedules([], NOW, UTC_TZ) is None


def test_from_row_is_tolerant() -> None:
    row = (3, PAST, None, [True, None], None, [None] * 7, [False] * 40, "junk")
    s = ScheduleSpec.from_row(row, [(None, None), ("bad", 5), (date(2030, 6, 12), None)])
    assert len(s.minutes) == 60 and s.minutes[0] and not any(s.minutes[1:])
    assert len(s.hours) == 24 and not any(s.hours)
    assert len(s.weekdays) == 7 and len(s.monthdays) == 32 and len(s.months) == 12
    assert s.exceptions[2] == ScheduleException(date(2030, 6, 12), None)
    assert next_run(s, NOW, UTC_TZ) == utc(2030, 6, 13, 0, 0)


def test_from_row_with_nulls_and_short_rows_never_raises() -> None:
    s = ScheduleSpec.from_row((None, None))
    assert next_run(s, NOW, UTC_TZ) is None
    assert describe(s)


def test_naive_datetimes_are_utc() -> None:
    s = spec(datetime(2031, 1, 1, 12, 0))
    assert next_run(s, NOW.replace(tzinfo=None), UTC_TZ) == utc(2031, 1, 1, 12, 0)


def test_far_future_start_never_raises() -> None:
    assert next_run(spec(datetime(9999, 12, 30, 23, 0, tzinfo=UTC)), NOW, UTC_TZ) == utc(
        9999, 12, 30, 23, 0
    )
    assert next_run(spec(datetime(9999, 12, 31, 12, 0, tzinfo=UTC)), NOW, UTC_TZ) is None
    kiritimati = ZoneInfo("Pacific/Kiritimati")  # UTC+14
    assert next_run(spec(datetime(9999, 12, 30, 9, 0, tzinfo=UTC)), NOW, kiritimati) is not None


def test_describe() -> None:
    text = describe(
        spec(
            minutes={0, 15, 30, 45},
            hours={9, 10, 11, 12, 17},
            weekdays={1, 2, 3, 4, 5},
            monthdays={1, 15, 32},
            months={1, 7},
            end=utc(2031, 1, 1),
            exceptions=[(None, time(9, 0))],
        )
    )
    assert text == (
        "schedule 7: every 15 minutes of hours 9-12,17 on day 1,15 and the last day of the "
        "month when it is a Mon-Fri in Jan,Jul from 2020-01-01T00:00+00:00 until "
        "2031-01-01T00:00+00:00 (1 exception)"
    )
    assert describe(spec()).startswith("schedule 7: every minute from ")
