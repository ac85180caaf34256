"""`jobs apply`: compare job files with the database, print the plan, and carry it out in
one transaction.

Jobs are matched by name and updated in place (their ids and run history stay). A job's
steps and schedules are matched by name, the k-th of a name in the file with the k-th of
that name in the database (by id), so unchanged rows are not touched at all. Deletions run
before updates and inserts, so an exception can move between schedules (pgAgent's unique
index on (jexdate, jextime) spans the whole database).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from pyagent.annotations import (
    JOB_OPTIONS,
    MANAGED_BY,
    STEP_TIMEOUT,
    Description,
    read_job,
    read_step,
)
from pyagent.jobs import applylock, cron
from pyagent.jobs.lookup import by_job
from pyagent.jobs.model import (
    KIND_WORD,
    NATIVE_FIELDS,
    ON_ERROR_WORD,
    FileJob,
    FileSchedule,
    FileStep,
    Stamp,
)
from pyagent.jobs.render import quoted
from pyagent.jobs.validation import JobFileError, Problem, step_order_problem
from pyagent.safetext import safe_text
from pyagent.schedule import in_words
from pyagent.store.catalog import (
    Catalog,
    JobRecord,
    JobValues,
    ScheduleRecord,
    ScheduleValues,
    StepRecord,
    StepValues,
)

ExceptionKey = tuple[date | None, time | None]


@dataclass
class JobChange:
    """What happens to one job, for the plan's text and JSON."""

    action: str  # create | change | delete
    name: str
    jobid: int | None
    details: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "job": self.name, "id": self.jobid, "details": self.details}


@dataclass
class Plan:
    changes: list[JobChange]
    unchanged: list[str]
    ops: list[tuple[int, Callable[[Catalog], None]]] = field(default_factory=list)
    read: applylock.RowsRead = field(default_factory=applylock.RowsRead)

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
            "unchanged": self.unchanged,
            "has_changes": self.has_changes,
        }

    def execute(self, catalog: Catalog) -> None:
        for _, op in sorted(self.ops, key=lambda item: item[0]):
            op(catalog)


# Phases of execution.
DELETE_JOBS, DELETE_CHILDREN, UPDATE, INSERT, TOUCH, RESCHEDULE = range(6)


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


@dataclass(frozen=True)
class Context:
    """What the database tells us before planning."""

    classes: dict[str, int]
    class_names: dict[int, str]
    # Start/end texts without a zone, as read in (the job's zone or, None, the session's).
    stamps: dict[tuple[str, str | None], datetime]


def _stamp(context: Context, stamp: Stamp | None, zone: str | None) -> datetime | None:
    if stamp is None:
        return None
    return stamp.aware if stamp.aware is not None else context.stamps[stamp.text, zone]


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


def _schedule_values(context: Context, spec: FileSchedule, zone: str | None) -> ScheduleValues:
    f = spec.fields
    return ScheduleValues(
        name=spec.name,
        desc=spec.description,
        enabled=spec.enabled,
        start=_stamp(context, spec.start, zone),
        end=_stamp(context, spec.end, zone),
        minutes=f.minutes,
        hours=f.hours,
        weekdays=f.weekdays,
        monthdays=f.monthdays,
        months=f.months,
    )


def _pairs(
    wanted: Sequence[Any], existing: Sequence[Any], name_of: Callable[[Any], str]
) -> tuple[list[tuple[Any, Any]], list[Any], list[Any]]:
    """(matched pairs, wanted without a match, existing without a match): the k-th of a
    name in `wanted` goes with the k-th of that name in `existing`."""
    pool: dict[str, list[Any]] = {}
    for item in existing:
        pool.setdefault(name_of(item), []).append(item)
    pairs, new = [], []
    for item in wanted:
        candidates = pool.get(name_of(item), [])
        if candidates:
            pairs.append((item, candidates.pop(0)))
        else:
            new.append(item)
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


def _check(catalog: Catalog, specs: Sequence[FileJob]) -> Context:
    """What only the database can check: classes, databases, step order in the database's
    collation, and ambiguous names. Raises JobFileError listing every problem."""
    classes = catalog.job_classes()
    by_name = {c.name: c.jclid for c in classes}
    problems = _class_problems(specs, by_name, ", ".join(quoted(c.name) for c in classes))
    existing_dbs = _existing_databases(catalog, specs)
    for spec in specs:
        problems += _database_problems(spec, existing_dbs)
        problems += _collation_problems(catalog, spec)
    for spec in specs:
        problems += _ambiguous_name_problems(catalog, spec)
    problems += _zone_problems(catalog, specs)
    if problems:
        raise JobFileError(problems)
    stamps = _resolve_stamps(catalog, specs)
    problems += _start_end_problems(specs, stamps)
    if problems:
        raise JobFileError(problems)
    return Context(by_name, {c.jclid: c.name for c in classes}, stamps)


def _class_problems(specs: Sequence[FileJob], classes: dict[str, int], known: str) -> list[Problem]:
    return [
        Problem(
            spec.file,
            spec.lines.get("class", spec.line),
            "class",
            f"unknown job class {spec.job_class!r} (known: {known})",
        )
        for spec in specs
        if spec.job_class is not None and spec.job_class not in classes
    ]


def _existing_databases(catalog: Catalog, specs: Sequence[FileJob]) -> set[str]:
    """Which of the databases the steps name exist on this server."""
    wanted = sorted({s.database for spec in specs for s in spec.steps if s.database})
    return catalog.existing_databases(wanted) if wanted else set()


def _database_problems(spec: FileJob, existing_dbs: set[str]) -> list[Problem]:
    return [
        Problem(
            spec.file,
            step.lines.get("database", step.line),
            f"steps[{i}].database",
            f"no database {step.database!r} on this server (pg_database)",
        )
        for i, step in enumerate(spec.steps, 1)
        if step.database and step.database not in existing_dbs
    ]


def _collation_problems(catalog: Catalog, spec: FileJob) -> list[Problem]:
    """The steps' name order in the database's collation (the file check used Python's)."""
    names = [s.name for s in spec.steps]
    if len(names) <= 1:
        return []
    order = catalog.collation_order(names)
    if order == list(range(len(names))):
        return []
    problem = step_order_problem(spec.file, spec.lines.get("steps", spec.line), names, order)
    return [
        Problem(
            problem.file,
            problem.line,
            problem.field,
            problem.message + " (in this database's collation)",
        )
    ]


def _ambiguous_name_problems(catalog: Catalog, spec: FileJob) -> list[Problem]:
    ids = catalog.job_ids_by_name(spec.name)
    if len(ids) <= 1:
        return []
    return [
        Problem(
            spec.file,
            spec.lines.get("name", spec.line),
            "name",
            f"{len(ids)} jobs in the database are named {spec.name!r} (ids "
            f"{', '.join(map(str, ids))}); rename or delete all but one in pgAdmin",
        )
    ]


def _resolve_stamps(
    catalog: Catalog, specs: Sequence[FileJob]
) -> dict[tuple[str, str | None], datetime]:
    """Start and end times written without a zone, read in the job's time zone when it has
    one, else in the session's TimeZone."""
    wanted: dict[str | None, set[str]] = {}
    for spec in specs:
        for sched in spec.schedules:
            for stamp in (sched.start, sched.end):
                if stamp is not None and stamp.aware is None:
                    wanted.setdefault(spec.timezone, set()).add(stamp.text)
    resolved: dict[tuple[str, str | None], datetime] = {}
    for zone, found in wanted.items():
        texts = sorted(found)
        for text, value in zip(texts, catalog.resolve_timestamps(texts, zone), strict=True):
            resolved[text, zone] = value
    return resolved


def _zone_problems(catalog: Catalog, specs: Sequence[FileJob]) -> list[Problem]:
    """Zones the files name that this server's tz database does not know (the files were
    checked against the local one)."""
    zones = sorted({spec.timezone for spec in specs if spec.timezone is not None})
    unknown = set(zones) - catalog.known_timezones(zones) if zones else set()
    return [
        Problem(
            spec.file,
            spec.lines.get("timezone", spec.line),
            "timezone",
            f"{spec.timezone!r} is not a time zone this database server knows "
            "(its tz database is older or newer than this machine's)",
        )
        for spec in specs
        if spec.timezone in unknown
    ]


def _start_end_problems(
    specs: Sequence[FileJob], stamps: dict[tuple[str, str | None], datetime]
) -> list[Problem]:
    problems: list[Problem] = []
    for spec in specs:
        for sched in spec.schedules:
            start, end = sched.start, sched.end
            if start and end:
                s = start.aware or stamps[start.text, spec.timezone]
                e = end.aware or stamps[end.text, spec.timezone]
                if e < s:
                    problems.append(
                        Problem(
                            spec.file, sched.line, f"schedule {sched.name!r}", "end is before start"
                        )
                    )
    return problems


def make_plan(catalog: Catalog, specs: Sequence[FileJob], *, prune: bool) -> Plan:
    """Compare the files with the database. Reads only; `Plan.execute` writes."""
    context = _check(catalog, specs)
    existing_jobs = catalog.jobs()
    by_name = {job.name: job for job in existing_jobs}
    matched_ids = [by_name[s.name].jobid for s in specs if s.name in by_name]
    steps = by_job(catalog.steps(matched_ids))
    schedules = by_job(catalog.schedules(matched_ids))
    default_class = min(context.class_names) if context.class_names else 1

    plan = Plan(changes=[], unchanged=[])
    for spec in specs:
        jclid = context.classes[spec.job_class] if spec.job_class else default_class
        old = by_name.get(spec.name)
        if old is None:
            _plan_create(plan, context, spec, jclid)
        else:
            _plan_update(
                plan,
                context,
                spec,
                jclid,
                old,
                steps.get(old.jobid, []),
                schedules.get(old.jobid, []),
            )
    if prune:
        wanted = {s.name for s in specs}
        for job in existing_jobs:
            if job.name not in wanted and is_managed(job.desc):
                plan.changes.append(
                    JobChange(
                        "delete",
                        job.name,
                        job.jobid,
                        [
                            "managed by pyagent (@MANAGED_BY=pyagent;) and in none of the files; "
                            "its run history goes with it"
                        ],
                    )
                )
                plan.ops.append((DELETE_JOBS, _deleter(job.jobid)))
                plan.read.deleting(job)
    return plan


def _deleter(jobid: int) -> Callable[[Catalog], None]:
    return lambda catalog: catalog.delete_job(jobid)


def _plan_create(plan: Plan, context: Context, spec: FileJob, jclid: int) -> None:
    managed = spec.managed if spec.managed is not None else True
    values = JobValues(jclid, spec.name, spec.desc(managed), spec.host_agent, spec.enabled)
    step_values = [_step_values(s, None) for s in spec.steps]
    sched_values = [(_schedule_values(context, s, spec.timezone), s) for s in spec.schedules]
    details = [f"class {_show(context.class_names.get(jclid, str(jclid)))}, enabled {spec.enabled}"]
    if managed:
        details.append("marked @MANAGED_BY=pyagent; in its comment")
    details += [f"+ step {quoted(v.name)} ({_step_words(v)})" for v in step_values]
    details += [
        f"+ schedule {quoted(v.name)} ({_schedule_words(cron.Fields.of(v))})"
        for v, _ in sched_values
    ]
    plan.changes.append(JobChange("create", spec.name, None, details))
    plan.read.creating(spec.name)

    def create(catalog: Catalog) -> None:
        jobid = catalog.insert_job(values)
        for step in step_values:
            catalog.insert_step(jobid, step)
        for sched, sched_spec in sched_values:
            jscid = catalog.insert_schedule(jobid, sched)
            for exc in sched_spec.exceptions:
                catalog.insert_exception(jscid, exc.date, exc.time)
        if spec.timezone is not None:
            # The schema's trigger read the schedules in this session's zone.
            catalog.reschedule_job(jobid, spec.timezone)

    plan.ops.append((INSERT, create))


def _plan_update(  # noqa: PLR0917
    plan: Plan,
    context: Context,
    spec: FileJob,
    jclid: int,
    old: JobRecord,
    old_steps: list[StepRecord],
    old_schedules: list[ScheduleRecord],
) -> None:
    edits = _Edits()
    jobid = old.jobid
    job_row_changed = _update_job_row(edits, context, spec, jclid, old)
    _update_steps(edits, jobid, spec.steps, old_steps)
    schedules_changed = _update_schedules(edits, context, spec, jobid, old_schedules)
    if not edits.ops:
        plan.unchanged.append(spec.name)
        return
    if not job_row_changed:
        edits.ops.append((TOUCH, lambda catalog: catalog.touch_job(jobid)))
    old_zone = read_job(old.desc).values.timezone
    zone_changed = old_zone != spec.timezone
    enabled_now = spec.enabled and not old.enabled
    if zone_changed or (spec.timezone is not None and (schedules_changed or enabled_now)):
        # The schema's trigger reads schedules in this session's zone (or did, for the old
        # zone): compute the next run again, in the job's zone.
        zone = spec.timezone
        edits.ops.append((RESCHEDULE, lambda catalog: catalog.reschedule_job(jobid, zone)))
    plan.changes.append(JobChange("change", spec.name, jobid, edits.details))
    plan.ops.extend(edits.ops)
    plan.read.changing(old, old_steps, old_schedules)


@dataclass
class _Edits:
    """What changing one existing job takes: the plan's lines and the database operations."""

    details: list[str] = field(default_factory=list)
    ops: list[tuple[int, Callable[[Catalog], None]]] = field(default_factory=list)


def _update_job_row(
    edits: _Edits, context: Context, spec: FileJob, jclid: int, old: JobRecord
) -> bool:
    """The pga_job row itself (class, enabled, host agent, comment and annotations): adds
    its differences and its update to `edits`; True when the row changes."""
    was_managed = is_managed(old.desc)
    managed = spec.managed if spec.managed is not None else was_managed
    desc = spec.desc(managed)
    if read_job(old.desc).means(spec.comment, spec.options_marked(managed)):
        desc = old.desc
    new_class = next((k for k, v in context.classes.items() if v == jclid), None)
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
        jobid, values = old.jobid, JobValues(jclid, spec.name, desc, spec.host_agent, spec.enabled)
        edits.ops.append((UPDATE, lambda catalog: catalog.update_job(jobid, values)))
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
    pairs, new_steps, gone_steps = _pairs(wanted, existing, lambda s: s.name)
    for step_spec, step_old in pairs:
        step_new = _step_values(step_spec, step_old)
        diff = _step_diff(step_old, step_new)
        if diff:
            edits.details.append(f"~ step {quoted(step_spec.name)}:")
            edits.details.extend(f"    {line}" for line in diff)
            edits.ops.append((UPDATE, _step_updater(step_old.jstid, step_new)))
    for step_old in gone_steps:
        edits.details.append(f"- step {quoted(step_old.name)}")
        edits.ops.append((DELETE_CHILDREN, _step_deleter(step_old.jstid)))
    for step_spec in new_steps:
        step_new = _step_values(step_spec, None)
        edits.details.append(f"+ step {quoted(step_new.name)} ({_step_words(step_new)})")
        edits.ops.append((INSERT, _step_inserter(jobid, step_new)))


def _update_schedules(
    edits: _Edits, context: Context, job: FileJob, jobid: int, existing: list[ScheduleRecord]
) -> bool:
    """Schedules matched by name, as steps are; an exception moves with its schedule.
    True when any schedule or exception changes."""
    before = len(edits.ops)
    pairs, new_scheds, gone_scheds = _pairs(job.schedules, existing, lambda s: s.name)
    for sched_spec, sched_old in pairs:
        _update_schedule(edits, context, sched_spec, sched_old, job.timezone)
    for sched_old in gone_scheds:
        edits.details.append(f"- schedule {quoted(sched_old.name)}")
        edits.ops.append((DELETE_CHILDREN, _schedule_deleter(sched_old.jscid)))
    for sched_spec in new_scheds:
        sched_new = _schedule_values(context, sched_spec, job.timezone)
        words = _schedule_words(cron.Fields.of(sched_new))
        edits.details.append(f"+ schedule {quoted(sched_new.name)} ({words})")
        edits.ops.append((INSERT, _schedule_inserter(jobid, sched_new, sched_spec)))
    return len(edits.ops) > before


def _update_schedule(
    edits: _Edits, context: Context, spec: FileSchedule, old: ScheduleRecord, zone: str | None
) -> None:
    """One schedule that stays: its row and its exceptions, each changed only if needed."""
    new = _schedule_values(context, spec, zone)
    old_exc = {(e.date, e.time): e.jexid for e in old.exceptions}
    new_exc = {(e.date, e.time) for e in spec.exceptions}
    diff = _schedule_diff(old, new, set(old_exc), new_exc)
    if not diff:
        return
    edits.details.append(f"~ schedule {quoted(spec.name)}:")
    edits.details.extend(f"    {line}" for line in diff)
    if not _same_schedule_row(old, new):
        edits.ops.append((UPDATE, _schedule_updater(old.jscid, new)))
    for old_key, jexid in old_exc.items():
        if old_key not in new_exc:
            edits.ops.append((DELETE_CHILDREN, _exception_deleter(jexid)))
    for exc in spec.exceptions:
        if (exc.date, exc.time) not in old_exc:
            edits.ops.append((INSERT, _exception_inserter(old.jscid, exc.date, exc.time)))


def _same_schedule_row(old: ScheduleRecord, new: ScheduleValues) -> bool:
    """True when the pga_schedule row needs no update (a start left out keeps the old one)."""
    return (
        old.desc == new.desc
        and old.enabled == new.enabled
        and cron.Fields.of(old) == cron.Fields.of(new)
        and (new.start is None or new.start == old.start)
        and old.end == new.end
    )


def _step_updater(jstid: int, values: StepValues) -> Callable[[Catalog], None]:
    return lambda catalog: catalog.update_step(jstid, values)


def _step_deleter(jstid: int) -> Callable[[Catalog], None]:
    return lambda catalog: catalog.delete_step(jstid)


def _step_inserter(jobid: int, values: StepValues) -> Callable[[Catalog], None]:
    def insert(catalog: Catalog) -> None:
        catalog.insert_step(jobid, values)

    return insert


def _schedule_updater(jscid: int, values: ScheduleValues) -> Callable[[Catalog], None]:
    return lambda catalog: catalog.update_schedule(jscid, values)


def _schedule_deleter(jscid: int) -> Callable[[Catalog], None]:
    return lambda catalog: catalog.delete_schedule(jscid)


def _schedule_inserter(
    jobid: int, values: ScheduleValues, spec: FileSchedule
) -> Callable[[Catalog], None]:
    def insert(catalog: Catalog) -> None:
        jscid = catalog.insert_schedule(jobid, values)
        for exc in spec.exceptions:
            catalog.insert_exception(jscid, exc.date, exc.time)

    return insert


def _exception_deleter(jexid: int) -> Callable[[Catalog], None]:
    return lambda catalog: catalog.delete_exception(jexid)


def _exception_inserter(jscid: int, d: date | None, t: time | None) -> Callable[[Catalog], None]:
    return lambda catalog: catalog.insert_exception(jscid, d, t)


def apply(
    catalog: Catalog,
    specs: Sequence[FileJob],
    *,
    prune: bool,
    dry_run: bool,
    show: Callable[[Plan], None],
    say: Callable[[str], None],
    lock_timeout: float = applylock.DEFAULT_LOCK_TIMEOUT,
) -> Plan:
    """Plan and (unless dry_run) execute, all inside one transaction.

    An apply first waits (up to lock_timeout seconds in all) for any other apply to commit,
    then plans from the database as it is; just before writing it locks the rows it changes
    and stops if someone changed them since it read them. A dry run reads one snapshot and
    neither waits nor makes anything wait."""
    locks = applylock.ApplyLocks(catalog, lock_timeout, say)
    with catalog.transaction(snapshot=dry_run):
        if not dry_run:
            locks.take_apply_lock()
        plan = make_plan(catalog, specs, prune=prune)
        show(plan)
        if not dry_run and plan.has_changes:
            locks.lock_as_read(plan.read)
            locks.execute(plan.execute)
    return plan
