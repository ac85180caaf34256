"""What `jobs apply` does to the database, as data: one small record per write, and the one
executor that carries a list of them out.

The planner (pyagent.jobs.plan) computes the records without writing anything; `execute`
runs them by phase: deletions first, so that an exception can move between schedules
(pgAgent's unique index on (jexdate, jextime) spans the whole database), then updates,
inserts, the touch of jobs whose children changed, and last the next run computed again
in a job's own time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, time
from enum import IntEnum
from typing import ClassVar, Protocol, assert_never

from pyagent.store.catalog import JobValues, ScheduleValues, StepValues

ExceptionKey = tuple[date | None, time | None]


class Phase(IntEnum):
    """The order operations run in (within a phase, the order they were planned in)."""

    DELETE_JOBS = 0
    DELETE_CHILDREN = 1
    UPDATE = 2
    INSERT = 3
    TOUCH = 4
    RESCHEDULE = 5


@dataclass(frozen=True)
class NewSchedule:
    """A schedule to insert, with its exceptions."""

    values: ScheduleValues
    exceptions: tuple[ExceptionKey, ...] = ()


@dataclass(frozen=True)
class CreateJob:
    """A new job with its steps and schedules; its next run computed again in its own time
    zone when it has one (the schema's trigger read the schedules in the session's)."""

    phase: ClassVar[Phase] = Phase.INSERT
    values: JobValues
    steps: tuple[StepValues, ...] = ()
    schedules: tuple[NewSchedule, ...] = ()
    timezone: str | None = None


@dataclass(frozen=True)
class UpdateJob:
    phase: ClassVar[Phase] = Phase.UPDATE
    jobid: int
    values: JobValues


@dataclass(frozen=True)
class DeleteJob:
    phase: ClassVar[Phase] = Phase.DELETE_JOBS
    jobid: int


@dataclass(frozen=True)
class InsertStep:
    phase: ClassVar[Phase] = Phase.INSERT
    jobid: int
    values: StepValues


@dataclass(frozen=True)
class UpdateStep:
    phase: ClassVar[Phase] = Phase.UPDATE
    jstid: int
    values: StepValues


@dataclass(frozen=True)
class DeleteStep:
    phase: ClassVar[Phase] = Phase.DELETE_CHILDREN
    jstid: int


@dataclass(frozen=True)
class InsertSchedule:
    phase: ClassVar[Phase] = Phase.INSERT
    jobid: int
    schedule: NewSchedule


@dataclass(frozen=True)
class UpdateSchedule:
    phase: ClassVar[Phase] = Phase.UPDATE
    jscid: int
    values: ScheduleValues


@dataclass(frozen=True)
class DeleteSchedule:
    phase: ClassVar[Phase] = Phase.DELETE_CHILDREN
    jscid: int


@dataclass(frozen=True)
class InsertException:
    phase: ClassVar[Phase] = Phase.INSERT
    jscid: int
    date: date | None
    time: time | None


@dataclass(frozen=True)
class DeleteException:
    phase: ClassVar[Phase] = Phase.DELETE_CHILDREN
    jexid: int


@dataclass(frozen=True)
class TouchJob:
    """Mark a job changed (jobchanged) when only its steps or schedules changed."""

    phase: ClassVar[Phase] = Phase.TOUCH
    jobid: int


@dataclass(frozen=True)
class RescheduleJob:
    """Compute the job's next run again with its schedules read in `timezone` (None: the
    session's TimeZone)."""

    phase: ClassVar[Phase] = Phase.RESCHEDULE
    jobid: int
    timezone: str | None


Operation = (
    CreateJob
    | UpdateJob
    | DeleteJob
    | InsertStep
    | UpdateStep
    | DeleteStep
    | InsertSchedule
    | UpdateSchedule
    | DeleteSchedule
    | InsertException
    | DeleteException
    | TouchJob
    | RescheduleJob
)


class CatalogWriter(Protocol):
    """The writes the executor needs (pyagent.store.catalog.Catalog has them)."""

    def insert_job(self, values: JobValues) -> int: ...
    def update_job(self, jobid: int, values: JobValues) -> None: ...
    def delete_job(self, jobid: int) -> None: ...
    def touch_job(self, jobid: int) -> None: ...
    def reschedule_job(self, jobid: int, zone: str | None) -> None: ...
    def insert_step(self, jobid: int, values: StepValues) -> int: ...
    def update_step(self, jstid: int, values: StepValues) -> None: ...
    def delete_step(self, jstid: int) -> None: ...
    def insert_schedule(self, jobid: int, values: ScheduleValues) -> int: ...
    def update_schedule(self, jscid: int, values: ScheduleValues) -> None: ...
    def delete_schedule(self, jscid: int) -> None: ...
    def insert_exception(self, jscid: int, on_date: date | None, at_time: time | None) -> None: ...
    def delete_exception(self, jexid: int) -> None: ...


def in_order(operations: Sequence[Operation]) -> list[Operation]:
    """The operations in the order `execute` runs them."""
    return sorted(operations, key=lambda operation: operation.phase)


def execute(catalog: CatalogWriter, operations: Sequence[Operation]) -> None:
    """Carry out a plan's operations, phase by phase (inside the caller's transaction)."""
    for operation in in_order(operations):
        _run(catalog, operation)


def _run(catalog: CatalogWriter, operation: Operation) -> None:
    match operation:
        case CreateJob():
            jobid = catalog.insert_job(operation.values)
            for step in operation.steps:
                catalog.insert_step(jobid, step)
            for schedule in operation.schedules:
                _insert_schedule(catalog, jobid, schedule)
            if operation.timezone is not None:
                catalog.reschedule_job(jobid, operation.timezone)
        case UpdateJob():
            catalog.update_job(operation.jobid, operation.values)
        case DeleteJob():
            catalog.delete_job(operation.jobid)
        case InsertStep():
            catalog.insert_step(operation.jobid, operation.values)
        case UpdateStep():
            catalog.update_step(operation.jstid, operation.values)
        case DeleteStep():
            catalog.delete_step(operation.jstid)
        case InsertSchedule():
            _insert_schedule(catalog, operation.jobid, operation.schedule)
        case UpdateSchedule():
            catalog.update_schedule(operation.jscid, operation.values)
        case DeleteSchedule():
            catalog.delete_schedule(operation.jscid)
        case InsertException():
            catalog.insert_exception(operation.jscid, operation.date, operation.time)
        case DeleteException():
            catalog.delete_exception(operation.jexid)
        case TouchJob():
            catalog.touch_job(operation.jobid)
        case RescheduleJob():
            catalog.reschedule_job(operation.jobid, operation.timezone)
        case _:
            assert_never(operation)


def _insert_schedule(catalog: CatalogWriter, jobid: int, schedule: NewSchedule) -> None:
    jscid = catalog.insert_schedule(jobid, schedule.values)
    for on_date, at_time in schedule.exceptions:
        catalog.insert_exception(jscid, on_date, at_time)
