"""The in-house sd_notify client, against test-owned notification sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

from pyagent.ops import sdnotify
from pyagent.ops.sdnotify import Notifier, notify, watchdog_interval


class Receiver:
    """A bound SOCK_DGRAM socket standing in for systemd."""

    def __init__(self, env_value: str, bind_address: str) -> None:
        self.env_value = env_value
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind_address)
        self.sock.settimeout(2.0)

    def receive(self) -> bytes:
        return self.sock.recv(65536)

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(65536)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(2.0)
        return False


@pytest.fixture
def path_receiver() -> Iterator[Receiver]:
    # A short directory: AF_UNIX paths are limited to about 108 bytes.
    with tempfile.TemporaryDirectory(prefix="sdn") as tmp:
        path = str(Path(tmp) / "notify.sock")
        receiver = Receiver(path, path)
        try:
            yield receiver
        finally:
            receiver.sock.close()


@pytest.fixture
def abstract_receiver() -> Iterator[Receiver]:
    name = f"pyagent-test-{uuid.uuid4().hex}"
    receiver = Receiver("@" + name, "\0" + name)
    try:
        yield receiver
    finally:
        receiver.sock.close()


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest) -> Receiver:
    fixture = "path_receiver" if request.param == "path" else "abstract_receiver"
    result: Receiver = request.getfixturevalue(fixture)
    return result


# -- notify() --------------------------------------------------------------------------


def test_notify_without_socket_is_a_noop() -> None:
    assert notify("READY=1", environ={}) is False
    assert notify("READY=1", environ={"NOTIFY_SOCKET": ""}) is False


def test_notify_default_environ_without_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_notify_sends_one_datagram(receiver: Receiver) -> None:
    assert notify("READY=1\nSTATUS=hello", environ={"NOTIFY_SOCKET": receiver.env_value})
    assert receiver.receive() == b"READY=1\nSTATUS=hello"
    assert receiver.nothing_pending()


def test_notify_reads_os_environ(monkeypatch: pytest.MonkeyPatch, path_receiver: Receiver) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", path_receiver.env_value)
    assert notify("WATCHDOG=1")
    assert path_receiver.receive() == b"WATCHDOG=1"


def test_notify_utf8(path_receiver: Receiver) -> None:
    assert notify("STATUS=résumé ✓", environ={"NOTIFY_SOCKET": path_receiver.env_value})
    assert path_receiver.receive() == "STATUS=résumé ✓".encode()


@pytest.mark.parametrize("value", ["relative/notify.sock", "vsock:2:1234", "@", "x"])
def test_notify_unusable_address(value: str) -> None:
    assert notify("READY=1", environ={"NOTIFY_SOCKET": value}) is False


def test_notify_missing_socket_returns_false(tmp_path: Path) -> None:
    missing = str(tmp_path / "nobody-listens.sock")
    assert notify("READY=1", environ={"NOTIFY_SOCKET": missing}) is False
    assert (
        notify("READY=1", environ={"NOTIFY_SOCKET": "@pyagent-nobody-" + uuid.uuid4().hex}) is False
    )


def test_notify_empty_message_is_not_sent(path_receiver: Receiver) -> None:
    assert notify("", environ={"NOTIFY_SOCKET": path_receiver.env_value}) is False
    assert path_receiver.nothing_pending()


def test_notify_path_too_long_returns_false() -> None:
    assert notify("READY=1", environ={"NOTIFY_SOCKET": "/" + "x" * 300}) is False


def test_socket_address() -> None:
    assert sdnotify.socket_address("@abc") == "\0abc"
    assert sdnotify.socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert sdnotify.socket_address(None) is None
    assert sdnotify.socket_address("") is None


# -- watchdog_interval() ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "1000000"}, 0.5),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "not-a-pid"}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": ""}, 30.0),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "sixty"}, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ) == expected


# -- Notifier --------------------------------------------------------------------------


def test_notifier_messages(receiver: Receiver) -> None:
    notifier = Notifier(receiver.env_value)
    assert notifier.enabled

    assert notifier.ready("connected to primary")
    assert receiver.receive() == b"READY=1\nSTATUS=connected to primary"
    assert notifier.ready()
    assert receiver.receive() == b"READY=1"
    assert notifier.status("polling; 2 jobs running")
    assert receiver.receive() == b"STATUS=polling; 2 jobs running"
    assert notifier.watchdog()
    assert receiver.receive() == b"WATCHDOG=1"
    assert notifier.stopping()
    assert receiver.receive() == b"STOPPING=1"
    assert notifier.stopping("draining 1 job")
    assert receiver.receive() == b"STOPPING=1\nSTATUS=draining 1 job"
    assert notifier.extend_timeout(2.5)
    assert receiver.receive() == b"EXTEND_TIMEOUT_USEC=2500000"
    assert notifier.extend_timeout(-1)
    assert receiver.receive() == b"EXTEND_TIMEOUT_USEC=0"
    assert receiver.nothing_pending()


def test_notifier_status_stays_on_one_line(path_receiver: Receiver) -> None:
    notifier = Notifier(path_receiver.env_value)
    assert notifier.status("line one\nREADY=1\r\nline three")
    assert path_receiver.receive() == b"STATUS=line one READY=1 line three"


def test_disabled_notifier() -> None:
    notifier = Notifier(None, watchdog_interval=30.0)
    assert not notifier.enabled
    assert notifier.watchdog_interval is None  # nobody to ping
    assert notifier.ready("x") is False
    assert notifier.status("x") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    assert notifier.extend_timeout(5) is False


def test_notifier_after_receiver_is_gone() -> None:
    with tempfile.TemporaryDirectory(prefix="sdn") as tmp:
        path = str(Path(tmp) / "gone.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        notifier = Notifier(path)
        sock.close()
        os.unlink(path)
        assert notifier.ready() is False  # no exception


def test_from_environ_scrubs_given_mapping(path_receiver: Receiver) -> None:
    environ = {
        "NOTIFY_SOCKET": path_receiver.env_value,
        "WATCHDOG_USEC": "20000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/usr/bin",
    }
    notifier = Notifier.from_environ(environ)
    assert environ == {"PATH": "/usr/bin"}
    assert notifier.enabled
    assert notifier.watchdog_interval == 10.0
    # The address was captured before the variable was removed.
    assert notifier.watchdog()
    assert path_receiver.receive() == b"WATCHDOG=1"


def test_from_environ_keeps_variables_when_asked(path_receiver: Receiver) -> None:
    environ = {"NOTIFY_SOCKET": path_receiver.env_value, "WATCHDOG_USEC": "20000000"}
    Notifier.from_environ(environ, unset=False)
    assert set(environ) == {"NOTIFY_SOCKET", "WATCHDOG_USEC"}


def test_from_environ_read_only_mapping(path_receiver: Receiver) -> None:
    environ = MappingProxyType({"NOTIFY_SOCKET": path_receiver.env_value})
    notifier = Notifier.from_environ(environ)
    assert notifier.ready()
    assert path_receiver.receive() == b"READY=1"


def test_from_environ_without_systemd() -> None:
    environ = {"PATH": "/usr/bin"}
    notifier = Notifier.from_environ(environ)
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.ready() is False
    assert environ == {"PATH": "/usr/bin"}


def test_from_os_environ_hides_variables_from_children(
    monkeypatch: pytest.MonkeyPatch, path_receiver: Receiver
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", path_receiver.env_value)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))

    notifier = Notifier.from_environ()

    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        assert name not in os.environ
    assert notifier.watchdog_interval == 2.0
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; print([n for n in ('NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID')"
            " if n in os.environ])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == "[]"
    assert notifier.ready("up")
    assert path_receiver.receive() == b"READY=1\nSTATUS=up"
