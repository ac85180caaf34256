"""Batch steps with real subprocesses (no database needed)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pyagent.steps import batch
from pyagent.steps.batch import BatchOptions, run_batch_step
from pyagent.steps.result import StepOutcome

NOBODY = 65534
FAST = BatchOptions(kill_grace=0.5, drain_timeout=0.5)


@pytest.fixture
def tmp_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def opts(tmp_root: Path) -> BatchOptions:
    return BatchOptions(tmp_root=str(tmp_root), kill_grace=0.5, drain_timeout=0.5)


@pytest.fixture
def leftover_pids() -> Iterator[list[int]]:
    """Pids of background processes a test leaves behind on purpose; killed at teardown."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(OSError):  # only our own `sleep`, never a recycled pid
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                os.kill(pid, signal.SIGKILL)


def run(code: str, options: BatchOptions = FAST, job: int = 1, step: int = 2) -> StepOutcome:
    return asyncio.run(run_batch_step(job, step, code, options))


def is_gone(pid: int) -> bool:
    """Dead or a zombie (orphans may never be reaped when pid 1 is not a real init)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return True
    return raw[raw.rfind(b")") + 2 :].split()[0] == b"Z"


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


async def async_wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return int(text) if text.endswith("\n") else None  # complete line only


# ---------------------------------------------------------------------------------------------
# Basics and output format
# ---------------------------------------------------------------------------------------------


def test_echo_to_stdout(opts):
    assert run("echo hello", opts) == StepOutcome(True, 0, "hello\n")


def test_stdout_and_stderr_format_never_loses_stderr(opts):
    async def many() -> list[StepOutcome]:
        return await asyncio.gather(
            *(run_batch_step(1, 2, "echo out\necho err >&2\n", opts) for _ in range(50))
        )

    outcomes = asyncio.run(many())
    assert outcomes == [StepOutcome(True, 0, "out\n\nScript Error: \nerr\n\n")] * 50


def test_stderr_only_and_interleaving_kept_per_stream(opts):
    outcome = run("echo a >&2; echo b; echo c >&2; echo d", opts)
    assert outcome.output == "b\nd\n\nScript Error: \na\nc\n\n"


def test_exit_code(opts):
    assert run("echo partial; exit 3", opts) == StepOutcome(False, 3, "partial\n")


def test_shebang_interpreter(opts):
    code = '#!/usr/bin/env python3\nimport sys\nprint("python", sys.version_info[0])\n'
    assert run(code, opts) == StepOutcome(True, 0, "python 3\n")


def test_no_shebang_runs_under_sh(opts):
    outcome = run('readlink /proc/$$/exe\ncase x in x) echo "sh syntax ok";; esac\n', opts)
    assert outcome.succeeded
    exe, ok = outcome.output.splitlines()
    assert exe == os.path.realpath("/bin/sh")
    assert ok == "sh syntax ok"


def test_crlf_script(opts):
    # Without conversion the interpreter would be "/bin/sh\r" and "echo one\r" would print a CR.
    assert run("#!/bin/sh\r\necho one\r\necho two\r\n", opts) == StepOutcome(True, 0, "one\ntwo\n")
    assert run("echo one\r\nexit 5\r\n", opts) == StepOutcome(False, 5, "one\n")


def test_script_killed_by_signal_reports_128_plus_n(opts):
    outcome = run("kill -9 $$", opts)
    assert outcome.result == 137
    assert not outcome.succeeded


def test_script_file_name_and_mode(opts, tmp_root):
    outcome = run('echo "$0"; stat -c %a "$0"', opts, job=7, step=42)
    path, mode = outcome.output.splitlines()
    assert Path(path).name == "7_42.scr"
    assert Path(path).parent.name.startswith("pga_7_42_")
    assert Path(path).parent.parent == tmp_root
    assert mode == "700"


def test_temp_dir_private_while_running_and_removed_after(opts, tmp_root):
    outcome = run('dir=$(dirname "$0"); echo "$dir"; stat -c %a "$dir"', opts)
    directory, mode = outcome.output.splitlines()
    assert mode == "700"
    assert not os.path.exists(directory)
    assert list(tmp_root.iterdir()) == []


def test_temp_dir_removed_even_when_script_locks_it(opts, tmp_root):
    code = 'd=$(dirname "$0"); mkdir "$d/sub"; touch "$d/sub/f"; chmod 0 "$d/sub"; chmod 500 "$d"'
    assert run(code, opts).succeeded
    assert list(tmp_root.iterdir()) == []


def test_tmpdir_environment_is_the_default_root(tmp_root, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_root))
    outcome = run('dirname "$(dirname "$0")"', BatchOptions(drain_timeout=0.5))
    assert outcome.output == f"{tmp_root}\n"


def test_parallel_steps_get_unique_dirs(opts, tmp_root):
    async def many() -> list[StepOutcome]:
        return await asyncio.gather(
            *(run_batch_step(5, 6, 'dirname "$0"', opts) for _ in range(20))
        )

    outcomes = asyncio.run(many())
    dirs = {o.output for o in outcomes}
    assert len(dirs) == 20
    assert all(o.succeeded for o in outcomes)
    assert list(tmp_root.iterdir()) == []


def test_stdin_is_devnull_and_cwd_inherited(opts, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = run("readlink /proc/$$/fd/0; pwd", opts)
    assert outcome.output == f"/dev/null\n{tmp_path}\n"


def test_own_session_and_process_group(opts):
    outcome = run("ps -o pgid=,sid= -p $$", opts)
    pgid, sid = outcome.output.split()
    assert pgid == sid  # the shell we started leads a new session and process group
    assert int(pgid) != os.getpgrp()
    assert int(sid) != os.getsid(0)


# ---------------------------------------------------------------------------------------------
# Awkward output
# ---------------------------------------------------------------------------------------------


def test_invalid_utf8_and_nul_become_valid_text(opts):
    outcome = run(r"printf 'a\377b\000c\n'; printf 'e\300\000\n' >&2", opts)
    assert outcome.output == "a\ufffdb\ufffdc\n\nScript Error: \ne\ufffd\ufffd\n\n"
    outcome.output.encode("utf-8")  # storable
    assert "\x00" not in outcome.output


def test_large_output_is_capped_and_memory_bounded(tmp_root):
    cap = 64 * 1024
    total = 5 * 1024 * 1024
    options = BatchOptions(tmp_root=str(tmp_root), max_output_bytes=cap, drain_timeout=0.5)
    code = f"head -c {total} /dev/zero | tr '\\0' a; head -c {total} /dev/zero | tr '\\0' b >&2"
    tracemalloc.start()
    try:
        outcome = run(code, options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    marker = f"\n[pyagent: output truncated, {total - cap} more bytes not stored]\n"
    assert outcome == StepOutcome(
        True, 0, "a" * cap + marker + "\nScript Error: \n" + "b" * cap + marker + "\n"
    )
    assert peak < 2 * 1024 * 1024, peak


def test_daemon_holding_pipes_does_not_hang_the_step(opts, tmp_path, leftover_pids):
    pidfile = tmp_path / "daemon.pid"
    code = f"sleep 30 & echo $! > {pidfile}\necho started\necho warn >&2\nexit 4\n"
    start = time.monotonic()
    outcome = run(code, opts)
    elapsed = time.monotonic() - start
    pid = read_pid(pidfile)
    assert pid is not None
    leftover_pids.append(pid)
    assert outcome == StepOutcome(False, 4, "started\n\nScript Error: \nwarn\n\n")
    assert elapsed < opts.drain_timeout + 1.5
    assert not is_gone(pid)  # not killed: pgAgent lets background processes live on


def test_output_of_a_short_lived_background_process_is_drained(tmp_root):
    options = BatchOptions(tmp_root=str(tmp_root), drain_timeout=5.0)
    start = time.monotonic()
    outcome = run("(sleep 0.3; echo late) &\necho early\n", options)
    assert outcome == StepOutcome(True, 0, "early\nlate\n")
    assert time.monotonic() - start < 4.0  # EOF ended the drain, not the timeout


def test_script_closing_stdout_early(opts):
    assert run("exec 1>&-; echo x >&2; exit 0", opts) == StepOutcome(
        True, 0, "\nScript Error: \nx\n\n"
    )


def test_empty_script(opts):
    assert run("", opts) == StepOutcome(True, 0, "")


# ---------------------------------------------------------------------------------------------
# Cancellation
# ---------------------------------------------------------------------------------------------


def _cancel_after_pidfile(code: str, options: BatchOptions, pidfile: Path) -> tuple[int, float]:
    """Start the step, cancel it once the grandchild's pid is recorded; return (pid, seconds
    from cancel() to CancelledError)."""

    async def scenario() -> tuple[int, float]:
        task = asyncio.create_task(run_batch_step(1, 2, code, options))
        await async_wait_until(lambda: read_pid(pidfile) is not None or task.done())
        assert not task.done(), task.result()
        pid = read_pid(pidfile)
        assert pid is not None
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pid, time.monotonic() - start

    return asyncio.run(scenario())


def test_cancellation_kills_the_group_and_removes_the_dir(opts, tmp_root, tmp_path, leftover_pids):
    pidfile = tmp_path / "grandchild.pid"
    code = f"sleep 1000 &\necho $! > {pidfile}\nsleep 1000\n"
    pid, elapsed = _cancel_after_pidfile(code, opts, pidfile)
    leftover_pids.append(pid)
    assert wait_until(lambda: is_gone(pid)), "grandchild survived"
    assert elapsed < opts.kill_grace  # SIGTERM was enough
    assert list(tmp_root.iterdir()) == []


def test_cancellation_escalates_to_sigkill(tmp_root, tmp_path, leftover_pids):
    options = BatchOptions(tmp_root=str(tmp_root), kill_grace=0.5, drain_timeout=0.5)
    pidfile = tmp_path / "grandchild.pid"
    # Ignored signals stay ignored across fork and exec, so the whole group ignores SIGTERM.
    code = f"trap '' TERM\nsleep 1000 &\necho $! > {pidfile}\nwhile :; do sleep 1; done\n"
    pid, elapsed = _cancel_after_pidfile(code, options, pidfile)
    leftover_pids.append(pid)
    assert wait_until(lambda: is_gone(pid)), "grandchild survived"
    assert options.kill_grace * 0.9 <= elapsed < options.kill_grace + 3.0
    assert list(tmp_root.iterdir()) == []


def test_cancellation_via_wait_for_timeout(opts, tmp_root):
    async def scenario() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(run_batch_step(1, 2, "sleep 1000", opts), timeout=0.3)

    asyncio.run(scenario())
    assert list(tmp_root.iterdir()) == []


def test_terminate_group_refuses_own_group():
    async def scenario() -> None:
        with pytest.raises(ValueError):
            await batch.terminate_group(os.getpgrp(), 0.1)
        with pytest.raises(ValueError):
            await batch.terminate_group(0, 0.1)

    asyncio.run(scenario())


def test_terminate_group_of_missing_group_is_a_no_op():
    async def scenario() -> bool:
        proc = await asyncio.create_subprocess_exec("true", start_new_session=True)
        await proc.wait()
        return await batch.terminate_group(proc.pid, 0.1)

    assert asyncio.run(scenario()) is False


# ---------------------------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------------------------

ENV_PROBE = 'for v in NOTIFY_SOCKET WATCHDOG_USEC LISTEN_FDS PGPASSWORD PYAGENT_X EXTRA HOME; do eval "echo $v=\\${$v-unset}"; done'


def _probe(options: BatchOptions) -> dict[str, str]:
    outcome = run(ENV_PROBE, options)
    assert outcome.succeeded, outcome
    return dict(line.split("=", 1) for line in outcome.output.splitlines())


@pytest.fixture
def agent_env(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("PGPASSWORD", "s3cret")
    monkeypatch.setenv("PYAGENT_X", "y")
    monkeypatch.setenv("EXTRA", "e")
    monkeypatch.setenv("HOME", "/home/agent")


def test_inherit_env_drops_supervisor_variables(agent_env, opts):
    env = _probe(opts)
    assert env["NOTIFY_SOCKET"] == env["WATCHDOG_USEC"] == env["LISTEN_FDS"] == "unset"
    assert env["PGPASSWORD"] == "s3cret"  # pgAgent compatible
    assert env["PYAGENT_X"] == "y"
    assert env["EXTRA"] == "e"
    assert env["HOME"] == "/home/agent"


def test_extra_env_drop(agent_env, tmp_root):
    env = _probe(
        BatchOptions(tmp_root=str(tmp_root), drain_timeout=0.5, extra_env_drop=("EXTRA", "HOME"))
    )
    assert env["EXTRA"] == env["HOME"] == "unset"
    assert env["PGPASSWORD"] == "s3cret"


def test_clean_env(agent_env, tmp_root):
    env = _probe(BatchOptions(tmp_root=str(tmp_root), drain_timeout=0.5, env_mode="clean"))
    assert env["PGPASSWORD"] == env["PYAGENT_X"] == env["EXTRA"] == "unset"
    assert env["NOTIFY_SOCKET"] == "unset"
    assert env["HOME"] == "/home/agent"


def test_clean_env_mapping():
    base = {"PGPASSWORD": "x", "PGHOST": "h", "PGAGENT_A": "a", "PYAGENT_B": "b", "LANG": "C.UTF-8"}
    env = batch.child_environment(BatchOptions(env_mode="clean"), base)
    assert env == {"PATH": batch.CLEAN_ENV_DEFAULT_PATH, "LANG": "C.UTF-8"}


# ---------------------------------------------------------------------------------------------
# Failures before the script runs
# ---------------------------------------------------------------------------------------------


def test_unusable_tmp_root(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    for root in (not_a_dir, tmp_path / "missing"):
        assert run("echo never", BatchOptions(tmp_root=str(root))) == StepOutcome(
            False, -1, "Couldn't get a temporary filename!"
        )


def as_unprivileged(fn: Callable[[Path], None]) -> None:
    """Run fn(private dir) in a forked child that is an ordinary user, so that permissions
    matter even when the tests run as root. Assertion errors come back as a failure."""
    if os.geteuid() != 0:
        base = Path(tempfile.mkdtemp())
    else:
        base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp_path is not reachable by nobody
        os.chown(base, NOBODY, NOBODY)
    errfile = base / "error.txt"
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            fn(base)
            code = 0
        except BaseException:
            errfile.write_text(traceback.format_exc())
        finally:
            os._exit(code)
    try:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, (
            errfile.read_text() if errfile.exists() else status
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_unwritable_tmp_root():
    def check(base: Path) -> None:
        root = base / "ro"
        root.mkdir(mode=0o500)
        assert run("echo never", BatchOptions(tmp_root=str(root))) == StepOutcome(
            False, -1, "Couldn't get a temporary filename!"
        )

    as_unprivileged(check)


def test_temp_dir_removed_even_when_script_locks_it_unprivileged():
    def check(base: Path) -> None:
        root = base / "root"
        root.mkdir()
        code = 'd=$(dirname "$0"); mkdir -p "$d/a/b"; touch "$d/a/b/f"; chmod 0 "$d/a/b" "$d/a"; chmod 500 "$d"'
        assert run(code, BatchOptions(tmp_root=str(root), drain_timeout=0.5)).succeeded
        assert list(root.iterdir()) == []

    as_unprivileged(check)


def test_script_file_failure(opts, tmp_root, monkeypatch):
    def fail(path: str, code: str) -> None:
        raise PermissionError(13, "denied")

    monkeypatch.setattr(batch, "_write_script", fail)
    outcome = run("echo never", opts, job=3, step=4)
    assert not outcome.succeeded and outcome.result == -1
    assert outcome.output.startswith("Couldn't open temporary script file: ")
    assert outcome.output.endswith("/3_4.scr")
    assert list(tmp_root.iterdir()) == []


def test_shell_cannot_be_started(opts, tmp_root, monkeypatch):
    monkeypatch.setattr(batch, "SHELL", "/nonexistent/sh")
    outcome = run("echo never", opts)
    assert outcome.result == -1 and not outcome.succeeded
    assert outcome.output.startswith("Couldn't execute script: ")
    assert outcome.output.endswith(", errno = 2")
    assert list(tmp_root.iterdir()) == []
