"""Operations features on a real agent: sd_notify, health/metrics endpoint, healthcheck,
and configuration from the environment as in the sidecar container."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from pyagent.devcluster import free_port
from tests.agentproc import AgentProcess, make_job, wait_job_finished, wait_until


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    messages: list[str] = []

    def received() -> list[str]:
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                return messages

    yield str(path), received
    sock.close()


def test_systemd_notifications(db, conn, notify_socket, tmp_path):
    path, received = notify_socket
    flag = tmp_path / "env.txt"
    agent = AgentProcess(
        db.dsn,
        ["-t", "1"],
        env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": ""},
    )
    try:
        wait_until(lambda: any(m.startswith("READY=1") for m in received()), what="READY=1")
        wait_until(lambda: received().count("WATCHDOG=1") >= 2, timeout=10, what="watchdog pings")
        assert any(m.startswith("STATUS=primary") for m in received())
        job = make_job(conn, "env", [{"jstkind": "b", "jstcode": f"env > {flag}"}], run_now=True)
        wait_job_finished(conn, job)
        assert "NOTIFY_SOCKET" not in flag.read_text()
        assert agent.stop(signal.SIGTERM) == 0
        assert any(m.startswith("STOPPING=1") for m in received())
    finally:
        agent.kill()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_health_and_metrics_endpoint(db, conn):
    port = free_port()
    agent = AgentProcess(db.dsn, ["-t", "1", "--http", f"127.0.0.1:{port}"])
    base = f"http://127.0.0.1:{port}"
    try:
        agent.wait_registered()
        wait_until(lambda: _get(f"{base}/readyz")[0] == 200, what="ready")
        _status, body = _get(f"{base}/readyz")
        detail = json.loads(body)
        assert detail["role"] == "primary" and detail["registered"] is True
        assert _get(f"{base}/livez")[0] == 200
        job = make_job(conn, "m", [{"jstcode": "SELECT 1"}], run_now=True)
        wait_job_finished(conn, job)
        wait_until(
            lambda: 'pyagent_job_runs_finished_total{status="s"} 1.0' in _get(f"{base}/metrics")[1]
        )
        metrics = _get(f"{base}/metrics")[1]
        assert "pyagent_job_pickup_lag_seconds_count 1.0" in metrics
        assert 'pyagent_step_duration_seconds_count{kind="sql",status="s"} 1.0' in metrics
        assert "pyagent_ready 1.0" in metrics
        ok = subprocess.run(
            [sys.executable, "-m", "pyagent", "healthcheck", "--url", f"{base}/readyz"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr
    finally:
        agent.stop()
    down = subprocess.run(
        [
            sys.executable,
            "-m",
            "pyagent",
            "healthcheck",
            "--url",
            f"{base}/readyz",
            "--timeout",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert down.returncode == 1


def test_health_is_not_ready_without_a_schema(empty_db):
    port = free_port()
    agent = AgentProcess(empty_db.dsn, ["-t", "1", "--http", f"127.0.0.1:{port}"])
    try:
        wait_until(lambda: "Could not find the table" in agent.log_text())
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
        assert status == 503 and json.loads(body)["schema_ok"] is False
        assert _get(f"http://127.0.0.1:{port}/livez")[0] == 200
    finally:
        agent.stop()


def test_container_style_configuration_from_the_environment(db, conn, pg_cluster, tmp_path):
    conn.execute("CREATE ROLE sidecar LOGIN SUPERUSER PASSWORD 'side car''s pw'")
    secret = tmp_path / "pw"
    secret.write_text("side car's pw\n")
    flag = tmp_path / "env.txt"
    env = {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg_cluster.port),
        "PGAGENT_DB": db.name,
        "PGAGENT_USER": "sidecar",
        "PGAGENT_PASSWORD_FILE": str(secret),
        "PGAGENT_LOG_LEVEL": "2",
        "PYAGENT_STATION": "sidecar-1",
        "PYAGENT_FOREGROUND": "1",
        "PYAGENT_POLL": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyagent", "run"],
        env={**_base_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: conn.execute(
                "SELECT 1 FROM pgagent.pga_jobagent WHERE jagstation = 'sidecar-1'"
            ).fetchone(),
            what="registration",
        )
        job = make_job(conn, "env", [{"jstkind": "b", "jstcode": f"env > {flag}"}], run_now=True)
        wait_job_finished(conn, job)
        env_seen = flag.read_text()
        assert "PGAGENT_PASSWORD_FILE" not in env_seen and "side car" not in env_seen
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0
    assert "DEBUG: Checking for jobs to run" in out  # PGAGENT_LOG_LEVEL=2 applied
    assert "side car" not in out


def test_disabled_by_environment_idles_until_stopped():
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyagent", "run"],
        env={**_base_env(), "PGAGENT_ENABLED": "false"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        line = proc.stdout.readline().decode()
        assert "disabled" in line
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


def test_bad_environment_values_exit_2():
    for extra in (
        {"PGAGENT_LOG_LEVEL": "9"},
        {"PYAGENT_POLL": "abc"},
        {"PGAGENT_ENABLED": "maybe"},
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "pyagent", "run", "dbname=x"],
            env={**_base_env(), **extra},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 2, (extra, proc.stdout, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PYAGENT", "POSTGRES"))}
