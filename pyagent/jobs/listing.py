"""`jobs list`: every job with its schedules, next run, last run and the agent running it."""

from __future__ import annotations

from typing import Any

from pyagent.annotations import read_job
from pyagent.jobs import cron
from pyagent.jobs.lookup import by_job
from pyagent.jobs.render import duration, seconds, shorten, table
from pyagent.jobs.zones import Zone
from pyagent.schedule import in_words
from pyagent.store.catalog import Catalog, JobRecord, ScheduleRecord
from pyagent.store.records import RunStatus

FAILED = (RunStatus.FAILED, RunStatus.ABORTED, RunStatus.INTERNAL_ERROR)


def schedule_summary(sched: ScheduleRecord) -> dict[str, Any]:
    fields = cron.Fields.of(sched)
    return {
        "name": sched.name,
        "enabled": sched.enabled,
        "cron": cron.to_cron(fields),
        "words": in_words(fields),
    }


def last_run_data(job: JobRecord, zone: Zone) -> dict[str, Any] | None:
    if job.last_jlgid is None or job.last_status is None:
        return None
    return {
        "run": job.last_jlgid,
        "status": job.last_status.label,
        "start": zone.iso(job.last_start),
        "duration_s": seconds(job.last_duration),
    }


def running_data(job: JobRecord) -> dict[str, Any] | None:
    if job.agent_pid is None:
        return None
    return {"agent_pid": job.agent_pid, "station": job.agent_station}


def list_jobs(
    catalog: Catalog, zone: Zone, *, failed: bool, running: bool, disabled: bool
) -> tuple[list[dict[str, Any]], str]:
    jobs = catalog.jobs()
    if failed:
        jobs = [j for j in jobs if j.last_status in FAILED]
    if running:
        jobs = [j for j in jobs if j.agent_pid is not None]
    if disabled:
        jobs = [j for j in jobs if not j.enabled]
    schedules = by_job(catalog.schedules([j.jobid for j in jobs]))
    data = []
    rows = []
    for job in jobs:
        summaries = [schedule_summary(s) for s in schedules.get(job.jobid, [])]
        data.append(_list_data(job, summaries, zone))
        rows.append(_list_row(job, summaries, zone))
    if not rows:
        text = "no jobs" + (" match" if failed or running or disabled else "")
    else:
        text = table(
            ["ID", "NAME", "CLASS", "ON", "SCHEDULE", "NEXT RUN", "LAST RUN", "RUNNING"], rows
        )
        text += f"\n(times in {zone.name}, the database session's TimeZone)"
    return data, text


def _list_data(job: JobRecord, summaries: list[dict[str, Any]], zone: Zone) -> dict[str, Any]:
    return {
        "id": job.jobid,
        "name": job.name,
        "class": job.class_name,
        "enabled": job.enabled,
        "host_agent": job.hostagent,
        "schedules": summaries,
        "timezone": read_job(job.desc).values.timezone,
        "next_run": zone.iso(job.next_run),
        "last_run": last_run_data(job, zone),
        "running": running_data(job),
    }


def _list_row(job: JobRecord, summaries: list[dict[str, Any]], zone: Zone) -> list[str]:
    """One job's row of the `jobs list` table."""
    active = [s for s in summaries if s["enabled"]]
    sched_text = "; ".join(s["cron"] or s["words"] for s in active) or "-"
    own_zone = read_job(job.desc).values.timezone
    if own_zone is not None and active:
        sched_text = f"{sched_text} ({own_zone})"
    last = "-"
    if job.last_status is not None:
        last = f"{job.last_status.label} {duration(job.last_duration)}".strip()
        if job.last_status is RunStatus.RUNNING:
            last = "running"
        last += f" at {zone.fmt(job.last_start, seconds=False)}"
    run_now = "-"
    if job.agent_pid is not None:
        run_now = f"on {job.agent_station or '?'} (pid {job.agent_pid})"
    return [
        str(job.jobid),
        job.name,
        job.class_name,
        "yes" if job.enabled else "no",
        shorten(sched_text, 48),
        zone.fmt(job.next_run, seconds=False),
        last,
        run_now,
    ]
