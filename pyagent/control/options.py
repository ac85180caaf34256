"""A job's control options as job control uses them, and the pure retry rules.

The options are annotations of the job's Comment, read by `pyagent.annotations` (the one
reader, shared with the rest of the agent and with `pyagent jobs`):

- ``@RETRIES=N;`` — how many times a failed run is retried (0 = never);
- ``@RETRY_DELAY=<duration>;`` — the delay before the first retry (0 = at once), doubled for
  each further retry of the same streak, up to `MAX_RETRY_DELAY` (or the first delay, if
  larger);
- ``@ALERT=failure|always|never;`` — which run endings are reported to the alert sinks.

The agent-wide defaults come from ``--retries`` / ``--retry-delay``; an annotation wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyagent.annotations import AlertPolicy, Description, JobOptions
from pyagent.settings import DEFAULT_RETRY_DELAY, ControlSettings

# The doubling stops here: a job that keeps failing is retried at most hourly.
MAX_RETRY_DELAY = 3600.0


@dataclass(frozen=True)
class JobControlOptions:
    """A job's retry and alert options, with the problems found while reading them."""

    retries: int = 0
    retry_delay: float = DEFAULT_RETRY_DELAY
    alert: AlertPolicy = "failure"
    problems: tuple[str, ...] = ()


def job_control_options(
    comment: Description[JobOptions], defaults: ControlSettings
) -> JobControlOptions:
    """A job's control options from its comment as read: an option the comment gives (with
    a good value, zero included) wins over the default; a bad one keeps the default and is
    reported."""
    values = comment.values
    return JobControlOptions(
        defaults.retries if values.retries is None else values.retries,
        defaults.retry_delay if values.retry_delay is None else values.retry_delay,
        values.alert or "failure",
        comment.problems("retries", "retry_delay", "alert"),
    )


def read_job_control(
    defaults: ControlSettings, job_id: int, comment: Description[JobOptions]
) -> JobControlOptions:
    """A run's control options; each bad annotation is logged as a warning naming the job."""
    from pyagent.logsetup import get_logger

    options = job_control_options(comment, defaults)
    for problem in options.problems:
        get_logger().warning(f"Job {job_id}: ignoring {problem}", job_id=job_id)
    return options


def backoff_delay(attempt: int, first_delay: float, cap: float = MAX_RETRY_DELAY) -> float:
    """Seconds before retry number `attempt` (1-based): the first delay doubled for each
    retry after the first, never above the cap (or the first delay, when that is larger)."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    limit = max(cap, first_delay)
    # Bounded exponent: 2**64 seconds is already far past any cap.
    return min(first_delay * 2.0 ** min(attempt - 1, 64), limit)


@dataclass(frozen=True)
class RetryDecision:
    """What to do after a failed run: retry `attempt` of `retries` in `delay` seconds, or
    (attempt > retries) go back to the schedule."""

    attempt: int
    retries: int
    delay: float | None

    @property
    def retrying(self) -> bool:
        return self.delay is not None


def decide_retry(failure_streak: int, options: JobControlOptions) -> RetryDecision | None:
    """The retry rule. `failure_streak` counts the job's consecutive failed runs, the one
    that just ended included. None when the job has no retries at all."""
    if options.retries <= 0 or failure_streak < 1:
        return None
    if failure_streak > options.retries:
        return RetryDecision(failure_streak, options.retries, None)
    return RetryDecision(
        failure_streak, options.retries, backoff_delay(failure_streak, options.retry_delay)
    )
