"""Streaming replicas of a test cluster, for the standby and failover tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from pyagent.devcluster import Cluster, free_port


def create_standby(primary: Cluster) -> Cluster:
    """A streaming replica of a running cluster, made by pg_basebackup; not started."""
    base = Path(tempfile.mkdtemp(prefix="pyagent-pg-standby-"))
    standby = Cluster(base, free_port(), primary.bindir, dict(primary.settings))
    standby.socketdir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        shutil.chown(standby.socketdir, "postgres", "postgres")
        os.chmod(base, 0o755)  # the server user must enter it
    standby.run_server_command(
        [
            str(primary.bindir / "pg_basebackup"),
            "-D",
            str(standby.datadir),
            "-R",
            "-X",
            "stream",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            primary.superuser,
        ]
    )
    with open(standby.datadir / "postgresql.conf", "a", encoding="utf-8") as fh:
        fh.write(f"\nport = {standby.port}\nunix_socket_directories = '{standby.socketdir}'\n")
    return standby


def promote(standby: Cluster) -> None:
    """Promote a standby to primary (waits for the promotion)."""
    standby.run_server_command(
        [str(standby.bindir / "pg_ctl"), "-D", str(standby.datadir), "-w", "promote"]
    )
