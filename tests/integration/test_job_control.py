"""Job control with real agent processes: retries (across a restart and two agents),
cancelling SQL and batch steps on another agent, alerts to a local receiver and to a
command, run-history metrics, and bad values."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.agentproc import AgentProcess, job_logs, make_job, wait_until

FAST = ("-t", "1")
REPO = Path(__file__).resolve().parents[2]
FAILING = [{"jstname": "fails", "jstcode": "SELECT 1/0"}]


@pytest.fixture
def agents(db):
    started: list[AgentProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> AgentProcess:
        agent = AgentProcess(db.dsn, [*FAST, *args], env=env, cwd=str(REPO))
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop(signal.SIGKILL if agent.proc.poll() is None else signal.SIGTERM)
        agent.log_path.unlink(missing_ok=True)


def job_state(conn, job_id: int) -> tuple[Any, Any]:
    """(jobagentid, jobnextrun)."""
    return conn.execute(
        "SELECT jobagentid, jobnextrun FROM pgagent.pga_job WHERE jobid = %s", (job_id,)
    ).fetchone()


def statuses(conn, job_id: int) -> list[str]:
    return [r[1] for r in job_logs(conn, job_id)]


def wait_done_for_good(conn, job_id: int, runs: int, timeout: float = 60.0) -> list[str]:
    """Wait until the job has `runs` finished runs, is released and has no next run (so no
    further run can ever start); return its statuses."""

    def done() -> list[str] | None:
        found = statuses(conn, job_id)
        agent, nextrun = job_state(conn, job_id)
        finished = [s for s in found if s != "r"]
        if len(finished) >= runs and agent is None and nextrun is None:
            return found
        return None

    return wait_until(done, timeout, what=f"job {job_id} to end after {runs} runs")


# ---- retries -----------------------------------------------------------------------------


def test_failed_job_is_retried_with_backoff_then_back_to_its_schedule(conn, agents):
    job = make_job(conn, "flaky", FAILING, desc="@RETRIES=2;\n@RETRY_DELAY=1 s;", run_now=True)
    agent = agents()
    assert wait_done_for_good(conn, job, 3) == ["f", "f", "f"]
    log = agent.log_text()
    assert f"job {job} failed; retry 1 of 2 in 1 s" in log
    assert f"job {job} failed; retry 2 of 2 in 2 s" in log
    assert f"job {job} failed; its 2 retries are used up: back to its schedule" in log
    # Nothing was written into what pgAdmin shows as the user's.
    name, desc = conn.execute(
        "SELECT jobname, jobdesc FROM pgagent.pga_job WHERE jobid = %s", (job,)
    ).fetchone()
    assert (name, desc) == ("flaky", "@RETRIES=2;\n@RETRY_DELAY=1 s;")


def test_success_ends_the_streak(conn, agents):
    conn.execute("CREATE SEQUENCE attempts")
    step = {"jstname": "second time lucky",
            "jstcode": "SELECT 1 / (CASE WHEN nextval('attempts') >= 2 THEN 1 ELSE 0 END)"}  # fmt: skip
    job = make_job(conn, "lucky", [step], desc="@RETRIES=5;\n@RETRY_DELAY=1 s;", run_now=True)
    agents()
    assert wait_done_for_good(conn, job, 2) == ["f", "s"]


def test_jobs_without_annotations_are_not_retried(conn, agents):
    job = make_job(conn, "plain", FAILING, run_now=True)
    agent = agents()
    assert wait_done_for_good(conn, job, 1) == ["f"]
    assert "retry" not in agent.log_text()


def test_agent_wide_default_and_annotation_zero(conn, agents):
    by_default = make_job(conn, "default", FAILING, run_now=True)
    opted_out = make_job(conn, "opted out", FAILING, desc="@RETRIES=0;", run_now=True)
    agents("--retries", "1", "--retry-delay", "1s")
    assert wait_done_for_good(conn, by_default, 2) == ["f", "f"]
    assert wait_done_for_good(conn, opted_out, 1) == ["f"]


def test_retries_continue_across_an_agent_restart(conn, agents):
    job = make_job(conn, "restart", FAILING, desc="@RETRIES=2;\n@RETRY_DELAY=3 s;", run_now=True)
    first = agents()
    wait_until(lambda: statuses(conn, job) == ["f"] and job_state(conn, job)[0] is None)
    assert first.stop() == 0
    second = agents()
    assert wait_done_for_good(conn, job, 3) == ["f", "f", "f"]
    log = second.log_text()
    # The streak came from the history, not from the first agent's memory.
    assert f"job {job} failed; retry 2 of 2 in 6 s" in log
    assert "retries are used up" in log


def test_two_agents_retry_each_job_exactly_n_times(conn, agents):
    jobs = [
        make_job(conn, f"shared{i}", FAILING, desc="@RETRIES=2;\n@RETRY_DELAY=1 s;", run_now=True)
        for i in range(6)
    ]
    agents("--station", "a")
    agents("--station", "b")
    for job in jobs:
        assert wait_done_for_good(conn, job, 3) == ["f", "f", "f"]


def test_a_change_made_during_the_run_is_never_overwritten(conn, agents):
    step = {"jstname": "waits", "jstcode": "SELECT pg_advisory_lock(4242); SELECT 1/0"}
    job = make_job(conn, "edited", [step], desc="@RETRIES=3;\n@RETRY_DELAY=1 s;")
    conn.execute("SELECT pg_advisory_lock(4242)")
    conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = %s", (job,))
    agent = agents()
    wait_until(lambda: statuses(conn, job) == ["r"])
    edited = conn.execute(
        "UPDATE pgagent.pga_job SET jobnextrun = now() + interval '1 day' WHERE jobid = %s"
        " RETURNING jobnextrun",
        (job,),
    ).fetchone()[0]
    conn.execute("SELECT pg_advisory_unlock(4242)")
    wait_until(lambda: statuses(conn, job) == ["f"] and job_state(conn, job)[0] is None)
    assert job_state(conn, job)[1] == edited
    assert "is kept: no retry" in agent.log_text()


def test_the_schedules_next_run_wins_when_it_comes_first(conn, agents):
    job = make_job(conn, "scheduled", FAILING, desc="@RETRIES=1;\n@RETRY_DELAY=2 h;")
    conn.execute(
        "INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscminutes)"
        " VALUES (%s, 'every minute', array_fill(true, ARRAY[60]))",
        (job,),
    )
    conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = %s", (job,))
    agent = agents()
    wait_until(lambda: "retry 1 of 1 at its scheduled run" in agent.log_text(), 30)
    nextrun = conn.execute(
        "SELECT jobnextrun - now() < interval '2 minutes' FROM pgagent.pga_job WHERE jobid = %s",
        (job,),
    ).fetchone()[0]
    assert nextrun


def test_bad_annotation_values_are_warned_about_and_the_run_still_happens(conn, agents):
    job = make_job(
        conn, "typo", FAILING, desc="@RETRIES=lots;\n@ALERT=loudly;\n@RETRY_DELAY=1 s;",
        run_now=True,
    )  # fmt: skip
    agent = agents()
    assert wait_done_for_good(conn, job, 1) == ["f"]
    log = agent.log_text()
    assert f"Job {job}: ignoring @RETRIES: 'lots' is not a whole number" in log
    assert f"Job {job}: ignoring @ALERT: 'loudly' is not one of failure, always, never" in log
