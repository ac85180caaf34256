"""Differential tests of the next-run computation.

Three implementations must agree on every generated case:

* our PL/pgSQL ``pgagent.pga_next_schedule`` (sql/pga_next_schedule.sql),
* ``pyagent.schedule.next_run``,
* a brute-force oracle written here, independent of both: it walks local calendar dates one by
  one and, on dates that match, walks instants minute by minute with zoneinfo (jumping an hour
  at a time while the local hour cannot match), within the same 400-year horizon.

The same cases are then run through the real pgAgent 4.2 extension; its disagreements with the
oracle are counted by category, printed, and written to tests/.extension-disagreements.txt.
They never fail the test (they are pgAgent's known bugs), but a simple subset must agree.
"""

from __future__ import annotations

import calendar
import os
import re
import time as _time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyagent.schedule import ScheduleSpec, next_run

HORIZON = timedelta(days=146097)  # 400 Gregorian years
LATEST = datetime(9999, 12, 31, tzinfo=UTC)
N_CASES = int(os.environ.get("PYAGENT_NEXT_SCHEDULE_CASES", "3000"))
REPORT = Path(__file__).resolve().parents[1] / ".extension-disagreements.txt"
EXT_TIMEOUT_MS = 500

ZONES = (
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # 30-minute DST
    "America/Santiago",  # transitions at local midnight
    "America/Havana",  # fall-back from 01:00 to 00:00
    "Asia/Kolkata",  # +05:30, no DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "Antarctica/Troll",  # 2-hour DST step
)


# --------------------------------------------------------------------------------------------
# the oracle


@dataclass(frozen=True)
class Sched:
    """A schedule as sets of enabled values (an empty set = any value)."""

    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()  # 0 = Sunday
    monthdays: frozenset[int] = frozenset()  # 1..31, 32 = last day of the month
    months: frozenset[int] = frozenset()  # 1..12

    def arrays(self) -> list[list[bool]]:
        return [
            [i in self.minutes for i in range(60)],
            [i in self.hours for i in range(24)],
            [i in self.weekdays for i in range(7)],
            [i in self.monthdays for i in range(1, 33)],
            [i in self.months for i in range(1, 13)],
        ]


def _floor(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(second=0, microsecond=0)


def oracle(
    now: datetime,
    start: datetime | None,
    end: datetime | None,
    s: Sched,
    exceptions: list[tuple[date | None, time | None]],
    tz: ZoneInfo,
) -> datetime | None:
    if start is None:
        return None
    low = max(_floor(now) + timedelta(minutes=1), _floor(start))
    high = min(low + HORIZON, LATEST)
    if low >= high or (end is not None and end < low):
        return None
    whole_days = {d for d, t in exceptions if d is not None and t is None}
    at_minute = {(d, t) for d, t in exceptions if d is not None and t is not None}
    every_day = {t for d, t in exceptions if d is None and t is not None}

    if not any(
        (not s.hours or h in s.hours)
        and (not s.minutes or m in s.minutes)
        and time(h, m) not in every_day
        for h in range(24)
        for m in range(60)
    ):
        return None  # no time of day is left on any day

    def date_ok(d: date) -> bool:
        if s.months and d.month not in s.months:
            return False
        if s.monthdays:
            last = calendar.monthrange(d.year, d.month)[1]
            if d.day not in s.monthdays and not (32 in s.monthdays and d.day == last):
                return False
        if s.weekdays and (d.isoweekday() % 7) not in s.weekdays:
            return False
        return d not in whole_days

    def minute_ok(loc: datetime) -> bool:
        if s.minutes and loc.minute not in s.minutes:
            return False
        clock = time(loc.hour, loc.minute, loc.second)
        return (loc.date(), clock) not in at_minute and clock not in every_day

    def first_on(d: date) -> datetime | None:
        """The first instant >= low whose local reading is on date d and matches."""
        midnight = datetime.combine(d, time(), tzinfo=UTC)
        t = max(low, midnight - timedelta(hours=15))
        stop = midnight + timedelta(hours=37)
        while t <= stop:
            loc = t.astimezone(tz)
            hour_ok = loc.date() == d and (not s.hours or loc.hour in s.hours)
            if hour_ok and minute_ok(loc):
                return t
            if not hour_ok:
                step = timedelta(minutes=60 - loc.minute)
                ahead = (t + step).astimezone(tz)
                if ahead.replace(tzinfo=None) - loc.replace(tzinfo=None) == step:
                    t += step
                    continue
            t += timedelta(minutes=1)
        return None

    d = low.astimezone(tz).date() - timedelta(days=1)
    last_day = min(high, end) if end is not None else high
    stop_day = last_day.astimezone(tz).date() + timedelta(days=1)
    found: datetime | None = None
    found_day: date | None = None
    while d <= stop_day:
        if found_day is not None and d > found_day + timedelta(days=1):
            break
        if date_ok(d):
            hit = first_on(d)
            if hit is not None and (found is None or hit < found):
                found = hit
                found_day = found_day or d
        d += timedelta(days=1)
    if found is None or found >= high or (end is not None and found > end):
        return None
    return found


# --------------------------------------------------------------------------------------------
# generated cases


def _transitions(zone: str, first_year: int, years: int) -> list[datetime]:
    """UTC instants (to the minute) where the zone's UTC offset changes."""
    tz = ZoneInfo(zone)
    out: list[datetime] = []
    t = datetime(first_year, 1, 1, tzinfo=UTC)
    end = datetime(first_year + years, 1, 1, tzinfo=UTC)
    step = timedelta(hours=12)
    while t < end:
        if t.astimezone(tz).utcoffset() != (t + step).astimezone(tz).utcoffset():
            lo, hi = t, t + step
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(second=0, microsecond=0)
                if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
                    lo = mid if mid > lo else lo + timedelta(minutes=1)
                else:
                    hi = mid
            out.append(hi)
        t += step
    return out


_YEAR = datetime.now(UTC).year
ANCHORS: dict[str, list[datetime]] = {
    zone: _transitions(zone, _YEAR + 1, 3) or [datetime(_YEAR + 1, 3, 1, tzinfo=UTC)]
    for zone in ZONES
}
CALENDAR_ANCHORS = [
    datetime(y, m, d, tzinfo=UTC)
    for (y, m, d) in [
        (_YEAR + 1, 2, 27),
        (_YEAR + 2, 2, 27),
        (_YEAR + 1 + (4 - (_YEAR + 1) % 4) % 4, 2, 27),  # a leap year
        (2096, 2, 27),
        (2100, 2, 27),  # not a leap year
        (_YEAR + 1, 4, 29),
        (_YEAR + 1, 12, 30),
    ]
]


@dataclass(frozen=True)
class Case:
    zone: str
    sched: Sched
    start_abs: datetime | None  # absolute start, or
    start_rel: timedelta  # start relative to now (when start_abs is None)
    end_rel: timedelta | None  # end relative to start
    exceptions: tuple[tuple[int | None, tuple[int, int, int] | None], ...] = field(default=())
    # exception = (day offset from the lower bound's local date | None, (h, m, s) | None)

    def concrete_exceptions(self, approx_now: datetime) -> list[tuple[date | None, time | None]]:
        start = self.start_abs or approx_now + self.start_rel
        low = max(approx_now, start).astimezone(ZoneInfo(self.zone)).date()
        out: list[tuple[date | None, time | None]] = []
        for off, hms in self.exceptions:
            pair = (
                None if off is None else low + timedelta(days=off),
                None if hms is None else time(*hms),
            )
            if pair not in out:
                out.append(pair)
        return out


def _flag_sets(size: int, base: int, favourites: list[int]) -> st.SearchStrategy[frozenset[int]]:
    values = st.integers(base, base + size - 1)
    return st.one_of(
        st.just(frozenset()),
        st.just(frozenset()),
        st.frozensets(st.sampled_from(favourites), min_size=1, max_size=3),
        st.frozensets(values, min_size=1, max_size=4),
    )


# Strategies are built once: building them inside the composite on every draw is slow.
_EMPTY = st.just(frozenset[int]())
_MINUTES = st.one_of(
    _flag_sets(60, 0, [0, 1, 15, 30, 45, 59]),
    st.sampled_from([frozenset(range(0, 60, 5)), frozenset(range(60))]),
)
_HOURS = _flag_sets(24, 0, [0, 1, 2, 3, 4, 12, 22, 23])
_WEEKDAYS = st.one_of(_EMPTY, _flag_sets(7, 0, [0, 1, 6]))
_MONTHDAYS = st.one_of(_EMPTY, _flag_sets(32, 1, [1, 28, 29, 30, 31, 32]))
_MONTHS = st.one_of(_EMPTY, _flag_sets(12, 1, [1, 2, 3, 4, 10, 11]))
_ZONE = st.sampled_from(ZONES)
_START_ANCHOR = {zone: st.sampled_from(ANCHORS[zone] + CALENDAR_ANCHORS) for zone in ZONES}
_SECONDS = st.integers(0, 59)
_FOCUS = st.booleans()
_REL_START = st.integers(-20 * 1440, 2 * 1440)
_ABS_OFFSET = st.one_of(st.integers(-36 * 60, 36 * 60), st.integers(-150, 30))
_END = st.one_of(st.none(), st.none(), st.integers(-60, 60 * 1440))
_N_EXC = st.sampled_from([0, 0, 0, 1, 2, 4])
_EXC_DAYS = st.integers(-1, 10)
_EXC_KIND = st.sampled_from(["date", "time", "both", "both"])
_INDEX = st.integers(0, 10_000)
_EXC_SECOND = st.sampled_from([0, 0, 0, 30])


@st.composite
def cases(draw: st.DrawFn) -> Case:
    zone = draw(_ZONE)
    sched = Sched(
        minutes=draw(_MINUTES),
        hours=draw(_HOURS),
        weekdays=draw(_WEEKDAYS),
        monthdays=draw(_MONTHDAYS),
        months=draw(_MONTHS),
    )
    seconds = timedelta(seconds=draw(_SECONDS))
    if draw(st.booleans()):
        start_abs = None
        start_rel = timedelta(minutes=draw(_REL_START)) + seconds
    else:
        anchor = draw(_START_ANCHOR[zone])
        start_abs = anchor + timedelta(minutes=draw(_ABS_OFFSET)) + seconds
        start_rel = timedelta(0)
        if anchor in ANCHORS[zone] and draw(_FOCUS):
            # aim at the transition: only the local hours just before and just after it
            tz = ZoneInfo(zone)
            before = (anchor - timedelta(minutes=1)).astimezone(tz).hour
            after = anchor.astimezone(tz).hour
            sched = Sched(sched.minutes, frozenset({before, after}))
    end_minutes = draw(_END)
    end_rel = None if end_minutes is None else timedelta(minutes=end_minutes, seconds=30)

    def pick(chosen: frozenset[int], size: int) -> int:
        options = sorted(chosen) if chosen else list(range(size))
        return options[draw(_INDEX) % len(options)]

    exceptions = []
    for _ in range(draw(_N_EXC)):
        kind = draw(_EXC_KIND)
        day = None if kind == "time" else draw(_EXC_DAYS)
        hms = None
        if kind != "date":
            hms = (pick(sched.hours, 24), pick(sched.minutes, 60), draw(_EXC_SECOND))
        exceptions.append((day, hms))
    return Case(zone, sched, start_abs, start_rel, end_rel, tuple(exceptions))


CASE_SETTINGS = settings(
    max_examples=N_CASES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _run_generated(check: Callable[[Case], None]) -> None:
    """Run `check` on the generated cases: the same sequence for every caller."""

    @CASE_SETTINGS
    @given(case=cases())
    def run(case: Case) -> None:
        check(case)

    run()


# --------------------------------------------------------------------------------------------
# evaluation in a database


def _utc(value: object) -> datetime | None:
    """Database timestamps in UTC: Python compares two datetimes that share a tzinfo by wall
    clock, which is wrong around a fall-back."""
    return value.astimezone(UTC) if isinstance(value, datetime) else None


@dataclass
class Evaluated:
    now: datetime
    start: datetime
    end: datetime | None
    exceptions: list[tuple[date | None, time | None]]
    result: datetime | None = None
    error: str | None = None


SELECT = """
SELECT now(), s, e, pgagent.pga_next_schedule(1, s, e, %(mi)s, %(hr)s, %(wd)s, %(md)s, %(mo)s)
  FROM (SELECT s, s + %(end)s::interval AS e
          FROM (SELECT coalesce(%(abs)s::timestamptz, now() + %(rel)s::interval) AS s) AS a) AS b
"""


def _prepare(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute("DELETE FROM pgagent.pga_exception")
    conn.execute("DELETE FROM pgagent.pga_schedule")
    conn.execute("DELETE FROM pgagent.pga_job")
    conn.execute(
        "INSERT INTO pgagent.pga_job (jobid, jobjclid, jobname, jobenabled) VALUES (1, 1, 'p', false)"
    )
    conn.execute(
        "INSERT INTO pgagent.pga_schedule (jscid, jscjobid, jscname, jscenabled) "
        "VALUES (1, 1, 'p', false)"
    )


def evaluate(conn: psycopg.Connection[tuple[object, ...]], case: Case) -> Evaluated:
    exceptions = case.concrete_exceptions(datetime.now(UTC))
    conn.execute("SELECT set_config('TimeZone', %s, false)", [case.zone])
    conn.execute("DELETE FROM pgagent.pga_exception")
    if exceptions:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO pgagent.pga_exception (jexscid, jexdate, jextime) VALUES (1, %s, %s)",
                exceptions,
            )
    mi, hr, wd, md, mo = case.sched.arrays()
    params = {
        "mi": mi,
        "hr": hr,
        "wd": wd,
        "md": md,
        "mo": mo,
        "end": case.end_rel,
        "abs": case.start_abs,
        "rel": case.start_rel,
    }
    try:
        row = conn.execute(SELECT, params).fetchone()
    except psycopg.Error as exc:
        row = conn.execute(
            "SELECT now(), s, s + %(end)s::interval FROM "
            "(SELECT coalesce(%(abs)s::timestamptz, now() + %(rel)s::interval) AS s) AS a",
            params,
        ).fetchone()
        assert row is not None
        msg = (exc.diag.message_primary or str(exc)).strip()
        return Evaluated(_utc(row[0]), _utc(row[1]), _utc(row[2]), exceptions, error=msg)  # type: ignore[arg-type]
    assert row is not None
    return Evaluated(_utc(row[0]), _utc(row[1]), _utc(row[2]), exceptions, _utc(row[3]))  # type: ignore[arg-type]


def _spec(case: Case, ev: Evaluated) -> ScheduleSpec:
    mi, hr, wd, md, mo = case.sched.arrays()
    return ScheduleSpec.from_row((1, ev.start, ev.end, mi, hr, wd, md, mo), ev.exceptions)


def _show(t: datetime | None, tz: ZoneInfo) -> str:
    return "NULL" if t is None else t.astimezone(tz).isoformat()


# --------------------------------------------------------------------------------------------
# tests


@pytest.fixture
def our_conn(db: object) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with db.connect() as conn:  # type: ignore[attr-defined]
        _prepare(conn)
        yield conn


def test_oracle_examples() -> None:
    """The oracle itself, on hand-checked examples."""
    utc, ny = ZoneInfo("UTC"), ZoneInfo("America/New_York")
    now = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)
    assert oracle(now, now, None, Sched(), [], utc) == datetime(2030, 1, 1, 12, 1, tzinfo=UTC)
    feb29 = Sched(frozenset({0}), frozenset({0}), frozenset({1}), frozenset({29}), frozenset({2}))
    assert oracle(now, now, None, feb29, [], utc) == datetime(2044, 2, 29, tzinfo=UTC)
    gap = Sched(frozenset({30}), frozenset({2}))
    start = datetime(2030, 3, 10, 5, tzinfo=UTC)  # 2030-03-10 00:00 EST, spring-forward day
    assert oracle(now, start, None, gap, [], ny) == datetime(2030, 3, 11, 6, 30, tzinfo=UTC)
    amb = Sched(frozenset({30}), frozenset({1}))
    start = datetime(2030, 11, 3, 5, 45, tzinfo=UTC)  # 01:45 EDT, before the fall-back
    assert oracle(now, start, None, amb, [], ny) == datetime(2030, 11, 3, 6, 30, tzinfo=UTC)
    feb30 = Sched(monthdays=frozenset({30}), months=frozenset({2}))
    assert oracle(now, now, None, feb30, [], utc) is None


def test_sql_python_and_oracle_agree(our_conn: psycopg.Connection[tuple[object, ...]]) -> None:
    seen = Counter[str]()

    def check(case: Case) -> None:
        tz = ZoneInfo(case.zone)
        ev = evaluate(our_conn, case)
        assert ev.error is None, f"{case}: {ev.error}"
        expected = oracle(ev.now, ev.start, ev.end, case.sched, ev.exceptions, tz)
        python = next_run(_spec(case, ev), ev.now, tz)
        detail = (
            f"{case}\nnow={ev.now} start={ev.start} end={ev.end} exc={ev.exceptions}\n"
            f"sql={_show(ev.result, tz)} python={_show(python, tz)} oracle={_show(expected, tz)}"
        )
        assert ev.result == expected, detail
        assert python == expected, detail
        seen["cases"] += 1
        seen["null" if expected is None else "found"] += 1
        if ev.exceptions:
            seen["with exceptions"] += 1
        if expected is not None:
            wall = expected.astimezone(tz).replace(tzinfo=None)
            occurrences = sorted({wall.replace(tzinfo=tz, fold=f).astimezone(UTC) for f in (0, 1)})
            if len(occurrences) == 2:
                which = "first" if occurrences[0] == expected else "second"
                seen[f"result is the {which} occurrence of a repeated local time"] += 1
        if (
            expected is not None
            and expected.astimezone(tz).utcoffset()
            != (expected - timedelta(hours=3)).astimezone(tz).utcoffset()
        ):
            seen["result within 3 h after an offset change"] += 1

    _run_generated(check)
    print("generated cases:", dict(seen))
    assert seen["cases"] >= N_CASES
    assert seen["found"] > N_CASES // 2
    # the generator must keep reaching both instants of repeated (fall-back) local times
    assert seen["result is the first occurrence of a repeated local time"] > 0
    assert seen["result is the second occurrence of a repeated local time"] > 0


# --- the real extension ---------------------------------------------------------------------


def _category(case: Case, ev: Evaluated, expected: datetime | None) -> str | None:
    if ev.error is not None:
        if "canceling statement due to statement timeout" in ev.error:
            return f"error: timeout (> {EXT_TIMEOUT_MS} ms, would run until smallint overflow)"
        # drop the offending value, e.g. date/time field value out of range: "2027-2-29 0:0"
        return "error: " + ev.error.split(":")[0]
    if ev.result == expected:
        return None
    if expected is None:
        return "returns a time, oracle NULL"
    if ev.result is None:
        return "returns NULL, oracle a time"
    if ev.result < expected:
        return "returns an earlier time"
    s = case.sched
    if not (s.minutes or s.hours or s.weekdays or s.monthdays or s.months):
        return "returns a later time: all-empty schedule"
    tz = ZoneInfo(case.zone)
    got, want = ev.result.astimezone(tz), expected.astimezone(tz)
    if got.date() != want.date():
        return "returns a later time: a later day"
    if got.hour != want.hour:
        return "returns a later time: same day, a later hour"
    return "returns a later time: same hour, a later minute"


def _features(case: Case, ev: Evaluated, tz: ZoneInfo) -> list[str]:
    s = case.sched
    out = []
    if not (s.minutes or s.hours or s.weekdays or s.monthdays or s.months):
        out.append("all-empty")
    if s.weekdays:
        out.append("weekdays")
    if s.monthdays & {29, 30, 31}:
        out.append("monthday 29-31")
    if 32 in s.monthdays:
        out.append("last-day" + (" + other days" if len(s.monthdays) > 1 else ""))
    if s.months:
        out.append("months")
    if ev.exceptions:
        out.append("exceptions")
    if case.end_rel is not None:
        out.append("end")
    probe = ev.start if case.start_abs else ev.now
    offsets = {(probe + timedelta(hours=h)).astimezone(tz).utcoffset() for h in range(-3, 40)}
    if len(offsets) > 1:
        out.append("near offset change")
    return out


def test_extension_disagreements_are_reported(ext_db: object) -> None:
    categories = Counter[str]()
    features = Counter[str]()
    examples: dict[str, list[str]] = {}
    simple_mismatches: list[str] = []
    total = 0
    with ext_db.connect() as conn:  # type: ignore[attr-defined]
        _prepare(conn)
        conn.execute(f"SET statement_timeout = {EXT_TIMEOUT_MS}")

        def check(case: Case) -> None:
            nonlocal total
            total += 1
            tz = ZoneInfo(case.zone)
            ev = evaluate(conn, case)
            expected = oracle(ev.now, ev.start, ev.end, case.sched, ev.exceptions, tz)
            cat = _category(case, ev, expected)
            s = case.sched
            # pgAgent gets these right: one allowed minute (or no hour restriction), no other
            # field, no exception, a zone without DST
            simple = (
                (len(s.minutes) == 1 or (s.minutes and not s.hours))
                and not (s.weekdays or s.monthdays or s.months or ev.exceptions)
                and case.zone in ("UTC", "Asia/Kolkata")
            )
            if cat is None:
                return
            if simple:
                simple_mismatches.append(f"{case} -> {cat}")
            categories[cat] += 1
            for feat in _features(case, ev, tz):
                features[f"{cat} | {feat}"] += 1
            if len(examples.setdefault(cat, [])) < 4:
                examples[cat].append(
                    f"TimeZone={case.zone} minutes={sorted(s.minutes)} hours={sorted(s.hours)} "
                    f"weekdays(0=Sun)={sorted(s.weekdays)} monthdays(32=last)={sorted(s.monthdays)} "
                    f"months={sorted(s.months)} exceptions={ev.exceptions} now={ev.now:%Y-%m-%d %H:%M:%S%z} "
                    f"start={ev.start:%Y-%m-%d %H:%M:%S%z} end={ev.end}: pgAgent={_show(ev.result, tz)} "
                    f"oracle={_show(expected, tz)}"
                )

        started = _time.monotonic()
        _run_generated(check)
        elapsed = _time.monotonic() - started

    lines = [
        f"pgAgent 4.2 extension vs the oracle: {sum(categories.values())} of {total} generated "
        f"cases disagree ({elapsed:.0f} s)",
        "",
        "By category:",
        *(f"  {n:5d}  {cat}" for cat, n in categories.most_common()),
        "",
        "By category and schedule feature (a case counts once per feature it has):",
        *(f"  {n:5d}  {key}" for key, n in sorted(features.items())),
        "",
        "Examples:",
    ]
    for cat, items in examples.items():
        lines.append(f"  [{cat}]")
        lines.extend(f"    {item}" for item in items)
    text = "\n".join(lines) + "\n"
    REPORT.write_text(text, encoding="utf-8")
    print(text)
    assert total >= N_CASES
    assert not simple_mismatches, simple_mismatches[:5]


SIMPLE = [
    Sched(),
    Sched(minutes=frozenset(range(60))),
    Sched(minutes=frozenset({5})),
    Sched(minutes=frozenset({0}), hours=frozenset({3})),
    Sched(minutes=frozenset({15}), hours=frozenset(range(9, 18))),
    Sched(minutes=frozenset({10, 40})),
    Sched(minutes=frozenset({0}), hours=frozenset({0}), monthdays=frozenset({1})),
]


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_extension_agrees_on_simple_schedules(ext_db: object, zone: str) -> None:
    with ext_db.connect() as conn:  # type: ignore[attr-defined]
        _prepare(conn)
        for sched in SIMPLE[1:]:
            case = Case(zone, sched, None, timedelta(days=-1), None)
            ev = evaluate(conn, case)
            assert ev.error is None
            expected = oracle(ev.now, ev.start, ev.end, sched, [], ZoneInfo(zone))
            assert ev.result == expected, sched
        # the all-empty schedule: pgAgent's quirk, two minutes ahead instead of one
        ev = evaluate(conn, Case(zone, SIMPLE[0], None, timedelta(days=-1), None))
        assert ev.result == _floor(ev.now) + timedelta(minutes=2)


# --- fixed examples of our SQL function ------------------------------------------------------


def _next(
    conn: psycopg.Connection[tuple[object, ...]],
    zone: str,
    start: str,
    sched: Sched,
    end: str | None = None,
) -> datetime | None:
    conn.execute("SELECT set_config('TimeZone', %s, false)", [zone])
    row = conn.execute(
        "SELECT pgagent.pga_next_schedule(1, %s::timestamptz, %s::timestamptz, %s, %s, %s, %s, %s)",
        [start, end, *sched.arrays()],
    ).fetchone()
    assert row is not None
    return _utc(row[0])


def test_sql_examples(our_conn: psycopg.Connection[tuple[object, ...]]) -> None:
    c = our_conn
    at = Sched(frozenset({30}), frozenset({1}))
    # New York falls back on 2030-11-03: 01:30 EDT (05:30Z), then 01:30 EST (06:30Z)
    assert _next(c, "America/New_York", "2030-11-03 00:00-04", at) == datetime(
        2030, 11, 3, 5, 30, tzinfo=UTC
    )
    assert _next(c, "America/New_York", "2030-11-03 05:31+00", at) == datetime(
        2030, 11, 3, 6, 30, tzinfo=UTC
    )
    two = Sched(frozenset({0, 30}), frozenset({1}))
    assert _next(c, "America/New_York", "2030-11-03 05:45+00", two) == datetime(
        2030, 11, 3, 6, 0, tzinfo=UTC
    )
    # spring forward on 2030-03-10: 02:30 does not exist, so the next day
    gap = Sched(frozenset({30}), frozenset({2}))
    assert _next(c, "America/New_York", "2030-03-10 00:00-05", gap) == datetime(
        2030, 3, 11, 6, 30, tzinfo=UTC
    )
    # Santiago: 2030-09-08 00:00 does not exist
    midnight = Sched(frozenset({0}), frozenset({0}))
    assert _next(c, "America/Santiago", "2030-09-07 12:00-04", midnight) == datetime(
        2030, 9, 9, 3, 0, tzinfo=UTC
    )
    # Lord Howe: 2030-10-06 02:00 -> 02:30, so 02:15 on the 7th (+11:00)
    quarter = Sched(frozenset({15}), frozenset({2}))
    assert _next(c, "Australia/Lord_Howe", "2030-10-06 00:00+10:30", quarter) == datetime(
        2030, 10, 6, 15, 15, tzinfo=UTC
    )
    # Feb 29 that is a Monday, from 2073: 2112
    feb29 = Sched(frozenset({0}), frozenset({0}), frozenset({1}), frozenset({29}), frozenset({2}))
    assert _next(c, "UTC", "2073-01-01 00:00+00", feb29) == datetime(2112, 2, 29, tzinfo=UTC)
    # {1, last}: the last day matches too
    first_last = Sched(frozenset({0}), frozenset({0}), monthdays=frozenset({1, 32}))
    assert _next(c, "UTC", "2031-04-05 00:00+00", first_last) == datetime(2031, 4, 30, tzinfo=UTC)
    # impossible, and cut off by the end
    assert (
        _next(c, "UTC", "2031-01-01", Sched(monthdays=frozenset({30}), months=frozenset({2})))
        is None
    )
    assert _next(c, "UTC", "2031-01-01 00:00:30+00", midnight, "2031-01-01 00:00:10+00") == (
        datetime(2031, 1, 1, tzinfo=UTC)
    )
    assert _next(c, "UTC", "2031-01-01 00:00:30+00", midnight, "2030-12-31 23:59:59+00") is None
    # always in the DST gap (second Sunday of March, 02:30, New York): nothing within 400 years
    never = Sched(
        frozenset({30}), frozenset({2}), frozenset({0}), frozenset(range(8, 15)), frozenset({3})
    )
    assert _next(c, "America/New_York", "2030-01-01", never) is None


ODD_ARRAYS = [
    "NULL",
    "'{}'",
    "'{t}'",
    "'{NULL,t,NULL}'",
    "'[0:2]={t,t,t}'",
    "'{{t,f},{f,t}}'",
    "array_fill(true, ARRAY[100])",
]
ODD_TIMES = [
    "NULL",
    "'infinity'",
    "'-infinity'",
    "now()",
    "'9999-12-30 23:59+00'",
    "'294000-01-01'",
    "'4000-01-01 BC'",
]


def test_sql_never_raises_on_odd_input(our_conn: psycopg.Connection[tuple[object, ...]]) -> None:
    c = our_conn
    c.execute(
        "INSERT INTO pgagent.pga_exception (jexscid, jexdate, jextime) VALUES "
        "(1, 'infinity', '03:00'), (1, '5874897-12-31', NULL), (1, '5874897-12-30', '23:59'), "
        "(1, NULL, '24:00'), (1, '2000-01-01', '24:00'), (1, NULL, '12:00:00.5')"
    )
    for zone in ("UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago"):
        c.execute("SELECT set_config('TimeZone', %s, false)", [zone])
        for start in ODD_TIMES:
            for end in ODD_TIMES:
                c.execute(
                    f"SELECT pgagent.pga_next_schedule(1, {start}, {end}, NULL, NULL, NULL, NULL, NULL)"
                )
        for arr in ODD_ARRAYS:
            for pos in range(5):
                args = ["NULL"] * 5
                args[pos] = arr
                c.execute(f"SELECT pgagent.pga_next_schedule(NULL, now(), NULL, {', '.join(args)})")


def test_sql_function_definition(our_conn: psycopg.Connection[tuple[object, ...]]) -> None:
    row = our_conn.execute(
        "SELECT p.prosrc, l.lanname, p.provolatile, obj_description(p.oid, 'pg_proc') "
        "FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
        "WHERE p.oid = 'pgagent.pga_next_schedule(int4, timestamptz, timestamptz, bool[], bool[], "
        "bool[], bool[], bool[])'::regprocedure"
    ).fetchone()
    assert row is not None
    src, lang, volatile, comment = row
    assert (lang, volatile, comment) == (
        "plpgsql",
        "v",
        "Calculates the next runtime for a given schedule",
    )
    # no subtransactions (pgAdmin finds new rows through xmin)
    assert re.search(r"\bEXCEPTION\s+WHEN\b", str(src), re.IGNORECASE) is None
