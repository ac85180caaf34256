"""The schema commands as a DBA runs them."""

from __future__ import annotations

import subprocess
import sys


def pyagent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyagent", *args], capture_output=True, text=True, timeout=60
    )


def test_install_check_and_add_notify(empty_db):
    assert pyagent("schema", "check", empty_db.dsn).returncode == 1
    first = pyagent("schema", "install", empty_db.dsn)
    assert first.returncode == 0 and "installed" in first.stdout
    again = pyagent("schema", "install", empty_db.dsn)
    assert again.returncode == 1 and "nothing was changed" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    ok = pyagent("schema", "check", empty_db.dsn)
    assert ok.returncode == 0 and "OK" in ok.stdout
    assert pyagent("schema", "add-extras", empty_db.dsn).stdout.splitlines() == [
        "pyagent extras added",
        "authorship is recorded from now on (schema pyagent; see docs/security.md)",
    ]
    again = pyagent("schema", "add-notify", empty_db.dsn)  # the earlier name still works
    assert again.stdout.splitlines() == [
        "pyagent extras already present (refreshed)",
        "authorship records already present (refreshed)",
    ]
    with empty_db.connect() as c:
        indexes = {
            r[0] for r in c.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'pga_job'")
        }
    assert "pyagent_pga_job_due" in indexes


def test_check_reports_a_broken_schema(db, conn):
    conn.execute("DROP TRIGGER pga_job_trigger ON pgagent.pga_job")
    result = pyagent("schema", "check", db.dsn)
    assert result.returncode == 1
    assert "pga_job_trigger" in result.stdout


def test_schema_sql_is_a_complete_script(empty_db):
    script = pyagent("schema", "sql", "--with-notify").stdout
    assert script.startswith("BEGIN;") and script.rstrip().endswith("COMMIT;")
    load = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", empty_db.dsn],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert load.returncode == 0, load.stderr
    assert pyagent("schema", "check", empty_db.dsn).returncode == 0


def test_install_into_an_unreachable_server_fails_cleanly():
    result = pyagent("schema", "install", "host=127.0.0.1 port=1 dbname=x connect_timeout=2")
    assert result.returncode == 1
    assert "nothing was changed" in result.stderr
