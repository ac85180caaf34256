"""Job control with real agent processes: retries (across a restart and two agents),
cancelling SQL and batch steps on another agent, alerts to a local receiver and to a
command, run-history metrics, and bad values."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.agentproc import AgentProcess, job_logs, make_job, step_logs, wait_until

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


# ---- cancel ------------------------------------------------------------------------------


def cancel(db, job: str | int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyagent", "jobs", "cancel", str(job), *args, "-d", db.dsn],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def running_step(conn, job_id: int) -> bool:
    return any(s[1] == "r" for s in step_logs(conn, job_id))


def test_cancel_a_sql_step_on_the_other_agent(db, conn, agents):
    steps = [
        {"jstname": "1 sleeps", "jstcode": "SELECT pg_sleep(600)"},
        {"jstname": "2 never", "jstcode": "CREATE TABLE must_not_exist(a int)"},
    ]
    job = make_job(conn, "long sql", steps, hostagent="b", desc="@RETRIES=3;", run_now=True)
    agents("--station", "a")
    runner = agents("--station", "b")
    wait_until(lambda: running_step(conn, job))
    done = cancel(db, "long sql")
    assert done.returncode == 0, done.stderr
    assert f'job {job} "long sql"' in done.stdout and "on b" in done.stdout
    assert "the agent stopped it" in done.stdout
    assert statuses(conn, job) == ["d"]
    [(name, status, result, output)] = step_logs(conn, job)
    assert (name, status, result) == ("1 sleeps", "d", -1)
    assert re.fullmatch(
        r"Cancelled by \S+@\S+ \(pyagent jobs cancel\) \(database user \w+\) at .+", output
    )
    # Cancelled on the server, no later step, back to its schedule (none: no next run).
    sleeping = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(600)'"
    ).fetchone()[0]
    assert sleeping == 0
    assert conn.execute("SELECT to_regclass('must_not_exist')").fetchone()[0] is None
    assert job_state(conn, job) == (None, None)
    assert f"Job {job}: run" in runner.log_text() and "cancelled" in runner.log_text()


def test_cancel_a_batch_step_on_the_other_agent(db, conn, agents, tmp_path):
    pidfile = tmp_path / "pid"
    steps = [{"jstname": "sleeps", "jstkind": "b", "jstcode": f"echo $$ > {pidfile}\nsleep 600\n"}]
    job = make_job(conn, "long batch", steps, hostagent="b", run_now=True)
    agents("--station", "a")
    agents("--station", "b")
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip())
    shell = int(pidfile.read_text())
    done = cancel(db, job)
    assert done.returncode == 0, done.stderr
    assert statuses(conn, job) == ["d"]
    assert step_logs(conn, job)[0][1] == "d"
    assert step_logs(conn, job)[0][3].startswith("Cancelled by ")

    def gone() -> bool:
        try:
            os.killpg(shell, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(gone, what="the batch step's process group to end")
    wait_until(lambda: job_state(conn, job) == (None, None))


def test_cancel_of_a_job_that_is_not_running_changes_nothing(db, conn):
    job = make_job(conn, "idle", FAILING)
    done = cancel(db, job)
    assert done.returncode == 6
    assert "is not running: nothing changed" in done.stdout
    assert job_logs(conn, job) == []
    unknown = cancel(db, "no such job")
    assert unknown.returncode == 1 and "no job 'no such job'" in unknown.stderr


def readme_cancel_sql() -> str:
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- cancel-sql -->", 1)[1]
    return block.split("```sql\n", 1)[1].split("```", 1)[0]


def test_the_documented_pgadmin_statement_cancels_a_run(conn, agents):
    steps = [{"jstname": "1 sleeps", "jstcode": "SELECT pg_sleep(600)"},
             {"jstname": "2 never", "jstcode": "SELECT 1"}]  # fmt: skip
    job = make_job(conn, "from pgadmin", steps, run_now=True)
    agents()
    wait_until(lambda: running_step(conn, job))
    sql = readme_cancel_sql().replace("j.jobid = 42", f"j.jobid = {job}")
    rows = conn.execute(sql.encode()).fetchall()
    assert len(rows) == 1
    wait_until(lambda: job_state(conn, job) == (None, None))
    assert statuses(conn, job) == ["d"]
    [(name, status, _result, output)] = step_logs(conn, job)
    assert (name, status) == ("1 sleeps", "d")
    assert output.startswith("Cancelled by ")
    # Not running any more: the statement finds nothing and changes nothing.
    assert conn.execute(sql.encode()).fetchall() == []


def test_a_c_pgagent_ignores_a_cancel_request_without_breaking(ext_db, tmp_path):
    pgagent = Path("/usr/bin/pgagent")
    if not os.access(pgagent, os.X_OK):
        pytest.skip("the C pgagent (Debian package pgagent) is not installed")
    with ext_db.connect() as conn:
        steps = [{"jstname": "1 waits", "jstcode": "SELECT pg_advisory_lock(4243)"},
                 {"jstname": "2 after", "jstcode": "SELECT 1"}]  # fmt: skip
        job = make_job(conn, "c agent", steps, run_now=True)
        conn.execute("SELECT pg_advisory_lock(4243)")
        agent = AgentProcess(ext_db.dsn, ["-t", "1"], command=[str(pgagent)], cwd=str(tmp_path))
        try:
            wait_until(lambda: running_step(conn, job), 30)
            done = cancel(ext_db, job, "--wait", "1")
            assert done.returncode == 0, done.stderr
            assert "has not let go of it" in done.stdout
            conn.execute("SELECT pg_advisory_unlock(4243)")
            wait_until(lambda: job_state(conn, job)[0] is None, 30)
            # pgAgent finished the run as if nothing happened and wrote its own result.
            assert statuses(conn, job) == ["s"]
            assert [s[:2] for s in step_logs(conn, job)] == [("1 waits", "s"), ("2 after", "s")]
            assert agent.proc.poll() is None
        finally:
            agent.stop()
            agent.log_path.unlink(missing_ok=True)


# ---- alerts ------------------------------------------------------------------------------

SECRET_PATH = "/hooks/T0000/B0000/S3CR3TTOKEN"


class Receiver:
    """A local webhook receiver (127.0.0.1 only): up, slow (answers after `delay`) or
    hanging (answers only when released); with `auth` ("user:password") it wants that HTTP
    basic authentication and answers 401 otherwise; with `redirect` it answers 302 there.
    Records every document it accepts, and the request line and headers of every request."""

    def __init__(
        self,
        port: int = 0,
        *,
        delay: float = 0.0,
        hang: bool = False,
        auth: str | None = None,
        redirect: str | None = None,
    ) -> None:
        self.docs: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()
        receiver = self
        wanted = "Basic " + base64.b64encode(auth.encode()).decode() if auth else None

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.requestline, dict(self.headers.items())))
                if wanted and self.headers.get("Authorization") != wanted:
                    self.answer(401, [("WWW-Authenticate", 'Basic realm="alerts"')])
                    return
                if redirect:
                    self.answer(302, [("Location", redirect)])
                    return
                receiver.paths.append(self.path)
                receiver.docs.append(json.loads(body))
                if hang:
                    receiver.release.wait(120)
                elif delay:
                    receiver.release.wait(delay)  # the receiver's own slowness
                self.answer(200)

            def answer(self, status: int, headers: list[tuple[str, str]] = ()) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        # A client that gave up (timed out) is expected here: no traceback on stderr.
        self.server.handle_error = lambda *_args: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    def events(self, job_id: int) -> list[str]:
        return [d["event"] for d in list(self.docs) if d["job_id"] == job_id]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_webhook_gets_failure_and_recovered_and_never_sees_the_secret_logged(
    conn, agents, receivers
):
    receiver = receivers(delay=1.0)  # slow, but within the timeout
    conn.execute("CREATE SEQUENCE attempts")
    step = {"jstname": "20 load",
            "jstcode": "SELECT 1 / (CASE WHEN nextval('attempts') >= 2 THEN 1 ELSE 0 END)"}  # fmt: skip
    job = make_job(conn, "nightly", [step], desc="@RETRIES=1;\n@RETRY_DELAY=1 s;", run_now=True)
    agent = agents("--alert-webhook", receiver.url)
    wait_until(lambda: receiver.events(job) == ["failure", "recovered"], 30)
    failure, recovered = receiver.docs
    assert failure["text"].startswith(f'pyagent: job {job} "nightly" failed (run ')
    assert 'Step "20 load" result -1. Retry 1 of 1 at ' in failure["text"]
    assert "ERROR:  division by zero" in failure["text"]
    assert failure["status"] == "f" and failure["job_name"] == "nightly"
    assert failure["step"]["output"] == "ERROR:  division by zero"
    assert failure["retry"]["attempt"] == 1 and failure["retry"]["retrying"] is True
    assert failure["run_id"] == job_logs(conn, job)[0][0]
    assert failure["duration_seconds"] >= 0 and failure["start"]
    assert recovered["status"] == "s" and recovered["previous_status"] == "f"
    assert receiver.paths == [SECRET_PATH, SECRET_PATH]
    log = agent.log_text()
    assert "S3CR3TTOKEN" not in log
    assert f"webhook http://127.0.0.1:{receiver.server.server_address[1]}" in log


def test_a_receiver_that_is_down_gets_the_alert_once_it_is_up(conn, agents, receivers):
    port = free_port()
    job = make_job(conn, "down", FAILING, run_now=True)
    agent = agents("--alert-webhook", f"http://127.0.0.1:{port}{SECRET_PATH}")
    wait_until(lambda: f"not delivered by webhook http://127.0.0.1:{port}" in agent.log_text(), 30)
    assert "trying again in" in agent.log_text()
    receiver = receivers(port=port)
    wait_until(lambda: receiver.events(job) == ["failure"], 30)


def test_a_hanging_receiver_does_not_delay_other_jobs(conn, agents, receivers):
    receiver = receivers(hang=True)
    jobs = [make_job(conn, f"burst{i}", FAILING, run_now=True) for i in range(12)]
    agent = agents("--alert-webhook", receiver.url, "--alert-timeout", "1")
    for job in jobs:
        assert wait_done_for_good(conn, job, 1) == ["f"]
    # Every job ran while the receiver held its requests; the deliveries time out and are
    # tried again later, each costing one slot.
    assert not receiver.release.is_set()
    wait_until(lambda: "timed out after 1 s; trying again" in agent.log_text(), 30)
    # And the agent keeps scheduling: a job made due now still runs at once.
    late = make_job(conn, "late", [{"jstcode": "SELECT 1"}], run_now=True)
    assert wait_done_for_good(conn, late, 1) == ["s"]


def test_alert_command_including_a_failing_one(conn, agents, tmp_path):
    script = tmp_path / "alert.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ ! -e "{tmp_path}/failed-once" ]; then\n'
        f'  touch "{tmp_path}/failed-once"; echo "mail server says no" >&2; exit 3\n'
        "fi\n"
        # Written aside, then renamed: the test sees the file only once it is whole.
        f'cat > "{tmp_path}/doc.tmp.$$"\n'
        f'mv "{tmp_path}/doc.tmp.$$" "{tmp_path}/$PYAGENT_ALERT_JOB_ID-$PYAGENT_ALERT_EVENT.json"\n'
    )
    script.chmod(0o755)
    failing = make_job(conn, "mail me", FAILING, run_now=True)
    agent = agents("--alert-command", str(script))
    out = tmp_path / f"{failing}-failure.json"
    wait_until(out.exists, 30)
    doc = json.loads(out.read_text())
    assert doc["job_id"] == failing and doc["status"] == "f" and doc["text"]
    log = agent.log_text()
    assert "not delivered by command: exit status 3: mail server says no; trying again" in log
    always = make_job(conn, "report every run", [{"jstcode": "SELECT 1"}],
                      desc="@ALERT=always;", run_now=True)  # fmt: skip
    wait_until((tmp_path / f"{always}-success.json").exists, 30)


# ---- metrics and options -----------------------------------------------------------------


def scrape(agent: AgentProcess) -> str:
    match = re.search(r"Health and metrics on (http://\S+/)", agent.log_text())
    if match is None:
        return ""
    with urllib.request.urlopen(match.group(1) + "metrics", timeout=5) as response:
        return str(response.read().decode())


def test_metrics_show_last_success_and_failure_per_job(conn, agents):
    good = make_job(conn, "good", [{"jstcode": "SELECT 1"}], run_now=True)
    bad = make_job(conn, "bad", FAILING, run_now=True)
    agent = agents("--http", "127.0.0.1:0")
    wait_done_for_good(conn, good, 1)
    wait_done_for_good(conn, bad, 1)
    success = f'pyagent_job_last_success_timestamp_seconds{{job_id="{good}",job_name="good"}}'
    failure = f'pyagent_job_last_failure_timestamp_seconds{{job_id="{bad}",job_name="bad"}}'
    text = wait_until(lambda: (t := scrape(agent)) and success in t and failure in t and t)
    assert f'pyagent_job_failure_streak{{job_id="{bad}",job_name="bad"}} 1.0' in text
    assert 'pyagent_alerts_total{outcome="sent",sink="webhook"} 0.0' in text


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--retries", "-1"], {}, "--retries"),
        ([], {"PYAGENT_RETRIES": "many"}, "--retries"),
        (["--retry-delay", "soon"], {}, "--retry-delay"),
        ([], {"PYAGENT_RETRY_DELAY": "-5 s"}, "--retry-delay"),
        (["--alert-webhook", "ftp://h/S3CR3T"], {}, "--alert-webhook"),
        (["--alert-webhook", "http://alice:S3CR3T/x@h/hook"], {}, "percent-encoded"),
        (
            [],
            {"PYAGENT_ALERT_WEBHOOK": "http://h/S3CR3T", "PYAGENT_ALERT_WEBHOOK_FILE": "/dev/null"},
            "PYAGENT_ALERT_WEBHOOK",
        ),
        (["--alert-timeout", "0"], {}, "--alert-timeout"),
    ],
)
def test_bad_option_values_exit_2_with_one_line(args, env, needle):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYAGENT_")}
    done = subprocess.run(
        [sys.executable, "-m", "pyagent", "run", "-f", *args, "dbname=nowhere"],
        capture_output=True, text=True, cwd=REPO, env={**full_env, **env}, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert "S3CR3T" not in done.stderr


def test_alerts_survive_the_reexec_that_hides_a_password(db, conn, receivers):
    # A password on the command line makes the agent re-execute itself without it; the
    # webhook given in the environment must reach the re-executed agent all the same.
    receiver = receivers()
    job = make_job(conn, "fails once", FAILING, run_now=True)
    agent = AgentProcess(
        db.dsn + " password=not-Needed-7",
        list(FAST),
        env={"PYAGENT_ALERT_WEBHOOK": receiver.url},
        cwd=str(REPO),
    )
    try:
        wait_until(lambda: receiver.events(job) == ["failure"], 30, what="the failure alert")
        assert "not-Needed-7" not in agent.log_text()
    finally:
        agent.stop(signal.SIGTERM)
        agent.log_path.unlink(missing_ok=True)


def test_a_webhook_given_on_the_command_line_is_hidden_from_ps(conn, agents, receivers):
    receiver = receivers()
    job = make_job(conn, "fails for ps", FAILING, run_now=True)
    agent = agents("--alert-webhook", receiver.url)
    wait_until(lambda: receiver.events(job) == ["failure"], 30, what="the failure alert")
    with open(f"/proc/{agent.proc.pid}/cmdline", "rb") as fh:
        cmdline = fh.read().decode()
    assert "S3CR3TTOKEN" not in cmdline and "--alert-webhook" not in cmdline


# ---- webhooks with credentials -----------------------------------------------------------


def test_credentials_in_the_webhook_url_are_sent_as_basic_auth_and_shown_nowhere(
    conn, agents, receivers
):
    receiver = receivers(auth="alice:s3cret")
    port = receiver.server.server_address[1]
    job = make_job(conn, "fails for a guarded hook", FAILING, run_now=True)
    url = f"http://alice:s3cret@127.0.0.1:{port}{SECRET_PATH}?token=T0KEN"
    agent = agents("--alert-webhook", url, "--http", "127.0.0.1:0")
    wait_until(lambda: receiver.events(job) == ["failure"], 30, what="the failure alert")
    # Delivered at the first attempt, with the header, and nothing of the user-info in the
    # request line.
    ((request_line, headers),) = receiver.requests
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert request_line == f"POST {SECRET_PATH}?token=T0KEN HTTP/1.1"
    sent = f"sent by webhook http://127.0.0.1:{port} (with credentials)"
    wait_until(lambda: sent in agent.log_text(), 10, what="the sent line")
    metrics = wait_until(
        lambda: (
            'pyagent_alerts_total{outcome="sent",sink="webhook"} 1.0' in (t := scrape(agent)) and t
        )
    )
    log = agent.log_text()
    assert "not delivered" not in log
    with open(f"/proc/{agent.proc.pid}/cmdline", "rb") as fh:
        cmdline = fh.read().decode()
    document = json.dumps(receiver.docs)
    for place in (log, cmdline, metrics, document):
        for secret in ("s3cret", "alice", "S3CR3TTOKEN", "T0KEN", headers["Authorization"][6:]):
            assert secret not in place


def test_a_wrong_webhook_password_gives_one_clear_line_and_no_retry(conn, agents, receivers):
    receiver = receivers(auth="alice:s3cret")
    port = receiver.server.server_address[1]
    job = make_job(conn, "fails for a wrong password", FAILING, run_now=True)
    agent = agents(
        "--alert-webhook", f"http://alice:Wr0ngPass@127.0.0.1:{port}/hook", "--http", "127.0.0.1:0"
    )
    wait_until(
        lambda: 'pyagent_alerts_total{outcome="failed",sink="webhook"} 1.0' in scrape(agent),
        30,
        what="the failed alert",
    )
    lines = [line for line in agent.log_text().splitlines() if "not delivered" in line]
    assert len(lines) == 1, lines
    assert (
        f"Alert for job {job} run {job_logs(conn, job)[0][0]} not delivered by webhook "
        f"http://127.0.0.1:{port} (with credentials) after 1 attempt(s): HTTP status 401 "
        "Unauthorized: the receiver did not accept the user name and password given in the "
        "URL; giving up"
    ) in lines[0]
    assert len(receiver.requests) == 1 and receiver.docs == []
    assert "Wr0ngPass" not in agent.log_text()


def post(url: str, timeout: float = 10.0) -> int:
    """One delivery attempt of a small document, as the agent makes it."""
    from pyagent.control.alerts import _post_json, parse_webhook

    return _post_json(parse_webhook(url), b'{"text": "hello"}', timeout)


def test_percent_encoded_credentials_are_decoded_for_basic_auth(receivers):
    receiver = receivers(auth="al@ice:p:ss/wörd")
    port = receiver.server.server_address[1]
    assert post(f"http://al%40ice:p%3Ass%2Fw%C3%B6rd@127.0.0.1:{port}/hook?token=T") == 200
    assert receiver.requests[0][0] == "POST /hook?token=T HTTP/1.1"


def test_a_receiver_wanting_credentials_says_so(receivers):
    from pyagent.control.alerts import DeliveryError

    receiver = receivers(auth="alice:s3cret")
    with pytest.raises(DeliveryError) as caught:
        post(f"http://127.0.0.1:{receiver.server.server_address[1]}/hook")
    assert str(caught.value) == (
        "HTTP status 401 Unauthorized: the receiver wants credentials (give them in the URL: "
        "https://user:password@host/...)"
    )
    assert caught.value.permanent


def test_a_redirect_is_not_followed_and_names_only_its_host(receivers):
    from pyagent.control.alerts import DeliveryError

    receiver = receivers(redirect="https://elsewhere.example/new?key=S3CR3T")
    port = receiver.server.server_address[1]
    with pytest.raises(DeliveryError) as caught:
        post(f"http://alice:s3cret@127.0.0.1:{port}/hook")
    assert str(caught.value) == (
        "HTTP status 302 Found: the receiver redirects to https://elsewhere.example; alerts "
        "are not sent on to another URL (give the final one)"
    )
    assert caught.value.permanent
    assert len(receiver.requests) == 1  # the document did not go on to the new place


def test_a_closed_port_is_named_with_its_cause():
    from pyagent.control.alerts import DeliveryError

    port = free_port()
    with pytest.raises(DeliveryError) as caught:
        post(f"http://alice:s3cret@127.0.0.1:{port}/hook")
    assert str(caught.value) == f"cannot reach 127.0.0.1:{port}: connection refused"
    assert not caught.value.permanent
