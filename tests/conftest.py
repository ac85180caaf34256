"""Shared fixtures: one throwaway PostgreSQL cluster per test session, template databases
holding the schema (ours, and the real pgagent extension when installed), and a fresh
database per test cloned from a template."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pyagent import schema
from pyagent.devcluster import Cluster, find_bindir
from tests.agentproc import AgentProcess

OUR_TEMPLATE = "tpl_pyagent"
EXT_TEMPLATE = "tpl_extension"

_counter = itertools.count(1)

# ---- the system temp directory stays clean ------------------------------------------------
# The session runs with a private TMPDIR (inherited by every agent, cluster and batch step
# it starts). At the end, anything left in it other than pytest's own tmp_path directories
# is a leak: it is reported and fails the run; then the directory is removed, so the suite
# leaves nothing in the system temp directory. PYAGENT_KEEP_TMP=1 keeps it for debugging.

_SESSION_TMP_KEY = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    root = Path(tempfile.mkdtemp(prefix="pyagent-tests-"))
    os.chmod(root, 0o755)  # the cluster runs as the postgres OS user under root
    config.stash[_SESSION_TMP_KEY] = root
    os.environ["TMPDIR"] = str(root)
    tempfile.tempdir = str(root)


def leftovers(root: Path) -> list[str]:
    """What the tests left in the session's temp directory (pytest's own dirs excepted)."""
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("pytest-of-"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    root = session.config.stash.get(_SESSION_TMP_KEY, None)
    if root is None or not root.exists():
        return
    left = leftovers(root)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = f"tests left files in the temp directory {root}: {', '.join(left)}"
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"ERROR: {text}", red=True)
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if os.environ.get("PYAGENT_KEEP_TMP") != "1":
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_agent_left_behind() -> Iterator[None]:
    """Every agent a test started is stopped and its files removed after the test."""
    yield
    AgentProcess.cleanup_all()


def extension_available() -> bool:
    """True when the Debian `pgagent` package's extension files are installed."""
    try:
        bindir = find_bindir()
    except RuntimeError:
        return False
    version = bindir.parent.name
    return Path(f"/usr/share/postgresql/{version}/extension/pgagent.control").exists()


@dataclass(frozen=True)
class TestDB:
    """A database of the session cluster."""

    cluster: Cluster
    name: str

    @property
    def dsn(self) -> str:
        return self.cluster.dsn(self.name)

    def connect(self, **kwargs: object) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn, autocommit=True, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # pg_stat_statements: the benchmark smoke test counts statements on this cluster.
    cluster = Cluster.create(settings={"shared_preload_libraries": "'pg_stat_statements'"})
    cluster.start()
    try:
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {OUR_TEMPLATE}")
            conn.execute("CREATE DATABASE tpl_empty")
        with psycopg.connect(cluster.dsn(OUR_TEMPLATE), autocommit=True) as conn:
            schema.install_on(conn)
        if extension_available():
            with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {EXT_TEMPLATE}")
            with psycopg.connect(cluster.dsn(EXT_TEMPLATE), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION pgagent")
        yield cluster
    finally:
        cluster.destroy()


def _fresh_db(cluster: Cluster, template: str) -> TestDB:
    name = f"t{os.getpid()}_{next(_counter)}"
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return TestDB(cluster, name)


def _drop_db(db: TestDB) -> None:
    with psycopg.connect(db.cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db.name} WITH (FORCE)")


@pytest.fixture
def db(pg_cluster: Cluster) -> Iterator[TestDB]:
    """A fresh database holding pyagent's pgagent schema."""
    fresh = _fresh_db(pg_cluster, OUR_TEMPLATE)
    yield fresh
    _drop_db(fresh)


@pytest.fixture
def ext_db(pg_cluster: Cluster) -> Iterator[TestDB]:
    """A fresh database holding the real pgagent extension (skipped when not installed)."""
    if not extension_available():
        pytest.skip("the pgagent extension (Debian package pgagent) is not installed")
    fresh = _fresh_db(pg_cluster, EXT_TEMPLATE)
    yield fresh
    _drop_db(fresh)


@pytest.fixture
def empty_db(pg_cluster: Cluster) -> Iterator[TestDB]:
    """A fresh database with no pgagent schema at all."""
    fresh = _fresh_db(pg_cluster, "tpl_empty")
    yield fresh
    _drop_db(fresh)


@pytest.fixture
def conn(db: TestDB) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with db.connect() as connection:
        yield connection
