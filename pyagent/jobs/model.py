"""What a job file means: a job, its steps, schedules and exceptions as `pyagent jobs apply`
is to make them in the database. Built by pyagent.jobs.validation from what
pyagent.jobs.loading read; no YAML and no checks here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time

from pyagent.annotations import JobOptions, StepOptions, managed, write
from pyagent.jobs import cron
from pyagent.store.records import OnError, StepKind

# pgAgent's five schedule arrays, as fields of a job file.
NATIVE_FIELDS = ("minutes", "hours", "weekdays", "monthdays", "months")
KINDS = {"sql": StepKind.SQL, "batch": StepKind.BATCH}
ON_ERROR = {"fail": OnError.FAIL, "succeed": OnError.SUCCEED, "ignore": OnError.IGNORE}
KIND_WORD = {kind: word for word, kind in KINDS.items()}
ON_ERROR_WORD = {on_error: word for word, on_error in ON_ERROR.items()}


@dataclass(frozen=True)
class Stamp:
    """A start/end timestamp: aware when the file gave a zone; otherwise `text` is read in
    the job's `timezone` when it has one, else in the database session's TimeZone at apply
    time."""

    text: str
    aware: datetime | None


@dataclass(frozen=True)
class FileException:
    """A pga_exception row: a local date, a local time of day, or both."""

    date: date | None
    time: time | None
    line: int


@dataclass(frozen=True)
class FileSchedule:
    """One pgAgent schedule (a cron expression may have produced two of these)."""

    name: str
    description: str
    enabled: bool
    fields: cron.Fields
    start: Stamp | None
    end: Stamp | None
    exceptions: tuple[FileException, ...]
    line: int


@dataclass(frozen=True)
class FileStep:
    """A pga_jobstep row, its description's options as values."""

    name: str
    kind: StepKind
    database: str
    connection: str
    on_error: OnError
    enabled: bool
    description: str
    options: StepOptions
    code: str
    line: int
    lines: dict[str, int] = field(default_factory=dict, compare=False)

    def desc(self) -> str:
        """jstdesc: the description plus the timeout annotation line."""
        return write(self.description, self.options)


@dataclass(frozen=True)
class FileJob:
    """A pga_job row with its steps and schedules, its comment's options as values."""

    name: str
    job_class: str | None
    enabled: bool
    host_agent: str
    managed: bool | None
    comment: str
    options: JobOptions  # without managed_by: apply decides that (see `desc`)
    steps: tuple[FileStep, ...]
    schedules: tuple[FileSchedule, ...]
    file: str
    line: int
    lines: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def timezone(self) -> str | None:
        return self.options.timezone

    def options_marked(self, mark: bool) -> JobOptions:
        """The options with the `@MANAGED_BY=pyagent;` mark, or without it."""
        return managed(self.options, mark)

    def desc(self, mark: bool) -> str:
        """jobdesc: the comment plus one annotation line per option that is set."""
        return write(self.comment, self.options_marked(mark))
