"""Shared fixtures: one throwaway PostgreSQL cluster per test session, template databases
holding the schema (ours, and the real pgagent extension when installed), and a fresh
database per test cloned from a template."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pyagent import schema
from pyagent.devcluster import Cluster, find_bindir

OUR_TEMPLATE = "tpl_pyagent"
EXT_TEMPLATE = "tpl_extension"

_counter = itertools.count(1)


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
