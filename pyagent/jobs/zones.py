"""Time zones of the jobs commands' output: the database session's (pgAgent reads schedules
in it; times are printed in it) and a job's own (`@TIMEZONE`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from pyagent.annotations import job_timezone
from pyagent.store.catalog import Catalog


@dataclass(frozen=True)
class Zone:
    """The database session's TimeZone: pgAgent reads schedules in it; we print in it."""

    name: str
    tz: tzinfo

    def fmt(self, value: datetime | None, *, seconds: bool = True) -> str:
        if value is None:
            return "-"
        local = value.astimezone(self.tz)
        text = local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
        return f"{text} {local.tzname() or local.strftime('%z')}"

    def iso(self, value: datetime | None) -> str | None:
        return value.astimezone(self.tz).isoformat() if value is not None else None


def own_zone(desc: str) -> Zone | None:
    """A job's own time zone (`@TIMEZONE=...;` in its comment), None when it has none or
    names an unknown zone (pgAgent's behaviour then: the session's zone)."""
    name = job_timezone(desc).name
    return Zone(name, ZoneInfo(name)) if name is not None else None


def session_zone(catalog: Catalog) -> Zone:
    info = catalog.session_info()
    tz = catalog.conn.info.timezone
    return Zone(info.timezone, tz)
