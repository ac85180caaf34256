"""Access to the SQL files shipped with pyagent (schema scripts and named queries)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

# Files of the schema, in install order. pga_next_schedule.sql holds the next-run function.
SCHEMA_FILES = ("pgagent.sql", "pga_next_schedule.sql")
# Optional extra: NOTIFY on "Run now" so agents wake up at once (not part of pgAgent's schema).
NOTIFY_FILE = "pyagent_notify.sql"

_BLOCK_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


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
        parts.append(read_sql_file(NOTIFY_FILE))
    parts.append("COMMIT;")
    return "\n".join(parts) + "\n"


@cache
def queries() -> dict[str, str]:
    """Named statements of pyagent/queries.sql, keyed by block name."""
    text = resources.files("pyagent").joinpath("queries.sql").read_text(encoding="utf-8")
    found: dict[str, str] = {}
    matches = list(_BLOCK_HEADER.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        if match.group(1) in found:
            raise ValueError(f"duplicate query block {match.group(1)!r}")
        found[match.group(1)] = body
    return found


def query(name: str) -> str:
    """One named statement of pyagent/queries.sql."""
    return queries()[name]
