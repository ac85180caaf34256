"""Differential test: cron expressions converted to pgAgent schedules, run through
pyagent.schedule, fire exactly when croniter's own iteration says they do.

Thousands of generated expressions (lists, ranges, steps, names, `L`, macros, the
day-of-month OR day-of-week rule), in zones with daylight saving time (30-minute DST
included), from random instants and from instants just before a DST change.

The one documented difference (docs/jobs.md, "Cron and daylight saving time"): a local
time that does not exist because the clock springs forward is skipped by pgAgent and
pyagent, while croniter fires once at the first instant after the gap. Such croniter times
are counted and skipped; every other time must be equal. At a fall-back both fire at
both instants of a repeated local time (no difference).
"""

from __future__ import annotations

import functools
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyagent import schedule as ps
from pyagent.jobs import cron

ZONES = (
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",  # 30-minute DST
    "America/Santiago",  # DST change at midnight
    "Asia/Kolkata",
)
DST_ZONES = ZONES[1:5]
RUNS_PER_EXPRESSION = 8
EXAMPLES = 1600
DST_EXAMPLES = 1000

OUTCOMES: Counter[str] = Counter()

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _value(lo: int, hi: int, names: tuple[str, ...] | None, base: int) -> st.SearchStrategy[str]:
    numbers = st.integers(lo, hi).map(str)
    if names is None:
        return numbers
    return st.one_of(numbers, st.integers(0, len(names) - 1).map(lambda i: names[i]))


@st.composite
def _element(
    draw: st.DrawFn, lo: int, hi: int, names: tuple[str, ...] | None = None, base: int = 0
) -> str:
    kind = draw(st.sampled_from(["value", "range", "step", "range_step", "start_step"]))
    if kind == "value":
        return draw(_value(lo, hi, names, base))
    a = draw(st.integers(lo, hi))
    b = draw(st.integers(a, hi))
    step = draw(st.integers(1, max(1, (hi - lo) // 2)))
    if kind == "range":
        if names is not None and draw(st.booleans()):
            return f"{names[a - base]}-{names[b - base]}"
        return f"{a}-{b}"
    if kind == "step":
        return f"*/{step}"
    if kind == "range_step":
        return f"{a}-{b}/{step}"
    return f"{a}/{step}"


def _field(
    lo: int, hi: int, names: tuple[str, ...] | None = None, base: int = 0
) -> st.SearchStrategy[str]:
    one = _element(lo, hi, names, base)
    return st.one_of(
        st.just("*"),
        one,
        st.lists(one, min_size=2, max_size=4).map(",".join),
    )


_DOM = st.one_of(
    _field(1, 31),
    st.sampled_from(["L", "1,L", "15-L", "L,10-12"]),
)


@st.composite
def cron_expressions(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from(sorted(cron.MACROS)))
    minute = draw(_field(0, 59))
    hour = draw(_field(0, 23))
    dom = draw(_DOM)
    month = draw(_field(1, 12, MONTH_NAMES, 1))
    dow = draw(_field(0, 6, DAY_NAMES))
    return f"{minute} {hour} {dom} {month} {dow}"


def _specs(expression: str) -> list[ps.ScheduleSpec] | None:
    fields = cron.from_cron(expression)
    if any(cron.never_matches(f) for f in fields):
        return None
    return [
        ps.ScheduleSpec(
            0,
            datetime(2000, 1, 1, tzinfo=UTC),
            None,
            f.minutes,
            f.hours,
            f.weekdays,
            f.monthdays,
            f.months,
        )
        for f in fields
    ]


def _is_gap_end(instant: datetime, tz: ZoneInfo) -> bool:
    """True when the clock sprang forward exactly at this instant."""
    before = (instant - timedelta(minutes=1)).astimezone(tz).utcoffset()
    after = instant.astimezone(tz).utcoffset()
    return before is not None and after is not None and after > before


def compare(expression: str, zone: str, start: datetime) -> None:
    """pyagent's next runs equal croniter's, except croniter's fire-after-the-gap times."""
    tz = ZoneInfo(zone)
    specs = _specs(expression)
    if specs is None:
        OUTCOMES["never runs (refused by validate)"] += 1
        return
    it = croniter(expression, start.astimezone(tz))
    now = start
    for _ in range(RUNS_PER_EXPRESSION):
        ours = ps.next_run_for_schedules(specs, now, tz)
        assert ours is not None, f"{expression!r} in {zone} from {now}: pyagent found no run"
        theirs = it.get_next(datetime).astimezone(UTC)
        while theirs != ours and _is_gap_end(theirs, tz) and theirs < ours:
            # croniter moved a local time inside a spring-forward gap to the gap's end;
            # pgAgent's rule (and pyagent's) is that a time that does not exist is skipped.
            assert ps.next_run_for_schedules(specs, theirs - timedelta(minutes=1), tz) != theirs
            OUTCOMES["croniter ran a skipped DST-gap time at the gap's end"] += 1
            theirs = it.get_next(datetime).astimezone(UTC)
        assert ours == theirs, (
            f"{expression!r} in {zone} after {now.astimezone(tz)}: "
            f"pyagent {ours.astimezone(tz)}, croniter {theirs.astimezone(tz)}"
        )
        OUTCOMES["equal"] += 1
        now = ours


@functools.cache
def dst_changes(zone: str) -> tuple[datetime, ...]:
    tz = ZoneInfo(zone)
    found = []
    t = datetime(2020, 1, 1, tzinfo=UTC)
    previous = t.astimezone(tz).utcoffset()
    while t < datetime(2031, 1, 1, tzinfo=UTC):
        t += timedelta(minutes=30)
        offset = t.astimezone(tz).utcoffset()
        if offset != previous:
            found.append(t)
            previous = offset
    return tuple(found)


_SETTINGS = {
    "deadline": None,
    "derandomize": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "database": None,
}


@settings(max_examples=EXAMPLES, **_SETTINGS)  # type: ignore[arg-type]
@given(
    expression=cron_expressions(),
    zone=st.sampled_from(ZONES),
    minutes=st.integers(0, 12 * 365 * 24 * 60),
)
def test_converted_cron_runs_when_croniter_says(expression: str, zone: str, minutes: int) -> None:
    compare(expression, zone, datetime(2020, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes))


@st.composite
def around_dst(draw: st.DrawFn) -> tuple[str, str, datetime]:
    """An expression whose hours include the hour of a DST change, from just before it."""
    zone = draw(st.sampled_from(DST_ZONES))
    change = draw(st.sampled_from(dst_changes(zone)))
    local_hour = (change - timedelta(minutes=1)).astimezone(ZoneInfo(zone)).hour
    hour = draw(
        st.sampled_from(
            [str(local_hour), f"{local_hour}-{min(local_hour + 1, 23)}", "*", f"{local_hour},23"]
        )
    )
    minute = draw(st.sampled_from(["*", "0", "30", "*/15", "15-45", "59", "0,30"]))
    rest = draw(st.sampled_from(["* * *", "* * *", "1-15 * *", "* * sun", "L * *"]))
    start = change - timedelta(minutes=draw(st.integers(1, 48 * 60)))
    return f"{minute} {hour} {rest}", zone, start


@settings(max_examples=DST_EXAMPLES, **_SETTINGS)  # type: ignore[arg-type]
@given(case=around_dst())
def test_converted_cron_across_dst_changes(case: tuple[str, str, datetime]) -> None:
    compare(*case)


@pytest.fixture(scope="module", autouse=True)
def _report() -> object:
    yield None
    total = sum(OUTCOMES.values())
    if total:
        print("\ncron differential:", dict(OUTCOMES))


def test_the_gap_policy_is_what_the_docs_say() -> None:
    """02:30 on the spring-forward day in New York does not exist: skipped, not moved."""
    tz = ZoneInfo("America/New_York")
    (spec,) = _specs("30 2 * * *") or []
    start = datetime(2021, 3, 13, 12, 0, tzinfo=UTC)
    ours = ps.next_run_for_schedules([spec], start, tz)
    assert ours is not None and ours.astimezone(tz) == datetime(2021, 3, 15, 2, 30, tzinfo=tz)
    theirs = croniter("30 2 * * *", start.astimezone(tz)).get_next(datetime)
    assert theirs.astimezone(tz).replace(tzinfo=None) == datetime(2021, 3, 14, 3, 0)


def test_a_repeated_local_time_runs_at_both_instants() -> None:
    """01:30 on the fall-back day in New York happens twice: both fire, in both."""
    tz = ZoneInfo("America/New_York")
    (spec,) = _specs("30 1 * * *") or []
    start = datetime(2021, 11, 7, 4, 0, tzinfo=UTC)  # 00:00 EDT
    first = ps.next_run_for_schedules([spec], start, tz)
    assert first is not None
    second = ps.next_run_for_schedules([spec], first, tz)
    assert second is not None and second - first == timedelta(hours=1)
    it = croniter("30 1 * * *", start.astimezone(tz))
    assert [it.get_next(datetime).astimezone(UTC) for _ in range(2)] == [first, second]
