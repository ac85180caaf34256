"""structlog set-up: pgAgent-shaped text lines (default) or JSON events.

Text lines look like pgAgent's: `Wed Nov 25 22:22:42 2026 DEBUG: Checking for jobs to run`.
Levels follow pgAgent's -l: 0 = errors, 1 = + warnings, 2 = + debug. Messages logged with
`always=True` are pgAgent's STARTUP class: shown at every level, labelled WARNING.

Log lines carry job text (names, step names, output, server messages quoting it): a text
line shows it through pyagent.safetext (controls and bidirectional overrides escaped, a
line break inside a message written as \\n, so one event stays one line); a JSON event
keeps the exact text, with the characters a terminal acts on written as \\u escapes.
"""

from __future__ import annotations

import json
import logging as stdlib_logging
import sys
import threading
from collections.abc import Iterable, MutableMapping
from datetime import datetime
from typing import Any, TextIO

import structlog

from pyagent.conninfo import mask_text
from pyagent.safetext import safe_json, safe_text

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_TEXT_LABEL = {"debug": "DEBUG", "info": "WARNING", "warning": "WARNING", "error": "ERROR"}


def _threshold(pgagent_level: int) -> int:
    return {0: 40, 1: 30}.get(pgagent_level, 10)


class LineSink:
    """Writes one line per event to stdout or to a file opened for each line, like
    pgAgent, so external log rotation needs no signal."""

    def __init__(self, path: str | None, stream: TextIO | None = None) -> None:
        self._path = path
        self._stream = stream
        self._lock = threading.Lock()
        self._failing = False

    def write(self, line: str) -> None:
        with self._lock:
            if self._path is None:
                out = self._stream or sys.stdout
                out.write(line + "\n")
                out.flush()
                return
            try:
                with open(self._path, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
                self._failing = False
            except OSError as exc:
                # Never lose an error silently: say so on stderr, once per failure streak.
                if not self._failing:
                    sys.stderr.write(f"Can not open the logfile '{self._path}': {exc}\n")
                    sys.stderr.write(line + "\n")
                    sys.stderr.flush()
                self._failing = True

    # structlog calls the method named after the level with the rendered string.
    def msg(self, message: str) -> None:
        self.write(message)

    debug = info = warning = error = critical = exception = log = msg


class _Secrets:
    values: tuple[str, ...] = ()


def register_secrets(values: Iterable[str]) -> None:
    """Values (passwords) that must never appear in a log line."""
    _Secrets.values = tuple(sorted({v for v in values if v}, key=len, reverse=True))


def scrub(text: str) -> str:
    """Remove registered secrets and password=... fragments from a text."""
    for secret in _Secrets.values:
        text = text.replace(secret, "*****")
    return mask_text(text)


def _scrub_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if isinstance(value, str):
            event_dict[key] = scrub(value)
    return event_dict


def _make_level_filter(threshold: int) -> Any:
    def level_filter(
        _logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        always = event_dict.pop("always", False)
        if not always and _LEVELS.get(method_name, 20) < threshold:
            raise structlog.DropEvent
        event_dict["level"] = "startup" if always and method_name != "error" else method_name
        return event_dict

    return level_filter


def _render_text(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> str:
    now = datetime.now()
    stamp = f"{now:%a %b} {now.day} {now:%H:%M:%S %Y}"
    level = event_dict.get("level", "info")
    label = "WARNING" if level == "startup" else _TEXT_LABEL.get(level, "WARNING")
    # One event, one physical line, nothing a terminal acts on; the JSON form keeps the
    # exact text.
    event = safe_text(str(event_dict.get("event", "")).strip())
    return f"{stamp} {label}: {event}"


def _render_json(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> str:
    event_dict["ts"] = datetime.now().astimezone().isoformat(timespec="milliseconds")
    return safe_json(json.dumps(dict(event_dict), default=str, ensure_ascii=False))


def configure(
    pgagent_level: int, log_file: str | None, log_format: str = "text", stream: TextIO | None = None
) -> None:
    """Configure structlog for the whole process."""
    sink = LineSink(log_file, stream)
    renderer = _render_json if log_format == "json" else _render_text
    structlog.configure(
        processors=[
            _make_level_filter(_threshold(pgagent_level)),
            _scrub_processor,
            renderer,
        ],
        logger_factory=lambda *_args: sink,
        wrapper_class=structlog.BoundLogger,
        cache_logger_on_first_use=False,
    )
    _route_library_logs()


class _LibraryLogHandler(stdlib_logging.Handler):
    """Sends psycopg's and psycopg_pool's own log records through pyagent's logging, as
    one line each, so they honour -s, -l and --log-format. They are shown at DEBUG only
   : each describes an event the agent reports itself in one line (a failed
    connection, an outage), so at -l 1 they were duplicates."""

    def emit(self, record: stdlib_logging.LogRecord) -> None:
        try:
            text = " ".join(record.getMessage().split())
            get_logger().debug(
                f"{record.name}: {text}",
                library=record.name,
                library_level=record.levelname.lower(),
            )
        except Exception:
            self.handleError(record)


def _route_library_logs() -> None:
    handler = _LibraryLogHandler()
    for name in ("psycopg", "psycopg.pool"):
        library_logger = stdlib_logging.getLogger(name)
        library_logger.handlers = [handler]
        library_logger.propagate = False
        library_logger.setLevel(stdlib_logging.WARNING)


def get_logger(**initial: Any) -> Any:
    """A structlog logger; use .debug/.warning/.error, and always=True for STARTUP lines."""
    return structlog.get_logger(**initial)
