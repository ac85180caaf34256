"""Fixtures for the fault and bad-input tests: agent processes that are always cleaned up
(with their log shown when a test fails), TCP proxies that can be cut, a dedicated cluster
that tests may restart, and a reaper for processes a killed agent leaves behind."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from pyagent import schema
from pyagent.devcluster import Cluster
from tests.agentproc import AgentProcess
from tests.reliability.proxy import TcpProxy

OWN_TEMPLATE = "tpl_reliability"
_names = itertools.count(1)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def agents(request: pytest.FixtureRequest) -> Iterator[Callable[..., AgentProcess]]:
    """Start agents: agents(dsn, *args, env=None); -t 1 unless args say otherwise. Every
    agent is killed at the end; their logs are printed when the test failed."""
    started: list[AgentProcess] = []

    def start(dsn: str, *args: str, env: dict[str, str] | None = None) -> AgentProcess:
        agent = AgentProcess(dsn, ["-t", "1", *args], env=env)
        started.append(agent)
        return agent

    try:
        yield start
    finally:
        failed = request.node.stash.get(_FAILED, False)
        for i, agent in enumerate(started):
            with contextlib.suppress(Exception):
                agent.kill()
            if failed:
                lines = agent.log_text().splitlines()
                print(f"---- agent #{i} (pid {agent.pid}, rc {agent.proc.returncode}), last lines")
                print("\n".join(lines[-60:]))
            agent.log_path.unlink(missing_ok=True)


@pytest.fixture
def proxies() -> Iterator[Callable[..., TcpProxy]]:
    """Start TCP proxies: proxies(target_port) forwards to 127.0.0.1:target_port;
    proxies(forward=False) is a blackhole. All are stopped at the end."""
    made: list[TcpProxy] = []

    def start(target_port: int = 0, *, forward: bool = True) -> TcpProxy:
        proxy = TcpProxy("127.0.0.1", target_port, forward=forward)
        made.append(proxy)
        return proxy.start()

    try:
        yield start
    finally:
        for proxy in made:
            proxy.stop()


@pytest.fixture
def reaper() -> Iterator[Callable[[Path | int], None]]:
    """reaper(pid or file holding a pid): SIGKILL that process group at the end, for the
    batch children a SIGKILLed agent leaves behind (they run in their own session)."""
    pids: list[Path | int] = []
    try:
        yield pids.append
    finally:
        for item in pids:
            try:
                pid = int(item.read_text().split()[0]) if isinstance(item, Path) else item
            except (OSError, ValueError, IndexError):
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class OwnDB:
    """A database of the dedicated (restartable) cluster."""

    cluster: Cluster
    name: str

    def dsn(self, **extra: str) -> str:
        return self.cluster.dsn(self.name, **extra)

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn(), autocommit=True)


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[Cluster]:
    """A cluster of this test module alone, which its tests may restart or stop.
    synchronous_commit is on (unlike the session cluster) so that an immediate shutdown
    loses no committed row, as on a real server."""
    cluster = Cluster.create(settings={"synchronous_commit": "on"})
    try:
        cluster.start()
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {OWN_TEMPLATE}")
        with psycopg.connect(cluster.dsn(OWN_TEMPLATE), autocommit=True) as conn:
            schema.install_on(conn)
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def own_db(own_cluster: Cluster) -> Iterator[OwnDB]:
    """A fresh database with the schema on the dedicated cluster (started if a test left it
    stopped)."""
    if not own_cluster.is_running():
        own_cluster.start()
    name = f"r{os.getpid()}_{next(_names)}"
    with psycopg.connect(own_cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {OWN_TEMPLATE}")
    try:
        yield OwnDB(own_cluster, name)
    finally:
        if not own_cluster.is_running():
            own_cluster.start()
        with psycopg.connect(own_cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
