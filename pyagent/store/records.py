"""Typed records and enums for the rows of the `pgagent` schema."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """pga_joblog.jlgstatus and pga_jobsteplog.jslstatus letters."""

    RUNNING = "r"
    SUCCEEDED = "s"
    FAILED = "f"
    INTERNAL_ERROR = "i"
    ABORTED = "d"

    @property
    def label(self) -> str:
        """The word pgAdmin shows for the letter."""
        return _LABELS[self]


_LABELS = {
    RunStatus.RUNNING: "running",
    RunStatus.SUCCEEDED: "succeeded",
    RunStatus.FAILED: "failed",
    RunStatus.INTERNAL_ERROR: "internal error",
    RunStatus.ABORTED: "aborted",
}


class StepKind(StrEnum):
    """pga_jobstep.jstkind."""

    SQL = "s"
    BATCH = "b"


class OnError(StrEnum):
    """pga_jobstep.jstonerror: what a failed step does to its job."""

    FAIL = "f"
    SUCCEED = "s"
    IGNORE = "i"
