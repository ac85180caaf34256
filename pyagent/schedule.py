"""Next-run computation for pgAgent schedules, in Python.

This is the twin of ``pgagent.pga_next_schedule`` as shipped in ``sql/pga_next_schedule.sql``
and has the same semantics:

* The result is the earliest whole-minute instant that is not before
  ``max(floor_minute(now) + 1 minute, floor_minute(start))`` and whose wall-clock reading in
  ``tz`` matches every field of the schedule. A field with no enabled value matches anything.
  Monthday slot 32 ("last day of the month") adds the last day of each month to the enabled
  days, also when other days are enabled.
* Exceptions: (date, time) excludes that local minute, (date, None) that whole local day,
  (None, time) that local time on every day. Times compare exactly (seconds included).
* The result is at most ``end`` when an end is set, and earlier than the search horizon:
  146,097 days (exactly 400 Gregorian years, after which every calendar pattern repeats) after
  the lower bound, and never later than 9999-12-31 00:00 UTC.
* DST: matching is defined over instants. A local time inside a spring-forward gap never
  matches; a local time that occurs twice at a fall-back matches at both instants, and the
  earliest one not before the lower bound is returned.

Like the SQL function, the scan of local times starts early enough to see a fall-back within
the next day; this assumes a zone changes its offset at most once a day and by less than a
day, which holds for every tzdata zone in use. tests/integration/test_next_schedule.py checks
both against a brute-force oracle.

Nothing here raises for odd input: bad values make the schedule match nothing (``None``).
"""

from __future__ import annotations

import bisect
import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Protocol

__all__ = [
    "HORIZON",
    "ScheduleArrays",
    "ScheduleException",
    "ScheduleSpec",
    "describe",
    "in_words",
    "next_run",
    "next_run_for_schedules",
]

#: How far ahead the search goes: 400 Gregorian years, exactly.
HORIZON = timedelta(days=146097)
#: Nothing later than this is ever returned (Python's datetime stops at year 9999).
LATEST = datetime(9999, 12, 31, tzinfo=UTC)

_LENGTHS = {"minutes": 60, "hours": 24, "weekdays": 7, "monthdays": 32, "months": 12}
_MONTH_LEN = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MAX_MONTH_LEN = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DAY_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LAST = 31  # monthdays index meaning "last day of the month"


class ScheduleArrays(Protocol):
    """Anything holding a pgAgent schedule's five arrays (a stored row, a ScheduleSpec, the
    arrays a job file gives)."""

    @property
    def minutes(self) -> Sequence[bool]: ...
    @property
    def hours(self) -> Sequence[bool]: ...
    @property
    def weekdays(self) -> Sequence[bool]: ...
    @property
    def monthdays(self) -> Sequence[bool]: ...
    @property
    def months(self) -> Sequence[bool]: ...


@dataclass(frozen=True)
class ScheduleException:
    """A row of pgagent.pga_exception: a local date, a local time of day, or both."""

    date: date | None
    time: time | None


@dataclass(frozen=True)
class ScheduleSpec:
    """One row of pgagent.pga_schedule with its exceptions.

    The flag tuples have fixed lengths: minutes 60 (index i = minute i), hours 24, weekdays 7
    (index 0 = Sunday), monthdays 32 (index 31 = last day of the month), months 12 (index 0 =
    January).
    """

    jscid: int
    start: datetime
    end: datetime | None
    minutes: tuple[bool, ...]
    hours: tuple[bool, ...]
    weekdays: tuple[bool, ...]
    monthdays: tuple[bool, ...]
    months: tuple[bool, ...]
    exceptions: tuple[ScheduleException, ...] = ()

    @classmethod
    def from_row(
        cls, row: Sequence[object], exceptions: Iterable[Sequence[object]] = ()
    ) -> ScheduleSpec:
        """Build a spec from ``SELECT jscid, jscstart, jscend, jscminutes, jschours,
        jscweekdays, jscmonthdays, jscmonths FROM pgagent.pga_schedule`` and the
        ``(jexdate, jextime)`` pairs of its exceptions.

        Tolerant of bad data: NULL arrays, NULL elements and missing positions are false,
        extra positions are ignored, a NULL or unusable start makes a spec that never runs.
        """
        values = list(row)[:8]
        values += [None] * (8 - len(values))
        jscid, start, end, minutes, hours, weekdays, monthdays, months = values
        excs: list[ScheduleException] = []
        for exc in exceptions:
            pair = [*list(exc)[:2], None, None]
            d, t = pair[0], pair[1]
            excs.append(
                ScheduleException(
                    d if isinstance(d, date) and not isinstance(d, datetime) else None,
                    t if isinstance(t, time) else None,
                )
            )
        start_dt = _aware(start)
        return cls(
            jscid=jscid if isinstance(jscid, int) else 0,
            start=start_dt if start_dt is not None else LATEST,
            end=_aware(end),
            minutes=_flags(minutes, _LENGTHS["minutes"]),
            hours=_flags(hours, _LENGTHS["hours"]),
            weekdays=_flags(weekdays, _LENGTHS["weekdays"]),
            monthdays=_flags(monthdays, _LENGTHS["monthdays"]),
            months=_flags(months, _LENGTHS["months"]),
            exceptions=tuple(excs),
        )


def _aware(value: object) -> datetime | None:
    """An aware datetime in UTC (naive values are taken as UTC); None if unusable.

    UTC matters: Python compares two datetimes sharing one tzinfo by wall clock, ignoring
    the UTC offset, which is wrong around a fall-back.
    """
    if not isinstance(value, datetime):
        return None
    try:
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        return LATEST if value.year > 1 else None


def _flags(value: object, length: int) -> tuple[bool, ...]:
    items: list[object] = list(value) if isinstance(value, list | tuple) else []
    items = items[:length] + [False] * (length - len(items))
    return tuple(item is True for item in items)


def _norm(flags: Sequence[object], length: int) -> tuple[bool, ...]:
    """Fixed length; all false (no restriction) becomes all true."""
    fixed = _flags(list(flags), length)
    return fixed if any(fixed) else (True,) * length


def _floor_minute(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    return value.replace(second=0, microsecond=0)


def _offset(instant: datetime, tz: tzinfo) -> timedelta:
    return instant.astimezone(tz).utcoffset() or timedelta(0)


def _instants(local: datetime, tz: tzinfo) -> list[datetime]:
    """The UTC instants whose wall-clock reading in tz is `local` (naive): 0, 1 or 2."""
    found: list[datetime] = []
    for fold in (0, 1):
        instant = local.replace(tzinfo=tz, fold=fold).astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) == local and instant not in found:
            found.append(instant)
    found.sort()
    return found


def _month_len(year: int, month: int) -> int:
    if month == 2 and calendar.isleap(year):
        return 29
    return _MONTH_LEN[month - 1]


class _Plan:
    """The per-call precomputation: normalised fields and exception lookups."""

    def __init__(self, spec: ScheduleSpec) -> None:
        self.months = _norm(spec.months, 12)
        self.weekdays = _norm(spec.weekdays, 7)
        days = _flags(list(spec.monthdays), 32)
        self.last = days[31]
        self.any_day = not any(days)
        self.days = (True,) * 31 if self.any_day else days[:31]
        minutes = _norm(spec.minutes, 60)
        hours = _norm(spec.hours, 24)
        self.day_exc: set[date] = set()
        self.minute_exc: set[datetime] = set()
        time_exc: set[int] = set()
        for exc in spec.exceptions:
            if not isinstance(exc, ScheduleException):
                continue
            d, t = exc.date, exc.time
            if isinstance(t, time) and t.tzinfo is not None:
                continue  # never equal to a local time of day
            if isinstance(d, date) and not isinstance(d, datetime):
                if t is None:
                    self.day_exc.add(d)
                elif isinstance(t, time):
                    self.minute_exc.add(datetime.combine(d, t))
            elif d is None and isinstance(t, time) and t.second == 0 and t.microsecond == 0:
                time_exc.add(t.hour * 60 + t.minute)
        self.times = [
            h * 60 + m
            for h in range(24)
            if hours[h]
            for m in range(60)
            if minutes[m] and h * 60 + m not in time_exc
        ]

    def possible(self) -> bool:
        """False when no enabled month has an enabled day, or no time of day is left."""
        if not self.times:
            return False
        if self.last or self.any_day:
            return True
        first_day = self.days.index(True) + 1
        return any(self.months[m] and first_day <= _MAX_MONTH_LEN[m] for m in range(12))

    def days_from(self, first: date, stop: date) -> Iterable[date]:
        """Candidate local dates from `first` up to `stop` (inclusive), in order."""
        year, month, day = first.year, first.month, first.day
        while year <= stop.year:
            if not self.months[month - 1]:
                nxt = [m for m in range(month + 1, 13) if self.months[m - 1]]
                if nxt:
                    month = nxt[0]
                else:
                    year += 1
                    month = self.months.index(True) + 1
                day = 1
                continue
            length = _month_len(year, month)
            while day <= length:
                cand = [d for d in range(day, length + 1) if self.days[d - 1]]
                if self.last and (not cand or cand[0] > length):
                    cand = [length]
                if not cand:
                    break
                day = cand[0]
                if (year, month, day) > (stop.year, stop.month, stop.day):
                    return
                current = date(year, month, day)
                dow = current.isoweekday() % 7
                if self.weekdays[dow] and current not in self.day_exc:
                    yield current
                day += 1
            month += 1
            day = 1
            if month > 12:
                month = 1
                year += 1


def next_run(spec: ScheduleSpec, now: datetime, tz: tzinfo) -> datetime | None:
    """The next run of `spec` after `now`, read in time zone `tz` (None if there is none)."""
    try:
        return _next_run(spec, now, tz)
    except (OverflowError, ValueError, TypeError, AttributeError):
        return None


def _next_run(spec: ScheduleSpec, now: datetime, tz: tzinfo) -> datetime | None:
    start = _aware(spec.start)
    now_aware = _aware(now)
    if start is None or now_aware is None:
        return None
    low = max(_floor_minute(now_aware) + timedelta(minutes=1), _floor_minute(start))
    if low >= LATEST:
        return None
    high = min(low + HORIZON, LATEST) if low < LATEST - HORIZON else LATEST
    end = _aware(spec.end)
    if end is not None and end < low:
        return None
    plan = _Plan(spec)
    if not plan.possible():
        return None

    # Scan local wall-clock times from the lower bound's local reading; if the clock falls
    # back within a day, local times up to that step earlier can still occur later.
    low_local = low.astimezone(tz).replace(tzinfo=None)
    back = _offset(low, tz) - _offset(low + timedelta(hours=24), tz)
    scan_from = low_local - back if back > timedelta(0) else low_local
    last = min(high, end) if end is not None else high
    stop = min(last.astimezone(tz).date(), date.max - timedelta(days=1)) + timedelta(days=1)

    best: datetime | None = None
    first_day: date | None = None
    for day in plan.days_from(scan_from.date(), stop):
        if first_day is not None and day > first_day + timedelta(days=1):
            break
        from_minute = scan_from.hour * 60 + scan_from.minute if day == scan_from.date() else 0
        midnight = datetime.combine(day, time())
        for minute in plan.times[bisect.bisect_left(plan.times, from_minute) :]:
            local = midnight + timedelta(minutes=minute)
            if local in plan.minute_exc:
                continue
            found = _instants(local, tz)
            if not found or found[-1] < low:
                continue
            if first_day is None:
                first_day = day
            early = found[0]
            cand = early if early >= low else found[-1]
            if cand < high and (end is None or cand <= end) and (best is None or cand < best):
                best = cand
            if early >= low:
                return best
    return best


def next_run_for_schedules(
    specs: Iterable[ScheduleSpec], now: datetime, tz: tzinfo
) -> datetime | None:
    """The earliest next run over several schedules (None if none of them has one)."""
    runs = [run for run in (next_run(spec, now, tz) for spec in specs) if run is not None]
    return min(runs) if runs else None


def ranges(indexes: Sequence[int], names: Sequence[str] | None = None) -> str:
    """Sorted indexes as text: 1,2,3,5 -> 1-3,5 (runs of three or more become ranges),
    each index written as names[index] when names are given."""
    parts: list[str] = []
    i = 0
    while i < len(indexes):
        j = i
        while j + 1 < len(indexes) and indexes[j + 1] == indexes[j] + 1:
            j += 1

        def label(k: int) -> str:
            return names[k] if names is not None else str(k)

        if j - i >= 2:
            parts.append(f"{label(indexes[i])}-{label(indexes[j])}")
        else:
            parts.extend(label(indexes[k]) for k in range(i, j + 1))
        i = j + 1
    return ",".join(parts)


def step_form(indexes: Sequence[int], length: int) -> str | None:
    """0,15,30,45 -> */15 (only for a whole-field cycle starting at 0)."""
    if len(indexes) < 2 or indexes[0] != 0:
        return None
    step = indexes[1] - indexes[0]
    if step > 1 and list(indexes) == list(range(0, length, step)):
        return f"*/{step}"
    return None


def _chosen(flags: Sequence[object], length: int) -> list[int]:
    return [i for i, flag in enumerate(_flags(list(flags), length)) if flag]


def _s(items: Sequence[object]) -> str:
    return "s" if len(items) > 1 else ""


def _times(minutes: list[int], hours: list[int]) -> str:
    if not minutes and not hours:
        return "every minute"
    step = step_form(minutes, 60)
    if not hours:
        if step:
            return f"every {step[2:]} minutes"
        if len(minutes) == 1:
            return f"every hour at minute {minutes[0]}"
        return f"every hour at minutes {ranges(minutes)}"
    if not minutes:
        return f"every minute of hour{_s(hours)} {ranges(hours)}"
    if len(minutes) * len(hours) <= 4:
        return "at " + ", ".join(f"{h:02d}:{m:02d}" for h in hours for m in minutes)
    what = f"every {step[2:]} minutes" if step else f"at minute{_s(minutes)} {ranges(minutes)}"
    return f"{what} of hour{_s(hours)} {ranges(hours)}"


def in_words(arrays: ScheduleArrays) -> str:
    """A schedule's five arrays in words: `every 15 minutes`, `at 02:30 on Mon-Fri`, ...
    (the one wording, for `pyagent jobs` and for the agent's log)."""
    parts = [_times(_chosen(arrays.minutes, 60), _chosen(arrays.hours, 24))]
    weekdays = _chosen(arrays.weekdays, 7)
    days = _chosen(arrays.monthdays, 32)
    months = _chosen(arrays.months, 12)
    day_text = ""
    if days:
        plain = ranges([d + 1 for d in days if d != _LAST])
        if _LAST not in days:
            day_text = f"on day {plain} of the month"
        elif plain:
            day_text = f"on day {plain} and the last day of the month"
        else:
            day_text = "on the last day"
    if weekdays:
        names = ranges(weekdays, _DAY_NAMES)
        parts.append(f"{day_text} when it is a {names}" if day_text else f"on {names}")
    elif day_text:
        parts.append(day_text)
    if months:
        parts.append("in " + ranges(months, _MONTH_NAMES))
    return " ".join(parts)


def describe(spec: ScheduleSpec) -> str:
    """One stored schedule for log messages: its id, its arrays in words, its start and
    end, how many exceptions it has."""
    try:
        return _describe(spec)
    except (AttributeError, TypeError, ValueError, OverflowError):
        return f"schedule {getattr(spec, 'jscid', '?')}"


def _describe(spec: ScheduleSpec) -> str:
    parts = [f"schedule {spec.jscid}: {in_words(spec)}"]
    parts.append(f"from {spec.start.isoformat(timespec='minutes')}")
    if spec.end is not None:
        parts.append(f"until {spec.end.isoformat(timespec='minutes')}")
    if spec.exceptions:
        count = len(spec.exceptions)
        parts.append(f"({count} exception{'s' if count != 1 else ''})")
    return " ".join(parts)
