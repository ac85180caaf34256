"""Running `pyagent jobs ...` as a user would, from this worktree's code."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def jobs(
    dsn: str | None, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PYAGENT_"))}
    full_env["PYTHONPATH"] = str(REPO)
    if dsn is not None:
        full_env["PYAGENT_CONNINFO"] = dsn
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pyagent", "jobs", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path
