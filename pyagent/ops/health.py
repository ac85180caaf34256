"""A tiny HTTP server for health probes and Prometheus scrapes.

Endpoints (GET or HEAD):
- `/livez`: 200 `ok` while the process and its scheduler loop are alive, else 503.
- `/readyz`: 200 when the agent is ready (connected, registered, schema OK, ...), else 503;
  the body is a JSON object: the probe's detail plus `live` and `ready`.
- `/metrics`: Prometheus text format (404 when metrics are disabled).

Anything else is 404; another method on a known path is 405; a malformed request is 400 (also
for requests over 8 KiB); a client that does not send a complete request within 5 s gets 408.
Each connection carries one request and is closed after the answer (HTTP/1.0 style). Bad input
only ever affects its own connection.

The probe and the metrics are called on the event loop, so they may read the agent's state
without locks; they must be quick and must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

from pyagent.logsetup import get_logger

if TYPE_CHECKING:
    from pyagent.ops.metrics import Metrics

DEFAULT_PORT = 9187
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 5.0
MAX_REQUEST_BYTES = 8 * 1024
MAX_CONNECTIONS = 64

_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(r"HTTP/1\.[0-9]")
_ALLOWED = "GET, HEAD"
_PORT = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True)
class HealthSnapshot:
    """What the agent reports about itself at one moment.

    `detail` is free-form JSON-able data served by /readyz, typically role (primary, standby,
    unknown), connected, registered, schema_ok, running_jobs, last_loop_age_seconds, version.
    """

    live: bool
    ready: bool
    detail: dict[str, object] = field(default_factory=dict)


def _finite(value: object) -> object:
    """JSON has no NaN or infinity: report them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class _BadRequest(Exception):
    pass


def parse_listen(value: str) -> tuple[str, int]:
    """Parse `--http HOST:PORT` into (host, port).

    Accepted: `HOST:PORT`, `[IPv6]:PORT`, `:PORT` and `PORT` (both meaning 127.0.0.1: an empty
    host never exposes the endpoint beyond this machine; say `0.0.0.0:PORT` or `[::]:PORT` to
    listen on every interface). PORT is 0..65535, 0 picking a free port. Raises ValueError
    with a message naming the problem.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty listen address; expected HOST:PORT, e.g. 127.0.0.1:9187")
    if "://" in text:
        raise ValueError(f"invalid listen address {value!r}: expected HOST:PORT, not a URL")
    if _PORT.fullmatch(text):
        host, port_text = "", text
    elif text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise ValueError(f"invalid listen address {value!r}; expected [IPv6]:PORT")
        host, port_text = text[1:close], text[close + 2 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(
                f"invalid listen address {value!r}: {host!r} is not an IPv6 address"
            ) from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"invalid listen address {value!r}: missing :PORT")
        if ":" in host:
            raise ValueError(
                f"invalid listen address {value!r}: put an IPv6 address in brackets, "
                "e.g. [::1]:9187"
            )
        if host and not re.fullmatch(r"[A-Za-z0-9._-]+", host):
            raise ValueError(f"invalid listen address {value!r}: bad host name {host!r}")
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise ValueError(f"invalid listen address {value!r}: port must be a number from 0 to 65535")
    return host or "127.0.0.1", int(port_text)


class _Reply(NamedTuple):
    status: HTTPStatus
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def text(cls, status: HTTPStatus, text: str | None = None) -> _Reply:
        return cls(status, ((text or status.phrase.lower()) + "\n").encode())

    def encode(self, *, head: bool = False) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status.value} {self.status.phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        header = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return header if head else header + self.body


class HealthServer:
    """Serves /livez, /readyz and /metrics on HOST:PORT until stopped."""

    def __init__(
        self,
        host: str,
        port: int,
        probe: Callable[[], HealthSnapshot],
        metrics: Metrics | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._probe = probe
        self._metrics = metrics
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._log = get_logger()

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port once started (useful with port 0), else the configured one."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        """Bind and start serving; raises OSError when the address cannot be bound."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._handle,
            self._host,
            self._port,
            limit=MAX_REQUEST_BYTES,
            reuse_address=True,
        )

    async def stop(self) -> None:
        """Stop listening and drop connections still being served."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), WRITE_TIMEOUT)

    # -- connection handling -------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            if len(self._handlers) > MAX_CONNECTIONS:
                await self._send(
                    writer, _Reply.text(HTTPStatus.SERVICE_UNAVAILABLE, "busy").encode()
                )
                return
            await self._serve_one(reader, writer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one bad connection must never stop the server
            self._log.debug(f"HTTP connection failed: {exc!r}")
        finally:
            if task is not None:
                self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                request = await self._read_request(reader)
        except TimeoutError:
            await self._send(writer, _Reply.text(HTTPStatus.REQUEST_TIMEOUT).encode())
            return
        except _BadRequest as exc:
            reply = _Reply.text(HTTPStatus.BAD_REQUEST, f"bad request: {exc}")
            await self._send(writer, reply.encode())
            return
        if request is None:  # connected and closed without sending anything
            return
        method, path = request
        await self._send(writer, self._dispatch(method, path).encode(head=method == "HEAD"))

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, str] | None:
        """Read the request line and headers; returns (method, path), None on an empty
        connection, raises _BadRequest."""
        total = 0
        lines: list[bytes] = []
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # a line longer than the stream's limit
                raise _BadRequest("request too large") from None
            total += len(line)
            if total > MAX_REQUEST_BYTES:
                raise _BadRequest("request too large")
            if not line:  # end of input
                if not lines:
                    return None
                break
            if not lines and line in (b"\r\n", b"\n"):
                continue  # tolerated blank lines before the request line (RFC 9112 2.2)
            if line in (b"\r\n", b"\n"):
                break
            if not line.endswith(b"\n"):
                raise _BadRequest("incomplete request")
            lines.append(line)
        method, target = self._parse_request_line(lines[0])
        body_length = self._content_length(lines[1:])
        if body_length:
            # Read a small body so that closing does not reset the connection under the
            # client before it reads the answer; larger bodies are simply not read.
            if total + body_length > MAX_REQUEST_BYTES:
                raise _BadRequest("request too large")
            with contextlib.suppress(asyncio.IncompleteReadError):
                await reader.readexactly(body_length)
        return method, urlsplit(target).path if target[0] != "/" else target.split("?")[0]

    @staticmethod
    def _parse_request_line(raw: bytes) -> tuple[str, str]:
        try:
            text = raw.decode("ascii").rstrip("\r\n")
        except UnicodeDecodeError:
            raise _BadRequest("request line is not ASCII") from None
        parts = text.split(" ")
        if len(parts) != 3:
            raise _BadRequest("malformed request line")
        method, target, version = parts
        if not _METHOD.fullmatch(method) or not _VERSION.fullmatch(version):
            raise _BadRequest("malformed request line")
        if not (target.startswith("/") or target.startswith(("http://", "https://"))):
            raise _BadRequest("malformed request target")
        return method, target

    @staticmethod
    def _content_length(header_lines: list[bytes]) -> int:
        length = 0
        for raw in header_lines:
            name, sep, value = raw.partition(b":")
            if not sep or not name or name != name.strip():
                raise _BadRequest("malformed header line")
            if name.lower() == b"content-length":
                text = value.strip()
                if not text.isdigit():
                    raise _BadRequest("invalid Content-Length")
                length = int(text)
        return length

    def _dispatch(self, method: str, path: str) -> _Reply:
        routes: dict[str, Callable[[], _Reply]] = {
            "/livez": self._livez,
            "/readyz": self._readyz,
        }
        if self._metrics is not None:
            routes["/metrics"] = self._render_metrics
        handler = routes.get(path)
        if handler is None:
            return _Reply.text(HTTPStatus.NOT_FOUND)
        if method not in ("GET", "HEAD"):
            reply = _Reply.text(HTTPStatus.METHOD_NOT_ALLOWED)
            return reply._replace(headers=(("Allow", _ALLOWED),))
        return handler()

    def _snapshot(self) -> HealthSnapshot | str:
        """The probe's snapshot, or why there is none."""
        try:
            return self._probe()
        except Exception as exc:
            self._log.warning(f"Health probe failed: {exc!r}")
            return f"probe failed: {exc}"

    def _livez(self) -> _Reply:
        snapshot = self._snapshot()
        if isinstance(snapshot, str):
            return _Reply.text(HTTPStatus.SERVICE_UNAVAILABLE, snapshot)
        if snapshot.live:
            return _Reply.text(HTTPStatus.OK, "ok")
        return _Reply.text(HTTPStatus.SERVICE_UNAVAILABLE, "not live")

    def _readyz(self) -> _Reply:
        snapshot = self._snapshot()
        if isinstance(snapshot, str):
            document: dict[str, object] = {"live": False, "ready": False, "error": snapshot}
            ready = False
        else:
            document = {**snapshot.detail, "live": snapshot.live, "ready": snapshot.ready}
            ready = snapshot.ready
        try:
            body = json.dumps(document, default=str, allow_nan=False).encode()
        except (TypeError, ValueError):  # e.g. infinite ages or non-string keys
            cleaned = {str(key): _finite(value) for key, value in document.items()}
            body = json.dumps(cleaned, default=str).encode()
        body += b"\n"
        status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
        return _Reply(status, body, "application/json")

    def _render_metrics(self) -> _Reply:
        assert self._metrics is not None
        try:
            body = self._metrics.render()
        except Exception as exc:
            self._log.warning(f"Rendering metrics failed: {exc!r}")
            return _Reply.text(HTTPStatus.INTERNAL_SERVER_ERROR)
        return _Reply(HTTPStatus.OK, body, self._metrics.content_type)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.drain()
