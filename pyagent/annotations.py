"""Per-job and per-step options written in pgAdmin's description fields.

pgAgent's schema has no place for a timeout, so, as jpgAgent did, options are lines of the
form `@NAME=value;` in the job's comment (`jobdesc`) or a step's description (`jstdesc`),
each on its own line. Durations take a unit: ms, s, m or h (`@JOB_TIMEOUT=30 s;`); a bare
number means seconds. `@TIMEZONE=Europe/Berlin;` names the zone a job's schedules are read
in. Unknown names are ignored (they may be meant for another tool).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from pyagent import duration

_LINE = re.compile(r"^[ \t]*@([A-Za-z_]+)[ \t]*=[ \t]*([^;\n]*?)[ \t]*;?[ \t]*$", re.MULTILINE)

JOB_TIMEOUT_NAMES = ("JOB_TIMEOUT",)
STEP_TIMEOUT_NAMES = ("JOB_STEP_TIMEOUT", "STEP_TIMEOUT")
TIMEZONE = "TIMEZONE"

# An IANA zone name: segments of letters, digits, `_`, `-`, `+`, starting with a letter.
# The same rule is written in sql/pyagent_timezone.sql (pyagent_known_timezone), so the
# agent, the management commands and the schema's trigger agree on which names count.
_ZONE_SHAPE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*$")
# Names of the tz database that are not zones of their own: the host's local zone (which
# differs between the agent's host and the server's) and tzcode's internal files.
_NOT_ZONES = ("localtime", "posixrules")
_NOT_ZONE_DIRS = ("posix/", "right/")


class AnnotationError(ValueError):
    """An annotation with a value that cannot be understood."""


def parse_annotations(text: str) -> dict[str, str]:
    """All `@NAME=value;` lines of a description, names upper-cased (last one wins)."""
    return {m.group(1).upper(): m.group(2) for m in _LINE.finditer(text or "")}


def parse_duration(value: str) -> float:
    """A timeout: a duration greater than zero (pyagent.duration)."""
    try:
        return duration.parse_duration(value)
    except duration.DurationError as exc:
        raise AnnotationError(str(exc)) from None


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


@dataclass(frozen=True)
class JobZone:
    """A job's own time zone from its comment: `name` None when it has none (or an unknown
    one, then `problem` says so) -- its schedules are then read as pgAgent reads them."""

    name: str | None = None
    problem: str | None = None


def job_timezone(jobdesc: str) -> JobZone:
    """The `@TIMEZONE=...;` of a job's comment (the last such line wins)."""
    found = parse_annotations(jobdesc)
    if TIMEZONE not in found:
        return JobZone()
    try:
        return JobZone(parse_timezone(found[TIMEZONE]))
    except AnnotationError as exc:
        return JobZone(None, f"@{TIMEZONE}: {exc}")


@dataclass(frozen=True)
class RunOptions:
    """Options of one job or step: timeout in seconds (None = no limit)."""

    timeout: float | None = None
    problems: tuple[str, ...] = ()


def _options(text: str, names: tuple[str, ...], default: float | None) -> RunOptions:
    found = parse_annotations(text)
    problems: list[str] = []
    timeout = default
    for name in names:
        if name in found:
            try:
                timeout = parse_duration(found[name])
            except AnnotationError as exc:
                problems.append(f"@{name}: {exc}")
    return RunOptions(timeout, tuple(problems))


def job_options(jobdesc: str, default_timeout: float | None = None) -> RunOptions:
    """Options from a job's comment."""
    return _options(jobdesc, JOB_TIMEOUT_NAMES, default_timeout)


def step_options(jstdesc: str, default_timeout: float | None = None) -> RunOptions:
    """Options from a step's description."""
    return _options(jstdesc, STEP_TIMEOUT_NAMES, default_timeout)
