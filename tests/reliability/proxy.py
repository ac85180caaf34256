"""A TCP proxy between an agent and PostgreSQL that a test can cut and restore.

It forwards 127.0.0.1:<port> to a target address, running an asyncio loop in a background
thread so tests stay synchronous. What a cut does is chosen per cut:

* existing connections are either reset (both sides get a TCP RST at once, like a crashed
  middlebox or a killed server) or frozen (bytes stop flowing but the sockets stay open, like
  a network partition: only timeouts can notice it);
* new connections are either refused (nothing listens on the port: ECONNREFUSED) or
  blackholed (accepted, then never answered: only a connect timeout can end the wait).

`restore()` forwards again; connections held by the blackhole are reset then, so clients
stuck in them fail and retry. A proxy made with `forward=False` is a permanent blackhole:
a host that accepts TCP and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

NewMode = Literal["refuse", "blackhole"]
ExistingMode = Literal["reset", "freeze"]
_T = TypeVar("_T")

_CHUNK = 64 * 1024


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close a connection with a RST (SO_LINGER 0), not an orderly FIN."""
    with contextlib.suppress(Exception):
        writer.transport.abort()


@dataclass(eq=False)
class _Link:
    """One client connection and, when forwarding, its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    flowing: asyncio.Event = field(default_factory=asyncio.Event)

    def abort(self) -> None:
        _abort(self.client)
        if self.upstream is not None:
            _abort(self.upstream)


class TcpProxy:
    """Forward 127.0.0.1:`port` to `target_host`:`target_port`, with cut and restore."""

    def __init__(
        self,
        target_host: str = "127.0.0.1",
        target_port: int = 0,
        *,
        forward: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the proxy listens on loopback only")
        self.host = host
        self.target = (target_host, target_port)
        self.port = 0
        # What happens to a new connection: forwarded, refused or blackholed.
        self.mode: Literal["forward", "refuse", "blackhole"] = "forward" if forward else "blackhole"
        self.accepted = 0  # connections accepted since start (blackholed ones included)
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._started = False

    # ---- life cycle ------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._started = True
        self._call(self._listen())
        return self

    def stop(self) -> None:
        """Close everything and end the thread (idempotent)."""
        if not self._started:
            return
        self._started = False
        with contextlib.suppress(Exception):
            self._call(self._close_all(), timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        with contextlib.suppress(Exception):
            self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ---- what tests call -------------------------------------------------------------------

    def cut(self, new: NewMode = "refuse", existing: ExistingMode = "reset") -> None:
        """Cut the link: existing connections are reset or frozen; new ones are refused or
        blackholed until restore()."""
        self._call(self._cut(new, existing))

    def restore(self) -> None:
        """Forward again: frozen connections flow, blackholed ones are reset, new ones pass."""
        self._call(self._restore())

    def reset_all(self) -> None:
        """Reset every open connection once (a blip); new connections keep passing."""
        self._call(self._reset_links())

    def freeze_upstream_port(self, port: int) -> bool:
        """Stop forwarding on the one connection whose upstream socket has local port `port`
        (the server shows it as pg_stat_activity.client_port), without closing it: a
        partition of that connection only. False when no such connection is open."""
        return self._call(self._freeze_port(port))

    def restore_port(self, port: int) -> None:
        """Forward again on the connection frozen by freeze_upstream_port."""
        self._call(self._thaw_port(port))

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def dsn_params(self) -> dict[str, str]:
        """host and port keywords for a conninfo that goes through the proxy."""
        return {"host": self.host, "port": str(self.port)}

    # ---- the loop side ---------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, _T], timeout: float = 30) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, reuse_address=True, backlog=512
        )
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)

    async def _reset_links(self, keep_frozen: bool = False) -> None:
        for link in list(self._links):
            if keep_frozen and link.upstream is not None:
                continue
            link.abort()
            self._links.discard(link)

    def _links_on_port(self, port: int) -> list[_Link]:
        found = []
        for link in self._links:
            if link.upstream is None:
                continue
            sock = link.upstream.get_extra_info("sockname")
            if sock is not None and sock[1] == port:
                found.append(link)
        return found

    async def _freeze_port(self, port: int) -> bool:
        links = self._links_on_port(port)
        for link in links:
            link.flowing.clear()
        return bool(links)

    async def _thaw_port(self, port: int) -> None:
        for link in self._links_on_port(port):
            link.flowing.set()

    async def _cut(self, new: NewMode, existing: ExistingMode) -> None:
        self.mode = new
        if new == "refuse":
            await self._stop_listening()
        if existing == "reset":
            await self._reset_links()
        else:
            for link in self._links:
                link.flowing.clear()

    async def _restore(self) -> None:
        # Blackholed connections never reached the server: reset them so clients retry.
        for link in list(self._links):
            if link.upstream is None:
                link.abort()
                self._links.discard(link)
            else:
                link.flowing.set()
        self.mode = "forward"
        if self._server is None:
            await self._listen()

    async def _close_all(self) -> None:
        await self._stop_listening()
        await self._reset_links()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = _Link(writer)
        if self.mode == "refuse":  # accepted just before the listener closed
            _abort(writer)
            return
        self._links.add(link)
        if self.mode == "blackhole":
            return  # held open, never read, never answered
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._links.discard(link)
            _abort(writer)
            return
        link.upstream = up_writer
        link.flowing.set()
        if link not in self._links:  # cut while we were connecting
            link.abort()
            return
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, link), self._pump(up_reader, writer, link)
            )
        finally:
            if link in self._links:
                self._links.discard(link)
                link.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await link.flowing.wait()  # frozen: hold the bytes until restore
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side ended: pass the end on (an orderly FIN, as the peer sent one).
            with contextlib.suppress(Exception):
                writer.close()


def free_loopback_port() -> int:
    """A port on 127.0.0.1 nothing listens on right now (connects to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
