"""Cron expressions <-> pgAgent schedules, and pgAgent's fields as job files write them.

A pgAgent schedule is five boolean arrays (minutes[60], hours[24], weekdays[7] with index 0 =
Sunday, monthdays[32] with index 31 = "last day of the month", months[12]); an all-false
array means "any", and a time matches when every field matches (AND).

Cron (as croniter reads it) differs in one way: when both day-of-month and day-of-week are
restricted, a day matches if EITHER matches (OR). No single pgAgent schedule says that, so
such an expression becomes two schedules, one per day rule, which together match exactly the
days cron matches. Everything else maps one to one. What pgAgent cannot express is refused
with the reason: seconds, years, @reboot, `#` (nth weekday), `W` (nearest weekday), `L` in
day-of-week (last weekday of the month) and `H` (hashed values).

croniter is imported here only; the agent never imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from croniter import CroniterError
from croniter import croniter as _croniter

from pyagent.schedule import ScheduleArrays, ranges, step_form

Flags = tuple[bool, ...]

MINUTES, HOURS, WEEKDAYS, MONTHDAYS, MONTHS = "minutes", "hours", "weekdays", "monthdays", "months"
LENGTHS = {MINUTES: 60, HOURS: 24, WEEKDAYS: 7, MONTHDAYS: 32, MONTHS: 12}
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
LAST = 31  # monthdays index meaning "last day of the month"

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronError(ValueError):
    """A cron expression that is invalid, or that pgAgent cannot express."""


@dataclass(frozen=True)
class Fields:
    """The five arrays of one pgAgent schedule (pga_schedule's layout, 0-based)."""

    minutes: Flags
    hours: Flags
    weekdays: Flags
    monthdays: Flags
    months: Flags

    @classmethod
    def any(cls) -> Fields:
        return cls(*(tuple([False] * LENGTHS[k]) for k in _ORDER))

    @classmethod
    def of(cls, row: ScheduleArrays) -> Fields:
        """The arrays of a schedule row (or of the values to write into one)."""
        return cls(
            tuple(row.minutes),
            tuple(row.hours),
            tuple(row.weekdays),
            tuple(row.monthdays),
            tuple(row.months),
        )

    def get(self, kind: str) -> Flags:
        value: Flags = getattr(self, kind)
        return value


_ORDER = (MINUTES, HOURS, WEEKDAYS, MONTHDAYS, MONTHS)


def _flags(indexes: Iterable[int], length: int) -> Flags:
    chosen = set(indexes)
    return tuple(i in chosen for i in range(length))


def _set(flags: Sequence[bool]) -> list[int]:
    return [i for i, on in enumerate(flags) if on]


# --- cron -> pgAgent --------------------------------------------------------------------

_HASH = re.compile(r"(^|[,/-])h($|[(,/-])")
_NEAREST_WEEKDAY = re.compile(r"\d\s*w|w\s*\d|^w$|lw")


_FIELD_COUNT_PROBLEMS = {
    6: "6 fields: pgAgent schedules have minute resolution, there is no seconds field",
    7: "7 fields: pgAgent schedules have no year field (use start and end)",
}
_NTH_WEEKDAY = "'#' (nth weekday of the month) cannot be expressed as a pgAgent schedule"


def from_cron(expression: str) -> list[Fields]:
    """The pgAgent schedules (one, or two for cron's day-of-month OR day-of-week rule)
    that fire exactly when the cron expression does. Raises CronError with the reason."""
    text = _without_macro(expression)
    _refuse_inexpressible(text.split(" "))
    try:
        expanded, nth = _croniter.expand(text)
    except (CroniterError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise CronError(_clean_croniter_message(str(exc))) from None
    if nth:
        raise CronError(_NTH_WEEKDAY)
    return _schedules_of(expanded)


def _without_macro(expression: str) -> str:
    """The expression with single spaces, in lower case, a macro (@daily, ...) written out."""
    text = " ".join(str(expression).split()).lower()
    if not text:
        raise CronError("empty cron expression")
    if not text.startswith("@"):
        return text
    if text == "@reboot":
        raise CronError(
            "@reboot means 'when the agent starts'; pgAgent schedules have no such time"
        )
    if text not in MACROS:
        raise CronError(f"unknown macro {expression!r} (known: {', '.join(MACROS)})")
    return MACROS[text]


def _refuse_inexpressible(parts: list[str]) -> None:
    """Refuse, with the reason, what croniter reads but a pgAgent schedule cannot say."""
    if len(parts) in _FIELD_COUNT_PROBLEMS:
        raise CronError(_FIELD_COUNT_PROBLEMS[len(parts)])
    if len(parts) != 5:
        raise CronError(
            f"{len(parts)} fields: a cron expression has 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    for part in parts:
        if _HASH.search(part):
            raise CronError("'H' (hashed values) is not supported: write the values out")
    dom, dow = parts[2], parts[4]
    if _NEAREST_WEEKDAY.search(dom):
        raise CronError("'W' (nearest weekday) cannot be expressed as a pgAgent schedule")
    if "#" in dow:
        raise CronError(_NTH_WEEKDAY)
    if "l" in dow:
        raise CronError(
            "'L' in day-of-week (last weekday of the month) cannot be expressed as a "
            "pgAgent schedule"
        )


def _schedules_of(expanded: list[list[int | str]]) -> list[Fields]:
    """croniter's expanded fields as pgAgent schedules: two when both day-of-month and
    day-of-week are restricted (cron ORs them, a schedule ANDs them)."""

    def values(field: int) -> list[int | str]:
        return [v for v in expanded[field] if v != "*"]

    minutes = _normalised([int(v) for v in values(0)], 60)
    hours = _normalised([int(v) for v in values(1)], 24)
    months = _normalised([int(v) - 1 for v in values(3)], 12)
    monthdays_set = {LAST if v == "l" else int(v) - 1 for v in values(2)}
    weekdays_set = {int(v) % 7 for v in values(4)}
    dom_restricted = expanded[2][0] != "*"
    dow_restricted = expanded[4][0] != "*"
    every_day_of_month = set(range(31)) <= monthdays_set
    every_weekday = weekdays_set == set(range(7))
    monthdays = _flags(() if every_day_of_month else monthdays_set, 32)
    weekdays = _flags(() if every_weekday else weekdays_set, 7)
    no_days, no_weekdays = _flags((), 32), _flags((), 7)
    if dom_restricted and dow_restricted:
        if every_day_of_month or every_weekday:
            return [Fields(minutes, hours, no_weekdays, no_days, months)]
        return [
            Fields(minutes, hours, no_weekdays, monthdays, months),
            Fields(minutes, hours, weekdays, no_days, months),
        ]
    if dom_restricted:
        return [Fields(minutes, hours, no_weekdays, monthdays, months)]
    if dow_restricted:
        return [Fields(minutes, hours, weekdays, no_days, months)]
    return [Fields(minutes, hours, no_weekdays, no_days, months)]


def _normalised(indexes: Iterable[int], length: int) -> Flags:
    chosen = set(indexes)
    if chosen == set(range(length)):
        chosen = set()
    return _flags(chosen, length)


def _clean_croniter_message(message: str) -> str:
    message = re.sub(r"^\[[^\]]*\]\s*", "", message.strip())
    message = message.replace("is not acceptable", "").strip(" ,.")
    return f"not a valid cron expression: {message}" if message else "not a valid cron expression"


# --- pgAgent -> cron --------------------------------------------------------------------


def _compress(indexes: list[int], label: Sequence[str] | None = None, base: int = 0) -> str:
    """1,2,3,5 -> 1-3,5 (runs of three or more become ranges); numbers shown from `base`."""
    if label is not None:
        return ranges(indexes, label)
    return ranges([k + base for k in indexes])


def _cron_field(flags: Flags, kind: str) -> str:
    chosen = _set(flags)
    if not chosen:
        return "*"
    if kind in (MINUTES, HOURS):
        return step_form(chosen, LENGTHS[kind]) or _compress(chosen)
    if kind == MONTHDAYS:
        text = _compress([d for d in chosen if d != LAST], base=1)
        if LAST in chosen:
            text = f"{text},L" if text else "L"
        return text
    if kind == WEEKDAYS:
        return _compress(chosen, [n.upper() for n in DAY_NAMES])
    return _compress(chosen, [n.upper() for n in MONTH_NAMES])


def to_cron(fields: Fields) -> str | None:
    """The cron expression meaning exactly this schedule, or None when cron cannot say it
    (restricted month days AND weekdays: cron would OR them; all-true arrays, which cron
    writes as `*` and reads back as "any")."""
    if any(fields.weekdays) and any(fields.monthdays):
        return None
    text = " ".join(
        _cron_field(fields.get(kind), kind) for kind in (MINUTES, HOURS, MONTHDAYS, MONTHS)
    )
    text = f"{text} {_cron_field(fields.weekdays, WEEKDAYS)}"
    # Keep field order: minute hour day-of-month month day-of-week.
    try:
        back = from_cron(text)
    except CronError:
        return None
    return text if back == [fields] else None


# --- native fields in files -------------------------------------------------------------

_NAMES = {WEEKDAYS: DAY_NAMES, MONTHS: MONTH_NAMES}
_FULL_NAMES = {
    WEEKDAYS: ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"),
    MONTHS: (
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ),
}
_RANGE = re.compile(r"^([^-/]+)(?:-([^-/]+))?(?:/(\d+))?$")


def _native_value(kind: str, token: str) -> int:
    """One value of a native field as a 0-based array index."""
    word = token.strip().lower()
    if kind in _NAMES:
        names, full = _NAMES[kind], _FULL_NAMES[kind]
        if word in names:
            return names.index(word)
        if word in full:
            return full.index(word)
    if kind == MONTHDAYS and word in ("last", "l"):
        return LAST
    if not re.fullmatch(r"\d+", word):
        expected = {
            MINUTES: "0-59",
            HOURS: "0-23",
            WEEKDAYS: "0-7 (0 and 7 = Sunday) or sun..sat",
            MONTHDAYS: "1-31 or last",
            MONTHS: "1-12 or jan..dec",
        }[kind]
        raise ValueError(f"{token!r} is not a valid value (expected {expected})")
    number = int(word)
    low, high = {MINUTES: (0, 59), HOURS: (0, 23), WEEKDAYS: (0, 7), MONTHDAYS: (1, 31)}.get(
        kind, (1, 12)
    )
    if not low <= number <= high:
        raise ValueError(f"{number} is out of range {low}-{high}")
    if kind == WEEKDAYS:
        return number % 7
    if kind in (MONTHDAYS, MONTHS):
        return number - 1
    return number


def _token_indexes(kind: str, token: str) -> list[int]:
    """The 0-based indexes one token of a native field stands for."""
    if token == "*":  # noqa: S105 - a cron wildcard, not a password
        return []
    match = _RANGE.match(token)
    if match is None:
        raise ValueError(f"{token!r} is not a value or range")
    first, last, step_text = match.groups()
    step = int(step_text) if step_text else 1
    if step < 1:
        raise ValueError(f"{token!r}: the step must be at least 1")
    top = {MINUTES: 59, HOURS: 23, WEEKDAYS: 6, MONTHDAYS: 30, MONTHS: 11}[kind]
    if first.strip() == "*":
        if last is not None:
            raise ValueError(f"{token!r} is not a value or range")
        return list(range(0, top + 1, step))
    start = _native_value(kind, first)
    if last is None and step_text is None:
        return [start]
    if start == LAST and kind == MONTHDAYS:
        raise ValueError(f"{token!r}: 'last' can only end a range")
    if last is None:
        stop = top
    else:
        stop = _native_value(kind, last)
        if kind == WEEKDAYS and (last.strip() == "7" or stop < start):
            stop += 7  # 5-7, fri-sun: up to and including Sunday
        if kind == MONTHDAYS and stop == LAST:
            stop = 30  # 15-last: days 15 to 31 (shorter months end earlier anyway)
    if stop < start:
        raise ValueError(f"{token!r}: a range must go upwards")
    return [i % 7 if kind == WEEKDAYS else i for i in range(start, stop + 1, step)]


def parse_native(kind: str, value: object) -> Flags:
    """A native field from a file: an integer, a name, a string of comma-separated values
    and ranges (`1-5`, `mon-fri`, `*/15`, `0-30/10`, `1,15,last`), or a list of those.
    `*` (or leaving the field out) means "any", i.e. an all-false array."""
    items: list[object] = list(value) if isinstance(value, list) else [value]
    chosen: set[int] = set()
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise ValueError(f"{item!r} is not a valid value")
        for raw in str(item).split(","):
            token = raw.strip()
            if not token:
                raise ValueError("empty value in list")
            chosen.update(_token_indexes(kind, token))
    return _flags(chosen, LENGTHS[kind])


def format_native(kind: str, flags: Flags) -> int | str | None:
    """A native field for a file: None when "any" (all false), an int for one number,
    otherwise a compact string."""
    chosen = _set(flags)
    if not chosen:
        return None
    if kind in (MINUTES, HOURS):
        if len(chosen) == 1:
            return chosen[0]
        return _compress(chosen)
    if kind == MONTHDAYS:
        days = [d for d in chosen if d != LAST]
        if len(chosen) == 1 and days:
            return days[0] + 1
        text = _compress(days, base=1)
        if LAST in chosen:
            text = f"{text},last" if text else "last"
        return text
    return _compress(chosen, _NAMES[kind])


def never_matches(fields: Fields) -> bool:
    """True when no enabled month has any enabled day (e.g. day 31 in February only)."""
    days = _set(fields.monthdays)
    if not days or LAST in days:
        return False
    month_len = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    months = _set(fields.months) or list(range(12))
    return all(min(days) + 1 > month_len[m] for m in months)
