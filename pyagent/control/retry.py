"""Retries: the release of a failed run that may bring the job's next run forward.

The retry count is never kept in memory: the streak of consecutive failed runs is read from
the job's pga_joblog history in the release's own transaction, so it survives restarts and
moves between agents, and two agents can never both retry one failure (a job has one claim
at a time, and the release holds the job row until the decision is written).

Rules (see docs/differences.md):
- only a run that ends `f` (a failed step with on-error "fail", or the job timeout) is
  retried; `s` ends the streak; `i` (internal error) and `d` (aborted, cancelled) end it
  too and are never retried;
- retry k of N comes `backoff_delay(k)` after the release, unless the schedule's own next
  run comes first (that run then counts as the retry);
- a jobnextrun changed during the run ("Run now", a schedule edit) is kept: no retry;
- once N retries have failed the job is back on its schedule; the next failure after a
  success starts a new streak.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg

from pyagent.control.options import JobControlOptions, RetryDecision, decide_retry
from pyagent.duration import format_duration
from pyagent.logsetup import get_logger
from pyagent.store.jobcontrol import FailedRunRelease, JobControlStore
from pyagent.store.records import RunStatus

if TYPE_CHECKING:
    from pyagent.ops.metrics import Metrics
    from pyagent.store.records import Claim


@dataclass(frozen=True)
class RetryOutcome:
    """What happened to a failed run's job at its release."""

    decision: RetryDecision | None  # None: no retry rule applied (e.g. cancelled meanwhile)
    retried: bool  # the next run was brought forward
    next_run: datetime | None


def wants_retry_release(
    status: RunStatus, jlgid: int | None, options: JobControlOptions | None
) -> bool:
    """Whether a run's release goes through the retry path (else: the ordinary release)."""
    return (
        status == RunStatus.FAILED
        and jlgid is not None
        and options is not None
        and options.retries > 0
    )


async def release_with_retries(
    job_control: JobControlStore,
    claim: Claim,
    jlgid: int | None,
    status: RunStatus,
    options: JobControlOptions | None,
    *,
    owner: Callable[[], int],
    metrics: Metrics | None = None,
    timezone: str | None = None,
) -> RetryOutcome | None:
    """Release a failed run of a job with retries (its schedules read in its own
    `timezone`, if it has one); None when this path does not apply or could not complete
    (the caller then releases the ordinary way). `owner()` is the identity holding the
    claim (asked at every attempt: a reconnect may move it)."""
    if not wants_retry_release(status, jlgid, options):
        return None
    assert jlgid is not None and options is not None
    log = get_logger()

    def decide(final_status: RunStatus | None, streak: int) -> RetryDecision | None:
        # A cancel may have turned the run into 'd' meanwhile: no retry then.
        return decide_retry(streak, options) if final_status == RunStatus.FAILED else None

    def retry_delay(final_status: RunStatus | None, streak: int) -> float | None:
        decision = decide(final_status, streak)
        return None if decision is None else decision.delay

    try:
        # Outages are waited out (until a hard shutdown gives up: then None).
        released = await job_control.release_failed_run(
            claim, jlgid, status, owner=owner, retry_delay=retry_delay, timezone=timezone
        )
    except psycopg.Error as exc:
        # A statement timeout, or the schema's next-run function raised: the ordinary
        # release has the fallback.
        log.debug(f"Retry release of job {claim.job_id} failed: {str(exc).strip()}")
        return None
    if released is None:
        return None
    decision = None
    if not released.kept_changed_nextrun:
        decision = decide(released.final_status, released.failure_streak)
    _report(metrics, claim.job_id, jlgid, released, decision)
    return RetryOutcome(decision, released.retried, released.next_run)


def _report(
    metrics: Metrics | None,
    job_id: int,
    jlgid: int,
    released: FailedRunRelease,
    decision: RetryDecision | None,
) -> None:
    log = get_logger()
    fields = {"job_id": job_id, "jlgid": jlgid, "next_run": str(released.next_run)}
    if released.kept_changed_nextrun:
        log.warning(
            f"job {job_id} failed; its next run was changed during the run "
            f"({released.next_run}) and is kept: no retry",
            **fields,
        )
        return
    if decision is None:
        return
    fields |= {"attempt": decision.attempt, "retries": decision.retries}
    counters = None
    if metrics is not None:  # prometheus_client is loaded with --http only
        from pyagent.control.metrics import control_metrics

        counters = control_metrics(metrics)
    if not decision.retrying:
        log.warning(
            f"job {job_id} failed; its {decision.retries} retries are used up: "
            f"back to its schedule (next run {released.next_run})",
            **fields,
        )
        if counters is not None:
            counters.retries_exhausted.inc()
        return
    assert decision.delay is not None
    fields["retry_delay_seconds"] = decision.delay
    if released.retried:
        log.warning(
            f"job {job_id} failed; retry {decision.attempt} of {decision.retries} "
            f"in {format_duration(decision.delay)}",
            **fields,
        )
        if counters is not None:
            counters.retries_scheduled.inc()
    else:
        log.warning(
            f"job {job_id} failed; retry {decision.attempt} of {decision.retries} "
            f"at its scheduled run {released.next_run}, which comes first",
            **fields,
        )
