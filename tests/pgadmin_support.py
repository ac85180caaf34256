"""Render and run pgAdmin 4's own pgAgent SQL templates without pgAdmin.

The templates are not part of this repository: they are read at test time from the
`pgadmin4` wheel on PyPI (version PGADMIN_VERSION), of which only the pgAgent module's
templates, its __init__.py, its regression-test expectations and the SQL keyword table
are extracted into a cache directory (see `locate_pgadmin`).

What pgAdmin does around the templates, and this module does the same way (written from
the description in /work/shared/pgadmin-contract.md §4, not copied from pgAdmin):

- Jinja2 environment over the module's templates directory with trim_blocks=True and no
  autoescaping; filters `qtLiteral` (psycopg's own literal quoting) and `qtIdent`
  (identifier quoting with PostgreSQL's keyword table), `_` is the identity.
- The connection is autocommit with DateStyle=ISO, and loads date, time, timestamp,
  timestamptz and interval values as text, the way pgAdmin's driver does.
- Each rendered string is sent without parameters (simple query protocol), and the last
  result set is what counts.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader

PGADMIN_VERSION = "9.18"
PGA = PurePosixPath("pgadmin/browser/server_groups/servers/pgagent")
KEYWORDS = PurePosixPath("pgadmin/utils/driver/psycopg3/keywords.py")

# What is extracted from the wheel (paths relative to the package root).
WANTED_PREFIXES = (f"{PGA}/templates/", f"{PGA}/tests/default/")
WANTED_FILES = (f"{PGA}/__init__.py", str(KEYWORDS))

# Files whose presence marks a complete extraction.
MARKERS = (
    PGA / "__init__.py",
    PGA / "templates/pga_job/sql/pre3.4/create.sql",
    PGA / "templates/macros/pga_schedule.macros",
    PGA / "tests/default/test_pgagent.json",
    KEYWORDS,
)


class PgAdminUnavailable(RuntimeError):
    """pgAdmin's templates could not be found or downloaded."""


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "pyagent" / f"pgadmin4-{PGADMIN_VERSION}"


def is_complete(root: Path) -> bool:
    return all((root / marker).is_file() for marker in MARKERS)


def _wanted(relative: str) -> bool:
    return relative in WANTED_FILES or relative.startswith(WANTED_PREFIXES)


def extract_wheel(wheel: Path, dest: Path) -> None:
    """Extract only the wanted files of the pgadmin4 wheel into dest (atomically)."""
    staging = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            anchor = f"{PGA}/__init__.py"
            prefix = next((n[: -len(anchor)] for n in names if n.endswith(anchor)), None)
            if prefix is None:
                raise PgAdminUnavailable(f"{wheel.name} holds no {anchor}")
            for name in names:
                if not name.startswith(prefix) or name.endswith("/"):
                    continue
                relative = name[len(prefix) :]
                if not _wanted(relative):
                    continue
                target = (staging / relative).resolve()
                if not target.is_relative_to(staging.resolve()):
                    raise PgAdminUnavailable(f"refusing to extract {name!r} outside {staging}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(name))
        if not is_complete(staging):
            raise PgAdminUnavailable(f"{wheel.name} lacks some of the pgAgent templates")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(dest)
        except OSError:
            # Someone else finished first; theirs is as good as ours.
            if not is_complete(dest):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def locate_pgadmin(download_dir: Path) -> Path:
    """Root of an extracted pgadmin4 package tree holding the pgAgent templates.

    Looks in $PYAGENT_PGADMIN_DIR, then in ~/.cache/pyagent/pgadmin4-<version>/; when
    neither has them, downloads the wheel with pip (into download_dir) and extracts the
    needed files into the cache directory. Raises PgAdminUnavailable if that fails.
    """
    explicit = os.environ.get("PYAGENT_PGADMIN_DIR")
    if explicit and is_complete(Path(explicit)):
        return Path(explicit)
    cache = default_cache_dir()
    if is_complete(cache):
        return cache
    download_dir.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                f"pgadmin4=={PGADMIN_VERSION}",
                "--no-deps",
                "--disable-pip-version-check",
                "-d",
                str(download_dir),
            ],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PgAdminUnavailable(f"pip download pgadmin4=={PGADMIN_VERSION} failed: {exc}") from exc
    wheels = sorted(download_dir.glob(f"pgadmin4-{PGADMIN_VERSION}-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise PgAdminUnavailable(
            f"pip download pgadmin4=={PGADMIN_VERSION} failed (rc={proc.returncode}): "
            + " | ".join(tail)
        )
    try:
        extract_wheel(wheels[0], cache)
    finally:
        for wheel in wheels:  # 126 MB that is not needed any more
            wheel.unlink(missing_ok=True)
    return cache


# --- rendering -------------------------------------------------------------------------


def qt_literal(value: Any, conn: psycopg.Connection[Any]) -> str:
    """pgAdmin's qtLiteral: psycopg's own SQL literal for the value."""
    return sql.Literal(value).as_string(conn).strip()


_PLAIN_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass
class PgAdmin:
    """pgAdmin's pgAgent module, as far as SQL is concerned."""

    root: Path

    def __post_init__(self) -> None:
        self.module_dir = self.root / PGA
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.module_dir / "templates")),
            trim_blocks=True,
            autoescape=False,
            undefined=jinja2.Undefined,
        )
        self.env.filters["qtLiteral"] = qt_literal
        self.env.filters["qtIdent"] = self.qt_ident
        self._scan_keyword = _load_keyword_lookup(self.root / KEYWORDS)

    # Identifiers: quoted unless all lower-case letters/digits/underscores (not starting
    # with a digit) and not a keyword other than an unreserved one.
    def qt_ident(self, conn: object, *names: object) -> str:
        parts = []
        for name in names:
            text = str(name)
            if not text:
                continue
            category = self._scan_keyword(text)
            if not _PLAIN_IDENTIFIER.fullmatch(text) or category not in (None, 0):
                text = '"' + text.replace('"', '""') + '"'
            parts.append(text)
        return ".".join(parts)

    def render(self, template: str, conn: psycopg.Connection[Any], **context: Any) -> str:
        return self.env.get_template(template).render(conn=conn, _=lambda s: s, **context)

    # --- files of the module -----------------------------------------------------------

    def detection_queries(self) -> list[str]:
        """The SQL strings JobModule.backend_supported() runs, verbatim, in order."""
        tree = ast.parse((self.module_dir / "__init__.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "backend_supported":
                found = [
                    (call.lineno, call.args[0].value)
                    for call in ast.walk(node)
                    if isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr in ("execute_scalar", "execute_dict")
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                    and isinstance(call.args[0].value, str)
                ]
                return [query for _, query in sorted(found)]
        raise AssertionError("backend_supported() not found in pgAdmin's pgagent/__init__.py")

    def regression_scenarios(self) -> list[dict[str, Any]]:
        path = self.module_dir / "tests/default/test_pgagent.json"
        scenarios: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["scenarios"]
        return scenarios

    def expected_file(self, name: str) -> str:
        """An expected-output file of pgAdmin's tests."""
        return (self.module_dir / "tests/default" / name).read_text(encoding="utf-8")


def _load_keyword_lookup(path: Path) -> Callable[[str], int | None]:
    spec = importlib.util.spec_from_file_location("_pgadmin_keywords", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lookup: Callable[[str], int | None] = module.scan_keyword
    return lookup


# --- executing like pgAdmin's driver ---------------------------------------------------

# date, time, timestamp, timestamptz, interval: pgAdmin's driver loads them as text.
TEXT_TYPES = ("date", "time", "timestamp", "timestamptz", "interval")


def pgadmin_connect(dsn: str) -> psycopg.Connection[dict[str, Any]]:
    conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row)
    for name in TEXT_TYPES:
        conn.adapters.register_loader(name, TextLoader)
    conn.execute("SET DateStyle = ISO")
    conn.execute("SET client_min_messages = notice")
    # Pinned so that timestamps read back as text are the same in every run.
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def execute(conn: psycopg.Connection[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Run a rendered string as pgAdmin does; rows of the last result (dicts)."""
    with conn.cursor() as cur:
        cur.execute(text.encode())  # no parameters: simple query protocol
        while cur.nextset():
            pass
        if cur.description is None:
            return []
        return list(cur.fetchall())


def execute_scalar(conn: psycopg.Connection[dict[str, Any]], text: str) -> Any:
    rows = execute(conn, text)
    if not rows:
        return None
    return next(iter(rows[0].values()))


def execute_void(conn: psycopg.Connection[dict[str, Any]], text: str) -> None:
    execute(conn, text)


# --- pgAdmin's Python-side shaping of request data -------------------------------------


def format_boolean_array(value: Any) -> Any:
    """Arrays sent as JSON text "[true,false]" become "{true,false}" (utils.py)."""
    if isinstance(value, list):
        return value
    return str(value).replace("[", "{").replace("]", "}")


def format_schedule_data(schedule: dict[str, Any]) -> dict[str, Any]:
    for key in ("jscminutes", "jschours", "jscweekdays", "jscmonthdays", "jscmonths"):
        if schedule.get(key) is not None:
            schedule[key] = format_boolean_array(schedule[key])
    return schedule


def msql_arguments(data: dict[str, Any]) -> dict[str, Any]:
    """What the msql views see: every URL argument went through json.loads."""
    shaped: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, str):
            try:
                shaped[key] = json.loads(value)
            except ValueError:
                shaped[key] = value
        else:
            shaped[key] = value
    return shaped


# --- pgAdmin's views, as far as the database sees them ---------------------------------

JOB = "pga_job/sql/pre3.4"
STEP = "pga_jobstep/sql/pre3.4"
SCHEDULE = "pga_schedule/sql/pre3.4"


@dataclass
class Session:
    """One pgAdmin server connection (the maintenance DB) and what pgAdmin sends on it.

    Each method follows the corresponding pgAdmin view: which templates are rendered
    with which arguments, the Python-side data shaping, BEGIN/END around the creates,
    and which result is used.
    """

    pg: PgAdmin
    conn: psycopg.Connection[dict[str, Any]]
    has_connstr: bool = True
    rows_threshold: int = 250

    def render(self, template: str, **context: Any) -> str:
        return self.pg.render(template, self.conn, **context)

    def run(self, template: str, **context: Any) -> list[dict[str, Any]]:
        return execute(self.conn, self.render(template, **context))

    # JobModule.backend_supported
    def detect(self) -> tuple[Any, Any]:
        presence, flavour = self.pg.detection_queries()
        shown = execute_scalar(self.conn, presence)
        has_connstr = None
        if shown:
            has_connstr = execute(self.conn, flavour)[0]["has_connstr"]
            self.has_connstr = bool(has_connstr)
        return shown, has_connstr

    # JobView
    def job_classes(self) -> list[dict[str, Any]]:
        return self.run(f"{JOB}/job_classes.sql")

    def job_nodes(self, jid: int | None = None) -> list[dict[str, Any]]:
        return self.run(f"{JOB}/nodes.sql", jid=jid)

    def job_create(self, data: dict[str, Any]) -> tuple[int | None, list[dict[str, Any]]]:
        """Returns the job id found by the xmin fetch, and all rows that fetch returned."""
        execute_void(self.conn, "BEGIN")
        try:
            fetched = self.run(
                f"{JOB}/create.sql", data=data, fetch_id=True, has_connstr=self.has_connstr
            )
            jid = next(iter(fetched[0].values())) if fetched else None
            self.job_nodes(jid)  # pgAdmin reads the new node inside the transaction
        finally:
            execute_void(self.conn, "END")
        return jid, fetched

    def job_properties(self, jid: int | None = None) -> Any:
        rows = self.run(f"{JOB}/properties.sql", jid=jid)
        if jid is None:
            return rows
        assert len(rows) == 1, rows
        job = rows[0]
        job["jsteps"] = self.run(f"{JOB}/steps.sql", jid=jid, has_connstr=self.has_connstr)
        schedules = self.run(f"{JOB}/schedules.sql", jid=jid)
        for schedule in schedules:
            if schedule.get("jexid"):
                schedule["jscexceptions"] = [
                    {"jexid": i, "jexdate": d, "jextime": t}
                    for i, d, t in zip(
                        schedule["jexid"], schedule["jexdate"], schedule["jextime"], strict=True
                    )
                ]
        job["jschedules"] = schedules
        return job

    def _format_schedule_step_data(self, data: dict[str, Any]) -> None:
        schedules = data.get("jschedules", {})
        if isinstance(schedules, dict):
            for schedule in schedules.get("added", []) + schedules.get("changed", []):
                format_schedule_data(schedule)
        steps = data.get("jsteps", {})
        if isinstance(steps, dict):
            for step in steps.get("changed", []):
                if (
                    self.has_connstr
                    and "jstconntype" not in step
                    and ("jstdbname" in step or "jstconnstr" in step)
                ):
                    row = self.run(
                        f"{JOB}/steps.sql",
                        jid=data["jobid"],
                        jstid=step["jstid"],
                        has_connstr=self.has_connstr,
                    )[0]
                    step["jstconntype"] = row["jstconntype"]
                    if row["jstconntype"]:
                        step["jstdbname"] = step.get("jstdbname", row["jstdbname"])
                    else:
                        step["jstconnstr"] = step.get("jstconnstr", row["jstconnstr"])

    def job_update(self, jid: int, data: dict[str, Any]) -> dict[str, Any]:
        self._format_schedule_step_data(data)
        execute_void(
            self.conn,
            self.render(f"{JOB}/update.sql", data=data, jid=jid, has_connstr=self.has_connstr),
        )
        return self.job_nodes(jid)[0]

    def job_delete(self, jid: int) -> None:
        self.run(f"{JOB}/delete.sql", jid=jid)

    def job_run_now(self, jid: int) -> None:
        self.run(f"{JOB}/run_now.sql", jid=jid)

    def job_statistics(self, jid: int) -> list[dict[str, Any]]:
        return self.run(f"{JOB}/stats.sql", jid=jid, rows_threshold=self.rows_threshold)

    def job_msql(self, data: dict[str, Any], jid: int | None = None) -> str:
        shaped = msql_arguments(data)
        self._format_schedule_step_data(shaped)
        return self.render(
            f"{JOB}/create.sql" if jid is None else f"{JOB}/update.sql",
            jid=jid,
            data=shaped,
            fetch_id=False,
            has_connstr=self.has_connstr,
        )

    def job_sql(self, jid: int) -> str:
        """The SQL pane of a job."""
        rows = self.run(f"{JOB}/properties.sql", jid=jid, last_system_oid=0)
        job = rows[0]
        job["jsteps"] = self.run(f"{JOB}/steps.sql", jid=jid, has_connstr=self.has_connstr)
        job["jschedules"] = self.run(f"{JOB}/schedules.sql", jid=jid)
        for schedule in job["jschedules"]:
            schedule["jscexceptions"] = [
                {"jexid": i, "jexdate": d, "jextime": t}
                for i, d, t in zip(
                    schedule["jexid"] or [],
                    schedule["jexdate"] or [],
                    schedule["jextime"] or [],
                    strict=True,
                )
            ]
            del schedule["jexid"], schedule["jexdate"], schedule["jextime"]
        return self.render(
            f"{JOB}/create.sql", jid=jid, data=job, fetch_id=False, has_connstr=self.has_connstr
        )

    # JobStepView
    def step_nodes(self, jid: int, jstid: int | None = None) -> list[dict[str, Any]]:
        return self.run(f"{STEP}/nodes.sql", jid=jid, jstid=jstid)

    def step_properties(self, jid: int, jstid: int | None = None) -> list[dict[str, Any]]:
        return self.run(
            f"{STEP}/properties.sql", jid=jid, jstid=jstid, has_connstr=self.has_connstr
        )

    def step_create(self, jid: int, data: dict[str, Any]) -> int:
        jstid = execute_scalar(
            self.conn,
            self.render(f"{STEP}/create.sql", jid=jid, data=data, has_connstr=self.has_connstr),
        )
        assert len(self.step_nodes(jid, jstid)) == 1
        return int(jstid)

    def step_update(self, jid: int, jstid: int, data: dict[str, Any]) -> dict[str, Any]:
        if (
            self.has_connstr
            and "jstconntype" not in data
            and ("jstdbname" in data or "jstconnstr" in data)
        ):
            row = self.step_properties(jid, jstid)[0]
            data["jstconntype"] = row["jstconntype"]
            if row["jstconntype"]:
                data["jstdbname"] = data.get("jstdbname", row["jstdbname"])
            else:
                data["jstconnstr"] = data.get("jstconnstr", row["jstconnstr"])
        execute_void(
            self.conn,
            self.render(
                f"{STEP}/update.sql",
                jid=jid,
                jstid=jstid,
                data=data,
                has_connstr=self.has_connstr,
            ),
        )
        return self.step_nodes(jid, jstid)[0]

    def step_delete(self, jid: int, jstid: int) -> None:
        self.run(f"{STEP}/delete.sql", jid=jid, jstid=jstid)

    def step_statistics(self, jid: int, jstid: int) -> list[dict[str, Any]]:
        return self.run(
            f"{STEP}/stats.sql", jid=jid, jstid=jstid, rows_threshold=self.rows_threshold
        )

    # JobScheduleView
    def schedule_nodes(self, jid: int, jscid: int | None = None) -> list[dict[str, Any]]:
        return self.run(f"{SCHEDULE}/nodes.sql", jid=jid, jscid=jscid)

    def schedule_properties(self, jid: int, jscid: int | None = None) -> list[dict[str, Any]]:
        return self.run(f"{SCHEDULE}/properties.sql", jid=jid, jscid=jscid)

    def schedule_create(
        self, jid: int, data: dict[str, Any]
    ) -> tuple[int | None, list[dict[str, Any]]]:
        format_schedule_data(data)
        text = self.render(f"{SCHEDULE}/create.sql", jid=jid, data=data, fetch_id=True)
        execute_void(self.conn, "BEGIN")
        try:
            fetched = execute(self.conn, text)
        finally:
            execute_void(self.conn, "END")
        jscid = next(iter(fetched[0].values())) if fetched else None
        return jscid, fetched

    def schedule_update(self, jid: int, jscid: int, data: dict[str, Any]) -> dict[str, Any]:
        format_schedule_data(data)
        execute_void(
            self.conn, self.render(f"{SCHEDULE}/update.sql", jid=jid, jscid=jscid, data=data)
        )
        return self.schedule_properties(jid, jscid)[0]

    def schedule_delete(self, jid: int, jscid: int) -> None:
        self.run(f"{SCHEDULE}/delete.sql", jid=jid, jscid=jscid)
