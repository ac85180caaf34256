"""`jobs show`: one job, its steps, schedules, options, next runs, recent runs and authors,
and whether its stored next run drifted from what its schedules give."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from pyagent import schedule as pyschedule
from pyagent.annotations import Description, JobOptions, StepOptions, read_job, read_step
from pyagent.conninfo import mask_conninfo
from pyagent.jobs import cron
from pyagent.jobs.listing import last_run_data, running_data
from pyagent.jobs.lookup import find_job
from pyagent.jobs.model import KIND_WORD, NATIVE_FIELDS, ON_ERROR_WORD
from pyagent.jobs.render import indent, shorten
from pyagent.jobs.runs import run_data, runs_table
from pyagent.jobs.zones import Zone, own_zone
from pyagent.safetext import safe_text
from pyagent.store.authorship import AuthorRecord, ObjectKind
from pyagent.store.catalog import Catalog, JobRecord, ScheduleRecord, StepRecord


def spec_of(sched: ScheduleRecord) -> pyschedule.ScheduleSpec:
    return pyschedule.ScheduleSpec(
        jscid=sched.jscid,
        start=sched.start,
        end=sched.end,
        minutes=sched.minutes,
        hours=sched.hours,
        weekdays=sched.weekdays,
        monthdays=sched.monthdays,
        months=sched.months,
        exceptions=tuple(pyschedule.ScheduleException(e.date, e.time) for e in sched.exceptions),
    )


def next_runs(
    schedules: list[ScheduleRecord], now: datetime, zone: Zone, count: int
) -> list[datetime]:
    """The next `count` run times of the enabled schedules, computed by pyagent.schedule."""
    specs = [spec_of(s) for s in schedules if s.enabled]
    found: list[datetime] = []
    after = now
    while len(found) < count:
        nxt = pyschedule.next_run_for_schedules(specs, after, zone.tz)
        if nxt is None:
            break
        found.append(nxt)
        after = nxt
    return found


def _step_data(step: StepRecord) -> dict[str, Any]:
    described = read_step(step.desc)
    return {
        "id": step.jstid,
        "name": step.name,
        "enabled": step.enabled,
        "kind": KIND_WORD[step.kind],
        "database": step.dbname or None,
        "connection": mask_conninfo(step.connstr) if step.connstr else None,
        "on_error": ON_ERROR_WORD[step.onerror],
        "description": described.text,
        "annotations": described.texts(),
        "code": step.code,
    }


def _schedule_data(sched: ScheduleRecord, zone: Zone) -> dict[str, Any]:
    fields = cron.Fields.of(sched)
    return {
        "id": sched.jscid,
        "name": sched.name,
        "enabled": sched.enabled,
        "description": sched.desc,
        "cron": cron.to_cron(fields),
        "words": pyschedule.in_words(fields),
        "native": {kind: cron.format_native(kind, fields.get(kind)) for kind in NATIVE_FIELDS},
        "start": zone.iso(sched.start),
        "end": zone.iso(sched.end),
        "exceptions": [
            {
                "date": e.date.isoformat() if e.date else None,
                "time": e.time.isoformat() if e.time else None,
            }
            for e in sched.exceptions
        ],
    }


def show_job(
    catalog: Catalog, zone: Zone, ident: str, *, count: int = 5, runs: int = 5
) -> tuple[dict[str, Any], str]:
    job = find_job(catalog, ident)
    steps = catalog.steps([job.jobid])
    schedules = catalog.schedules([job.jobid])
    now = catalog.session_info().now
    own = own_zone(job.desc)
    upcoming = next_runs(schedules, now, own or zone, count) if job.enabled else []
    recent = catalog.runs(job.jobid, limit=runs)
    comment = read_job(job.desc)
    drift = next_run_drift(catalog, job, now, own, zone)
    authors = _authors(catalog, job.jobid)
    data: dict[str, Any] = {
        "id": job.jobid,
        "name": job.name,
        "class": job.class_name,
        "enabled": job.enabled,
        "host_agent": job.hostagent,
        "comment": comment.text,
        "annotations": comment.texts(),
        "created": zone.iso(job.created),
        "changed": zone.iso(job.changed),
        "timezone": zone.name,
        "job_timezone": own.name if own else None,
        "next_run": zone.iso(job.next_run),
        "next_run_drift": drift.as_dict(zone) if drift else None,
        "next_runs_computed": [zone.iso(t) for t in upcoming],
        "last_run": last_run_data(job, zone),
        "running": running_data(job),
        "steps": [_step_data(s) for s in steps],
        "schedules": [_schedule_data(s, zone) for s in schedules],
        "recent_runs": [run_data(r, zone) for r in recent],
    }
    if authors is not None:
        data["author"] = _author_data(authors.get(("j", job.jobid)), zone)
        for step_data in data["steps"]:
            step_data["author"] = _author_data(authors.get(("s", step_data["id"])), zone)
    out = [
        *_show_job_lines(
            job,
            zone,
            comment,
            author_lines=_show_author_line(
                "  author:      ", authors, ("j", job.jobid), job.jobid, zone
            ),
        ),
        *([drift.text(zone)] if drift else []),
        "",
        *_show_step_lines(steps, authors, zone),
        "",
        *_show_schedule_lines(schedules, zone),
        "",
        *_show_next_run_lines(job, upcoming, zone, own),
        "",
        f"recent runs ({len(recent)}):",
        *("  " + line for line in runs_table(recent, zone, with_job=False).splitlines()),
    ]
    return data, "\n".join(out)


def _show_job_lines(
    job: JobRecord,
    zone: Zone,
    comment: Description[JobOptions],
    *,
    author_lines: list[str] | None = None,
) -> list[str]:
    out = [f"job {job.jobid}: {safe_text(job.name)}"]
    out.append(f"  class:       {safe_text(job.class_name)}")
    out.append(f"  enabled:     {'yes' if job.enabled else 'no'}")
    out.append(f"  host agent:  {safe_text(job.hostagent) or '(any)'}")
    out.extend(author_lines or [])
    if comment.text:
        out.append("  comment:")
        out.append(indent(safe_text(comment.text, block=True), "    "))
    out.extend(f"  {line}" for line in _option_lines(comment, 12))
    if job.agent_pid is not None:
        station = safe_text(job.agent_station or "?")
        out.append(f"  running now: on {station} (agent pid {job.agent_pid})")
    out.append(f"  next run:    {zone.fmt(job.next_run)}   (pga_job.jobnextrun)")
    out.append(f"  times in {zone.name} (the database session's TimeZone)")
    return out


def _option_lines(
    described: Description[JobOptions] | Description[StepOptions], width: int = 0
) -> list[str]:
    """One line per option a description gives: its value as written, and whether the
    agent ignores it (the same reading as the agent's, pyagent.annotations)."""
    out = []
    for key, line in described.lines.items():
        note = "annotation" if line.problem is None else f"annotation; ignored: {line.problem}"
        out.append(f"{key + ':':<{width}} {safe_text(line.text)}   ({safe_text(note)})")
    return out


def _authors(catalog: Catalog, jobid: int) -> dict[tuple[ObjectKind, int], AuthorRecord] | None:
    """The authorship records of a job and its steps; None when pyagent's authorship
    extra is not installed or this role cannot read it."""
    records = catalog.authorship
    if not records.access().read_authors:
        return None
    return records.authors([jobid])


def _author_data(record: AuthorRecord | None, zone: Zone) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "role": record.author,
        "changed": zone.iso(record.changed_at),
        "current": record.current,
    }


def _show_author_line(
    prefix: str,
    authors: dict[tuple[ObjectKind, int], AuthorRecord] | None,
    key: tuple[ObjectKind, int],
    jobid: int,
    zone: Zone,
) -> list[str]:
    """Who last changed what decides what runs (the job's on/off and host agent; a
    step's code, kind, target and on/off); nothing when authorship is not installed."""
    if authors is None:
        return []
    record = authors.get(key)
    adopt = f"(--step-rights author refuses it; after review: pyagent jobs adopt {jobid})"
    if record is None:
        return [f"{prefix}none recorded {adopt}"]
    when = zone.fmt(record.changed_at)
    if not record.current:
        return [f"{prefix}{record.author} at {when}, but changed since without a record {adopt}"]
    what = "on/off, host agent" if key[0] == "j" else "code, kind, target, on/off"
    return [f"{prefix}{record.author} at {when} ({what})"]


def _show_step_lines(
    steps: list[StepRecord],
    authors: dict[tuple[ObjectKind, int], AuthorRecord] | None = None,
    zone: Zone | None = None,
) -> list[str]:
    enabled_steps = [s for s in steps if s.enabled]
    out = [f"steps ({len(enabled_steps)} enabled of {len(steps)}, in execution order):"]
    if not steps:
        out.append("  (none: a run ends 'succeeded' at once)")
    for i, step in enumerate(steps, 1):
        d = _step_data(step)
        where = d["database"] or (d["connection"] and f"connection {d['connection']}") or "shell"
        flags = "" if step.enabled else "   [disabled]"
        out.append(
            f"  {i}. {safe_text(step.name)}  ({d['kind']}, {safe_text(where)}, "
            f"on error: {d['on_error']}){flags}"
        )
        if d["description"]:
            out.append(f"     description: {safe_text(shorten(d['description'], 70))}")
        out.extend(f"     {line}" for line in _option_lines(read_step(step.desc)))
        if zone is not None:
            out.extend(
                _show_author_line("     author: ", authors, ("s", step.jstid), step.jobid, zone)
            )
        code = safe_text(step.code.rstrip("\n"), block=True) or "(empty)"
        out.append(indent(code, "       | "))
    return out


def _show_schedule_lines(schedules: list[ScheduleRecord], zone: Zone) -> list[str]:
    out = [f"schedules ({len(schedules)}):"]
    for sched in schedules:
        d = _schedule_data(sched, zone)
        flags = "" if sched.enabled else "   [disabled]"
        cron_text = f"   cron: {d['cron']}" if d["cron"] else "   (no cron equivalent)"
        out.append(f"  - {safe_text(sched.name)}: {d['words']}{cron_text}{flags}")
        out.append(
            f"    from {zone.fmt(sched.start)}"
            + (f" until {zone.fmt(sched.end)}" if sched.end else "")
        )
        for e in d["exceptions"]:
            what = " ".join(x for x in (e["date"], e["time"]) if x)
            out.append(f"    except {what}")
    if not schedules:
        out.append("  (none: the job runs only when started by hand)")
    return out


def _show_next_run_lines(
    job: JobRecord, upcoming: list[datetime], zone: Zone, own: Zone | None
) -> list[str]:
    if not job.enabled:
        return ["next runs: none, the job is disabled"]
    if own is None:
        out = ["next runs (computed by pyagent.schedule):"]
        out.extend(f"  {zone.fmt(t)}" for t in upcoming)
    else:
        out = [f"next runs (computed by pyagent.schedule, schedules read in {own.name}):"]
        out.extend(f"  {zone.fmt(t)}   ({own.fmt(t, seconds=False)})" for t in upcoming)
    if not upcoming:
        out.append("  (none)")
    return out


# --- drift of the stored next run -----------------------------------------------------------


@dataclass(frozen=True)
class NextRunDrift:
    """A stored next run that is not what the job's schedules give now in its zone."""

    stored: datetime | None
    expected: datetime | None
    zone: str  # the zone the schedules were read in
    own_zone: bool  # the job's @TIMEZONE (else the session's TimeZone)
    session_match: bool  # the stored value is what the schedules give in the session's zone

    def reason(self, session: Zone) -> str:
        if self.stored is None:
            return "no next run is stored, so no agent will start it"
        if self.own_zone and self.session_match:
            return (
                f"it was computed in {session.name}, this session's TimeZone: something "
                "without pyagent's time-zone support wrote it (an old agent, or an edit "
                "without `pyagent schema add-extras`); the next run by a pyagent agent "
                "corrects it"
            )
        return (
            "it was computed in another time zone (an agent's or an editor's session "
            "TimeZone differs from this one), or set by a retry or by hand"
        )

    def text(self, session: Zone) -> str:
        return (
            f"  ! next run {session.fmt(self.stored)} is not what the schedules give now in "
            f"{self.zone} ({session.fmt(self.expected)}): {self.reason(session)}"
        )

    def as_dict(self, session: Zone) -> dict[str, Any]:
        return {
            "stored": session.iso(self.stored),
            "expected": session.iso(self.expected),
            "zone": self.zone,
            "reason": self.reason(session),
        }


def next_run_drift(
    catalog: Catalog, job: JobRecord, now: datetime, own: Zone | None, session: Zone
) -> NextRunDrift | None:
    """Whether the job's stored next run differs from what the schema's own function gives
    now, with its schedules read in the job's zone (or the session's). A due or running job,
    or a disabled one, is not judged: its next run is computed when its run ends."""
    if not job.enabled or job.agent_pid is not None:
        return None
    if job.next_run is not None and job.next_run <= now:
        return None
    try:
        expected = catalog.schedules_next_run(job.jobid, own.name if own else None)
        if expected == job.next_run:
            return None
        in_session = catalog.schedules_next_run(job.jobid, None) if own is not None else expected
    except psycopg.Error:
        return None  # the schema's function fails for these schedules: nothing to compare
    return NextRunDrift(
        job.next_run,
        expected,
        own.name if own else session.name,
        own is not None,
        in_session == job.next_run,
    )
