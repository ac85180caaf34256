"""`jobs enable` / `jobs disable`."""

from __future__ import annotations

from typing import Any

from pyagent.jobs.lookup import find_job
from pyagent.jobs.render import quoted
from pyagent.jobs.zones import Zone, own_zone
from pyagent.store.catalog import Catalog


def set_enabled(
    catalog: Catalog, zone: Zone, idents: list[str], enabled: bool
) -> tuple[list[dict[str, Any]], str]:
    jobs = [find_job(catalog, ident) for ident in idents]
    data, lines = [], []
    word = "enabled" if enabled else "disabled"
    with catalog.transaction():
        for job in jobs:
            if job.enabled == enabled:
                data.append(
                    {"id": job.jobid, "name": job.name, "enabled": enabled, "changed": False}
                )
                lines.append(f"job {quoted(job.name)} ({job.jobid}) was already {word}")
                continue
            nextrun = catalog.set_enabled(job.jobid, enabled)
            own = own_zone(job.desc)
            if enabled and own is not None:
                # The schema's trigger read the schedules in this session's zone.
                catalog.reschedule_job(job.jobid, own.name)
                nextrun = catalog.jobs([job.jobid])[0].next_run
            data.append(
                {
                    "id": job.jobid,
                    "name": job.name,
                    "enabled": enabled,
                    "changed": True,
                    "next_run": zone.iso(nextrun),
                }
            )
            tail = f"; next run {zone.fmt(nextrun)}" if enabled else ""
            lines.append(f"job {quoted(job.name)} ({job.jobid}) {word}{tail}")
    return data, "\n".join(lines)
