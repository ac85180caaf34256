"""`jobs apply`'s plan: the job files compared with what the database holds, as the changes
to show and the operations (pyagent.jobs.operations) to run. Pure: `plan_changes` reads
nothing and writes nothing, so a test can look at a plan without a database
(pyagent.jobs.apply reads the database, plans, and executes).

Jobs are matched by name and updated in place (their ids and run history stay). A job's
steps and schedules are matched by name, the k-th of a name in the file with the k-th of
that name in the database (by id), so unchanged rows are not touched at all.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Literal, Protocol, TypeVar

from pyagent.annotations import (
    JOB_OPTIONS,
    MANAGED_BY,
    STEP_TIMEOUT,
    Description,
    read_job,
    read_step,
)
from pyagent.jobs import cron
from pyagent.jobs.applylock import RowsRead
from pyagent.jobs.model import (
    KIND_WORD,
    NATIVE_FIELDS,
    ON_ERROR_WORD,
    FileJob,
    FileSchedule,
    FileStep,
    Stamp,
)
from pyagent.jobs.operations import (
    CatalogWriter,
    CreateJob,
    DeleteException,
    DeleteJob,
    DeleteSchedule,
    DeleteStep,
    ExceptionKey,
    InsertException,
    InsertSchedule,
    InsertStep,
    NewSchedule,
    Operation,
    RescheduleJob,
    TouchJob,
    UpdateJob,
    UpdateSchedule,
    UpdateStep,
    execute,
)
from pyagent.jobs.render import quoted
from pyagent.safetext import safe_text
from pyagent.schedule import in_words
from pyagent.store.catalog import (
    JobRecord,
    JobValues,
    ScheduleRecord,
    ScheduleValues,
    StepRecord,
    StepValues,
)

Action = Literal["create", "change", "delete"]


@dataclass(frozen=True)
class JobChange:
    """What happens to one job, for the plan's text and JSON."""

    action: Action
    name: str
    jobid: int | None
    details: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "job": self.name,
            "id": self.jobid,
            "details": list(self.details),
        }


@dataclass(frozen=True)
class Plan:
    """The changes (for people), the operations (for the executor), and what the plan read
    of the rows it changes (for pyagent.jobs.applylock)."""

    changes: tuple[JobChange, ...]
    unchanged: tuple[str, ...]
    operations: tuple[Operation, ...] = ()
    read: RowsRead = field(default_factory=RowsRead)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def text(self) -> str:
        """The plan for the terminal; job text in it is escaped (pyagent.safetext)."""
        lines: list[str] = []
        marks = {"create": "+", "change": "~", "delete": "-"}
        for change in self.changes:
            ident = f" (id {change.jobid})" if change.jobid is not None else ""
            lines.append(
                f"{marks[change.action]} job {quoted(change.name)}{ident}: {change.action}"
            )
            lines.extend(f"    {detail}" for detail in change.details)
        counts = {a: sum(1 for c in self.changes if c.action == a) for a in marks}
        if self.changes:
            lines.append(
                f"plan: {counts['create']} to create, {counts['change']} to change, "
                f"{counts['delete']} to delete, {len(self.unchanged)} unchanged"
            )
        else:
            lines.append(f"no changes: the database matches the files ({len(self.unchanged)} jobs)")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changes": [c.as_dict() for c in self.changes],
            "unchanged": list(self.unchanged),
            "has_changes": self.has_changes,
        }

    def execute(self, catalog: CatalogWriter) -> None:
        """Carry the plan out (pyagent.jobs.operations.execute)."""
        execute(catalog, self.operations)


@dataclass(frozen=True)
class Existing:
    """What the database holds that a plan depends on."""

    classes: Mapping[str, int]  # job class name -> jclid
    jobs: Sequence[JobRecord]
    steps: Mapping[int, Sequence[StepRecord]] = field(default_factory=dict)  # by jobid
    schedules: Mapping[int, Sequence[ScheduleRecord]] = field(default_factory=dict)
    # Start/end texts without a zone, as read in (the job's zone or, None, the session's).
    stamps: Mapping[tuple[str, str | None], datetime] = field(default_factory=dict)

    def class_name(self, jclid: int) -> str | None:
        return next((name for name, k in self.classes.items() if k == jclid), None)

    @property
    def default_class(self) -> int:
        """The class of a job whose file names none: the one with the lowest id."""
        return min(self.classes.values()) if self.classes else 1


def is_managed(desc: str) -> bool:
    return read_job(desc).values.managed


def _show(value: object) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return quoted(value if len(value) <= 60 else value[:59] + "…")
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _text_diff(label: str, old: str, new: str) -> list[str]:
    if "\n" not in old and "\n" not in new and len(old) <= 60 and len(new) <= 60:
        return [f"{label}: {_show(old)} -> {_show(new)}"]
    diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1))[2:]
    shown = diff[:20] + ([f"... ({len(diff) - 20} more diff lines)"] if len(diff) > 20 else [])
    return [f"{label}: changed", *(f"    {safe_text(line, block=True)}" for line in shown)]


# --- desired rows -------------------------------------------------------------------------


def _stamp(existing: Existing, stamp: Stamp | None, zone: str | None) -> datetime | None:
    if stamp is None:
        return None
    return stamp.aware if stamp.aware is not None else existing.stamps[stamp.text, zone]


def _step_values(spec: FileStep, existing: StepRecord | None) -> StepValues:
    desc = spec.desc()
    if existing is not None and read_step(existing.desc).means(spec.description, spec.options):
        desc = existing.desc
    return StepValues(
        name=spec.name,
        desc=desc,
        enabled=spec.enabled,
        kind=spec.kind,
        code=spec.code,
        connstr=spec.connection,
        dbname=spec.database,
        onerror=spec.on_error,
    )


def _schedule_values(existing: Existing, spec: FileSchedule, zone: str | None) -> ScheduleValues:
    f = spec.fields
    return ScheduleValues(
        name=spec.name,
        desc=spec.description,
        enabled=spec.enabled,
        start=_stamp(existing, spec.start, zone),
        end=_stamp(existing, spec.end, zone),
        minutes=f.minutes,
        hours=f.hours,
        weekdays=f.weekdays,
        monthdays=f.monthdays,
        months=f.months,
    )


def _new_schedule(existing: Existing, spec: FileSchedule, zone: str | None) -> NewSchedule:
    values = _schedule_values(existing, spec, zone)
    return NewSchedule(values, tuple((e.date, e.time) for e in spec.exceptions))


class _Named(Protocol):
    @property
    def name(self) -> str: ...


W = TypeVar("W", bound=_Named)
E = TypeVar("E", bound=_Named)


def _pairs(
    wanted: Sequence[W], existing: Sequence[E]
) -> tuple[list[tuple[W, E]], list[W], list[E]]:
    """(matched pairs, wanted without a match, existing without a match): the k-th of a
    name in `wanted` goes with the k-th of that name in `existing`."""
    pool: dict[str, list[E]] = {}
    for item in existing:
        pool.setdefault(item.name, []).append(item)
    pairs: list[tuple[W, E]] = []
    new: list[W] = []
    for want in wanted:
        candidates = pool.get(want.name, [])
        if candidates:
            pairs.append((want, candidates.pop(0)))
        else:
            new.append(want)
    gone = [item for items in pool.values() for item in items]
    return pairs, new, gone


# --- describing rows ------------------------------------------------------------------------


def _step_words(values: StepValues) -> str:
    where = values.dbname and f"database {safe_text(values.dbname)}"
    where = where or (values.connstr and "connection string") or "shell"
    return f"{KIND_WORD[values.kind]}, {where}, on error {ON_ERROR_WORD[values.onerror]}"


def _schedule_words(fields: cron.Fields) -> str:
    text = cron.to_cron(fields)
    return f"cron {text!r}" if text else in_words(fields)


def _step_diff(old: StepRecord, new: StepValues) -> list[str]:
    out: list[str] = []
    if old.kind != new.kind:
        out.append(f"kind: {KIND_WORD[old.kind]} -> {KIND_WORD[new.kind]}")
    if old.dbname != new.dbname:
        out.append(f"database: {_show(old.dbname or None)} -> {_show(new.dbname or None)}")
    if old.connstr != new.connstr:
        out.append("connection: changed")
    if old.onerror != new.onerror:
        out.append(f"on_error: {ON_ERROR_WORD[old.onerror]} -> {ON_ERROR_WORD[new.onerror]}")
    if old.enabled != new.enabled:
        out.append(f"enabled: {old.enabled} -> {new.enabled}")
    if old.desc != new.desc:
        was, now = read_step(old.desc), read_step(new.desc)
        if was.text != now.text:
            out.extend(_text_diff("description", was.text, now.text))
        key = STEP_TIMEOUT.field
        if _option_changed(was, now, key):
            out.append(f"{key}: {_show(was.texts().get(key))} -> {_show(now.texts().get(key))}")
    if old.code != new.code:
        out.extend(_text_diff("code", old.code, new.code))
    return out


def _option_changed(was: Description[Any], now: Description[Any], key: str) -> bool:
    """An option whose value changes, or whose old line is ignored (and so rewritten)."""
    return getattr(was.values, key) != getattr(now.values, key) or bool(was.problems(key))


def _schedule_diff(
    old: ScheduleRecord, new: ScheduleValues, old_exc: set[ExceptionKey], new_exc: set[ExceptionKey]
) -> list[str]:
    out: list[str] = []
    if old.desc != new.desc:
        out.extend(_text_diff("description", old.desc, new.desc))
    if old.enabled != new.enabled:
        out.append(f"enabled: {old.enabled} -> {new.enabled}")
    old_f, new_f = cron.Fields.of(old), cron.Fields.of(new)
    if old_f != new_f:
        old_cron, new_cron = cron.to_cron(old_f), cron.to_cron(new_f)
        if old_cron and new_cron:
            out.append(f"cron: {old_cron!r} -> {new_cron!r}")
        else:
            for kind in NATIVE_FIELDS:
                a, b = old_f.get(kind), new_f.get(kind)
                if a != b:
                    out.append(
                        f"{kind}: {_show(cron.format_native(kind, a) or '*')} -> "
                        f"{_show(cron.format_native(kind, b) or '*')}"
                    )
    if new.start is not None and new.start != old.start:
        out.append(f"start: {_show(old.start)} -> {_show(new.start)}")
    if old.end != new.end:
        out.append(f"end: {_show(old.end)} -> {_show(new.end)}")
    for d, t in sorted(old_exc - new_exc, key=_exc_sort):
        out.append(f"- exception {_exc_words(d, t)}")
    for d, t in sorted(new_exc - old_exc, key=_exc_sort):
        out.append(f"+ exception {_exc_words(d, t)}")
    return out


def _exc_sort(key: ExceptionKey) -> tuple[date, time]:
    return (key[0] or date.min, key[1] or time.min)


def _exc_words(d: date | None, t: time | None) -> str:
    return " ".join(x.isoformat() for x in (d, t) if x is not None)


# --- planning -------------------------------------------------------------------------------


def plan_changes(specs: Sequence[FileJob], existing: Existing, *, prune: bool) -> Plan:
    """The plan that makes the database hold `specs`: what changes, and the operations.
    With `prune`, jobs apply manages (@MANAGED_BY=pyagent;) and no file has are deleted."""
    by_name = {job.name: job for job in existing.jobs}
    changes: list[JobChange] = []
    unchanged: list[str] = []
    operations: list[Operation] = []
    read = RowsRead()
    for spec in specs:
        jclid = existing.classes[spec.job_class] if spec.job_class else existing.default_class
        old = by_name.get(spec.name)
        if old is None:
            change, ops = _plan_create(existing, spec, jclid)
            read.creating(spec.name)
        else:
            steps = list(existing.steps.get(old.jobid, []))
            schedules = list(existing.schedules.get(old.jobid, []))
            planned = _plan_update(existing, spec, jclid, old, steps, schedules)
            if planned is None:
                unchanged.append(spec.name)
                continue
            change, ops = planned
            read.changing(old, steps, schedules)
        changes.append(change)
        operations.extend(ops)
    if prune:
        wanted = {s.name for s in specs}
        for job in existing.jobs:
            if job.name not in wanted and is_managed(job.desc):
                changes.append(JobChange("delete", job.name, job.jobid, (_PRUNED,)))
                operations.append(DeleteJob(job.jobid))
                read.deleting(job)
    return Plan(tuple(changes), tuple(unchanged), tuple(operations), read)


_PRUNED = (
    "managed by pyagent (@MANAGED_BY=pyagent;) and in none of the files; "
    "its run history goes with it"
)


def _plan_create(
    existing: Existing, spec: FileJob, jclid: int
) -> tuple[JobChange, list[Operation]]:
    managed = spec.managed if spec.managed is not None else True
    values = JobValues(jclid, spec.name, spec.desc(managed), spec.host_agent, spec.enabled)
    steps = tuple(_step_values(s, None) for s in spec.steps)
    schedules = tuple(_new_schedule(existing, s, spec.timezone) for s in spec.schedules)
    class_name = existing.class_name(jclid) or str(jclid)
    details = [f"class {_show(class_name)}, enabled {spec.enabled}"]
    if managed:
        details.append("marked @MANAGED_BY=pyagent; in its comment")
    details += [f"+ step {quoted(v.name)} ({_step_words(v)})" for v in steps]
    details += [
        f"+ schedule {quoted(s.values.name)} ({_schedule_words(cron.Fields.of(s.values))})"
        for s in schedules
    ]
    change = JobChange("create", spec.name, None, tuple(details))
    return change, [CreateJob(values, steps, schedules, spec.timezone)]


@dataclass
class _Edits:
    """What changing one existing job takes: the plan's lines and the operations."""

    details: list[str] = field(default_factory=list)
    operations: list[Operation] = field(default_factory=list)


def _plan_update(  # noqa: PLR0917
    existing: Existing,
    spec: FileJob,
    jclid: int,
    old: JobRecord,
    old_steps: list[StepRecord],
    old_schedules: list[ScheduleRecord],
) -> tuple[JobChange, list[Operation]] | None:
    """The change of an existing job, or None when it already is as the file says."""
    edits = _Edits()
    jobid = old.jobid
    job_row_changed = _update_job_row(edits, existing, spec, jclid, old)
    _update_steps(edits, jobid, spec.steps, old_steps)
    schedules_changed = _update_schedules(edits, existing, spec, jobid, old_schedules)
    if not edits.operations:
        return None
    if not job_row_changed:
        edits.operations.append(TouchJob(jobid))
    old_zone = read_job(old.desc).values.timezone
    zone_changed = old_zone != spec.timezone
    enabled_now = spec.enabled and not old.enabled
    if zone_changed or (spec.timezone is not None and (schedules_changed or enabled_now)):
        # The schema's trigger reads schedules in this session's zone (or did, for the old
        # zone): compute the next run again, in the job's zone.
        edits.operations.append(RescheduleJob(jobid, spec.timezone))
    return JobChange("change", spec.name, jobid, tuple(edits.details)), edits.operations


def _update_job_row(
    edits: _Edits, existing: Existing, spec: FileJob, jclid: int, old: JobRecord
) -> bool:
    """The pga_job row itself (class, enabled, host agent, comment and annotations): adds
    its differences and its update to `edits`; True when the row changes."""
    was_managed = is_managed(old.desc)
    managed = spec.managed if spec.managed is not None else was_managed
    desc = spec.desc(managed)
    if read_job(old.desc).means(spec.comment, spec.options_marked(managed)):
        desc = old.desc
    new_class = existing.class_name(jclid)
    if old.class_name != new_class:
        edits.details.append(f"class: {_show(old.class_name)} -> {_show(new_class)}")
    if old.enabled != spec.enabled:
        edits.details.append(f"enabled: {old.enabled} -> {spec.enabled}")
    if old.hostagent != spec.host_agent:
        edits.details.append(f"host_agent: {_show(old.hostagent)} -> {_show(spec.host_agent)}")
    if old.desc != desc:
        edits.details.extend(_job_desc_diff(old.desc, spec, was_managed, managed))
    changed = (
        old.class_name != new_class
        or old.enabled != spec.enabled
        or old.hostagent != spec.host_agent
        or old.desc != desc
    )
    if changed:
        values = JobValues(jclid, spec.name, desc, spec.host_agent, spec.enabled)
        edits.operations.append(UpdateJob(old.jobid, values))
    return changed


def _job_desc_diff(old_desc: str, spec: FileJob, was_managed: bool, managed: bool) -> list[str]:
    """The differences in a job's comment and its annotation lines."""
    out: list[str] = []
    was, now = read_job(old_desc), read_job(spec.desc(managed))
    if was.text != spec.comment:
        out.extend(_text_diff("comment", was.text, spec.comment))
    old_texts, new_texts = was.texts(), now.texts()
    for option in JOB_OPTIONS:
        key = option.field
        if option is not MANAGED_BY and _option_changed(was, now, key):
            out.append(f"{key}: {_show(old_texts.get(key))} -> {_show(new_texts.get(key))}")
    if was_managed != managed:
        out.append(
            "managed: now marked @MANAGED_BY=pyagent;" if managed else "managed: mark removed"
        )
    return out


def _update_steps(
    edits: _Edits, jobid: int, wanted: Sequence[FileStep], existing: list[StepRecord]
) -> None:
    """Steps matched by name: changed ones updated, missing ones deleted, new ones added."""
    pairs, new_steps, gone_steps = _pairs(wanted, existing)
    for step_spec, step_old in pairs:
        step_new = _step_values(step_spec, step_old)
        diff = _step_diff(step_old, step_new)
        if diff:
            edits.details.append(f"~ step {quoted(step_spec.name)}:")
            edits.details.extend(f"    {line}" for line in diff)
            edits.operations.append(UpdateStep(step_old.jstid, step_new))
    for step_old in gone_steps:
        edits.details.append(f"- step {quoted(step_old.name)}")
        edits.operations.append(DeleteStep(step_old.jstid))
    for step_spec in new_steps:
        step_new = _step_values(step_spec, None)
        edits.details.append(f"+ step {quoted(step_new.name)} ({_step_words(step_new)})")
        edits.operations.append(InsertStep(jobid, step_new))


def _update_schedules(
    edits: _Edits, existing: Existing, job: FileJob, jobid: int, old: list[ScheduleRecord]
) -> bool:
    """Schedules matched by name, as steps are; an exception moves with its schedule.
    True when any schedule or exception changes."""
    before = len(edits.operations)
    pairs, new_scheds, gone_scheds = _pairs(job.schedules, old)
    for sched_spec, sched_old in pairs:
        _update_schedule(edits, existing, sched_spec, sched_old, job.timezone)
    for sched_old in gone_scheds:
        edits.details.append(f"- schedule {quoted(sched_old.name)}")
        edits.operations.append(DeleteSchedule(sched_old.jscid))
    for sched_spec in new_scheds:
        sched_new = _new_schedule(existing, sched_spec, job.timezone)
        words = _schedule_words(cron.Fields.of(sched_new.values))
        edits.details.append(f"+ schedule {quoted(sched_new.values.name)} ({words})")
        edits.operations.append(InsertSchedule(jobid, sched_new))
    return len(edits.operations) > before


def _update_schedule(
    edits: _Edits, existing: Existing, spec: FileSchedule, old: ScheduleRecord, zone: str | None
) -> None:
    """One schedule that stays: its row and its exceptions, each changed only if needed."""
    new = _schedule_values(existing, spec, zone)
    old_exc = {(e.date, e.time): e.jexid for e in old.exceptions}
    new_exc = {(e.date, e.time) for e in spec.exceptions}
    diff = _schedule_diff(old, new, set(old_exc), new_exc)
    if not diff:
        return
    edits.details.append(f"~ schedule {quoted(spec.name)}:")
    edits.details.extend(f"    {line}" for line in diff)
    if not _same_schedule_row(old, new):
        edits.operations.append(UpdateSchedule(old.jscid, new))
    for old_key, jexid in old_exc.items():
        if old_key not in new_exc:
            edits.operations.append(DeleteException(jexid))
    for exc in spec.exceptions:
        if (exc.date, exc.time) not in old_exc:
            edits.operations.append(InsertException(old.jscid, exc.date, exc.time))


def _same_schedule_row(old: ScheduleRecord, new: ScheduleValues) -> bool:
    """True when the pga_schedule row needs no update (a start left out keeps the old one)."""
    return (
        old.desc == new.desc
        and old.enabled == new.enabled
        and cron.Fields.of(old) == cron.Fields.of(new)
        and (new.start is None or new.start == old.start)
        and old.end == new.end
    )
