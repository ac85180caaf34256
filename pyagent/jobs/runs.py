"""`jobs history` and `jobs logs`: past runs, and the step results and output of one run."""

from __future__ import annotations

from typing import Any

from pyagent.exitcodes import EXIT_USAGE
from pyagent.jobs.errors import JobsError
from pyagent.jobs.lookup import find_job
from pyagent.jobs.render import duration, indent, quoted, seconds, table
from pyagent.jobs.zones import Zone
from pyagent.safetext import safe_text
from pyagent.store.authorship import RunAuthor
from pyagent.store.catalog import Catalog, RunRecord, StepRunRecord
from pyagent.store.records import RunStatus


def run_data(run: RunRecord, zone: Zone) -> dict[str, Any]:
    return {
        "run": run.jlgid,
        "job_id": run.jobid,
        "job": run.jobname,
        "status": run.status.label,
        "start": zone.iso(run.start),
        "duration_s": seconds(run.duration),
    }


def runs_table(
    runs: list[RunRecord],
    zone: Zone,
    *,
    with_job: bool = True,
    run_authors: dict[int, RunAuthor] | None = None,
) -> str:
    if not runs:
        return "(no runs)"
    headers = ["RUN", *(["JOB"] if with_job else []), "STATUS", "START", "DURATION"]
    if run_authors is not None:
        headers.append("LAST CHANGED BY")
    rows = [
        [
            str(r.jlgid),
            *([f"{r.jobname} ({r.jobid})"] if with_job else []),
            r.status.label,
            zone.fmt(r.start),
            duration(r.duration),
            *([_run_author_text(run_authors.get(r.jlgid))] if run_authors is not None else []),
        ]
        for r in runs
    ]
    return table(headers, rows)


def _run_author_text(found: RunAuthor | None) -> str:
    return found.author if found is not None else "-"


def _run_authors(catalog: Catalog, runs: list[RunRecord]) -> dict[int, RunAuthor] | None:
    """Who made the last change to what each run ran, before it started (pyagent's change
    log); None when the change log is not installed or not readable by this role."""
    records = catalog.authorship
    if not runs or not records.access().read_changes:
        return None
    return records.run_authors([r.jlgid for r in runs])


def history(
    catalog: Catalog, zone: Zone, ident: str | None, *, limit: int, failed: bool
) -> tuple[list[dict[str, Any]], str]:
    jobid = find_job(catalog, ident).jobid if ident else None
    runs = catalog.runs(jobid, limit=limit, failed_only=failed)
    run_authors = _run_authors(catalog, runs)
    data = [run_data(r, zone) for r in runs]
    if run_authors is not None:
        for item in data:
            found = run_authors.get(item["run"])
            item["last_changed_by"] = (
                None
                if found is None
                else {"role": found.author, "changed": zone.iso(found.changed_at)}
            )
    return data, runs_table(runs, zone, run_authors=run_authors)


def step_status(status: RunStatus) -> str:
    """A step log's status in words: for a step, 'i' is a failure that was ignored."""
    return "ignored" if status is RunStatus.INTERNAL_ERROR else status.label


def step_run_data(step: StepRunRecord, zone: Zone) -> dict[str, Any]:
    return {
        "step_id": step.jstid,
        "step": step.step_name,
        "status": step_status(step.status),
        "result": step.result,
        "start": zone.iso(step.start),
        "duration_s": seconds(step.duration),
        "output": step.output,
    }


def step_run_text(step: StepRunRecord) -> str:
    result = "" if step.result is None else f", result {step.result}"
    line = (
        f"step {quoted(step.step_name)}: {step_status(step.status)}{result}, "
        f"{duration(step.duration)}"
    )
    # Shown as a block: its lines stay lines, every control made visible (pyagent.safetext).
    output = safe_text((step.output or "").rstrip("\n"), block=True)
    return line + ("\n" + indent(output, "    | ") if output else "")


def logs(catalog: Catalog, zone: Zone, ident: str, *, last: bool) -> tuple[dict[str, Any], str]:
    if last:
        job = find_job(catalog, ident)
        found = catalog.runs(job.jobid, limit=1)
        if not found:
            raise JobsError(f"job {quoted(job.name)} (id {job.jobid}) has not run yet")
        run = found[0]
    else:
        if not ident.strip().isdigit():
            raise JobsError(
                f"{ident!r} is not a run id; to see a job's newest run: "
                f"pyagent jobs logs {ident!r} --last",
                EXIT_USAGE,
            )
        maybe = catalog.run(int(ident))
        if maybe is None:
            raise JobsError(f"no run with id {ident} (`pyagent jobs history` lists them)")
        run = maybe
    steps = catalog.step_runs(run.jlgid)
    data = run_data(run, zone) | {"steps": [step_run_data(s, zone) for s in steps]}
    head = (
        f"run {run.jlgid} of job {quoted(run.jobname)} ({run.jobid}): {run.status.label}, "
        f"started {zone.fmt(run.start)}, {duration(run.duration)}"
    )
    body = [step_run_text(s) for s in steps] or ["(no step ran)"]
    return data, "\n".join([head, *body])
