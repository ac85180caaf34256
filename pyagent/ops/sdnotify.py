"""The systemd notification protocol (sd_notify), implemented in-house.

The service manager passes `$NOTIFY_SOCKET`; each message is one datagram of newline-separated
`KEY=VALUE` lines sent on an AF_UNIX/SOCK_DGRAM socket. An address starting with `@` lives in
the Linux abstract namespace (the `@` stands for a leading NUL byte). Without the variable every
call is a no-op, so the same code runs under systemd, in a container, and in a terminal.

With `WatchdogSec=` systemd also passes `$WATCHDOG_USEC` (and `$WATCHDOG_PID`); the daemon should
send `WATCHDOG=1` about every half of that interval, but only when `$WATCHDOG_PID` is unset or is
its own PID.

Sending never raises: a notification that cannot be delivered returns False and nothing else
happens (systemd then acts on its own timeouts, which is the behaviour the protocol intends).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, MutableMapping

#: Variables meant for this process only; `Notifier.from_environ` removes them so that child
#: processes (batch steps) can neither notify systemd nor confuse its watchdog.
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

# A full receive queue on the manager's side would block a send; never block the event loop
# for longer than this.
_SEND_TIMEOUT = 1.0


def socket_address(value: str | None) -> str | None:
    """The AF_UNIX address for a `$NOTIFY_SOCKET` value, or None when it is unusable.

    Absolute paths and `@name` (abstract namespace) are supported, as in systemd's reference
    implementation; anything else (empty, relative path, `vsock:` address) is None.
    """
    if not value:
        return None
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def _send(address: str | None, message: str) -> bool:
    if address is None or not message:
        return False
    data = message.encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(_SEND_TIMEOUT)
            sent = sock.sendto(data, address)
    except (OSError, ValueError):
        # ValueError: an address with an embedded NUL that the kernel API rejects.
        return False
    return sent == len(data)


def notify(message: str, *, environ: Mapping[str, str] = os.environ) -> bool:
    """Send one notification datagram to `$NOTIFY_SOCKET`.

    Returns True when the datagram was sent, False when there is no (usable) socket or the send
    failed. Never raises, never logs.
    """
    return _send(socket_address(environ.get("NOTIFY_SOCKET")), message)


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between `WATCHDOG=1` pings (half of `$WATCHDOG_USEC`), or None.

    None when the watchdog is not enabled, the value is invalid, or `$WATCHDOG_PID` is set to
    another process's PID.
    """
    raw_usec = environ.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    try:
        usec = int(raw_usec)
    except ValueError:
        return None
    if usec <= 0:
        return None
    raw_pid = environ.get("WATCHDOG_PID")
    if raw_pid:
        try:
            pid = int(raw_pid)
        except ValueError:
            return None
        if pid != os.getpid():
            return None
    return usec / 2 / 1e6


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment inside the datagram.
    return " ".join(text.splitlines()) if text else ""


class Notifier:
    """Sends notifications to one socket address, captured when the notifier is built.

    Every method returns True when the datagram was sent and False otherwise (including the
    normal case of not running under systemd). None of them raises.
    """

    def __init__(self, address: str | None, watchdog_interval: float | None = None) -> None:
        """`address` is a `$NOTIFY_SOCKET` value (`/path` or `@abstract`), or None."""
        self._address = socket_address(address)
        self._watchdog_interval = watchdog_interval if self._address is not None else None

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] = os.environ, *, unset: bool = True
    ) -> Notifier:
        """A notifier for `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`/`$WATCHDOG_PID`.

        With `unset` (the default), the three variables are then removed from `environ` when it
        is mutable (by default `os.environ`), so child processes do not inherit them.
        """
        notifier = cls(environ.get("NOTIFY_SOCKET"), watchdog_interval(environ))
        if unset and isinstance(environ, MutableMapping):
            for name in SYSTEMD_VARIABLES:
                environ.pop(name, None)
        return notifier

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings, or None when systemd's watchdog is off for us."""
        return self._watchdog_interval

    def send(self, message: str) -> bool:
        """Send a raw message (newline-separated KEY=VALUE lines)."""
        return _send(self._address, message)

    def ready(self, status: str | None = None) -> bool:
        """`READY=1`, with an optional `STATUS=` line in the same datagram."""
        message = "READY=1"
        if status:
            message += "\nSTATUS=" + _one_line(status)
        return self.send(message)

    def status(self, text: str) -> bool:
        """`STATUS=text` (shown by `systemctl status`)."""
        return self.send("STATUS=" + _one_line(text))

    def stopping(self, status: str | None = None) -> bool:
        """`STOPPING=1`, with an optional `STATUS=` line."""
        message = "STOPPING=1"
        if status:
            message += "\nSTATUS=" + _one_line(status)
        return self.send(message)

    def watchdog(self) -> bool:
        """`WATCHDOG=1`: the service is alive."""
        return self.send("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """`EXTEND_TIMEOUT_USEC=`: ask for `seconds` more to finish starting or stopping."""
        usec = max(0, round(seconds * 1_000_000))
        return self.send(f"EXTEND_TIMEOUT_USEC={usec}")
