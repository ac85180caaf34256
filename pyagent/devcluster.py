"""Throwaway PostgreSQL clusters for the demo, the tests and the benchmarks.

A cluster lives in a temporary directory, listens on 127.0.0.1 and a private Unix socket
directory on a free port, and runs with fsync off. initdb refuses to run as root, so when
we are root every server command runs as the `postgres` OS user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
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
