"""Per-job and per-step options written in pgAdmin's description fields.

pgAgent's schema has no place for a timeout, so, as jpgAgent did, options are lines of the
form `@NAME=value;` in the job's comment (`jobdesc`) or a step's description (`jstdesc`),
each on its own line. `OPTIONS` is the table of every option pyagent knows: its name, the
other names it is read under, where it is written, its field in job files and how its
value is read. `read_job` and `read_step` are the one reader: the agent, job control and
`pyagent jobs` (show, export, apply) all take an option's value from them, so they cannot
disagree.

The rule when an option is given more than once (under one name or several, such as
`@STEP_TIMEOUT` and `@JOB_STEP_TIMEOUT`): its last line decides. A last line whose value is
bad is ignored (and reported) and the default applies. Unknown names are ignored (they may
be meant for another tool) and stay in the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Generic, Literal, TypeVar

from pyagent.duration import DurationError, format_duration, parse_duration

# One option per line: `@NAME=value;`, the `;` optional, blanks around each part allowed.
_LINE = re.compile(r"^[ \t]*@([A-Za-z_]+)[ \t]*=[ \t]*([^;\n]*?)[ \t]*;?[ \t]*$")

# An IANA zone name: segments of letters, digits, `_`, `-`, `+`, starting with a letter.
# The same rule is written in sql/pyagent_timezone.sql (pyagent_known_timezone), so the
# agent, the management commands and the schema's trigger agree on which names count.
_ZONE_SHAPE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*$")
# Names of the tz database that are not zones of their own: the host's local zone (which
# differs between the agent's host and the server's) and tzcode's internal files.
_NOT_ZONES = ("localtime", "posixrules")
_NOT_ZONE_DIRS = ("posix/", "right/")

AlertPolicy = Literal["failure", "always", "never"]
ALERT_POLICIES: tuple[AlertPolicy, ...] = ("failure", "always", "never")
# More retries than this is a typo, not a policy.
MAX_RETRIES = 100
# `@MANAGED_BY=pyagent;`: the job is managed by `pyagent jobs apply` (--prune may delete it).
MANAGED_VALUE = "pyagent"

T = TypeVar("T")


class AnnotationError(ValueError):
    """An annotation with a value that cannot be understood."""


# --- values ------------------------------------------------------------------------------


def parse_timeout(value: str) -> float:
    """A timeout: a duration greater than zero (30 s, 500 ms, 2 m, 1 h)."""
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise AnnotationError(str(exc)) from None


def parse_retry_delay(value: str) -> float:
    """A retry delay: a duration; zero means "retry at once"."""
    try:
        return parse_duration(value, allow_zero=True)
    except DurationError as exc:
        raise AnnotationError(str(exc)) from None


def parse_retries(value: str) -> int:
    """A retry count: a whole number from 0 to MAX_RETRIES."""
    text = value.strip()
    if not text.isdigit():
        raise AnnotationError(f"{value!r} is not a whole number of retries (0 to {MAX_RETRIES})")
    count = int(text)
    if count > MAX_RETRIES:
        raise AnnotationError(f"{value!r}: at most {MAX_RETRIES} retries")
    return count


def parse_alert_policy(value: str) -> AlertPolicy:
    """failure, always or never (case-insensitive)."""
    text = value.strip().lower()
    for policy in ALERT_POLICIES:
        if text == policy:
            return policy
    raise AnnotationError(f"{value!r} is not one of failure, always, never")


@cache
def _known_zones() -> frozenset[str]:
    # Read once, and only when a job names a zone: the daemon stays lean otherwise.
    import zoneinfo

    return frozenset(zoneinfo.available_timezones())


def parse_timezone(value: str) -> str:
    """An IANA time zone name (`Europe/Berlin`, `UTC`), spelled exactly as in the tz
    database; AnnotationError when it is not one."""
    name = value.strip()
    known = (
        bool(_ZONE_SHAPE.match(name))
        and name not in _NOT_ZONES
        and not name.startswith(_NOT_ZONE_DIRS)
        and name in _known_zones()
    )
    if not known:
        raise AnnotationError(
            f"{value!r} is not a known time zone name (examples: Europe/Berlin, "
            "America/New_York, UTC; spelled as in the tz database)"
        )
    return name


def parse_manager(value: str) -> str:
    """Who manages the job (`pyagent`: `pyagent jobs apply`); compared without case."""
    return value.strip().lower()


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Option(Generic[T]):
    """One option: the name written (`name`), the other names read (`aliases`), where it is
    written, its field in job files (and in JobOptions / StepOptions), how its value is
    read from text and how it is written as text."""

    name: str
    place: Literal["job", "step"]
    field: str
    parse: Callable[[str], T]
    write: Callable[[T], str] = str
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


JOB_TIMEOUT = Option("JOB_TIMEOUT", "job", "timeout", parse_timeout, format_duration)
RETRIES = Option("RETRIES", "job", "retries", parse_retries)
RETRY_DELAY = Option("RETRY_DELAY", "job", "retry_delay", parse_retry_delay, format_duration)
ALERT = Option("ALERT", "job", "alert", parse_alert_policy)
TIMEZONE = Option("TIMEZONE", "job", "timezone", parse_timezone)
MANAGED_BY = Option("MANAGED_BY", "job", "managed_by", parse_manager)
# jpgAgent's spelling is written; STEP_TIMEOUT is read too.
STEP_TIMEOUT = Option(
    "JOB_STEP_TIMEOUT", "step", "timeout", parse_timeout, format_duration, ("STEP_TIMEOUT",)
)

# In the order `pyagent jobs apply` writes the lines.
JOB_OPTIONS: tuple[Option[Any], ...] = (
    JOB_TIMEOUT,
    RETRIES,
    RETRY_DELAY,
    ALERT,
    TIMEZONE,
    MANAGED_BY,
)
STEP_OPTIONS: tuple[Option[Any], ...] = (STEP_TIMEOUT,)
OPTIONS = JOB_OPTIONS + STEP_OPTIONS


@dataclass(frozen=True)
class JobOptions:
    """The options of a job's comment as values (None: not given, or given badly)."""

    timeout: float | None = None
    retries: int | None = None
    retry_delay: float | None = None
    alert: AlertPolicy | None = None
    timezone: str | None = None
    managed_by: str | None = None

    @property
    def managed(self) -> bool:
        return self.managed_by == MANAGED_VALUE


@dataclass(frozen=True)
class StepOptions:
    """The options of a step's description as values (None: not given, or given badly)."""

    timeout: float | None = None


Values = TypeVar("Values", JobOptions, StepOptions)


@dataclass(frozen=True)
class OptionLine:
    """An option's deciding line: the name it used, its value as written, and why that
    value is ignored (None when it is good)."""

    name: str
    text: str
    problem: str | None = None


@dataclass(frozen=True)
class Description(Generic[Values]):
    """A job comment or step description as read: its text without the option lines, the
    options' values, and each given option's deciding line (by field)."""

    text: str
    values: Values
    lines: Mapping[str, OptionLine]

    def problems(self, *keys: str) -> tuple[str, ...]:
        """`@NAME: reason` for each option (of these fields, or all) whose deciding line
        is ignored."""
        return tuple(
            f"@{line.name}: {line.problem}"
            for key, line in self.lines.items()
            if line.problem and (not keys or key in keys)
        )

    def texts(self) -> dict[str, str]:
        """{field: value as written} of the options given."""
        return {key: line.text for key, line in self.lines.items()}

    def means(self, text: str, values: Values) -> bool:
        """True when this description already says `text` and exactly these values (a
        value written differently but meaning the same counts as the same)."""
        return self.text == text and not self.problems() and self.values == values


def _read(
    description: str, options: Sequence[Option[Any]]
) -> tuple[str, dict[str, Any], dict[str, OptionLine]]:
    by_name = {name: option for option in options for name in option.names}
    kept: list[str] = []
    # The last line of an option decides, whichever of its names it uses.
    last: dict[str, tuple[str, str]] = {}
    for line in (description or "").split("\n"):
        match = _LINE.match(line)
        option = by_name.get(match.group(1).upper()) if match else None
        if match is None or option is None:
            kept.append(line)
        else:
            last[option.field] = (match.group(1).upper(), match.group(2))
    text = "\n".join(kept)
    if last:
        text = text.rstrip("\n")
    values: dict[str, Any] = {}
    found: dict[str, OptionLine] = {}
    for option in options:
        if option.field not in last:
            continue
        name, raw = last[option.field]
        try:
            values[option.field] = option.parse(raw)
            found[option.field] = OptionLine(name, raw)
        except AnnotationError as exc:
            found[option.field] = OptionLine(name, raw, str(exc))
    return text, values, found


def read_job(jobdesc: str) -> Description[JobOptions]:
    """A job's comment: its text without the option lines, and its options."""
    text, values, found = _read(jobdesc, JOB_OPTIONS)
    return Description(text, JobOptions(**values), found)


def read_step(jstdesc: str) -> Description[StepOptions]:
    """A step's description: its text without the option lines, and its options."""
    text, values, found = _read(jstdesc, STEP_OPTIONS)
    return Description(text, StepOptions(**values), found)


def write(text: str, values: JobOptions | StepOptions) -> str:
    """A description: the text, then one `@NAME=value;` line per option that has a value
    (in the table's order)."""
    options = JOB_OPTIONS if isinstance(values, JobOptions) else STEP_OPTIONS
    lines = []
    for option in options:
        value = getattr(values, option.field)
        if value is not None:
            lines.append(f"@{option.name}={option.write(value)};")
    if not lines:
        return text
    text = text.rstrip("\n")
    return "\n".join([text, *lines] if text else lines)


def managed(values: JobOptions, mark: bool) -> JobOptions:
    """The options with the `@MANAGED_BY=pyagent;` mark set or taken away."""
    return replace(values, managed_by=MANAGED_VALUE if mark else None)


# --- what the agent takes from them ---------------------------------------------------------


@dataclass(frozen=True)
class JobZone:
    """A job's own time zone from its comment: `name` None when it has none (or an unknown
    one, then `problem` says so) -- its schedules are then read as pgAgent reads them."""

    name: str | None = None
    problem: str | None = None


def job_zone(comment: Description[JobOptions]) -> JobZone:
    """The `@TIMEZONE=...;` of a job's comment as read."""
    problems = comment.problems(TIMEZONE.field)
    return JobZone(comment.values.timezone, problems[0] if problems else None)


def job_timezone(jobdesc: str) -> JobZone:
    """The `@TIMEZONE=...;` of a job's comment (its last such line decides)."""
    return job_zone(read_job(jobdesc))


@dataclass(frozen=True)
class RunOptions:
    """Options of one job or step run: timeout in seconds (None = no limit)."""

    timeout: float | None = None
    problems: tuple[str, ...] = ()


def run_options(
    description: Description[JobOptions] | Description[StepOptions], default: float | None
) -> RunOptions:
    """The timeout of a job or a step run (its option, else `default`), with the problem
    of a timeout line that is ignored."""
    timeout = description.values.timeout
    return RunOptions(timeout if timeout is not None else default, description.problems("timeout"))
