"""The health/metrics HTTP server, exercised over real sockets, and the healthcheck client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pyagent.ops import health, healthcheck
from pyagent.ops.health import HealthServer, HealthSnapshot, parse_listen
from pyagent.ops.metrics import Metrics


@dataclass
class FakeProbe:
    live: bool = True
    ready: bool = True
    detail: dict[str, object] = field(
        default_factory=lambda: {
            "role": "primary",
            "connected": True,
            "registered": True,
            "schema_ok": True,
            "running_jobs": 2,
            "last_loop_age_seconds": 0.4,
            "version": "0.1.0",
        }
    )
    error: Exception | None = None
    calls: int = 0

    def __call__(self) -> HealthSnapshot:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return HealthSnapshot(live=self.live, ready=self.ready, detail=dict(self.detail))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def _fetch(url: str, method: str = "GET", data: bytes | None = None) -> Reply:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, method=method, data=data)
    try:
        with opener.open(request, timeout=10) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, dict(exc.headers), exc.read())


async def fetch(url: str, method: str = "GET", data: bytes | None = None) -> Reply:
    return await asyncio.get_running_loop().run_in_executor(None, _fetch, url, method, data)


async def raw(port: int, data: bytes, *, close_write: bool = False) -> bytes:
    """Send raw bytes and return everything the server answers before closing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if close_write:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> bytes:
    return answer.split(b"\r\n\r\n", 1)[1]


Scenario = Callable[[HealthServer, FakeProbe, Metrics], Awaitable[None]]


def serve(scenario: Scenario, *, with_metrics: bool = True) -> None:
    """Run `scenario` against a started server on a free port, inside asyncio.run."""

    async def main() -> None:
        probe = FakeProbe()
        metrics = Metrics()
        server = HealthServer("127.0.0.1", 0, probe, metrics if with_metrics else None)
        await server.start()
        try:
            await scenario(server, probe, metrics)
        finally:
            await asyncio.wait_for(server.stop(), 10)

    asyncio.run(main())


def url(server: HealthServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


async def still_serving(server: HealthServer) -> None:
    reply = await fetch(url(server, "/livez"))
    assert (reply.status, reply.body) == (200, b"ok\n")


# -- endpoints -------------------------------------------------------------------------


def test_port_zero_binds_a_free_port() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        assert server.port > 0
        assert server.host == "127.0.0.1"

    serve(scenario)


def test_livez_switches_between_200_and_503() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        reply = await fetch(url(server, "/livez"))
        assert reply.status == 200
        assert reply.body == b"ok\n"
        assert reply.headers["Content-Type"].startswith("text/plain")
        assert reply.headers["Connection"] == "close"

        probe.live = False
        reply = await fetch(url(server, "/livez"))
        assert reply.status == 503
        assert reply.body == b"not live\n"

        probe.live = True
        await still_serving(server)

    serve(scenario)


def test_readyz_serves_the_detail_as_json() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        reply = await fetch(url(server, "/readyz"))
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "application/json"
        assert reply.headers["Cache-Control"] == "no-store"
        document = json.loads(reply.body)
        assert document == {**probe.detail, "live": True, "ready": True}

        probe.ready = False
        probe.detail.update(role="standby", running_jobs=0)
        reply = await fetch(url(server, "/readyz"))
        assert reply.status == 503
        document = json.loads(reply.body)
        assert document["ready"] is False
        assert document["live"] is True
        assert document["role"] == "standby"
        assert document["running_jobs"] == 0

        probe.ready = True
        assert (await fetch(url(server, "/readyz"))).status == 200

    serve(scenario)


def test_readyz_survives_unserialisable_detail() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        probe.detail["started"] = object()
        reply = await fetch(url(server, "/readyz"))
        assert reply.status == 200
        assert "started" in json.loads(reply.body)

    serve(scenario)


def test_readyz_body_is_strict_json() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        probe.detail["last_loop_age_seconds"] = float("inf")
        probe.detail[3] = "non-string key"  # type: ignore[index]
        reply = await fetch(url(server, "/readyz"))
        assert reply.status == 200

        def reject(constant: str) -> object:
            raise AssertionError(f"not JSON: {constant}")

        document = json.loads(reply.body, parse_constant=reject)
        assert document["last_loop_age_seconds"] is None
        assert document["3"] == "non-string key"

    serve(scenario)


def test_failing_probe_means_not_live_and_not_ready() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        probe.error = RuntimeError("state lock broken")
        reply = await fetch(url(server, "/livez"))
        assert reply.status == 503
        assert b"state lock broken" in reply.body
        reply = await fetch(url(server, "/readyz"))
        assert reply.status == 503
        document = json.loads(reply.body)
        assert document["ready"] is False
        assert "state lock broken" in document["error"]
        probe.error = None
        await still_serving(server)

    serve(scenario)


def test_query_string_is_ignored() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        assert (await fetch(url(server, "/readyz?verbose=1"))).status == 200

    serve(scenario)


def test_metrics_endpoint() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        metrics.poll()
        metrics.job_started(0.01)
        metrics.job_finished("s", 2.0)
        calls: list[int] = []

        def state() -> dict[str, float]:
            calls.append(1)
            return {"running_jobs": 1, "connected": 1, "pool_connections_in_use": 1}

        metrics.set_state_provider(state)
        reply = await fetch(url(server, "/metrics"))
        assert reply.status == 200
        assert reply.headers["Content-Type"] == metrics.content_type
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(reply.body.decode())
            for sample in family.samples
        }
        assert samples[("pyagent_polls_total", ())] == 1
        assert samples[("pyagent_job_runs_started_total", ())] == 1
        assert samples[("pyagent_job_runs_finished_total", (("status", "s"),))] == 1
        assert samples[("pyagent_running_jobs", ())] == 1
        assert samples[("pyagent_connected", ())] == 1
        assert samples[("pyagent_step_pool_connections", (("state", "in_use"),))] == 1
        assert calls  # read at scrape time

    serve(scenario)


def test_metrics_disabled_is_404() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        assert (await fetch(url(server, "/metrics"))).status == 404
        await still_serving(server)

    serve(scenario, with_metrics=False)


@pytest.mark.parametrize(
    "path", ["/", "/health", "/livez/", "/readyz/x", "/METRICS", "/favicon.ico"]
)
def test_unknown_paths_are_404(path: str) -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        assert (await fetch(url(server, path))).status == 404

    serve(scenario)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_are_405(method: str) -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        for path in ("/livez", "/readyz", "/metrics"):
            data = b'{"x": 1}' if method in ("POST", "PUT", "PATCH") else None
            reply = await fetch(url(server, path), method, data)
            assert reply.status == 405, path
            assert reply.headers["Allow"] == "GET, HEAD"
        await still_serving(server)

    serve(scenario)


def test_head_has_no_body() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        answer = await raw(server.port, b"HEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(answer) == 200
        assert b"Content-Length: " in answer
        assert body_of(answer) == b""

    serve(scenario)


def test_http10_and_absolute_form_requests() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        answer = await raw(server.port, b"GET /livez HTTP/1.0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert body_of(answer) == b"ok\n"
        answer = await raw(server.port, b"GET http://localhost/livez HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(answer) == 200
        # Bare LF line ends and blank lines before the request line are tolerated.
        answer = await raw(server.port, b"\r\nGET /livez HTTP/1.0\nUser-Agent: t\n\n")
        assert status_of(answer) == 200
        # A request whose sender closes its side right after the headers.
        answer = await raw(server.port, b"GET /livez HTTP/1.0\r\n", close_write=True)
        assert status_of(answer) == 200

    serve(scenario)


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /livez\r\n\r\n",  # HTTP/0.9
        b"GET /livez HTTP/2.0\r\n\r\n",
        b"GET  /livez HTTP/1.1\r\n\r\n",
        b"GET livez HTTP/1.1\r\n\r\n",
        b"G(T /livez HTTP/1.1\r\n\r\n",
        b"GET /livez HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /livez HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET /livez HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
        b"GET /l\xc3\xa9vez HTTP/1.1\r\n\r\n",
        b"\x00\xff\xfe\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET /livez HTTP/1.1",  # incomplete, then EOF
    ],
)
def test_malformed_requests_are_400(data: bytes) -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        answer = await raw(server.port, data, close_write=True)
        assert status_of(answer) == 400, answer
        await still_serving(server)

    serve(scenario)


def test_oversized_requests_are_400() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        long_line = b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"
        assert status_of(await raw(server.port, long_line)) == 400
        many_headers = b"GET /livez HTTP/1.1\r\n" + (b"X-Pad: " + b"b" * 100 + b"\r\n") * 100
        assert status_of(await raw(server.port, many_headers + b"\r\n")) == 400
        big_body = b"POST /livez HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"
        assert status_of(await raw(server.port, big_body)) == 400
        await still_serving(server)

    serve(scenario)


def test_random_garbage_does_not_kill_the_server() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        payloads = [bytes(range(256)) * 4, b"\r\n" * 5000, b"\n" * 10, b":" * 9000]
        for payload in payloads:
            # The server may reset a connection whose input it stopped reading.
            with contextlib.suppress(ConnectionError):
                await raw(server.port, payload, close_write=True)
        # Connect and leave without a word; connect and reset.
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.close()
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.sendall(b"GET /li")
        sock.close()
        await asyncio.sleep(0.1)
        await still_serving(server)

    serve(scenario)


def test_slow_client_gets_408(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "READ_TIMEOUT", 0.3)

    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\n")  # never finishes the headers
        await writer.drain()
        started = time.monotonic()
        # Meanwhile other clients are served.
        await still_serving(server)
        answer = await asyncio.wait_for(reader.read(), 5)
        assert status_of(answer) == 408
        assert time.monotonic() - started < 3
        writer.close()
        await still_serving(server)

    serve(scenario)


def test_read_timeout_is_five_seconds_and_cap_eight_kib() -> None:
    assert health.READ_TIMEOUT == 5.0
    assert health.MAX_REQUEST_BYTES == 8192


def test_stop_drops_idle_connections_and_refuses_new_ones() -> None:
    async def main() -> None:
        server = HealthServer("127.0.0.1", 0, FakeProbe(), None)
        await server.start()
        port = server.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /livez HTTP/1.1\r\n")  # a slow client still connected at stop
        await writer.drain()
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await asyncio.wait_for(server.stop(), 5)
        assert time.monotonic() - started < 2
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        await server.stop()  # idempotent

    asyncio.run(main())


def test_start_on_a_busy_port_raises() -> None:
    async def main() -> None:
        first = HealthServer("127.0.0.1", 0, FakeProbe(), None)
        await first.start()
        try:
            second = HealthServer("127.0.0.1", first.port, FakeProbe(), None)
            with pytest.raises(OSError):
                await second.start()
        finally:
            await first.stop()

    asyncio.run(main())


# -- healthcheck.check() against the server ---------------------------------------------


def test_check_ok_and_not_ok() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        loop = asyncio.get_running_loop()

        ok, reason = await loop.run_in_executor(None, healthcheck.check, url(server, "/readyz"))
        assert ok is True
        assert reason.startswith("200 OK: ready (")
        assert "role=primary" in reason
        assert "running_jobs=2" in reason
        assert "\n" not in reason

        probe.ready = False
        probe.detail.update(role="standby", connected=False)
        ok, reason = await loop.run_in_executor(None, healthcheck.check, url(server, "/readyz"))
        assert ok is False
        assert reason.startswith("503 Service Unavailable: not ready (")
        assert "role=standby" in reason
        assert "connected=false" in reason

        # Still live while not ready.
        ok, reason = await loop.run_in_executor(None, healthcheck.check, url(server, "/livez"))
        assert (ok, reason) == (True, "200 OK: ok")
        probe.live = False
        ok, reason = await loop.run_in_executor(None, healthcheck.check, url(server, "/livez"))
        assert (ok, reason) == (False, "503 Service Unavailable: not live")

        ok, reason = await loop.run_in_executor(None, healthcheck.check, url(server, "/nope"))
        assert ok is False
        assert reason.startswith("404 Not Found")

    serve(scenario)


def test_check_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nobody listens on `port` now.
    ok, reason = healthcheck.check(f"http://127.0.0.1:{port}/readyz", timeout=2)
    assert ok is False
    assert reason.startswith(f"cannot reach http://127.0.0.1:{port}/readyz")
    assert "refused" in reason.lower()


def test_check_timeout() -> None:
    async def main() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await asyncio.sleep(5)
            finally:
                writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            loop = asyncio.get_running_loop()
            started = time.monotonic()
            ok, reason = await loop.run_in_executor(
                None, healthcheck.check, f"http://127.0.0.1:{port}/readyz", 0.3
            )
            assert ok is False
            assert "no answer" in reason
            assert "0.3 s" in reason
            assert time.monotonic() - started < 3
        finally:
            server.close()

    asyncio.run(main())


@pytest.mark.parametrize("bad", ["file:///etc/passwd", "ftp://127.0.0.1/x", "127.0.0.1:9187"])
def test_check_rejects_other_schemes(bad: str) -> None:
    ok, reason = healthcheck.check(bad)
    assert ok is False
    assert "unsupported URL" in reason


def test_check_ignores_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)

    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        loop = asyncio.get_running_loop()
        ok, _reason = await loop.run_in_executor(None, healthcheck.check, url(server, "/livez"))
        assert ok is True

    serve(scenario)


# -- parse_listen() and default_url() -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9187", ("127.0.0.1", 9187)),
        ("0.0.0.0:9187", ("0.0.0.0", 9187)),
        ("localhost:80", ("localhost", 80)),
        ("agent-1.example.org:9000", ("agent-1.example.org", 9000)),
        (":9187", ("127.0.0.1", 9187)),
        ("9187", ("127.0.0.1", 9187)),
        ("[::1]:9187", ("::1", 9187)),
        ("[::]:9187", ("::", 9187)),
        (" 127.0.0.1:0 ", ("127.0.0.1", 0)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("localhost", "missing :PORT"),
        ("localhost:", "port must be a number"),
        ("localhost:http", "port must be a number"),
        ("localhost:65536", "port must be a number"),
        ("localhost:-1", "port must be a number"),
        ("localhost:²", "port must be a number"),
        ("::1:9187", "brackets"),
        ("[::1]9187", "[IPv6]:PORT"),
        ("[::1:9187", "[IPv6]:PORT"),
        ("[localhost]:9187", "not an IPv6 address"),
        ("bad host:9187", "bad host name"),
        ("http://x:9187", "not a URL"),
        ("a/b:9187", "bad host name"),
    ],
)
def test_parse_listen_errors(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"invalid listen address|empty") as info:
        parse_listen(value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "http://127.0.0.1:9187/readyz"),
        ({"PYAGENT_HTTP": ""}, "http://127.0.0.1:9187/readyz"),
        ({"PYAGENT_HTTP": "0.0.0.0:9000"}, "http://127.0.0.1:9000/readyz"),
        ({"PYAGENT_HTTP": ":9000"}, "http://127.0.0.1:9000/readyz"),
        ({"PYAGENT_HTTP": "[::]:9000"}, "http://[::1]:9000/readyz"),
        ({"PYAGENT_HTTP": "[::1]:9000"}, "http://[::1]:9000/readyz"),
        ({"PYAGENT_HTTP": "10.1.2.3:9187"}, "http://10.1.2.3:9187/readyz"),
        ({"PYAGENT_HEALTHCHECK_PATH": "/livez"}, "http://127.0.0.1:9187/livez"),
        ({"PYAGENT_HEALTHCHECK_PATH": "livez"}, "http://127.0.0.1:9187/livez"),
        ({"PYAGENT_HEALTHCHECK_PATH": "/readyz"}, "http://127.0.0.1:9187/readyz"),
    ],
)
def test_default_url(environ: dict[str, str], expected: str) -> None:
    assert healthcheck.default_url(environ) == expected


def test_default_url_live_flag_overrides_path_variable() -> None:
    environ = {"PYAGENT_HEALTHCHECK_PATH": "/readyz", "PYAGENT_HTTP": "127.0.0.1:1234"}
    assert healthcheck.default_url(environ, live=True) == "http://127.0.0.1:1234/livez"
    environ = {"PYAGENT_HEALTHCHECK_PATH": "/livez"}
    assert healthcheck.default_url(environ, live=False) == "http://127.0.0.1:9187/readyz"


def test_default_url_errors() -> None:
    with pytest.raises(ValueError, match="PYAGENT_HTTP"):
        healthcheck.default_url({"PYAGENT_HTTP": "nonsense"})
    with pytest.raises(ValueError, match="PYAGENT_HEALTHCHECK_PATH"):
        healthcheck.default_url({"PYAGENT_HEALTHCHECK_PATH": "/metrics"})


def test_default_url_reaches_the_server() -> None:
    async def scenario(server: HealthServer, probe: FakeProbe, metrics: Metrics) -> None:
        target = healthcheck.default_url({"PYAGENT_HTTP": f"0.0.0.0:{server.port}"})
        loop = asyncio.get_running_loop()
        ok, _reason = await loop.run_in_executor(None, healthcheck.check, target)
        assert ok is True

    serve(scenario)
