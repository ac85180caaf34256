"""Throwaway PostgreSQL clusters (and PgBouncers in front of them) for the demo, the tests
and the benchmarks.

A cluster lives in a temporary directory, listens on 127.0.0.1 and a private Unix socket
directory on a free port, and runs with fsync off. initdb refuses to run as root, so when
we are root every server command runs as the `postgres` OS user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] %q%u@%d '",
    "wal_level": "replica",
    "max_wal_senders": "5",
}

HBA = """\
local   all             all                                     trust
local   replication     all                                     trust
host    all             postgres        127.0.0.1/32            trust
host    replication     all             127.0.0.1/32            trust
host    all             all             127.0.0.1/32            scram-sha-256
"""


class ClusterError(RuntimeError):
    """A server command failed."""


def find_bindir() -> Path:
    """Directory of the PostgreSQL server binaries (initdb, pg_ctl, postgres)."""
    explicit = os.environ.get("PYAGENT_PG_BINDIR")
    if explicit:
        return Path(explicit)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for cand in reversed(candidates):
        if (Path(cand) / "initdb").exists():
            return Path(cand)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ClusterError("PostgreSQL server binaries not found (set PYAGENT_PG_BINDIR)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(argv: Sequence[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return list(argv)


@dataclass
class Cluster:
    """One throwaway PostgreSQL cluster."""

    basedir: Path
    port: int
    bindir: Path
    settings: dict[str, str] = field(default_factory=dict)
    superuser: str = "postgres"

    @property
    def datadir(self) -> Path:
        return self.basedir / "data"

    @property
    def socketdir(self) -> Path:
        return self.basedir / "sock"

    @property
    def logfile(self) -> Path:
        return self.basedir / "server.log"

    @classmethod
    def create(cls, basedir: Path | None = None, settings: dict[str, str] | None = None) -> Cluster:
        """initdb a new cluster in a new temporary directory (not started)."""
        base = Path(basedir or tempfile.mkdtemp(prefix="pyagent-pg-"))
        cluster = cls(base, free_port(), find_bindir(), dict(settings or {}))
        cluster._initdb()
        return cluster

    def run_server_command(self, argv: Sequence[str], timeout: float = 120) -> str:
        """Run a server program (as the postgres OS user when we are root)."""
        proc = subprocess.run(
            _as_server_user(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
        )
        if proc.returncode != 0:
            raise ClusterError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def _initdb(self) -> None:
        self.socketdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.basedir, "postgres", "postgres")
            shutil.chown(self.socketdir, "postgres", "postgres")
            os.chmod(self.basedir, 0o755)  # noqa: S103 - the server user must enter it
        self.run_server_command(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                self.superuser,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        conf = dict(DEFAULT_SETTINGS)
        conf["port"] = str(self.port)
        conf["unix_socket_directories"] = f"'{self.socketdir}'"
        conf.update(self.settings)
        lines = [f"{key} = {value}" for key, value in conf.items()]
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as fh:
            fh.write("\n# pyagent test settings\n" + "\n".join(lines) + "\n")
        (self.datadir / "pg_hba.conf").write_text(HBA, encoding="utf-8")

    def start(self) -> None:
        self.run_server_command(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        self.run_server_command(
            [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"]
        )

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        proc = subprocess.run(
            _as_server_user([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status"]),
            capture_output=True,
            check=False,
            cwd="/",
        )
        return proc.returncode == 0

    def destroy(self) -> None:
        """Stop the server (immediately) and delete everything."""
        if self.datadir.exists() and self.is_running():
            with contextlib.suppress(ClusterError):
                self.stop("immediate")
        shutil.rmtree(self.basedir, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", **extra: str) -> str:
        """A keyword/value conninfo for a database of this cluster, over TCP."""
        params = {
            "host": "127.0.0.1",
            "port": str(self.port),
            "user": self.superuser,
            "dbname": dbname,
        }
        params.update(extra)
        return " ".join(f"{key}={_quote(value)}" for key, value in params.items())


def _quote(value: str) -> str:
    if value and all(ch not in value for ch in " '\\"):
        return value
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def find_pgbouncer() -> Path:
    """The pgbouncer program (Debian's package puts it in /usr/sbin)."""
    explicit = os.environ.get("PYAGENT_PGBOUNCER")
    if explicit:
        return Path(explicit)
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if found:
        return Path(found)
    raise ClusterError("pgbouncer not found (apt-get install pgbouncer, or set PYAGENT_PGBOUNCER)")


@dataclass
class PgBouncer:
    """A throwaway PgBouncer in front of a Cluster: every database of the cluster, one
    pool mode, trust authentication for the listed users (the cluster trusts its
    superuser on 127.0.0.1, so no password is involved anywhere)."""

    cluster: Cluster
    basedir: Path
    port: int
    pool_mode: str = "transaction"
    users: tuple[str, ...] = ("postgres",)
    settings: dict[str, str] = field(default_factory=dict)
    # Extra [databases] entries (name -> options after the server's host and port), e.g.
    # {"jobs_agent": "dbname=jobs pool_mode=session"}; every other name is passed through.
    databases: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def logfile(self) -> Path:
        return self.basedir / "pgbouncer.log"

    @classmethod
    def start_for(
        cls,
        cluster: Cluster,
        pool_mode: str = "transaction",
        users: Sequence[str] = ("postgres",),
        settings: dict[str, str] | None = None,
        databases: dict[str, str] | None = None,
    ) -> PgBouncer:
        """Write a configuration in a new temporary directory and start pgbouncer on a
        free port; returns once it accepts connections."""
        base = Path(tempfile.mkdtemp(prefix="pyagent-pgbouncer-"))
        bouncer = cls(
            cluster,
            base,
            free_port(),
            pool_mode,
            tuple(users),
            dict(settings or {}),
            dict(databases or {}),
        )
        bouncer._configure()
        bouncer.start()
        return bouncer

    def _configure(self) -> None:
        conf = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.basedir / "userlist.txt"),
            "pool_mode": self.pool_mode,
            "max_client_conn": "500",
            "default_pool_size": "20",
            "max_db_connections": "40",
            "admin_users": self.cluster.superuser,
        }
        conf.update(self.settings)
        server = f"host=127.0.0.1 port={self.cluster.port}"
        lines = [
            "[databases]",
            *(f"{name} = {server} {options}" for name, options in self.databases.items()),
            f"* = {server}",
            "[pgbouncer]",
            *(f"{key} = {value}" for key, value in conf.items()),
        ]
        (self.basedir / "pgbouncer.ini").write_text("\n".join(lines) + "\n", encoding="utf-8")
        users = "".join(f'"{user}" ""\n' for user in self.users)
        (self.basedir / "userlist.txt").write_text(users, encoding="utf-8")
        os.chmod(self.basedir, 0o755)  # noqa: S103 - the server user must read the files

    def start(self, timeout: float = 30.0) -> None:
        """Start pgbouncer (as the postgres OS user when we are root: it refuses root)."""
        argv = [str(find_pgbouncer()), str(self.basedir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            argv[1:1] = ["-u", "postgres"]
        with open(self.logfile, "ab") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=str(self.basedir)
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ClusterError(
                    f"pgbouncer exited with {self.process.returncode}: "
                    + self.logfile.read_text(encoding="utf-8", errors="replace")[-2000:]
                )
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ClusterError(f"pgbouncer did not listen on port {self.port}")
            time.sleep(0.05)

    def set_pool_mode(self, pool_mode: str) -> None:
        """Change the default pool mode and make the running pgbouncer reload (SIGHUP)."""
        self.pool_mode = pool_mode
        self._configure()
        if self.process is not None:
            self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """Stop pgbouncer (SIGINT: close everything at once) and wait for it."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.basedir, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", **extra: str) -> str:
        """A conninfo for a database of the cluster, through this pooler."""
        params = {
            "host": "127.0.0.1",
            "port": str(self.port),
            "user": self.cluster.superuser,
            "dbname": dbname,
        }
        params.update(extra)
        return " ".join(f"{key}={_quote(value)}" for key, value in params.items())
