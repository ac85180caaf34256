"""Typed records and enums for the rows of the `pgagent` schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pyagent.liveness import Sighting


class RunStatus(StrEnum):
    """pga_joblog.jlgstatus and pga_jobsteplog.jslstatus letters."""

    RUNNING = "r"
    SUCCEEDED = "s"
    FAILED = "f"
    INTERNAL_ERROR = "i"
    ABORTED = "d"

    @property
    def label(self) -> str:
        """The word pgAdmin shows for the letter."""
        return _LABELS[self]

    @classmethod
    def stored(cls, value: object) -> RunStatus | None:
        """A status letter as stored (None for NULL or a letter pgAgent does not write)."""
        try:
            return None if value is None else cls(str(value))
        except ValueError:
            return None


_LABELS = {
    RunStatus.RUNNING: "running",
    RunStatus.SUCCEEDED: "succeeded",
    RunStatus.FAILED: "failed",
    RunStatus.INTERNAL_ERROR: "internal error",
    RunStatus.ABORTED: "aborted",
}


class StepKind(StrEnum):
    """pga_jobstep.jstkind."""

    SQL = "s"
    BATCH = "b"


class OnError(StrEnum):
    """pga_jobstep.jstonerror: what a failed step does to its job."""

    FAIL = "f"
    SUCCEED = "s"
    IGNORE = "i"


@dataclass(frozen=True)
class Claim:
    """A job this agent claimed, with the jobnextrun it had when claimed."""

    job_id: int
    claimed_nextrun: datetime | None
    agent_pid: int
    # Seconds between the job's jobnextrun and the claim (None when it had none).
    pickup_lag: float | None = None


@dataclass(frozen=True)
class Renewal:
    """A lease renewal that succeeded: the value written to jaglogintime, and how many other
    agents were registered at that moment."""

    renewed: datetime
    others: int


@dataclass(frozen=True)
class PollResult:
    """What one claim statement found: the jobs claimed and, on a full poll, the lease
    renewal (None: this agent's row is gone), when the next unclaimed job is due (seconds;
    <= 0 means already due) and every other agent's row for the liveness judgement."""

    claims: tuple[Claim, ...]
    next_due_in: float | None = None
    renewal: Renewal | None = None
    sightings: tuple[Sighting, ...] = ()


def sighting_from_row(row: tuple[object, ...]) -> Sighting:
    """An agent_sightings row (shared.sql): its last seven columns."""
    pid, renewed, age, advert, alive, newer, station = row[-7:]
    assert isinstance(renewed, datetime)
    return Sighting(
        pid=int(str(pid)),
        station=str(station or ""),
        last_renewed=renewed,
        lease_age=float(str(age or 0.0)),
        backend_alive=bool(alive),
        advert=None if advert is None else int(str(advert)),
        backend_newer=bool(newer),
    )


@dataclass(frozen=True)
class DeadRun:
    """A running run of an agent judged dead, and the step it is at (if any)."""

    jlgid: int
    job_id: int
    jslid: int | None
    step_kind: str
    step_connstr: str


@dataclass(frozen=True)
class Author:
    """Who last changed what decides what a step or a job runs (pyagent.authorship), as
    read when the run started. `role` is None when there is no record; `current` is False
    when the row changed since it was recorded (the recording was bypassed)."""

    role: str | None
    current: bool
    trusted: bool  # the agent's own role, a superuser, or a member of a trusted role

    @property
    def known(self) -> bool:
        """A record exists and still matches the row."""
        return self.role is not None and self.current


UNKNOWN_AUTHOR = Author(None, False, False)


@dataclass(frozen=True)
class StepAuthors:
    """The step's author and the author of its job's on/off switch and host agent."""

    step: Author
    job: Author


@dataclass(frozen=True)
class StepDef:
    """One enabled step of a job, as the agent runs it."""

    step_id: int
    name: str
    kind: str  # a StepKind letter, or whatever the row holds (an invalid kind fails the job)
    code: str
    connstr: str
    dbname: str
    onerror: str
    desc: str
    # Read only under --step-rights author (None otherwise).
    authors: StepAuthors | None = None


@dataclass(frozen=True)
class RunStart:
    """A run's pga_joblog row, the job's comment and its enabled steps in pgAgent's order."""

    jlgid: int
    jobdesc: str
    steps: tuple[StepDef, ...]


class SchemaProblem(StrEnum):
    """Why the schema cannot be used (each has pgAgent's own log message)."""

    NO_JOB_TABLE = "no_job_table"
    NO_VERSION_FUNCTION = "no_version_function"
    WRONG_VERSION = "wrong_version"


@dataclass(frozen=True)
class SchemaState:
    problem: SchemaProblem | None
    version: str | None = None


@dataclass(frozen=True)
class ServerFacts:
    in_recovery: bool
    timezone: str
    has_notify_trigger: bool


@dataclass(frozen=True)
class SessionZoneFacts:
    """The agent session's TimeZone and where it comes from (pg_settings.source), and
    what every session of the database gets by default when that is known (its own
    setting, or the one for all roles; None: the server's, not readable here)."""

    timezone: str
    source: str
    database_default: str | None
    role: str
    database: str


@dataclass(frozen=True)
class AuthorshipFacts:
    """What --step-rights author needs from the database, checked at every connection."""

    installed: bool
    readable: bool
    triggers_always: int  # of the job and step triggers, how many fire always (2 = all)
    unknown_roles: tuple[str, ...]


@dataclass(frozen=True)
class FallbackRelease:
    """A job released with a next run computed by pyagent because the schema's next-run
    function failed: the error, the schedules in words and the time chosen."""

    job_id: int
    error: str
    schedules: str
    next_run: datetime | None


@dataclass(frozen=True)
class FailedStep:
    """What the warning about a failed run says: the job's name and the run's last step
    that did not succeed (step_id None when no step log failed)."""

    job_name: str | None
    step_id: int | None = None
    step_name: str | None = None
    status: str | None = None
    result: int | None = None
    output: str = ""
