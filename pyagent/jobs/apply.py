"""`jobs apply`: read what the database holds, check what only it can check, plan
(pyagent.jobs.plan), show the plan, and carry it out, all in one transaction, waiting for
other applies and locking what it changes as pyagent.jobs.applylock says."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from pyagent.jobs import applylock
from pyagent.jobs.lookup import by_job
from pyagent.jobs.model import FileJob
from pyagent.jobs.plan import Existing, Plan, plan_changes
from pyagent.jobs.render import quoted
from pyagent.jobs.validation import JobFileError, Problem, step_order_problem
from pyagent.store.catalog import Catalog


def read_existing(catalog: Catalog, specs: Sequence[FileJob]) -> Existing:
    """What the database holds that the plan depends on, after checking what only the
    database can check: classes, databases, step order in the database's collation,
    ambiguous names, zones, start/end. Raises JobFileError listing every problem."""
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
    jobs = catalog.jobs()
    names = {spec.name for spec in specs}
    matched = [job.jobid for job in jobs if job.name in names]
    return Existing(
        classes=by_name,
        jobs=jobs,
        steps=by_job(catalog.steps(matched)),
        schedules=by_job(catalog.schedules(matched)),
        stamps=stamps,
    )


def make_plan(catalog: Catalog, specs: Sequence[FileJob], *, prune: bool) -> Plan:
    """Compare the files with the database. Reads only; `Plan.execute` writes."""
    return plan_changes(specs, read_existing(catalog, specs), prune=prune)


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


def apply_job_files(
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
