"""The poll loop's decisions, as pure functions: how many jobs to claim, and what to do
after a claim (claim again, wait for free slots, back off from a contended claim, sleep
until the next job is due)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pyagent.store.records import PollResult

# When due jobs are locked by another agent's claim in progress, look again this soon.
CONTENTION_RETRY = 0.05
# A sleep until the next due job ends this much after it, so the job is due on waking.
DUE_MARGIN = 0.002


class Next(Enum):
    CLAIM_AGAIN = "claim again now"
    WAIT_FOR_SLOTS = "wait until a batch of slots is free"
    RETRY_CONTENDED = "due jobs are being claimed by another agent: look again shortly"
    SLEEP = "sleep until the next job is due or the poll interval ends"


@dataclass(frozen=True)
class Plan:
    next: Next
    # The next poll only claims (a backlog is being worked off).
    backlog: bool
    # For SLEEP and RETRY_CONTENDED: how long.
    seconds: float = 0.0


def capacity(max_jobs: int, running: int) -> int:
    """How many more jobs may start now."""
    return max(0, max_jobs - running)


def claim_batch(max_jobs: int) -> int:
    """Free slots to wait for before claiming again at the bound, so a backlog is claimed
    in batches rather than one job per poll."""
    return max(1, min(8, max_jobs // 4))


def plan_after_claim(
    result: PollResult,
    *,
    backlog_poll: bool,
    asked: int,
    running: int,
    max_jobs: int,
    poll_interval: float,
) -> Plan:
    """What the loop does after a claim of `asked` jobs; `running` counts the jobs just
    started."""
    claimed = len(result.claims)
    at_bound = running >= max_jobs
    if backlog_poll:
        # A full batch: more may be waiting; otherwise poll fully next time.
        more = claimed == asked
        return Plan(Next.WAIT_FOR_SLOTS if more and at_bound else Next.CLAIM_AGAIN, more)
    more_due = result.next_due_in is not None and result.next_due_in <= 0
    if more_due and not at_bound:
        if claimed:
            return Plan(Next.CLAIM_AGAIN, True)
        return Plan(Next.RETRY_CONTENDED, True, CONTENTION_RETRY)
    if more_due:
        return Plan(Next.WAIT_FOR_SLOTS, True)
    seconds = poll_interval
    if result.next_due_in is not None:
        seconds = min(seconds, result.next_due_in + DUE_MARGIN)
    return Plan(Next.SLEEP, False, seconds)
