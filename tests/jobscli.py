"""Running `pyagent jobs ...` as a user would, from this worktree's code."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _env(dsn: str | None, env: dict[str, str] | None) -> dict[str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PYAGENT_"))}
    full_env["PYTHONPATH"] = str(REPO)
    if dsn is not None:
        full_env["PYAGENT_CONNINFO"] = dsn
    full_env.update(env or {})
    return full_env


def jobs(
    dsn: str | None, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyagent", "jobs", *args],
        cwd=REPO,
        env=_env(dsn, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class JobsProcess:
    """`pyagent jobs ...` running in the background; its output goes to files (a pipe
    nobody reads could stall it while it holds a lock)."""

    def __init__(
        self, dsn: str | None, *args: str, outdir: Path, env: dict[str, str] | None = None
    ) -> None:
        outdir.mkdir(parents=True, exist_ok=True)
        self._stdout = open(outdir / "stdout", "w+", encoding="utf-8")
        self._stderr = open(outdir / "stderr", "w+", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyagent", "jobs", *args],
            cwd=REPO,
            env=_env(dsn, env),
            stdout=self._stdout,
            stderr=self._stderr,
            text=True,
        )

    @property
    def stdout(self) -> str:
        return Path(self._stdout.name).read_text(encoding="utf-8")

    @property
    def stderr(self) -> str:
        return Path(self._stderr.name).read_text(encoding="utf-8")

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._stdout.close()
            self._stderr.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._stdout.close()
        self._stderr.close()


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path
