"""The catalogue: jobs, steps, schedules, exceptions and run logs, for the management
commands (`pyagent jobs ...`). Synchronous psycopg; every statement is a named block of
`catalog.sql`; rows come back as small frozen records. `connect_catalog` makes the
management commands' connection."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from types import TracebackType
from typing import Any

import psycopg

from pyagent.conninfo import connect_for_command
from pyagent.store.authorship import AuthorshipRecords
from pyagent.store.jobcontrol import CancelRequests
from pyagent.store.records import OnError, RunStatus, StepKind, sighting_from_row
from pyagent.store.sqlfile import load_blocks

Flags = tuple[bool, ...]

# `pyagent jobs apply` runs one at a time per database: it holds a transaction-level advisory
# lock whose key is this name's SHA-256, first 8 bytes, as a signed bigint (docs/jobs.md
# gives the number, to find the holder in pg_locks).
APPLY_LOCK_NAME = "pyagent jobs apply"
APPLY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(APPLY_LOCK_NAME.encode()).digest()[:8], "big", signed=True
)


def _sql(name: str) -> str:
    return load_blocks("pyagent.store", "catalog.sql")[name]


# --- records read ----------------------------------------------------------------------


@dataclass(frozen=True)
class SessionInfo:
    """The session's TimeZone setting and the database clock."""

    timezone: str
    now: datetime


@dataclass(frozen=True)
class JobRecord:
    """A pga_job row with its class name, the agent running it and its newest run."""

    jobid: int
    name: str
    class_name: str
    enabled: bool
    hostagent: str
    desc: str
    created: datetime
    changed: datetime
    agent_pid: int | None
    agent_station: str | None
    next_run: datetime | None
    last_run: datetime | None
    last_jlgid: int | None
    last_status: RunStatus | None
    last_start: datetime | None
    last_duration: timedelta | None


@dataclass(frozen=True)
class StepRecord:
    """A pga_jobstep row."""

    jstid: int
    jobid: int
    name: str
    desc: str
    enabled: bool
    kind: StepKind
    code: str
    connstr: str
    dbname: str
    onerror: OnError


@dataclass(frozen=True)
class ExceptionRecord:
    """A pga_exception row: a local date, a local time of day, or both."""

    jexid: int
    jscid: int
    date: date | None
    time: time | None


@dataclass(frozen=True)
class ScheduleRecord:
    """A pga_schedule row with its exceptions (in jexid order)."""

    jscid: int
    jobid: int
    name: str
    desc: str
    enabled: bool
    start: datetime
    end: datetime | None
    minutes: Flags
    hours: Flags
    weekdays: Flags
    monthdays: Flags
    months: Flags
    exceptions: tuple[ExceptionRecord, ...] = ()


@dataclass(frozen=True)
class RunRecord:
    """A pga_joblog row with its job's name."""

    jlgid: int
    jobid: int
    jobname: str
    status: RunStatus
    start: datetime
    duration: timedelta | None


@dataclass(frozen=True)
class StepRunRecord:
    """A pga_jobsteplog row with its step's name."""

    jslid: int
    jlgid: int
    jstid: int
    step_name: str
    status: RunStatus
    result: int | None
    start: datetime
    duration: timedelta | None
    output: str | None


@dataclass(frozen=True)
class AgentRecord:
    """A pga_jobagent row: whether its service session is connected now (`alive`), and
    whether the agents' liveness rule judges it dead (pyagent.liveness). For a pyagent
    agent `login_time` is its last lease renewal."""

    pid: int
    station: str
    login_time: datetime
    alive: bool
    pyagent: bool = False  # its session holds pyagent's lease advert
    lease_age: float = 0.0
    dead: bool = False


@dataclass(frozen=True)
class JobClass:
    jclid: int
    name: str


@dataclass(frozen=True)
class RunNowResult:
    """What "Run now" left in jobnextrun (NULL when the job is disabled) and when."""

    next_run: datetime | None
    requested_at: datetime


# --- values written --------------------------------------------------------------------


@dataclass(frozen=True)
class JobValues:
    jclid: int
    name: str
    desc: str
    hostagent: str
    enabled: bool


@dataclass(frozen=True)
class StepValues:
    name: str
    desc: str
    enabled: bool
    kind: StepKind
    code: str
    connstr: str
    dbname: str
    onerror: OnError


@dataclass(frozen=True)
class ScheduleValues:
    """A schedule to write; start None means "now" for a new row, "unchanged" otherwise."""

    name: str
    desc: str
    enabled: bool
    start: datetime | None
    end: datetime | None
    minutes: Flags
    hours: Flags
    weekdays: Flags
    monthdays: Flags
    months: Flags


def _flags(value: object, length: int) -> Flags:
    items = list(value) if isinstance(value, list | tuple) else []
    items = items[:length] + [False] * (length - len(items))
    return tuple(item is True for item in items)


def connect_catalog(conninfo: str, application_name: str = "pyagent jobs") -> Catalog:
    """A Catalog on a new autocommit connection, for one management command: `conninfo`
    is a libpq conninfo or URI ("": libpq's PG* variables and ~/.pgpass); the session is
    named `application_name` unless the conninfo names it. Raises psycopg.ProgrammingError
    for a malformed conninfo and psycopg.OperationalError when the connection fails. Use
    it in a `with` block (or call `close()`)."""
    # `run --wait` polls with one statement: connect_for_command prepares none.
    return Catalog(connect_for_command(conninfo, application_name))


class Catalog:
    """Reads and writes of the pgagent catalogue on one connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _rows(self, name: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(_sql(name), params)
            return list(cur.fetchall()) if cur.description is not None else []

    def _one(self, name: str, params: Mapping[str, Any] | None = None) -> tuple[Any, ...] | None:
        rows = self._rows(name, params)
        return rows[0] if rows else None

    @contextmanager
    def transaction(self, *, snapshot: bool = False) -> Iterator[None]:
        """One transaction: everything inside commits together or not at all. Each statement
        sees what others committed before it (READ COMMITTED), or with `snapshot` all see
        one snapshot and nothing can be written (a dry run)."""
        with self.conn.transaction():
            self._rows("snapshot_read" if snapshot else "read_committed")
            yield

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """An error inside undoes only what was done inside, row locks taken there included."""
        with self.conn.transaction():
            yield

    def set_lock_timeout(self, seconds: float) -> None:
        """Lock waits give up after this long, until the transaction ends (never 0: that
        would mean no limit)."""
        self._rows("set_lock_timeout", {"timeout": f"{max(1, round(seconds * 1000))}ms"})

    # --- the apply lock (held until the transaction ends) ----------------------------------

    def try_apply_lock(self) -> bool:
        row = self._one("try_apply_lock", {"key": APPLY_LOCK_KEY})
        return bool(row and row[0])

    def wait_apply_lock(self) -> None:
        """Wait for the apply lock (up to the lock timeout: LockNotAvailable after it)."""
        self._rows("wait_apply_lock", {"key": APPLY_LOCK_KEY})

    def apply_lock_holder(self) -> int | None:
        """The backend pid holding the apply lock now, if any."""
        key = APPLY_LOCK_KEY & 0xFFFF_FFFF_FFFF_FFFF
        row = self._one("apply_lock_holder", {"high": key >> 32, "low": key & 0xFFFF_FFFF})
        return int(row[0]) if row is not None else None

    @property
    def authorship(self) -> AuthorshipRecords:
        """pyagent's authorship records (schema pyagent), on the same connection."""
        return AuthorshipRecords(self.conn)

    @property
    def cancel_requests(self) -> CancelRequests:
        """Job control's cancel request (`pyagent jobs cancel`), on the same connection."""
        return CancelRequests(self.conn)

    # --- reads -------------------------------------------------------------------------

    def session_info(self) -> SessionInfo:
        row = self._one("session_info")
        assert row is not None
        now, timezone = row
        return SessionInfo(str(timezone), now)

    def jobs(self, jobids: Sequence[int] | None = None) -> list[JobRecord]:
        """Jobs by name (all of them, or those with these ids)."""
        ids = list(jobids) if jobids is not None else None
        return [_job(r) for r in self._rows("jobs", {"jobids": ids})]

    def job_ids_by_name(self, name: str) -> list[int]:
        return [r[0] for r in self._rows("job_ids_by_name", {"name": name})]

    def jobs_named(self, names: Sequence[str]) -> list[tuple[int, str]]:
        """(id, name) of the jobs with any of these names."""
        return [(r[0], r[1]) for r in self._rows("jobs_named", {"names": list(names)})]

    def steps(self, jobids: Sequence[int]) -> list[StepRecord]:
        """Steps of these jobs, each job's in execution order (jstname, jstid)."""
        return [_step(r) for r in self._rows("steps", {"jobids": list(jobids)})]

    def schedules(self, jobids: Sequence[int]) -> list[ScheduleRecord]:
        """Schedules of these jobs (by job, name, id), each with its exceptions."""
        params = {"jobids": list(jobids)}
        return _schedules(self._rows("schedules", params), self._rows("exceptions", params))

    # --- rows locked until the transaction ends (apply, just before it writes) -------------

    def lock_jobs(self, jobids: Sequence[int]) -> list[JobRecord]:
        """These jobs as they are now, locked against other writers (by id)."""
        return [_job(r) for r in self._rows("lock_jobs", {"jobids": list(jobids)})]

    def lock_steps(self, jobids: Sequence[int]) -> list[StepRecord]:
        """Every step of these jobs as it is now, locked against other writers (by id)."""
        return [_step(r) for r in self._rows("lock_steps", {"jobids": list(jobids)})]

    def lock_schedules(self, jobids: Sequence[int]) -> list[ScheduleRecord]:
        """Every schedule of these jobs, and its exceptions, as they are now, locked (by id)."""
        params = {"jobids": list(jobids)}
        schedules = self._rows("lock_schedules", params)
        return _schedules(schedules, self._rows("lock_exceptions", params))

    @staticmethod
    def _run(r: tuple[Any, ...]) -> RunRecord:
        status = RunStatus.stored(r[3]) or RunStatus.INTERNAL_ERROR
        return RunRecord(r[0], r[1], r[2], status, r[4], r[5])

    def runs(
        self, jobid: int | None = None, *, limit: int = 20, failed_only: bool = False
    ) -> list[RunRecord]:
        """Runs, newest first."""
        params = {"jobid": jobid, "limit": limit, "failed_only": failed_only}
        return [self._run(r) for r in self._rows("runs", params)]

    def run(self, jlgid: int) -> RunRecord | None:
        row = self._one("run", {"jlgid": jlgid})
        return self._run(row) if row is not None else None

    def runs_since(self, jobid: int, after_jlgid: int, since: datetime) -> list[RunRecord]:
        """Runs of a job with a higher log id than after_jlgid that began at `since` or later."""
        params = {"jobid": jobid, "after_jlgid": after_jlgid, "since": since}
        return [self._run(r) for r in self._rows("runs_since", params)]

    def step_runs(self, jlgid: int) -> list[StepRunRecord]:
        return [
            StepRunRecord(
                jslid=r[0],
                jlgid=r[1],
                jstid=r[2],
                step_name=r[3],
                status=RunStatus.stored(r[4]) or RunStatus.INTERNAL_ERROR,
                result=r[5],
                start=r[6],
                duration=r[7],
                output=r[8],
            )
            for r in self._rows("step_runs", {"jlgid": jlgid})
        ]

    def last_run_id(self, jobid: int) -> int:
        row = self._one("last_run_id", {"jobid": jobid})
        return int(row[0]) if row is not None else 0

    def agents(self) -> list[AgentRecord]:
        """Registered agents, judged alive or dead by the agents' own rule."""
        from pyagent import liveness
        from pyagent.settings import DEFAULTS

        terms = liveness.lease_terms(DEFAULTS.poll_interval)
        records = []
        for row in self._rows("agents", {"own_pids": [], "advert_class": liveness.ADVERT_CLASS}):
            seen = sighting_from_row(row)
            known = liveness.terms_from_advert(seen.advert) if seen.advert is not None else None
            verdict = liveness.judge(seen, known, terms)
            records.append(
                AgentRecord(
                    seen.pid,
                    seen.station,
                    seen.last_renewed,
                    liveness.connected(seen),
                    pyagent=seen.advert is not None,
                    lease_age=seen.lease_age,
                    dead=verdict is not None,
                )
            )
        return records

    def job_classes(self) -> list[JobClass]:
        return [JobClass(r[0], r[1]) for r in self._rows("job_classes")]

    def existing_databases(self, names: Sequence[str]) -> set[str]:
        return {r[0] for r in self._rows("existing_databases", {"names": list(names)})}

    def collation_order(self, names: Sequence[str]) -> list[int]:
        """0-based positions of `names` in the order the database sorts them (ties by position)."""
        return [r[0] - 1 for r in self._rows("order_by_collation", {"names": list(names)})]

    def resolve_timestamps(self, texts: Sequence[str], zone: str | None = None) -> list[datetime]:
        """Timestamps given as text, read as the database reads them: in `zone`, or in the
        session's TimeZone when None."""
        if not texts:
            return []
        if zone is None:
            return [r[0] for r in self._rows("resolve_timestamps", {"texts": list(texts)})]
        params = {"texts": list(texts), "zone": zone}
        return [r[0] for r in self._rows("resolve_timestamps_in_zone", params)]

    def known_timezones(self, zones: Sequence[str]) -> set[str]:
        """Which of these time zone names the server knows."""
        return {str(r[0]) for r in self._rows("known_timezones", {"zones": list(zones)})}

    def schedules_next_run(self, jobid: int, zone: str | None) -> datetime | None:
        """The job's next run as the schema's own function gives it now, its schedules read
        in `zone` (the session's TimeZone when None). Changes nothing."""
        with self.conn.transaction(force_rollback=True):
            if zone is not None:
                self._rows("set_local_timezone", {"zone": zone})
            row = self._one("schedules_next_run", {"jobid": jobid})
        return row[0] if row is not None else None

    # --- writes ------------------------------------------------------------------------

    def run_now(self, jobid: int) -> RunNowResult | None:
        """pgAdmin's "Run now"; None when there is no such job."""
        row = self._one("run_now", {"jobid": jobid})
        return RunNowResult(row[0], row[1]) if row is not None else None

    def set_enabled(self, jobid: int, enabled: bool) -> datetime | None:
        """Enable or disable a job; returns its next run as the schema's trigger set it."""
        row = self._one("set_enabled", {"jobid": jobid, "enabled": enabled})
        return row[0] if row is not None else None

    def insert_job(self, values: JobValues) -> int:
        row = self._one("insert_job", _job_params(values))
        assert row is not None
        return int(row[0])

    def update_job(self, jobid: int, values: JobValues) -> None:
        self._rows("update_job", {"jobid": jobid, **_job_params(values)})

    def reschedule_job(self, jobid: int, zone: str | None) -> None:
        """Have the schema compute the job's next run again, reading its schedules in
        `zone` (the session's TimeZone when None). Call it inside a transaction."""
        if zone is None:
            self._rows("reschedule_job", {"jobid": jobid})
            return
        previous = self.session_info().timezone
        self._rows("set_local_timezone", {"zone": zone})
        self._rows("reschedule_job", {"jobid": jobid})
        # Later statements of the transaction read times in the session's zone again.
        self._rows("set_local_timezone", {"zone": previous})

    def touch_job(self, jobid: int) -> None:
        """Mark a job changed (jobchanged = now()) when only its steps/schedules changed."""
        self._rows("touch_job", {"jobid": jobid})

    def delete_job(self, jobid: int) -> None:
        """Delete a job; steps, schedules, exceptions and logs go with it (ON DELETE CASCADE)."""
        self._rows("delete_job", {"jobid": jobid})

    def insert_step(self, jobid: int, values: StepValues) -> int:
        row = self._one("insert_step", {"jobid": jobid, **_step_params(values)})
        assert row is not None
        return int(row[0])

    def update_step(self, jstid: int, values: StepValues) -> None:
        self._rows("update_step", {"jstid": jstid, **_step_params(values)})

    def delete_step(self, jstid: int) -> None:
        self._rows("delete_step", {"jstid": jstid})

    def insert_schedule(self, jobid: int, values: ScheduleValues) -> int:
        row = self._one("insert_schedule", {"jobid": jobid, **_schedule_params(values)})
        assert row is not None
        return int(row[0])

    def update_schedule(self, jscid: int, values: ScheduleValues) -> None:
        self._rows("update_schedule", {"jscid": jscid, **_schedule_params(values)})

    def delete_schedule(self, jscid: int) -> None:
        self._rows("delete_schedule", {"jscid": jscid})

    def insert_exception(self, jscid: int, on_date: date | None, at_time: time | None) -> None:
        self._rows("insert_exception", {"jscid": jscid, "date": on_date, "time": at_time})

    def delete_exception(self, jexid: int) -> None:
        self._rows("delete_exception", {"jexid": jexid})


def _job(r: tuple[Any, ...]) -> JobRecord:
    return JobRecord(
        jobid=r[0],
        name=r[1],
        class_name=r[2],
        enabled=r[3],
        hostagent=r[4],
        desc=r[5],
        created=r[6],
        changed=r[7],
        agent_pid=r[8],
        agent_station=r[9],
        next_run=r[10],
        last_run=r[11],
        last_jlgid=r[12],
        last_status=RunStatus.stored(r[13]),
        last_start=r[14],
        last_duration=r[15],
    )


def _step(r: tuple[Any, ...]) -> StepRecord:
    return StepRecord(
        jstid=r[0],
        jobid=r[1],
        name=r[2],
        desc=r[3],
        enabled=r[4],
        kind=StepKind(r[5]),
        code=r[6],
        connstr=r[7],
        dbname=r[8],
        onerror=OnError(r[9]),
    )


def _schedules(
    rows: list[tuple[Any, ...]], exception_rows: list[tuple[Any, ...]]
) -> list[ScheduleRecord]:
    exceptions: dict[int, list[ExceptionRecord]] = {}
    for r in exception_rows:
        exceptions.setdefault(r[1], []).append(ExceptionRecord(r[0], r[1], r[2], r[3]))
    return [
        ScheduleRecord(
            jscid=r[0],
            jobid=r[1],
            name=r[2],
            desc=r[3],
            enabled=r[4],
            start=r[5],
            end=r[6],
            minutes=_flags(r[7], 60),
            hours=_flags(r[8], 24),
            weekdays=_flags(r[9], 7),
            monthdays=_flags(r[10], 32),
            months=_flags(r[11], 12),
            exceptions=tuple(exceptions.get(r[0], ())),
        )
        for r in rows
    ]


def _job_params(values: JobValues) -> dict[str, Any]:
    return {
        "jclid": values.jclid,
        "name": values.name,
        "desc": values.desc,
        "hostagent": values.hostagent,
        "enabled": values.enabled,
    }


def _step_params(values: StepValues) -> dict[str, Any]:
    return {
        "name": values.name,
        "desc": values.desc,
        "enabled": values.enabled,
        "kind": values.kind.value,
        "code": values.code,
        "connstr": values.connstr,
        "dbname": values.dbname,
        "onerror": values.onerror.value,
    }


def _schedule_params(values: ScheduleValues) -> dict[str, Any]:
    return {
        "name": values.name,
        "desc": values.desc,
        "enabled": values.enabled,
        "start": values.start,
        "end": values.end,
        "minutes": list(values.minutes),
        "hours": list(values.hours),
        "weekdays": list(values.weekdays),
        "monthdays": list(values.monthdays),
        "months": list(values.months),
    }
