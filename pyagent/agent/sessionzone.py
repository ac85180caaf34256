"""The agent session's TimeZone: where it comes from, and the one start-up line when it is
not what every other session of the database gets.

pgAgent reads a job's schedules in the TimeZone of whichever session computes its next
run: the agent's after each run, the editor's (pgAdmin, `jobs apply`) after a change. A
zone set for the agent alone (PGTZ, connect-string options, a role setting) makes a job
without `@TIMEZONE` move between the two.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pyagent import conninfo as ci
from pyagent.store.records import SessionZoneFacts

# pg_settings.source values that every session of the database shares: the server's
# configuration, ALTER SYSTEM, ALTER DATABASE ... SET, ALTER ROLE ALL SET.
SHARED_SOURCES = frozenset(
    {
        "default",
        "dynamic default",
        "environment variable",
        "configuration file",
        "command line",
        "global",
        "database",
        "override",
    }
)
_TIMEZONE_OPTION = re.compile(r"(?i)(?:-c\s*|--)timezone\s*=")


def zone_origin(facts: SessionZoneFacts, environ: Mapping[str, str], conninfo: str) -> str:
    """Where this session's TimeZone comes from, in words."""
    if facts.source == "client":
        pgtz = environ.get("PGTZ", "")
        # libpq sends PGTZ unless it is "default"; it wins over -c in the options.
        if pgtz and pgtz.lower() != "default":
            return f"PGTZ={pgtz} in the agent's environment"
        try:
            options = ci.parse(conninfo).get("options", "")
        except ci.ConninfoError:
            options = ""
        if _TIMEZONE_OPTION.search(options):
            return "options=-c TimeZone=... in the agent's connection string"
        if _TIMEZONE_OPTION.search(environ.get("PGOPTIONS", "")):
            return "PGOPTIONS in the agent's environment"
        return "the agent's connection options"
    if facts.source == "user":
        return f"a setting of role {facts.role} (ALTER ROLE {facts.role} SET TimeZone)"
    if facts.source == "database user":
        return (
            f"a setting of role {facts.role} in database {facts.database} "
            f"(ALTER ROLE {facts.role} IN DATABASE {facts.database} SET TimeZone)"
        )
    return f"a {facts.source} setting"


def session_zone_line(
    facts: SessionZoneFacts, environ: Mapping[str, str], conninfo: str
) -> str | None:
    """One line saying that the agent's session TimeZone is its own, where it comes from
    and what it means for jobs without a zone; None when it is the database's default."""
    if facts.source in SHARED_SOURCES:
        return None
    default = facts.database_default
    if default is not None and default == facts.timezone:
        return None
    others = (
        f"while the database's default is {default}"
        if default is not None
        else "which overrides the database's default (the server's TimeZone)"
    )
    return (
        f"This agent's session TimeZone is {facts.timezone}, set by "
        f"{zone_origin(facts, environ, conninfo)}, {others}: a job without "
        f"@TIMEZONE gets its next run in {facts.timezone} after each run here, but in its "
        "editor's zone after an edit; give such jobs @TIMEZONE=<zone>; or set the zone for "
        "the whole database (docs/jobs.md, Time zones)"
    )
