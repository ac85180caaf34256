"""The layout's rules, checked: only the store talks to the pgagent schema at run time and
only the store (and the step executors, which run user code) holds a connection or a pool,
the core never imports the CLI, and the daemon does not load the management commands'
libraries."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pyagent"
RUNTIME_DIRS = ("agent", "control", "steps", "ops")
# Neither the running agent outside the store and the step executors (a step's connections
# belong to the job, not to the pgagent schema) nor `pyagent jobs` (the store makes its
# connection) holds a connection or a pool. (The schema installer, the extras and the
# throwaway clusters of demo/devcluster connect by themselves: tools, not the agent.)
NO_CONNECTION_DIRS = ("agent", "control", "ops", "jobs")
SQL_ON_PGAGENT = re.compile(r"(?is)\b(select|insert|update|delete|from|into)\b.*\bpgagent\.")


def _python_files(*dirs: str) -> list[Path]:
    return [p for d in dirs for p in sorted((PACKAGE / d).rglob("*.py"))]


def _string_constants(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_only_the_store_sends_sql_to_the_pgagent_schema_at_run_time():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in _python_files(*RUNTIME_DIRS)
        if any(SQL_ON_PGAGENT.search(text) for text in _string_constants(path))
    ]
    assert offenders == []


def _connection_uses(path: Path) -> list[str]:
    """What in a module opens a connection or touches a pool."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            modules.append(getattr(node, "module", None) or "")
            if any(m.startswith("psycopg_pool") for m in modules):
                found.append("imports psycopg_pool")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = ast.unparse(node.func)
            opens = node.func.attr == "connect" and ("psycopg" in target or "Connection" in target)
            if opens or node.func.attr == "connection":
                found.append(f"calls {target}()")
        elif isinstance(node, ast.Attribute) and node.attr in ("bookkeeping", "service"):
            found.append(f"reaches into the store: {ast.unparse(node)}")
    return found


def test_only_the_store_and_the_step_executors_hold_connections():
    offenders = {
        str(path.relative_to(PACKAGE)): uses
        for path in _python_files(*NO_CONNECTION_DIRS)
        if (uses := _connection_uses(path))
    }
    assert offenders == {}


def test_the_connection_rule_sees_what_it_forbids(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import psycopg\n"
        "from psycopg_pool import AsyncConnectionPool\n"
        "async def f(store):\n"
        "    psycopg.connect('')\n"
        "    await psycopg.AsyncConnection.connect('')\n"
        "    async with store.bookkeeping._pool.connection() as conn:\n"
        "        pass\n"
    )
    assert _connection_uses(module) == [
        "imports psycopg_pool",
        "calls psycopg.connect()",
        "calls psycopg.AsyncConnection.connect()",
        "calls store.bookkeeping._pool.connection()",
        "reaches into the store: store.bookkeeping",
    ]


def test_the_core_never_imports_the_cli():
    offenders = []
    for path in _python_files("agent", "steps", "ops", "store"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pyagent.cli"):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def _last_line_printed(code: str) -> str:
    """The last line a fresh interpreter prints running `code` (logs may come before it)."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
    ).stdout
    return out.strip().splitlines()[-1]


def test_the_daemon_does_not_load_management_libraries():
    code = (
        "import sys, pyagent.cli, pyagent.agent;"
        "print(sorted(m for m in ('yaml', 'croniter', 'prometheus_client', 'pyagent.jobs',"
        "'pyagent.store.catalog', 'pyagent.schema.checker') if m in sys.modules))"
    )
    out = _last_line_printed(code)
    assert out == "[]"


def test_a_retry_without_metrics_does_not_load_prometheus_client():
    # A retry's report used to import the job-control metrics (and prometheus_client, about
    # 2 MB) whether or not --http was on.
    code = (
        "import sys;"
        "from pyagent.control import retry;"
        "from pyagent.control.options import RetryDecision;"
        "from pyagent.store.jobcontrol import FailedRunRelease;"
        "from pyagent.store.records import RunStatus;"
        "released = FailedRunRelease(RunStatus.FAILED, 1, False, 5.0, True, None);"
        "retry._report(None, 1, 1, released, RetryDecision(1, 3, 5.0));"
        "retry._report(None, 1, 2, released, RetryDecision(4, 3, None));"
        "print('prometheus_client' in sys.modules)"
    )
    out = _last_line_printed(code)
    assert out == "False"


def test_the_schema_package_names_are_its_functions_after_any_import_order():
    # The package loads its parts on first use; a submodule named like one of its
    # functions would replace the function once imported.
    code = (
        "import pyagent.schema.checker, pyagent.schema.installer, pyagent.schema.report;"
        "from pyagent import schema;"
        "print(all(callable(getattr(schema, n)) for n in"
        " ('check', 'check_on', 'install', 'install_on', 'required_agent_privileges')))"
    )
    out = _last_line_printed(code)
    assert out == "True"
