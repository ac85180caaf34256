"""Job files checked: a YAML document (with its lines) to a FileJob, and a set of jobs
against each other, with every problem named by file, line and field. No database is
needed here (`jobs validate`); what only the database can check (job classes, databases,
the collation's step order) is checked by `jobs apply` (pyagent.jobs.apply)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

from pyagent.annotations import (
    ALERT_POLICIES,
    JOB_OPTIONS,
    MAX_RETRIES,
    STEP_OPTIONS,
    AnnotationError,
    JobOptions,
    Option,
    StepOptions,
    parse_alert_policy,
    parse_retry_delay,
    parse_timeout,
    parse_timezone,
    read_job,
    read_step,
)
from pyagent.jobs import cron
from pyagent.jobs.model import (
    KINDS,
    NATIVE_FIELDS,
    ON_ERROR,
    FileException,
    FileJob,
    FileSchedule,
    FileStep,
    Stamp,
)
from pyagent.store.records import StepKind

JOB_FIELDS = (
    "name",
    "class",
    "enabled",
    "host_agent",
    "managed",
    "comment",
    "timeout",
    "retries",
    "retry_delay",
    "alert",
    "timezone",
    "steps",
    "schedules",
)


STEP_FIELDS = (
    "name",
    "kind",
    "database",
    "connection",
    "on_error",
    "enabled",
    "description",
    "timeout",
    "code",
)
SCHEDULE_FIELDS = (
    "name",
    "description",
    "enabled",
    "cron",
    *NATIVE_FIELDS,
    "start",
    "end",
    "exceptions",
)
WEEKDAY_SUFFIX = " (weekdays)"


# --- problems ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, located as precisely as possible."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class JobFileError(Exception):
    """One or more problems; nothing was (or will be) changed."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class Loc:
    """A value of a job file and the (1-based) line it starts on (pyagent.jobs.loading)."""

    value: Any
    line: int


# --- one job ------------------------------------------------------------------------------


class _Reader:
    """Typed access to one mapping of a file, collecting problems instead of stopping."""

    def __init__(
        self, loc: Loc, file: str, where: str, allowed: Sequence[str], problems: list[Problem]
    ) -> None:
        self.file, self.where, self.problems = file, where, problems
        self.line = loc.line
        self.ok = isinstance(loc.value, dict)
        self.data: dict[str, Loc] = loc.value if self.ok else {}
        if not self.ok:
            self.problem(None, f"must be a mapping of fields, not {_type_name(loc.value)}")
        for key, value in self.data.items():
            if key not in allowed:
                self.problems.append(
                    Problem(
                        file,
                        value.line,
                        self.name(key),
                        f"unknown field (known: {', '.join(allowed)})",
                    )
                )

    def name(self, key: str | None) -> str:
        if key is None:
            return self.where or "document"
        return f"{self.where}.{key}" if self.where else key

    def problem(self, key: str | None, message: str, line: int | None = None) -> None:
        loc = self.data.get(key) if key else None
        self.problems.append(
            Problem(self.file, line or (loc.line if loc else self.line), self.name(key), message)
        )

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key].value is not None

    def line_of(self, key: str) -> int:
        return self.data[key].line if key in self.data else self.line

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        if not self.has(key):
            if required:
                self.problems.append(
                    Problem(self.file, self.line, self.name(key), "this field is required")
                )
            return default
        value = self.data[key].value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(key, f"must be text, not {_type_name(value)}")
            return default
        if not isinstance(value, str):
            self.problem(key, f"must be text, not a number (quote it: '{value}')")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        if not self.has(key):
            return default
        value = self.data[key].value
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, not {value!r}")
            return default
        return value

    def raw(self, key: str) -> Any:
        return self.data[key].value if self.has(key) else None

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.text(key, default)
        if value is None:
            return default
        if value.lower() not in choices:
            self.problem(key, f"must be one of {', '.join(choices)}, not {value!r}")
            return default
        return value.lower()


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, int | float):
        return "a number"
    return "text"


_STAMP = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(?:[ T](\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?))?"
    r"\s*(Z|[+-]\d{2}(?::?\d{2})?)?$"
)
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def parse_stamp(text: str) -> Stamp:
    """`2025-01-01`, `2025-01-01 02:30`, `2025-01-01T02:30:00+01:00`, ... ; ValueError if not."""
    match = _STAMP.match(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a timestamp (examples: 2025-01-01, 2025-01-01 02:30, "
            "2025-01-01 02:30:00+00:00)"
        )
    day, clock, zone = match.groups()
    clock = clock or "00:00"
    if len(clock.split(":")[0]) == 1:
        clock = "0" + clock
    iso = f"{day} {clock}"
    if zone:
        zone = "+00:00" if zone == "Z" else zone
        if len(zone) == 3:
            zone += ":00"
        elif ":" not in zone:
            zone = f"{zone[:3]}:{zone[3:]}"
    try:
        value = datetime.fromisoformat(iso + (zone or ""))
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    if zone:
        return Stamp(value.isoformat(sep=" "), value)
    return Stamp(value.isoformat(sep=" "), None)


def parse_exception(value: Any) -> tuple[date | None, time | None]:
    """`2025-12-25`, `02:30`, `2025-12-25 02:30`, or {date: ..., time: ...}."""
    if isinstance(value, dict):
        unknown = set(value) - {"date", "time"}
        if unknown:
            raise ValueError(f"unknown field {sorted(unknown)[0]!r} (known: date, time)")
        d, t = value.get("date"), value.get("time")
        d = d.value if isinstance(d, Loc) else d
        t = t.value if isinstance(t, Loc) else t
    elif isinstance(value, str):
        parts = value.split()
        if len(parts) == 2:
            d, t = parts
        elif len(parts) == 1 and ":" in parts[0]:
            d, t = None, parts[0]
        elif len(parts) == 1:
            d, t = parts[0], None
        else:
            raise ValueError(f"{value!r} is not a date, a time or 'date time'")
    else:
        raise ValueError("must be a date (2025-12-25), a time (02:30), both, or {date, time}")
    on_date = None
    at_time = None
    if d is not None:
        if not isinstance(d, str):
            raise ValueError(f"date {d!r} must be text like 2025-12-25")
        try:
            on_date = date.fromisoformat(d.strip())
        except ValueError:
            raise ValueError(f"{d!r} is not a date like 2025-12-25") from None
    if t is not None:
        match = _TIME.match(str(t).strip()) if isinstance(t, str) else None
        if match is None:
            raise ValueError(f"{t!r} is not a time like 02:30 or 02:30:15")
        hour, minute, second = (int(x) if x else 0 for x in match.groups())
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"{t!r} is not a valid time of day")
        at_time = time(hour, minute, second)
    if on_date is None and at_time is None:
        raise ValueError("an exception needs a date, a time, or both")
    return on_date, at_time


def check_job(doc: Loc, file: str, problems: list[Problem]) -> FileJob | None:
    """One job document as a FileJob; None when it has problems (added to `problems`)."""
    start = len(problems)
    r = _Reader(doc, file, "", JOB_FIELDS, problems)
    if not r.ok:
        return None
    name = r.text("name", required=True)
    if name is not None and not name.strip():
        r.problem("name", "must not be empty")
    job_class = r.text("class")
    host_agent = r.text("host_agent", "") or ""
    comment = r.text("comment", "") or ""
    enabled = r.boolean("enabled", True)
    managed = r.boolean("managed", False) if r.has("managed") else None
    timeout = _duration(r, "timeout", parse_timeout)
    retry_delay = _duration(r, "retry_delay", parse_retry_delay)
    retries: int | None = None
    if r.has("retries"):
        value = r.raw("retries")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
            r.problem("retries", f"must be a whole number from 0 to {MAX_RETRIES}, not {value!r}")
        else:
            retries = value
    alert = (
        parse_alert_policy(r.choice("alert", ALERT_POLICIES, "failure")) if r.has("alert") else None
    )
    timezone = _timezone(r)
    if "@" in comment:
        _warn_annotation_text(r, "comment", read_job(comment).lines, JOB_OPTIONS)
    steps = _steps(r)
    schedules = _schedules(r)
    if len(problems) > start or name is None:
        return None
    return FileJob(
        name=name,
        job_class=job_class,
        enabled=enabled,
        host_agent=host_agent,
        managed=managed,
        comment=comment,
        options=JobOptions(
            timeout=timeout,
            retries=retries,
            retry_delay=retry_delay,
            alert=alert,
            timezone=timezone,
        ),
        steps=tuple(steps),
        schedules=tuple(schedules),
        file=file,
        line=doc.line,
        lines={key: loc.line for key, loc in r.data.items()},
    )


def _warn_annotation_text(
    r: _Reader, key: str, found: Mapping[str, object], options: Sequence[Option[Any]]
) -> None:
    """An annotation line pyagent maps to a field must be written as that field, or a
    second apply would see a difference."""
    for option in options:
        if option.field in found:
            r.problem(
                key, f"write the annotation as the field {option.field!r}, not as a line of text"
            )


def _duration(r: _Reader, key: str, parse: Callable[[str], float]) -> float | None:
    """A duration field: a number of seconds, or text such as `30 s`, `5 m`."""
    if not r.has(key):
        return None
    value = r.raw(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        r.problem(key, "must be a duration: a number of seconds or text like '30 s', '5 m'")
        return None
    try:
        return parse(" ".join(str(value).split()))
    except AnnotationError as exc:
        r.problem(key, str(exc))
        return None


def _timezone(r: _Reader) -> str | None:
    if not r.has("timezone"):
        return None
    value = r.raw("timezone")
    if not isinstance(value, str):
        r.problem("timezone", "must be a time zone name as text, such as Europe/Berlin")
        return None
    try:
        return parse_timezone(value)
    except AnnotationError as exc:
        r.problem("timezone", str(exc))
        return None


def _items(r: _Reader, key: str) -> list[Loc]:
    if not r.has(key):
        return []
    value = r.raw(key)
    if not isinstance(value, list):
        r.problem(key, f"must be a list, not {_type_name(value)}")
        return []
    return list(value)


def _entries(job: _Reader, key: str, allowed: Sequence[str]) -> Iterator[tuple[int, _Reader]]:
    """(1-based index, reader) for each entry of the list field `key` that is a mapping."""
    for i, loc in enumerate(_items(job, key), 1):
        r = _Reader(loc, job.file, f"{key}[{i}]", allowed, job.problems)
        if r.ok:
            yield i, r


def _steps(job: _Reader) -> list[FileStep]:
    steps: list[FileStep] = []
    for _, r in _entries(job, "steps", STEP_FIELDS):
        step = _step(r)
        if step is not None:
            steps.append(step)
    names = [s.name for s in steps]
    order = sorted(range(len(names)), key=lambda k: (names[k], k))
    if order != list(range(len(names))):
        job.problems.append(step_order_problem(job.file, job.line_of("steps"), names, order))
    return steps


def _step(r: _Reader) -> FileStep | None:
    """One entry of `steps`, or None when it has problems."""
    before = len(r.problems)
    name = r.text("name", required=True)
    kind = KINDS[r.choice("kind", tuple(KINDS), "sql")]
    database = r.text("database", "") or ""
    connection = r.text("connection", "") or ""
    on_error = ON_ERROR[r.choice("on_error", tuple(ON_ERROR), "fail")]
    code = r.text("code", required=True)
    description = r.text("description", "") or ""
    if "@" in description:
        _warn_annotation_text(r, "description", read_step(description).lines, STEP_OPTIONS)
    if kind is StepKind.SQL and not database and not connection:
        r.problem(None, "an SQL step needs a 'database' (on this server) or a 'connection'")
    if kind is StepKind.BATCH and (database or connection):
        r.problem(
            "database" if database else "connection",
            "a batch step runs on the agent's host; it takes no database or connection",
        )
    timeout = _duration(r, "timeout", parse_timeout)
    enabled = r.boolean("enabled", True)
    if len(r.problems) > before or name is None or code is None:
        return None
    return FileStep(
        name=name,
        kind=kind,
        database=database,
        connection=connection,
        on_error=on_error,
        enabled=enabled,
        description=description,
        options=StepOptions(timeout=timeout),
        code=code,
        line=r.line,
        lines={key: value.line for key, value in r.data.items()},
    )


def step_order_problem(file: str, line: int, names: list[str], order: list[int]) -> Problem:
    wanted = ", ".join(repr(names[k]) for k in order)
    return Problem(
        file,
        line,
        "steps",
        "pgAgent runs a job's steps in name order (ORDER BY jstname), so these would run as "
        f"{wanted}; rename them so that name order is the order written (for example with "
        "numeric prefixes: '10 extract', '20 load')",
    )


def _schedules(job: _Reader) -> list[FileSchedule]:
    found: list[FileSchedule] = []
    for i, r in _entries(job, "schedules", SCHEDULE_FIELDS):
        found.extend(_schedule(r, i))
    return found


def _schedule(r: _Reader, index: int) -> list[FileSchedule]:
    """One entry of `schedules`: one pgAgent schedule, or two for a cron expression that
    restricts both day-of-month and day-of-week; none when it has problems."""
    before = len(r.problems)
    cron_text = r.text("cron")
    fields_list = _schedule_fields(r, cron_text)
    name = r.text("name", cron_text if cron_text is not None else f"schedule {index}")
    description = r.text("description", "") or ""
    enabled = r.boolean("enabled", True)
    start = _stamp(r, "start")
    end = _stamp(r, "end")
    if start and end and start.aware and end.aware and end.aware < start.aware:
        r.problem("end", "is before start")
    exceptions = _exceptions(r)
    if len(fields_list) == 2 and any(e.date and e.time for e in exceptions):
        r.problem(
            "exceptions",
            "this cron expression becomes two pgAgent schedules (its day-of-month and "
            "day-of-week are OR-ed), and pgAgent's unique index on (jexdate, jextime) "
            "forbids the same date-and-time exception on both; use a date-only or "
            "time-only exception, or two schedules",
        )
    if len(r.problems) > before or name is None:
        return []
    return [
        FileSchedule(
            name=name if k == 0 else name + WEEKDAY_SUFFIX,
            description=description,
            enabled=enabled,
            fields=fields,
            start=start,
            end=end,
            exceptions=tuple(exceptions),
            line=r.line,
        )
        for k, fields in enumerate(fields_list)
    ]


def _schedule_fields(r: _Reader, cron_text: str | None) -> list[cron.Fields]:
    """A schedule's pgAgent arrays, from `cron` or from pgAgent's own fields (not both)."""
    natives = [k for k in NATIVE_FIELDS if r.has(k)]
    fields_list: list[cron.Fields] = []
    if cron_text is not None and natives:
        r.problem(natives[0], "give either 'cron' or pgAgent's fields, not both")
    elif cron_text is not None:
        try:
            fields_list = cron.from_cron(cron_text)
        except cron.CronError as exc:
            r.problem("cron", f"{cron_text!r}: {exc}")
    elif natives:
        fields_list = _native_fields(r)
    else:
        r.problem(
            None,
            "give 'cron' or pgAgent's fields (minutes, hours, weekdays, monthdays, months)",
        )
    for fields in fields_list:
        if cron.never_matches(fields):
            r.problem(
                "cron" if cron_text is not None else "monthdays",
                "never runs: none of its days exists in its months",
            )
            break
    return fields_list


def _native_fields(r: _Reader) -> list[cron.Fields]:
    """pgAgent's five fields as written (a field left out means "any")."""
    arrays: dict[str, cron.Flags] = {}
    for kind in NATIVE_FIELDS:
        try:
            arrays[kind] = (
                cron.parse_native(kind, _plain(r.raw(kind)))
                if r.has(kind)
                else tuple([False] * cron.LENGTHS[kind])
            )
        except ValueError as exc:
            r.problem(kind, str(exc))
    return [cron.Fields(**arrays)] if len(arrays) == len(NATIVE_FIELDS) else []


def _exceptions(r: _Reader) -> list[FileException]:
    """A schedule's exceptions, each listed once."""
    exceptions: list[FileException] = []
    for loc_exc in _items(r, "exceptions"):
        try:
            on_date, at_time = parse_exception(_plain(loc_exc.value))
        except ValueError as exc:
            r.problem("exceptions", str(exc), loc_exc.line)
            continue
        exceptions.append(FileException(on_date, at_time, loc_exc.line))
    seen: set[tuple[date | None, time | None]] = set()
    for exc_spec in exceptions:
        key = (exc_spec.date, exc_spec.time)
        if key in seen:
            r.problem("exceptions", "the same exception is listed twice", exc_spec.line)
        seen.add(key)
    return exceptions


def _plain(value: Any) -> Any:
    """A Loc tree as plain Python values."""
    if isinstance(value, Loc):
        return _plain(value.value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _stamp(r: _Reader, key: str) -> Stamp | None:
    text = r.text(key)
    if text is None:
        return None
    try:
        return parse_stamp(text)
    except ValueError as exc:
        r.problem(key, str(exc))
        return None


# --- a set of jobs --------------------------------------------------------------------------


def check_set(jobs: Sequence[FileJob]) -> list[Problem]:
    """What is wrong with these jobs together: a name given twice, a date-and-time
    exception given twice (pgAgent's unique index spans all schedules)."""
    problems: list[Problem] = []
    first: dict[str, FileJob] = {}
    for job in jobs:
        if job.name in first:
            other = first[job.name]
            problems.append(
                Problem(
                    job.file,
                    job.line,
                    "name",
                    f"job {job.name!r} is also defined at {other.file}:{other.line}",
                )
            )
        else:
            first[job.name] = job
    instants: dict[tuple[date, time], str] = {}
    for job in jobs:
        for sched in job.schedules:
            for item in sched.exceptions:
                if item.date is None or item.time is None:
                    continue
                key = (item.date, item.time)
                where = f"{job.file}:{item.line}"
                if key in instants and instants[key] != where:
                    problems.append(
                        Problem(
                            job.file,
                            item.line,
                            "exceptions",
                            f"{item.date} {item.time} is also an exception at {instants[key]}; "
                            "pgAgent allows a date-and-time exception only once in the whole "
                            "database (unique index on pga_exception)",
                        )
                    )
                instants.setdefault(key, where)
    return problems
