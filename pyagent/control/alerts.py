"""Failure alerts: the alert document and its delivery to a webhook or a command.

Imported only when `--alert-webhook` or `--alert-command` is set, so an agent without
alerts carries none of this (nor urllib's HTTP stack) in memory.

The webhook is POSTed with urllib, on purpose: the few things delivery needs beyond it are
written here (user-info as basic authentication, redirects refused, causes named), while
urllib already gives timeouts, TLS with the system's trust store and proxies from the
environment; an HTTP library would add several MB to the agent for none of that.

Delivery never blocks the scheduling loop: each sink has a bounded queue and a few slots;
an attempt has a timeout; a failed attempt is put back after a growing pause (the slot is
free meanwhile) until `retry_for` seconds have passed, then given up with a log line and a
counter. A full queue drops the alert, with a log line and a counter. A receiver that hangs
costs one slot for at most the timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import SplitResult, unquote, unquote_to_bytes, urljoin, urlsplit, urlunsplit

from pyagent.duration import format_duration, rounded
from pyagent.logsetup import get_logger
from pyagent.safetext import safe_text
from pyagent.store.jobcontrol import RunReport

if TYPE_CHECKING:
    import urllib.request
    from email.message import Message

AlertEvent = Literal["failure", "aborted", "recovered", "success"]
Sink = Literal["webhook", "command"]

STATUS_WORDS = {
    "s": "succeeded",
    "f": "failed",
    "i": "ended with an internal error",
    "d": "was aborted",
    "r": "is running",
}
# The output excerpt in the document, and the shorter one in its one-line summary.
OUTPUT_CHARS = 2000
SUMMARY_OUTPUT_CHARS = 500

DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRY_FOR = 600.0
QUEUE_SIZE = 100
SLOTS_PER_SINK = 2
FIRST_PAUSE = 1.0
LONGEST_PAUSE = 60.0
STDERR_CHARS = 300


# ---- the document ------------------------------------------------------------------------


def alert_event(status: str, previous_status: str | None, policy: str) -> AlertEvent | None:
    """Which event (if any) a run ending with `status` raises under the job's @ALERT policy.
    `previous_status` is the job's previous finished run (for "recovered")."""
    if policy == "never":
        return None
    if status in ("f", "i"):
        return "failure"
    if status == "d":
        return "aborted"
    if status == "s":
        if previous_status in ("f", "i", "d"):
            return "recovered"
        return "success" if policy == "always" else None
    return None


def safe_url(url: str) -> str:
    """Scheme and host of a URL: what may be logged of a secret webhook URL. User-info in
    the URL shows as "(with credentials)", never as itself."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ":?"
    shown = f"{parts.scheme}://{host}{port}"
    return shown + " (with credentials)" if _has_credentials(parts) else shown


def _has_credentials(parts: SplitResult) -> bool:
    return bool(parts.username or parts.password)


@dataclass(frozen=True)
class Webhook:
    """A webhook URL parsed once: the URL requested (without user-info), the basic
    authentication its user-info gives, and what the log may say of it."""

    url: str
    shown: str
    authorization: str | None = field(default=None, repr=False)


def parse_webhook(url: str) -> Webhook:
    """Parse a webhook URL; user-info (percent-encoded user and password) becomes HTTP basic
    authentication. Raises ValueError with a message that never quotes the URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http:// or https:// URL with a host name")
    try:
        _ = parts.port  # urlsplit checks the port only when it is read
    except ValueError:
        raise ValueError(
            "the port is not a number from 0 to 65535 (a / ? or # in a user name or "
            "password must be percent-encoded: %2F %3F %23)"
        ) from None
    authorization = None
    if _has_credentials(parts):
        user = unquote_to_bytes(parts.username or "")
        if b":" in user:
            raise ValueError(
                "the user name holds a ':' (%3A), which basic authentication cannot carry"
            )
        token = base64.b64encode(user + b":" + unquote_to_bytes(parts.password or ""))
        authorization = "Basic " + token.decode("ascii")
    host_and_port = parts.netloc.rpartition("@")[2]
    bare = urlunsplit(parts._replace(netloc=host_and_port))
    return Webhook(url=bare, shown=safe_url(url.strip()), authorization=authorization)


def webhook_secrets(url: str) -> list[str]:
    """What of a webhook URL must never appear in a log line: the URL, its path and query,
    its user-info and password (as written and decoded); a user name alone (a token) too."""
    parts = urlsplit(url)
    found = [url]
    if len(parts.path) > 1:
        found.append(parts.path)
    if parts.query:
        found.append(parts.query)
    if _has_credentials(parts):
        found.append(parts.netloc.rpartition("@")[0])
        secret = parts.password if parts.password else parts.username
        if secret:
            found += [secret, unquote(secret)]
    return found


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class RetryNote:
    """The retry decided at the run's release, for the alert's text."""

    attempt: int
    retries: int
    next_run: datetime | None
    retrying: bool


def build_alert(
    event: AlertEvent,
    *,
    job_id: int,
    run_id: int,
    report: RunReport,
    station: str,
    agent_pid: int | None = None,
    retry: RetryNote | None = None,
) -> dict[str, Any]:
    """The alert document. Its `text` is a readable summary that Slack-compatible incoming
    webhooks (Slack, Mattermost, Rocket.Chat, ...) show as the message as it is; job text
    in `text` and `summary` is escaped (pyagent.safetext), the other fields keep it exact."""
    output = (report.step_output or "").strip()
    status_text = STATUS_WORDS.get(report.status, report.status)
    failing_step = event in ("failure", "aborted") and report.step_name is not None
    summary = _summary(
        event,
        job_id=job_id,
        run_id=run_id,
        report=report,
        station=station,
        status_text=status_text,
        failing_step=failing_step,
        retry=retry,
    )
    text = summary + "."
    if failing_step and output:
        excerpt = output[:SUMMARY_OUTPUT_CHARS]
        more = "…" if len(output) > SUMMARY_OUTPUT_CHARS else ""
        excerpt = safe_text(excerpt.replace("```", "'''"), block=True)
        text += "\n```\n" + excerpt + more + "\n```"
    return {
        "text": text,
        "event": event,
        "summary": summary,
        "job_id": job_id,
        "job_name": report.job_name,
        "run_id": run_id,
        "status": report.status,
        "status_text": status_text,
        "start": _iso(report.start),
        "duration_seconds": report.duration,
        "station": station,
        "agent_pid": agent_pid,
        "step": _step_part(report, output),
        "retry": _retry_part(retry),
        "previous_status": report.previous_status,
    }


def _summary(
    event: AlertEvent,
    *,
    job_id: int,
    run_id: int,
    report: RunReport,
    station: str,
    status_text: str,
    failing_step: bool,
    retry: RetryNote | None,
) -> str:
    """One line: the job, what happened, where, how long; the failing step; the retry."""
    took = (
        "duration unknown" if report.duration is None else format_duration(rounded(report.duration))
    )
    summary = (
        f'pyagent: job {job_id} "{safe_text(report.job_name)}" {status_text}'
        f" (run {run_id} on {safe_text(station)}, {took})"
    )
    if event == "recovered":
        summary = summary.replace(" succeeded", " recovered: succeeded", 1) + " after failing"
    if failing_step:
        summary += f'. Step "{safe_text(report.step_name or "")}"'
        if report.step_result is not None:
            summary += f" result {report.step_result}"
    if retry is not None and event == "failure":
        if retry.retrying:
            summary += f". Retry {retry.attempt} of {retry.retries} at {_iso(retry.next_run)}"
        else:
            summary += f". Its {retry.retries} retries are used up"
    return summary


def _step_part(report: RunReport, output: str) -> dict[str, Any] | None:
    if report.step_name is None:
        return None
    return {
        "name": report.step_name,
        "status": report.step_status,
        "result": report.step_result,
        "output": output[:OUTPUT_CHARS],
    }


def _retry_part(retry: RetryNote | None) -> dict[str, Any] | None:
    if retry is None:
        return None
    return {
        "attempt": retry.attempt,
        "retries": retry.retries,
        "retrying": retry.retrying,
        "next_run": _iso(retry.next_run),
    }


# ---- delivery ----------------------------------------------------------------------------


class DeliveryError(Exception):
    """One delivery attempt failed; `permanent` ones are not tried again."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    """urllib's opener (proxies from the environment, TLS with the system's trust store)
    that does not follow redirects: a POST redirected by 301/302 would arrive as a GET
    without its document, and a secret webhook's document belongs to the URL given."""
    import urllib.request

    class RefuseRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
            return None  # the 3xx answer then comes back as an HTTPError

    return urllib.request.build_opener(RefuseRedirects)


def _post_json(hook: Webhook, body: bytes, timeout: float) -> int:
    """POST body to the webhook (runs in a worker thread)."""
    import http.client
    import urllib.error
    import urllib.request

    from pyagent import __version__

    request = urllib.request.Request(  # noqa: S310 - the operator's own URL
        hook.url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"pyagent/{__version__}"},
    )
    if hook.authorization:
        # Unredirected: never carried on to a redirect's URL (none is followed anyway).
        request.add_unredirected_header("Authorization", hook.authorization)
    try:
        with _opener().open(request, timeout=timeout) as response:
            response.read(64 * 1024)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _refused(exc.code, exc.headers, hook) from None
    except TimeoutError:
        raise DeliveryError(f"timed out after {timeout:g} s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise DeliveryError(f"timed out after {timeout:g} s") from None
        raise DeliveryError(_unreachable(exc.reason, request)) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None


def _refused(code: int, headers: Message, hook: Webhook) -> DeliveryError:
    """The DeliveryError for an HTTP error status, with its cause where it is known."""
    from http import HTTPStatus

    try:
        # The standard phrase, not the receiver's own words.
        text = f"HTTP status {code} {HTTPStatus(code).phrase}"
    except ValueError:
        text = f"HTTP status {code}"
    if 300 <= code < 400:
        location = headers.get("Location")
        try:
            target = safe_url(urljoin(hook.url, location)) if location else ""
        except ValueError:  # not a URL at all
            target = ""
        where = f" to {target}" if target.isprintable() and target.isascii() else ""
        return DeliveryError(
            f"{text}: the receiver redirects{where}; alerts are not sent on to another URL "
            "(give the final one)",
            permanent=True,
        )
    if code == 401:
        text += (
            ": the receiver did not accept the user name and password given in the URL"
            if hook.authorization
            else ": the receiver wants credentials (give them in the URL: "
            "https://user:password@host/...)"
        )
    # 4xx (but 408 and 429) will not get better by trying again.
    return DeliveryError(text, permanent=400 <= code < 500 and code not in (408, 429))


def _unreachable(reason: object, request: urllib.request.Request) -> str:
    """Why the receiver (or the proxy in front of it) could not be reached."""
    import socket
    import ssl

    where = request.host  # the proxy's, when the environment names one for this URL
    if request.has_proxy() or getattr(request, "_tunnel_host", None):
        where += " (the proxy from the environment)"
    if isinstance(reason, socket.gaierror):
        detail = f"the host name does not resolve ({reason.strerror})"
    elif isinstance(reason, ConnectionRefusedError):
        detail = "connection refused"
    elif isinstance(reason, ssl.SSLCertVerificationError):
        detail = f"its TLS certificate is not accepted ({reason.verify_message})"
    else:
        detail = str(reason)
    return f"cannot reach {where}: {detail}"


async def run_alert_command(
    command: str, body: bytes, env: Mapping[str, str], timeout: float
) -> None:
    """Run the alert command under /bin/sh with the document on stdin; raise DeliveryError
    when it fails or times out (its process group is then killed)."""
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
        start_new_session=True,
    )
    assert proc.stdin is not None and proc.stderr is not None
    stdin, stderr = proc.stdin, proc.stderr

    async def converse() -> tuple[int, bytes]:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.write(body)
            await stdin.drain()
        stdin.close()
        err = await stderr.read(STDERR_CHARS * 4)
        return await proc.wait(), err

    try:
        code, err = await asyncio.wait_for(converse(), timeout)
    except TimeoutError:
        raise DeliveryError(f"timed out after {timeout:g} s") from None
    finally:
        if proc.returncode is None:
            # Timed out or cancelled: the whole process group goes.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
    if code != 0:
        detail = err.decode("utf-8", "replace").strip()[:STDERR_CHARS]
        raise DeliveryError(f"exit status {code}" + (f": {detail}" if detail else ""))


@dataclass
class _Item:
    doc: dict[str, Any]
    body: bytes
    first_try: float
    attempts: int = 0


Counter = Callable[[Sink, str], None]


class AlertDispatcher:
    """Bounded, non-blocking delivery of alert documents to the configured sinks."""

    def __init__(
        self,
        *,
        webhook: str | None = None,
        command: str | None = None,
        count: Counter | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry_for: float = DEFAULT_RETRY_FOR,
        queue_size: int = QUEUE_SIZE,
        slots: int = SLOTS_PER_SINK,
        first_pause: float = FIRST_PAUSE,
        longest_pause: float = LONGEST_PAUSE,
    ) -> None:
        # Parsed once (the CLI has checked it): the URL to request and its credentials.
        self.webhook = parse_webhook(webhook) if webhook else None
        self.command = command
        self.timeout = timeout
        self.retry_for = retry_for
        self.slots = slots
        self.first_pause = first_pause
        self.longest_pause = longest_pause
        self._count = count or (lambda _sink, _outcome: None)
        self._queues: dict[Sink, asyncio.Queue[_Item]] = {}
        if webhook:
            self._queues["webhook"] = asyncio.Queue(queue_size)
        if command:
            self._queues["command"] = asyncio.Queue(queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._log = get_logger()

    @property
    def target(self) -> str:
        """What the log may say about where alerts go."""
        parts = []
        if self.webhook:
            parts.append(f"webhook {self.webhook.shown}")
        if self.command:
            parts.append("a command")
        return " and ".join(parts)

    def start(self) -> None:
        """Start the delivery slots (on the running loop)."""
        if self.webhook:
            # Own threads: a hanging receiver must not hold the loop's default executor
            # (name resolution for database connections uses it).
            self._executor = ThreadPoolExecutor(self.slots, thread_name_prefix="pyagent-alert")
        for sink, queue in self._queues.items():
            for i in range(self.slots):
                self._workers.append(
                    asyncio.create_task(self._work(sink, queue), name=f"alert-{sink}-{i}")
                )

    def submit(self, doc: dict[str, Any]) -> None:
        """Queue a document for every sink; never waits (a full queue drops it)."""
        body = json.dumps(doc, ensure_ascii=False, default=str).encode("utf-8")
        for sink, queue in self._queues.items():
            self._put(sink, queue, _Item(doc, body, time.monotonic()))

    def _put(self, sink: Sink, queue: asyncio.Queue[_Item], item: _Item) -> None:
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            self._count(sink, "dropped")
            self._log.warning(
                f"Alert for job {item.doc.get('job_id')} run {item.doc.get('run_id')} "
                f"dropped: the {sink} queue is full ({queue.maxsize} waiting)",
                job_id=item.doc.get("job_id"),
                jlgid=item.doc.get("run_id"),
                sink=sink,
            )

    async def _work(self, sink: Sink, queue: asyncio.Queue[_Item]) -> None:
        while True:
            item = await queue.get()
            try:
                await self._attempt(sink, queue, item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not end the slot
                self._log.warning(f"Alert delivery by {sink} failed unexpectedly: {exc!r}")
            finally:
                queue.task_done()

    async def _attempt(self, sink: Sink, queue: asyncio.Queue[_Item], item: _Item) -> None:
        item.attempts += 1
        job_id, run_id = item.doc.get("job_id"), item.doc.get("run_id")
        fields = {"job_id": job_id, "jlgid": run_id, "sink": sink, "attempt": item.attempts}
        try:
            await self._deliver(sink, item)
        except DeliveryError as exc:
            waited = time.monotonic() - item.first_try
            pause = min(self.first_pause * 2 ** (item.attempts - 1), self.longest_pause)
            if exc.permanent or waited + pause > self.retry_for:
                self._count(sink, "failed")
                self._log.warning(
                    f"Alert for job {job_id} run {run_id} not delivered by {self._name(sink)} "
                    f"after {item.attempts} attempt(s): {exc}; giving up",
                    **fields,
                )
                return
            self._log.warning(
                f"Alert for job {job_id} run {run_id} not delivered by {self._name(sink)}: "
                f"{exc}; trying again in {pause:g} s",
                **fields,
            )
            loop = asyncio.get_running_loop()
            handle: asyncio.TimerHandle

            def again() -> None:
                self._timers.discard(handle)
                self._put(sink, queue, item)

            handle = loop.call_later(pause, again)
            self._timers.add(handle)
            return
        self._count(sink, "sent")
        self._log.debug(f"Alert for job {job_id} run {run_id} sent by {self._name(sink)}", **fields)

    def _name(self, sink: Sink) -> str:
        return f"webhook {self.webhook.shown}" if sink == "webhook" and self.webhook else sink

    async def _deliver(self, sink: Sink, item: _Item) -> None:
        if sink == "webhook":
            assert self.webhook is not None
            loop = asyncio.get_running_loop()
            call: Awaitable[int] = loop.run_in_executor(
                self._executor, _post_json, self.webhook, item.body, self.timeout
            )
            try:
                await asyncio.wait_for(call, self.timeout + 1)
            except TimeoutError:
                raise DeliveryError(f"timed out after {self.timeout:g} s") from None
            return
        assert self.command is not None
        env = {
            "PYAGENT_ALERT_EVENT": str(item.doc.get("event", "")),
            "PYAGENT_ALERT_JOB_ID": str(item.doc.get("job_id", "")),
            "PYAGENT_ALERT_RUN_ID": str(item.doc.get("run_id", "")),
            "PYAGENT_ALERT_STATUS": str(item.doc.get("status", "")),
        }
        await run_alert_command(self.command, item.body, env, self.timeout)

    def pending(self) -> int:
        """Alerts queued or waiting for another attempt."""
        return sum(q.qsize() for q in self._queues.values()) + len(self._timers)

    async def close(self, drain_for: float = 5.0) -> None:
        """Give queued alerts up to `drain_for` seconds, then stop; say what was left."""
        # In-flight and queued alerts get their chance; retries waiting out a pause do not
        # hold the shutdown for minutes.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(q.join() for q in self._queues.values())), drain_for
            )
        left = self.pending()
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if left:
            self._log.warning(f"Stopping with {left} alert(s) not delivered", always=True)
