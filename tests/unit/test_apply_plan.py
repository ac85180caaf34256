"""`jobs apply`'s plan as data: what the planner decides for job files against what the
database holds, looked at without a database, and the one executor's order."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime, time
from typing import Any

from pyagent.jobs import loading
from pyagent.jobs.operations import (
    CreateJob,
    DeleteException,
    DeleteJob,
    DeleteStep,
    InsertException,
    InsertStep,
    NewSchedule,
    Operation,
    Phase,
    RescheduleJob,
    TouchJob,
    UpdateJob,
    UpdateStep,
    execute,
    in_order,
)
from pyagent.jobs.plan import Existing, Plan, plan_changes
from pyagent.store.catalog import (
    ExceptionRecord,
    JobRecord,
    JobValues,
    ScheduleRecord,
    ScheduleValues,
    StepRecord,
    StepValues,
)
from pyagent.store.records import OnError, StepKind

T0 = datetime(2030, 1, 1, tzinfo=UTC)
CLASSES = {"Routine Maintenance": 1, "Data Export": 2}

NIGHTLY = """
name: nightly
class: Data Export
comment: Export the day.
timeout: 30 m
steps:
  - name: 10 dump
    database: app
    timeout: 90
    code: COPY t TO '/tmp/t.csv'
  - name: 20 ship
    kind: batch
    code: scp /tmp/t.csv backup
schedules:
  - name: night
    cron: "30 2 * * *"
    start: 2030-01-01 00:00:00+00:00
    exceptions: [2030-12-25, "2030-12-31 02:30"]
  - name: noon
    cron: "0 12 * * *"
    start: 2030-01-01 00:00:00+00:00
"""


def plan_for(text: str, existing: Existing, *, prune: bool = False) -> Plan:
    return plan_changes(
        loading.parse_text(textwrap.dedent(text), "jobs.yaml"), existing, prune=prune
    )


def job_record(jobid: int, values: JobValues, *, class_name: str = "Data Export") -> JobRecord:
    return JobRecord(
        jobid, values.name, class_name, values.enabled, values.hostagent, values.desc,
        T0, T0, None, None, None, None, None, None, None, None,
    )  # fmt: skip


def step_record(jstid: int, jobid: int, values: StepValues) -> StepRecord:
    return StepRecord(
        jstid, jobid, values.name, values.desc, values.enabled, values.kind, values.code,
        values.connstr, values.dbname, values.onerror,
    )  # fmt: skip


def schedule_record(jscid: int, jobid: int, new: NewSchedule, first_jexid: int) -> ScheduleRecord:
    v = new.values
    exceptions = tuple(
        ExceptionRecord(first_jexid + k, jscid, d, t) for k, (d, t) in enumerate(new.exceptions)
    )
    return ScheduleRecord(
        jscid, jobid, v.name, v.desc, v.enabled, v.start or T0, v.end, v.minutes, v.hours,
        v.weekdays, v.monthdays, v.months, exceptions,
    )  # fmt: skip


def as_stored(create: CreateJob, jobid: int = 7) -> Existing:
    """The database as the create operation would leave it: jstid 10.., jscid 20.., jexid 30.."""
    steps = [step_record(10 + k, jobid, v) for k, v in enumerate(create.steps)]
    schedules = [
        schedule_record(20 + k, jobid, s, 30 + 10 * k) for k, s in enumerate(create.schedules)
    ]
    return Existing(CLASSES, [job_record(jobid, create.values)], {jobid: steps}, {jobid: schedules})


def created(text: str = NIGHTLY) -> CreateJob:
    (operation,) = plan_for(text, Existing(CLASSES, [])).operations
    assert isinstance(operation, CreateJob)
    return operation


# --- planning ---------------------------------------------------------------------------


def test_a_new_job_is_one_create_with_its_steps_schedules_and_exceptions():
    plan = plan_for(NIGHTLY, Existing(CLASSES, []))
    (create,) = plan.operations
    assert create == CreateJob(
        JobValues(
            2,
            "nightly",
            "Export the day.\n@JOB_TIMEOUT=30 m;\n@MANAGED_BY=pyagent;",
            "",
            True,
        ),
        steps=(
            StepValues(
                "10 dump",
                "@JOB_STEP_TIMEOUT=1 m 30 s;",
                True,
                StepKind.SQL,
                "COPY t TO '/tmp/t.csv'",
                "",
                "app",
                OnError.FAIL,
            ),
            StepValues(
                "20 ship",
                "",
                True,
                StepKind.BATCH,
                "scp /tmp/t.csv backup",
                "",
                "",
                OnError.FAIL,
            ),
        ),
        schedules=create.schedules,
        timezone=None,
    )
    night, noon = create.schedules
    assert night.exceptions == ((date(2030, 12, 25), None), (date(2030, 12, 31), time(2, 30)))
    assert night.values.start == T0 and noon.exceptions == ()
    assert [c.action for c in plan.changes] == ["create"] and plan.unchanged == ()
    assert "+ schedule 'night' (cron '30 2 * * *')" in plan.changes[0].details
    assert plan.read.new_names == ["nightly"] and not plan.read.jobs


def test_what_apply_creates_a_second_plan_leaves_alone():
    plan = plan_for(NIGHTLY, as_stored(created()))
    assert plan.operations == () and plan.changes == () and plan.unchanged == ("nightly",)
    assert plan.text() == "no changes: the database matches the files (1 jobs)"


def test_a_changed_step_is_an_update_and_a_touch_of_its_job():
    plan = plan_for(
        NIGHTLY.replace("scp /tmp/t.csv backup", "rsync -a /tmp/t.csv backup"), as_stored(created())
    )
    (update, touch) = plan.operations
    assert isinstance(update, UpdateStep) and update.jstid == 11
    assert update.values.code == "rsync -a /tmp/t.csv backup"
    assert touch == TouchJob(7)
    assert plan.changes[0].details == (
        "~ step '20 ship':",
        "    code: 'scp /tmp/t.csv backup' -> 'rsync -a /tmp/t.csv backup'",
    )
    # What apply read of the job it changes, for the check just before writing.
    assert list(plan.read.jobs) == [7] and [s.jstid for s in plan.read.steps[7]] == [10, 11]


def test_steps_are_matched_by_name():
    plan = plan_for(NIGHTLY.replace("20 ship", "30 ship"), as_stored(created()))
    assert [type(o) for o in plan.operations] == [DeleteStep, InsertStep, TouchJob]
    assert plan.operations[0] == DeleteStep(11)
    insert = plan.operations[1]
    assert isinstance(insert, InsertStep) and (insert.jobid, insert.values.name) == (7, "30 ship")


def test_an_option_meaning_the_same_is_not_rewritten():
    existing = as_stored(created())
    step = existing.steps[7][0]
    stored = StepRecord(**{**step.__dict__, "desc": "@STEP_TIMEOUT=90;"})
    existing = Existing(
        CLASSES, existing.jobs, {7: [stored, existing.steps[7][1]]}, existing.schedules
    )
    assert plan_for(NIGHTLY, existing).operations == ()
    changed = plan_for(NIGHTLY.replace("timeout: 90", "timeout: 2 m"), existing)
    assert changed.changes[0].details == ("~ step '10 dump':", "    timeout: '90' -> '2 m'")


def test_an_exception_moving_to_another_schedule_is_deleted_before_it_is_added():
    moved = NIGHTLY.replace(
        'exceptions: [2030-12-25, "2030-12-31 02:30"]', "exceptions: [2030-12-25]"
    ).replace(
        '    cron: "0 12 * * *"\n', '    cron: "0 12 * * *"\n    exceptions: ["2030-12-31 02:30"]\n'
    )
    plan = plan_for(moved, as_stored(created()))
    insert = InsertException(21, date(2030, 12, 31), time(2, 30))
    assert set(plan.operations) == {DeleteException(31), insert, TouchJob(7)}
    assert in_order(plan.operations) == [DeleteException(31), insert, TouchJob(7)]


def test_a_job_given_a_time_zone_is_updated_and_rescheduled_in_it():
    zoned = NIGHTLY.replace("timeout: 30 m\n", "timeout: 30 m\ntimezone: Europe/Berlin\n", 1)
    plan = plan_for(zoned, as_stored(created()))
    update, reschedule = plan.operations
    assert isinstance(update, UpdateJob) and update.jobid == 7
    assert update.values.desc.endswith("@TIMEZONE=Europe/Berlin;\n@MANAGED_BY=pyagent;")
    assert reschedule == RescheduleJob(7, "Europe/Berlin")
    assert "timezone: (none) -> 'Europe/Berlin'" in plan.changes[0].details


def test_prune_deletes_the_managed_jobs_no_file_has_and_nothing_else():
    managed = job_record(7, JobValues(2, "old", "@MANAGED_BY=pyagent;", "", True))
    by_hand = job_record(8, JobValues(2, "by hand", "made in pgAdmin", "", True))
    existing = Existing(CLASSES, [managed, by_hand])
    assert plan_changes([], existing, prune=False).operations == ()
    plan = plan_changes([], existing, prune=True)
    assert plan.operations == (DeleteJob(7),)
    assert [(c.action, c.name) for c in plan.changes] == [("delete", "old")]
    assert list(plan.read.jobs) == [7]


# --- the executor -----------------------------------------------------------------------


class Recorder:
    """A CatalogWriter that records the calls (new rows get ids 100, 101, ...)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.next_id = 100

    def _new(self, *call: Any) -> int:
        self.calls.append(call)
        self.next_id += 1
        return self.next_id - 1

    def insert_job(self, values: JobValues) -> int:
        return self._new("insert_job", values.name)

    def update_job(self, jobid: int, values: JobValues) -> None:
        self.calls.append(("update_job", jobid))

    def delete_job(self, jobid: int) -> None:
        self.calls.append(("delete_job", jobid))

    def touch_job(self, jobid: int) -> None:
        self.calls.append(("touch_job", jobid))

    def reschedule_job(self, jobid: int, zone: str | None) -> None:
        self.calls.append(("reschedule_job", jobid, zone))

    def insert_step(self, jobid: int, values: StepValues) -> int:
        return self._new("insert_step", jobid, values.name)

    def update_step(self, jstid: int, values: StepValues) -> None:
        self.calls.append(("update_step", jstid))

    def delete_step(self, jstid: int) -> None:
        self.calls.append(("delete_step", jstid))

    def insert_schedule(self, jobid: int, values: ScheduleValues) -> int:
        return self._new("insert_schedule", jobid, values.name)

    def update_schedule(self, jscid: int, values: ScheduleValues) -> None:
        self.calls.append(("update_schedule", jscid))

    def delete_schedule(self, jscid: int) -> None:
        self.calls.append(("delete_schedule", jscid))

    def insert_exception(self, jscid: int, on_date: date | None, at_time: time | None) -> None:
        self.calls.append(("insert_exception", jscid, on_date, at_time))

    def delete_exception(self, jexid: int) -> None:
        self.calls.append(("delete_exception", jexid))


def test_the_executor_runs_the_operations_phase_by_phase():
    zoned = created(NIGHTLY.replace("timeout: 30 m\n", "timezone: UTC\n", 1))
    operations: list[Operation] = [
        RescheduleJob(5, None),
        TouchJob(5),
        zoned,
        InsertStep(5, zoned.steps[0]),
        UpdateStep(6, zoned.steps[0]),
        DeleteException(9),
        DeleteJob(4),
    ]
    recorder = Recorder()
    execute(recorder, operations)
    assert recorder.calls == [
        ("delete_job", 4),
        ("delete_exception", 9),
        ("update_step", 6),
        ("insert_job", "nightly"),
        ("insert_step", 100, "10 dump"),
        ("insert_step", 100, "20 ship"),
        ("insert_schedule", 100, "night"),
        ("insert_exception", 103, date(2030, 12, 25), None),
        ("insert_exception", 103, date(2030, 12, 31), time(2, 30)),
        ("insert_schedule", 100, "noon"),
        ("reschedule_job", 100, "UTC"),
        ("insert_step", 5, "10 dump"),
        ("touch_job", 5),
        ("reschedule_job", 5, None),
    ]
    assert [o.phase for o in in_order(operations)] == sorted(o.phase for o in operations)
    assert Phase.DELETE_JOBS < Phase.DELETE_CHILDREN < Phase.UPDATE < Phase.INSERT
