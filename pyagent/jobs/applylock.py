"""How `jobs apply` meets other writers.

Applies run one at a time per database: each takes the apply lock (a transaction-level
advisory lock nothing else takes) before it reads anything and holds it to its commit, so an
apply that waited plans from what the previous one committed. An edit made by someone else
(pgAdmin, psql) between apply's read and its write is never written over: just before
writing, the rows it changes are locked and must still be as it read them, or it stops.

Row locks are taken in short attempts inside a savepoint: a failed attempt lets go of
everything it locked, so while apply waits for a pgAdmin dialog or a busy agent to finish,
it holds nothing an agent's claim or release could wait for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from psycopg import errors as pgerrors

from pyagent.backoff import Backoff
from pyagent.duration import format_duration
from pyagent.exitcodes import EXIT_CONFLICT, EXIT_LOCK_TIMEOUT
from pyagent.jobs.errors import JobsError
from pyagent.jobs.lookup import by_job
from pyagent.store.catalog import Catalog, JobRecord, ScheduleRecord, StepRecord

DEFAULT_LOCK_TIMEOUT = 60.0  # seconds, --lock-timeout

# The longest one attempt to lock the rows may wait. While it waits, the rows it locked
# already stay locked, so this bounds what a concurrent agent release can wait for.
ROW_LOCK_ATTEMPT = 0.2

Say = Callable[[str], None]


def _seconds(value: float) -> str:
    return format_duration(round(value, 1))


@dataclass
class RowsRead:
    """What the plan read of the rows it will change: each job it changes (its row, all its
    steps and schedules), each job it deletes (its row) and the names it creates."""

    jobs: dict[int, JobRecord] = field(default_factory=dict)
    steps: dict[int, list[StepRecord]] = field(default_factory=dict)
    schedules: dict[int, list[ScheduleRecord]] = field(default_factory=dict)
    new_names: list[str] = field(default_factory=list)

    def changing(
        self, job: JobRecord, steps: list[StepRecord], schedules: list[ScheduleRecord]
    ) -> None:
        self.jobs[job.jobid] = job
        self.steps[job.jobid] = steps
        self.schedules[job.jobid] = schedules

    def deleting(self, job: JobRecord) -> None:
        self.jobs[job.jobid] = job

    def creating(self, name: str) -> None:
        self.new_names.append(name)


class ApplyLocks:
    """The locks of one apply, all waits together bounded by `timeout` seconds."""

    def __init__(self, catalog: Catalog, timeout: float, say: Say) -> None:
        self.catalog = catalog
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.say = say

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def take_apply_lock(self) -> None:
        """Take the apply lock, first thing in the transaction; wait (saying so once)."""
        if self.catalog.try_apply_lock():
            return
        holder = self.catalog.apply_lock_holder()
        who = f" (pid {holder})" if holder is not None else ""
        remaining = self.remaining()
        if remaining <= 0:
            raise JobsError(
                f"another pyagent jobs apply{who} is running and --lock-timeout is 0: "
                "nothing was changed",
                EXIT_LOCK_TIMEOUT,
            )
        self.say(
            f"waiting for another pyagent jobs apply{who} to finish (up to {_seconds(remaining)}) …"
        )
        self.catalog.set_lock_timeout(remaining)
        try:
            self.catalog.wait_apply_lock()
        except pgerrors.LockNotAvailable:
            raise JobsError(
                f"gave up after {_seconds(self.timeout)}: another pyagent jobs apply{who} is "
                "still running; nothing was changed (try again, or raise --lock-timeout)",
                EXIT_LOCK_TIMEOUT,
            ) from None

    def lock_as_read(self, read: RowsRead) -> None:
        """Lock the rows the plan changes and check they are as it read them; a JobsError
        (nothing written) when they changed, or stayed locked by others past the deadline."""
        backoff = Backoff(initial=0.05, maximum=1.0)
        said = False
        while True:
            try:
                with self.catalog.savepoint():
                    attempt = min(ROW_LOCK_ATTEMPT, max(self.remaining(), 0.001))
                    self.catalog.set_lock_timeout(attempt)
                    problems = _changed_since_read(self.catalog, read)
                break
            except pgerrors.LockNotAvailable:
                remaining = self.remaining()
                if remaining <= 0:
                    raise JobsError(
                        f"gave up after {_seconds(self.timeout)}: another session kept rows "
                        "of the jobs to change locked (an open pgAdmin dialog or "
                        "transaction?); nothing was changed (try again, or raise "
                        "--lock-timeout)",
                        EXIT_LOCK_TIMEOUT,
                    ) from None
                if not said:
                    self.say(
                        "waiting for another session (pgAdmin? an agent?) to let go of rows "
                        f"of the jobs to change (up to {_seconds(remaining)}) …"
                    )
                    said = True
                time.sleep(min(backoff.next_delay(), remaining))
        if problems:
            for problem in problems:
                self.say(f"error: {problem}")
            raise JobsError(
                "the database changed after apply read it: nothing was changed; "
                "run apply again to see the new plan",
                EXIT_CONFLICT,
            )

    def execute(self, write: Callable[[Catalog], None]) -> None:
        """The plan's writes, after lock_as_read. They may still wait for a lock (a run log
        of a job to delete, an exception another session is adding): up to the deadline."""
        self.catalog.set_lock_timeout(max(self.remaining(), ROW_LOCK_ATTEMPT))
        try:
            write(self.catalog)
        except pgerrors.LockNotAvailable:
            raise JobsError(
                f"gave up after {_seconds(self.timeout)} while writing: another session "
                "kept a row locked; nothing was changed (try again, or raise --lock-timeout)",
                EXIT_LOCK_TIMEOUT,
            ) from None


def _job_fields(job: JobRecord) -> tuple[object, ...]:
    """What apply compares and writes of a pga_job row (an agent changes the others)."""
    return (job.name, job.class_name, job.enabled, job.hostagent, job.desc)


def _changed_since_read(catalog: Catalog, read: RowsRead) -> list[str]:
    """Lock the rows and say what differs from the plan's reading of them."""
    problems: list[str] = []
    changed = sorted(read.steps)
    jobs_now = {job.jobid: job for job in catalog.lock_jobs(sorted(read.jobs))} if read.jobs else {}
    steps_now = by_job(catalog.lock_steps(changed)) if changed else {}
    schedules_now = by_job(catalog.lock_schedules(changed)) if changed else {}
    for jobid, before in read.jobs.items():
        now = jobs_now.get(jobid)
        if now is None:
            problems.append(f"job {before.name!r} (id {jobid}) was deleted meanwhile")
        elif _job_fields(now) != _job_fields(before) or (
            jobid in read.steps
            and (
                _steps_by_id(steps_now.get(jobid, [])) != _steps_by_id(read.steps[jobid])
                or _schedules_by_id(schedules_now.get(jobid, []))
                != _schedules_by_id(read.schedules[jobid])
            )
        ):
            problems.append(
                f"job {before.name!r} (id {jobid}) was changed by someone else "
                "(pgAdmin?) after apply read it"
            )
    for jobid, name in catalog.jobs_named(read.new_names) if read.new_names else []:
        problems.append(f"job {name!r} (id {jobid}) was created by someone else meanwhile")
    return problems


def _steps_by_id(steps: list[StepRecord]) -> dict[int, StepRecord]:
    return {step.jstid: step for step in steps}


def _schedules_by_id(schedules: list[ScheduleRecord]) -> dict[int, ScheduleRecord]:
    return {schedule.jscid: schedule for schedule in schedules}
