"""Client side of the health endpoint, for `pyagent healthcheck` (Docker HEALTHCHECK and the
like, where slim images have no curl). Standard library only; proxies are never used.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from http import HTTPStatus
from urllib.parse import urlsplit

from pyagent.ops.health import DEFAULT_PORT, parse_listen

DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
PATHS = ("/livez", "/readyz")
_MAX_BODY = 64 * 1024
_MAX_REASON = 300


def default_url(environ: Mapping[str, str] = os.environ, *, live: bool | None = None) -> str:
    """The local health URL: `$PYAGENT_HTTP` (HOST:PORT, default 127.0.0.1:9187) + path.

    A wildcard listen host (0.0.0.0, ::, or empty) is reached through the loopback address.
    The path is /livez when `live` is True, /readyz when False; when None it is
    `$PYAGENT_HEALTHCHECK_PATH` (/livez or /readyz), default /readyz.
    Raises ValueError for an invalid `$PYAGENT_HTTP` or `$PYAGENT_HEALTHCHECK_PATH`.
    """
    listen = environ.get("PYAGENT_HTTP", "").strip() or DEFAULT_LISTEN
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise ValueError(f"PYAGENT_HTTP: {exc}") from None
    if host in ("", "0.0.0.0"):  # noqa: S104 (a wildcard is reached through loopback)
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    if live is None:
        path = environ.get("PYAGENT_HEALTHCHECK_PATH", "").strip() or "/readyz"
        if not path.startswith("/"):
            path = "/" + path
        if path not in PATHS:
            raise ValueError(f"PYAGENT_HEALTHCHECK_PATH: {path!r} is not one of {', '.join(PATHS)}")
    else:
        path = "/livez" if live else "/readyz"
    return f"http://{host}:{port}{path}"


def check(url: str, timeout: float = 5.0) -> tuple[bool, str]:
    """GET `url`; returns (True, reason) for a 2xx answer, else (False, reason).

    The reason is one line: the HTTP status and a summary of the body (for /readyz's JSON:
    `ready`/`not ready` and the detail fields), or why there was no answer. Never raises.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        return False, f"unsupported URL {url!r}: expected http://HOST:PORT/readyz"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    headers = {"User-Agent": "pyagent-healthcheck", "Accept": "*/*"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (scheme checked above)
    try:
        try:
            with opener.open(request, timeout=timeout) as response:
                status = int(response.status)
                body = response.read(_MAX_BODY)
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                body = exc.read(_MAX_BODY)
            finally:
                exc.close()
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            return False, f"no answer from {url} within {timeout:g} s"
        return False, _one_line(f"cannot reach {url}: {exc.reason}")
    except TimeoutError:
        return False, f"no answer from {url} within {timeout:g} s"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return False, _one_line(f"request to {url} failed: {exc!r}")
    return 200 <= status < 300, _one_line(f"{_status_text(status)}: {_summary(body)}")


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _summary(body: bytes) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        document = json.loads(text)
    except ValueError:
        return text or "(empty body)"
    if not isinstance(document, dict):
        return text
    fields = ", ".join(
        f"{key}={_scalar(value)}"
        for key, value in document.items()
        if key not in ("live", "ready") and _is_scalar(value)
    )
    if "ready" in document:
        head = "ready" if document["ready"] is True else "not ready"
        return f"{head} ({fields})" if fields else head
    return fields or text


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _scalar(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."
