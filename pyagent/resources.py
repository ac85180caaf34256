"""Access to the schema's SQL files shipped with pyagent (install scripts and extras)."""

from __future__ import annotations

from importlib import resources

# Files of the schema, in install order. pga_next_schedule.sql holds the next-run function.
SCHEMA_FILES = ("pgagent.sql", "pga_next_schedule.sql")
# Optional extras (not part of pgAgent's schema): NOTIFY on "Run now" so agents wake up at
# once, and a trigger that computes the next run of a job with @TIMEZONE in its own zone.
NOTIFY_FILE = "pyagent_notify.sql"
TIMEZONE_FILE = "pyagent_timezone.sql"
EXTRAS_FILES = (NOTIFY_FILE, TIMEZONE_FILE)
# Optional extra: who last changed each job and step, and a change log (docs/security.md).
AUTHORSHIP_FILE = "pyagent_authorship.sql"


def read_sql_file(name: str) -> str:
    """Return the text of one file of the `sql/` directory."""
    return resources.files("pyagent.sql").joinpath(name).read_text(encoding="utf-8")


def schema_body() -> str:
    """The schema's objects (everything but CREATE SCHEMA), in install order."""
    return "\n".join(read_sql_file(name) for name in SCHEMA_FILES)


def install_script(*, with_notify: bool = False) -> str:
    """A complete, self-contained script that creates the schema in one transaction."""
    parts = ["BEGIN;", "CREATE SCHEMA pgagent;", schema_body()]
    if with_notify:
        parts.extend(read_sql_file(name) for name in (*EXTRAS_FILES, AUTHORSHIP_FILE))
    parts.append("COMMIT;")
    return "\n".join(parts) + "\n"
