"""Finding jobs: by id or exact name, and catalogue rows grouped by their job."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from pyagent.jobs.errors import JobsError
from pyagent.jobs.render import quoted
from pyagent.store.catalog import Catalog, JobRecord


def find_job(catalog: Catalog, ident: str) -> JobRecord:
    """A job by id (digits) or by exact name; an ambiguous name is an error listing ids."""
    text = ident.strip()
    if text.isdigit():
        found = catalog.jobs([int(text)])
        if found:
            return found[0]
        by_name = catalog.job_ids_by_name(text)
        if not by_name:
            raise JobsError(f"no job with id {text}")
        ids = by_name
    else:
        ids = catalog.job_ids_by_name(text)
    if not ids:
        close = [j.name for j in catalog.jobs() if j.name.lower() == text.lower()]
        hint = f" (did you mean {quoted(close[0])}?)" if close else ""
        raise JobsError(f"no job named {text!r}{hint}; `pyagent jobs list` shows them")
    if len(ids) > 1:
        raise JobsError(
            f"{len(ids)} jobs are named {text!r} (ids {', '.join(map(str, ids))}); "
            "give the id instead"
        )
    return catalog.jobs(ids)[0]


class _OfAJob(Protocol):
    @property
    def jobid(self) -> int: ...


Row = TypeVar("Row", bound=_OfAJob)


def by_job(rows: Iterable[Row]) -> dict[int, list[Row]]:
    """Catalogue rows (steps, schedules) grouped by their job's id, in the order given."""
    grouped: dict[int, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row.jobid, []).append(row)
    return grouped
