"""Batch steps (``jstkind='b'``): run ``jstcode`` as a script under ``/bin/sh``.

Compatible with pgAgent 4.2 where that is useful (private temporary directory, script file with LF
line endings, ``/bin/sh -c <path>``, inherited environment and current directory, exit status as
``jslresult``, the ``Script Error:`` output format) and deliberately different where pgAgent is
broken:

* stderr is captured per process through a pipe; pgAgent redirects its own process-wide stderr to a
  file, which loses or mixes output when steps run concurrently;
* stdin is ``/dev/null``; pgAgent lets the script inherit the daemon's stdin, which holds nothing
  useful and could be a terminal when run in the foreground;
* each stream is capped at ``max_output_bytes``; the rest is read and discarded so the script never
  blocks on a full pipe;
* a background process that keeps stdout/stderr open does not hang the step: once the script's shell
  exits, the pipes are drained for at most ``drain_timeout`` seconds;
* the script runs in its own session and process group, so cancellation (agent shutdown, step
  timeout) can end the whole group: SIGTERM, ``kill_grace`` seconds, then SIGKILL;
* variables that belong to the agent's supervisor (systemd notify/watchdog/socket activation) never
  reach the script, and ``env_mode="clean"`` passes only a small allow-list.

Nothing is logged here; everything the caller needs is in the returned :class:`StepOutcome`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Literal

from pyagent.steps.result import DEFAULT_MAX_OUTPUT_BYTES, StepOutcome, clean_text

__all__ = [
    "CLEAN_ENV_DEFAULT_PATH",
    "CLEAN_ENV_VARS",
    "SUPERVISOR_ENV_VARS",
    "BatchOptions",
    "child_environment",
    "format_batch_output",
    "run_batch_step",
    "terminate_group",
]

SHELL = "/bin/sh"
DEFAULT_TMP_ROOT = "/tmp"  # noqa: S108 - pgAgent's fallback; the directory inside is private (0700)

TEMP_DIR_FAILED = "Couldn't get a temporary filename!"

# Set by systemd (or a compatible supervisor) for the agent itself. A script that inherited
# NOTIFY_SOCKET could send READY=1/STOPPING=1/WATCHDOG=1 on the agent's behalf.
SUPERVISOR_ENV_VARS: tuple[str, ...] = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
)

# The only variables passed in env_mode="clean" (when the agent has them).
CLEAN_ENV_VARS: tuple[str, ...] = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "SHELL",
)
CLEAN_ENV_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class BatchOptions:
    """How batch steps are run. The defaults behave like pgAgent, minus its bugs."""

    tmp_root: str | None = None
    """Where the private per-step directory is made. None: $TMPDIR, else /tmp (like pgAgent)."""
    env_mode: Literal["inherit", "clean"] = "inherit"
    """"inherit": the agent's environment minus supervisor variables (pgAgent compatible);
    "clean": only CLEAN_ENV_VARS."""
    extra_env_drop: tuple[str, ...] = ()
    """Further variable names to remove from the script's environment (either mode)."""
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    """Bytes kept per stream (stdout, stderr); the rest is read, counted and discarded."""
    kill_grace: float = 5.0
    """On cancellation: seconds between SIGTERM and SIGKILL of the script's process group."""
    drain_timeout: float = 2.0
    """After the shell exits: how long to keep reading pipes held open by leftover processes."""


_DEFAULT_OPTIONS = BatchOptions()


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------


def child_environment(
    options: BatchOptions, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a batch script gets, built from ``base`` (default: the agent's own)."""
    source = os.environ if base is None else base
    if options.env_mode == "clean":
        env = {name: source[name] for name in CLEAN_ENV_VARS if name in source}
        env.setdefault("PATH", CLEAN_ENV_DEFAULT_PATH)
    elif options.env_mode == "inherit":
        env = dict(source)
        for name in SUPERVISOR_ENV_VARS:
            env.pop(name, None)
    else:  # pragma: no cover - guarded by the Literal type, but options may come from a config file
        raise ValueError(f"unknown env_mode {options.env_mode!r}")
    for name in options.extra_env_drop:
        env.pop(name, None)
    return env


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _truncation_marker(dropped: int) -> str:
    # Same wording as clean_text() uses, so that all step output reads alike.
    return f"\n[pyagent: output truncated, {dropped} more bytes not stored]\n"


def _stream_text(data: bytes, dropped: int) -> str:
    text = clean_text(data, max_bytes=len(data))  # already capped: only UTF-8 and NUL fixing
    if dropped:
        text += _truncation_marker(dropped)
    return text


def format_batch_output(
    stdout: bytes, stderr: bytes, *, stdout_dropped: int = 0, stderr_dropped: int = 0
) -> str:
    """jsloutput for a batch step: stdout, then (when stderr had anything) pgAgent's
    ``"\\nScript Error: \\n" + stderr + "\\n"``. ``*_dropped`` count bytes cut by the cap."""
    text = _stream_text(stdout, stdout_dropped)
    if stderr or stderr_dropped:
        text += "\nScript Error: \n" + _stream_text(stderr, stderr_dropped) + "\n"
    return text


class _PipeReader:
    """Reads one pipe from the event loop, keeping at most ``limit`` bytes and counting the rest."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pipe: IO[bytes], limit: int) -> None:
        self._loop = loop
        self._pipe: IO[bytes] | None = pipe
        self._fd = pipe.fileno()
        self._limit = max(0, limit)
        self.data = bytearray()
        self.dropped = 0
        self.closed: asyncio.Future[None] = loop.create_future()
        os.set_blocking(self._fd, False)
        loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self._fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return
        room = self._limit - len(self.data)
        if room >= len(chunk):
            self.data += chunk
        else:
            if room > 0:
                self.data += chunk[:room]
            self.dropped += len(chunk) - max(room, 0)

    def close(self) -> None:
        """Stop reading and close our end (idempotent). A writer left behind gets EPIPE/SIGPIPE."""
        if self._pipe is None:
            return
        pipe, self._pipe = self._pipe, None
        self._loop.remove_reader(self._fd)
        pipe.close()
        if not self.closed.done():
            self.closed.set_result(None)


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


async def _wait_for_exit(proc: subprocess.Popen[bytes]) -> int:
    """Wait (without blocking the loop) until ``proc`` has exited, reap it, return its status."""
    returncode = proc.poll()
    if returncode is not None:
        return returncode
    loop = asyncio.get_running_loop()
    pidfd: int | None
    try:
        pidfd = os.pidfd_open(proc.pid)  # Linux >= 5.3: readable once the process has exited
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        exited: asyncio.Future[None] = loop.create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        try:
            loop.add_reader(pidfd, on_exit)
            try:
                await exited
            finally:
                loop.remove_reader(pidfd)
        finally:
            os.close(pidfd)
    delay = 0.005  # fallback without pidfd (and a safety net): poll with back-off
    while (returncode := proc.poll()) is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    return returncode


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # members exist that we may not signal (e.g. a setuid program)
    return True


def _group_has_live_members(pgid: int) -> bool:
    """True while the group has a member that is not a zombie.

    Zombies count as gone: an orphan is reaped by init, which may be slow or (in a container
    without an init) never happen, and it cannot do anything any more."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True  # no /proc: trust kill(0)
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
        fields = raw[raw.rfind(b")") + 2 :].split()
        if len(fields) >= 3 and fields[2] == str(pgid).encode() and fields[0] != b"Z":
            return True
    return False


async def terminate_group(
    pgid: int, grace: float, *, leader: subprocess.Popen[bytes] | None = None
) -> bool:
    """End a process group: SIGTERM (and SIGCONT, so stopped members can react), wait up to
    ``grace`` seconds for every member to exit, then SIGKILL whatever is left.

    ``leader`` is the group leader we started; it is reaped along the way (otherwise its zombie
    would keep the group alive). Returns True when SIGKILL had to be sent.
    """
    if pgid <= 1 or pgid == os.getpgrp():
        raise ValueError(f"refusing to signal process group {pgid}")
    loop = asyncio.get_running_loop()
    killed = False
    if _signal_group(pgid, signal.SIGTERM):
        _signal_group(pgid, signal.SIGCONT)
        deadline = loop.time() + max(0.0, grace)
        delay = 0.005
        while True:
            if leader is not None:
                leader.poll()
            if not _group_has_live_members(pgid):
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                killed = _signal_group(pgid, signal.SIGKILL)
                break
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.1)
    if leader is not None:
        await _wait_for_exit(leader)
    return killed


def _kill_and_reap_now(proc: subprocess.Popen[bytes]) -> None:
    """Last resort when the orderly shutdown was itself interrupted: SIGKILL and reap."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        proc.wait(timeout=1.0)  # a SIGKILLed process is normally gone in microseconds
    except subprocess.TimeoutExpired:
        # Stuck in the kernel (e.g. uninterruptible I/O): reap it from a thread rather than
        # block the event loop or leave a zombie.
        threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _write_script(path: str, code: str) -> None:
    data = code.replace("\r\n", "\n").encode("utf-8", "surrogateescape")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o700)
    try:
        with contextlib.suppress(OSError):  # pgAgent only logs this (DEBUG)
            os.fchmod(fd, 0o700)  # the umask may have removed bits from the mode above
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _remove_tree(path: str) -> None:
    """Remove the step's directory, even if the script took our permissions away inside it."""
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path):
        return
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    for top, dirs, _files in os.walk(path):  # top-down: fix a directory before entering it
        for name in dirs:
            sub = os.path.join(top, name)
            with contextlib.suppress(OSError):
                if stat.S_ISDIR(os.lstat(sub).st_mode):  # never chmod through a symlink
                    os.chmod(sub, 0o700)
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------------------------


_WORKDIR_PREFIX = "pga_"  # a step's directory: pga_<job>_<step>_<random>


def _tmp_root(explicit: str | None) -> str:
    """Where step directories are made: the configured root, else $TMPDIR, else /tmp."""
    return explicit or os.environ.get("TMPDIR") or DEFAULT_TMP_ROOT


async def run_batch_step(
    job_id: int,
    step_id: int,
    code: str,
    options: BatchOptions = _DEFAULT_OPTIONS,
    *,
    owner_tag: str = "",
) -> StepOutcome:
    """Run one batch step and return its outcome. Never raises for step failures; on
    cancellation the script's process group is ended, the directory removed, and
    CancelledError re-raised. The step's directory records who runs it (see
    `end_orphaned_steps`); `owner_tag` says which run it belongs to."""
    try:
        workdir = tempfile.mkdtemp(
            prefix=f"{_WORKDIR_PREFIX}{job_id}_{step_id}_", dir=_tmp_root(options.tmp_root)
        )  # 0700
    except OSError:
        return StepOutcome(False, -1, TEMP_DIR_FAILED)
    try:
        script = os.path.join(workdir, f"{job_id}_{step_id}.scr")
        try:
            _write_script(script, code)
        except (OSError, UnicodeError):
            return StepOutcome(False, -1, f"Couldn't open temporary script file: {script}")
        return await _execute(script, options, workdir, owner_tag)
    finally:
        _remove_tree(workdir)


# --------------------------------------------------------------------------------------------
# Steps left behind by a killed agent
# --------------------------------------------------------------------------------------------

OWNER_FILE = "pyagent.owner"


def _start_ticks(pid: int) -> int | None:
    """A process's start time (clock ticks after boot): with the pid, it names the process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of stat
    except (IndexError, ValueError):
        return None


def _record_owner(workdir: str, pgid: int, tag: str) -> None:
    # "agent pid, its start, step's process group, the group leader's start, run tag".
    text = f"{os.getpid()} {_start_ticks(os.getpid())} {pgid} {_start_ticks(pgid)} {tag}\n"
    with contextlib.suppress(OSError):
        fd = os.open(
            os.path.join(workdir, OWNER_FILE),
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
        )
        try:
            os.write(fd, text.encode("utf-8", "replace"))
        finally:
            os.close(fd)


@dataclass(frozen=True)
class OrphanedStep:
    """A batch step whose agent is gone, found in its step directory."""

    workdir: str
    pgid: int
    tag: str
    running: bool  # its process group was still there (it has been ended)


async def end_orphaned_steps(tmp_root: str | None = None, grace: float = 5.0) -> list[OrphanedStep]:
    """End the batch steps a killed agent of this user left behind on this host: a step
    directory whose recorded agent process is gone has its process group terminated (if
    it is still the recorded one) and is removed. Run by the agent at start."""
    root = _tmp_root(tmp_root)
    found: list[OrphanedStep] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return found
    uid = os.getuid()
    for entry in entries:
        if not entry.name.startswith(_WORKDIR_PREFIX):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != uid:
                continue
            with open(os.path.join(entry.path, OWNER_FILE), encoding="utf-8") as f:
                fields = [*f.read().strip().split(" ", 4), ""]
            agent, agent_start, pgid, pgid_start, tag = fields[:5]
            agent_pid, group = int(agent), int(pgid)
        except (OSError, ValueError):
            continue
        if str(_start_ticks(agent_pid)) == agent_start:
            continue  # its agent is alive (this one, or another on this host)
        running = str(_start_ticks(group)) == pgid_start and group > 1 and group != os.getpgrp()
        if running:
            await terminate_group(group, grace)
        _remove_tree(entry.path)
        found.append(OrphanedStep(entry.path, group, tag, running))
    return found


# Process groups of batch steps running right now, for an immediate stop of the agent.
RUNNING_GROUPS: set[int] = set()


def kill_all_groups() -> None:
    """SIGKILL every running batch step's process group (second signal: stop at once)."""
    for pgid in list(RUNNING_GROUPS):
        _signal_group(pgid, signal.SIGKILL)


async def _execute(script: str, options: BatchOptions, workdir: str, tag: str) -> StepOutcome:
    try:
        proc = subprocess.Popen(
            [SHELL, "-c", shlex.quote(script)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_environment(options),
            start_new_session=True,  # own session and process group (pgid == pid)
            close_fds=True,
        )
    except OSError as exc:
        return StepOutcome(False, -1, f"Couldn't execute script: {script}, errno = {exc.errno}")
    assert proc.stdout is not None and proc.stderr is not None
    _record_owner(workdir, proc.pid, tag)

    loop = asyncio.get_running_loop()
    readers: list[_PipeReader] = []
    RUNNING_GROUPS.add(proc.pid)
    try:
        try:
            out = _PipeReader(loop, proc.stdout, options.max_output_bytes)
            readers.append(out)
            err = _PipeReader(loop, proc.stderr, options.max_output_bytes)
            readers.append(err)
            returncode = await _wait_for_exit(proc)
            # Leftover background processes may hold the pipes open: read what is already there
            # and what arrives shortly, but do not wait for them to finish.
            await asyncio.wait([out.closed, err.closed], timeout=max(0.0, options.drain_timeout))
        except BaseException:
            try:
                await terminate_group(proc.pid, options.kill_grace, leader=proc)
            finally:
                _kill_and_reap_now(proc)
            raise
    finally:
        RUNNING_GROUPS.discard(proc.pid)
        for reader in readers:
            reader.close()
        proc.stdout.close()
        proc.stderr.close()

    output = format_batch_output(
        bytes(out.data), bytes(err.data), stdout_dropped=out.dropped, stderr_dropped=err.dropped
    )
    result = returncode if returncode >= 0 else -1  # negative: the shell itself got a signal
    return StepOutcome(result == 0, result, output)
