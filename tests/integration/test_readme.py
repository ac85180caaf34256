"""The README's promises, tested as a new user would follow them: its Quick start commands,
run literally on a fresh server, get a job run; its test command is the one CI runs."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pyagent.devcluster import Cluster
from tests.agentproc import make_job, wait_job_finished, wait_until

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SCHEMA_DOC = ROOT / "docs" / "schema.md"


def section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def first_sh_block(text: str) -> str:
    match = re.search(r"```sh\n(.*?)```", text, re.DOTALL)
    assert match, "no ```sh block"
    return match.group(1)


def quick_start_script() -> str:
    return first_sh_block(section(README.read_text(encoding="utf-8"), "## Quick start"))


def readme_test_command() -> str:
    block = first_sh_block(section(README.read_text(encoding="utf-8"), "## Development"))
    lines = [ln.split("#")[0].strip() for ln in block.splitlines()]
    (command,) = [ln for ln in lines if "pytest" in ln]
    return command


@pytest.fixture
def fresh_server() -> Iterator[Cluster]:
    """A new cluster: nothing but initdb's defaults (no pgagent role, no schema)."""
    cluster = Cluster.create()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def _shims(bindir: Path) -> None:
    """`pyagent` runs this checkout; `pip install .` is skipped (the tests never install);
    `sudo -u USER cmd` becomes runuser (no sudo in CI containers)."""
    scripts = {
        "pyagent": f'#!/bin/sh\nexec "{sys.executable}" -m pyagent "$@"\n',
        "pip": '#!/bin/sh\necho "(test: pip $* skipped)"\n',
        "sudo": (
            "#!/bin/sh\n"
            '[ "$1" = "-u" ] || { echo "sudo shim: only -u USER is supported" >&2; exit 97; }\n'
            'user="$2"; shift 2\n'
            'if [ "$(id -u)" = 0 ]; then exec runuser -u "$user" -- "$@"; fi\n'
            'PGUSER="$user" exec "$@"\n'
        ),
    }
    bindir.mkdir()
    for name, body in scripts.items():
        path = bindir / name
        path.write_text(body)
        path.chmod(0o755)


def test_quick_start_commands_get_a_job_run(fresh_server, tmp_path):
    script = quick_start_script()
    assert "CREATE ROLE pgagent" in script and "pyagent -f" in script
    _shims(tmp_path / "bin")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PYAGENT", "POSTGRES"))}
    env.update(
        PATH=f"{tmp_path / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
        PYTHONPATH=str(ROOT),
        # "the database server": its socket and port (host=localhost in the agent's
        # connect string overrides PGHOST, the port still applies).
        PGHOST=str(fresh_server.socketdir),
        PGPORT=str(fresh_server.port),
    )
    log = tmp_path / "quickstart.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "-e", "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
    superuser = fresh_server.dsn("postgres")
    try:

        def registered() -> bool:
            assert proc.poll() is None, log.read_text()
            with psycopg.connect(superuser, autocommit=True) as c:
                exists = c.execute("SELECT to_regclass('pgagent.pga_jobagent')").fetchone()
                if exists is None or exists[0] is None:
                    return False
                return bool(c.execute("SELECT count(*) FROM pgagent.pga_jobagent").fetchone()[0])

        wait_until(registered, timeout=60, what="the Quick start's agent to register")
        with psycopg.connect(superuser, autocommit=True) as conn:
            user = conn.execute(
                "SELECT usename FROM pg_stat_activity WHERE pid = "
                "(SELECT jagpid FROM pgagent.pga_jobagent)"
            ).fetchone()
            assert user == ("pgagent",)
            job = make_job(
                conn,
                "quick start",
                [{"jstcode": "SELECT 1"}, {"jstkind": "b", "jstcode": "echo hello"}],
                run_now=True,
            )
            assert [r[1] for r in wait_job_finished(conn, job, timeout=30)] == ["s"]
    finally:
        with_group = proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(with_group, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(with_group, signal.SIGKILL)
            proc.wait(10)
    text = log.read_text()
    assert "Traceback" not in text and "change-me" not in text, text


def test_quick_start_grants_are_the_documented_ones():
    script = quick_start_script()
    doc = SCHEMA_DOC.read_text(encoding="utf-8")
    block = doc[doc.index("<!-- BEGIN agent grants -->") : doc.index("<!-- END agent grants -->")]
    documented = [ln for ln in block.splitlines() if ln.startswith("GRANT")]
    readme = [ln for ln in script.splitlines() if ln.startswith("GRANT")]
    assert readme == [ln.replace("pyagent_runner", "pgagent") for ln in documented]


def test_ci_runs_exactly_the_readme_test_command():
    command = readme_test_command()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [
        ln.strip()
        for ln in ci.splitlines()
        if "pytest" in ln and not ln.lstrip().startswith(("#", "echo"))
    ]
    assert commands == [command], commands
    readme_intro = README.read_text(encoding="utf-8")
    assert f"the test command `{command}`" in readme_intro


def test_demo_explains_script_error_on_a_successful_step():
    proc = subprocess.run(
        [sys.executable, "-m", "pyagent", "demo", "--seconds", "2"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    # The demo's job runs every minute too: a demo that spans a minute shows two runs.
    step = next(i for i, line in enumerate(lines) if "step '2 say hello'" in line)
    assert "status=s result=0" in lines[step] and "Script Error:" in lines[step]
    assert "pgAgent's format for stderr" in lines[step + 1] and "not a failure" in lines[step + 1]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_distribution_name_is_free_and_the_command_is_pyagent():
    """`pyagent` on PyPI is someone else's project: the distribution has its own name."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "pyagent-scheduler"
    assert project["scripts"] == {"pyagent": "pyagent.cli:main"}
