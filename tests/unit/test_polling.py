"""The poll loop's decisions: claim capacity, backlog batching, sleeping until due."""

from __future__ import annotations

from pyagent.agent import polling
from pyagent.agent.polling import CONTENTION_RETRY, DUE_MARGIN, Next
from pyagent.store.records import Claim, PollResult


def _result(claimed: int, next_due_in: float | None = None) -> PollResult:
    return PollResult(tuple(Claim(i, None, 1) for i in range(claimed)), next_due_in)


def plan(result: PollResult, *, backlog_poll: bool = False, asked: int = 16, running: int = 0):
    return polling.plan_after_claim(
        result,
        backlog_poll=backlog_poll,
        asked=asked,
        running=running,
        max_jobs=16,
        poll_interval=5.0,
    )


def test_capacity_never_negative():
    assert polling.capacity(16, 3) == 13
    assert polling.capacity(16, 16) == 0
    assert polling.capacity(4, 9) == 0


def test_claim_batch_is_a_quarter_of_the_bound_between_1_and_8():
    assert polling.claim_batch(1) == 1
    assert polling.claim_batch(16) == 4
    assert polling.claim_batch(100) == 8


def test_nothing_due_sleeps_the_poll_interval():
    p = plan(_result(0, None))
    assert p.next is Next.SLEEP and p.seconds == 5.0 and not p.backlog


def test_sleeps_until_the_next_job_is_due_when_sooner_than_the_poll():
    p = plan(_result(0, 1.5))
    assert p.next is Next.SLEEP and p.seconds == 1.5 + DUE_MARGIN


def test_more_due_after_a_claim_claims_again_in_backlog_mode():
    p = plan(_result(3, -0.1), running=3)
    assert p.next is Next.CLAIM_AGAIN and p.backlog


def test_due_jobs_but_none_claimed_means_contention_retry():
    p = plan(_result(0, -1.0), running=2)
    assert p.next is Next.RETRY_CONTENDED and p.seconds == CONTENTION_RETRY


def test_at_the_bound_due_jobs_wait_for_a_batch_of_slots():
    p = plan(_result(4, -1.0), running=16)
    assert p.next is Next.WAIT_FOR_SLOTS and p.backlog


def test_full_backlog_batch_keeps_backlog_mode():
    p = plan(_result(4), backlog_poll=True, asked=4, running=10)
    assert p.next is Next.CLAIM_AGAIN and p.backlog


def test_short_backlog_batch_returns_to_full_polls():
    p = plan(_result(2), backlog_poll=True, asked=4, running=10)
    assert p.next is Next.CLAIM_AGAIN and not p.backlog


def test_full_backlog_batch_at_the_bound_waits_for_slots():
    p = plan(_result(4), backlog_poll=True, asked=4, running=16)
    assert p.next is Next.WAIT_FOR_SLOTS and p.backlog
