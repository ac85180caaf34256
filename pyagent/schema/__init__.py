"""The pgagent schema shipped in sql/: install it (`install`), inspect an existing one
(`check`: ours or the extension's), what it must hold (`expected`) and what the agent's
role needs (`privileges`).

The names below are loaded on first use, so the agent, which needs only `privileges`, does
not load the checker."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyagent.schema.check import check, check_on
    from pyagent.schema.expected import (
        AGENT_FUNCTIONS,
        AGENT_TABLE_PRIVILEGES,
        JOB_CLASSES,
        function_signature,
        required_agent_privileges,
    )
    from pyagent.schema.install import (
        REQUIRED_SCHEMA_VERSION,
        SCHEMA_NAME,
        InstallResult,
        SchemaExists,
        install,
        install_on,
    )
    from pyagent.schema.report import PROBLEM_CODES, CheckReport, Problem

_HOMES = {
    "check": "check",
    "check_on": "check",
    "AGENT_FUNCTIONS": "expected",
    "AGENT_TABLE_PRIVILEGES": "expected",
    "JOB_CLASSES": "expected",
    "function_signature": "expected",
    "required_agent_privileges": "expected",
    "REQUIRED_SCHEMA_VERSION": "install",
    "SCHEMA_NAME": "install",
    "InstallResult": "install",
    "SchemaExists": "install",
    "install": "install",
    "install_on": "install",
    "PROBLEM_CODES": "report",
    "CheckReport": "report",
    "Problem": "report",
}

__all__ = [
    "AGENT_FUNCTIONS",
    "AGENT_TABLE_PRIVILEGES",
    "JOB_CLASSES",
    "PROBLEM_CODES",
    "REQUIRED_SCHEMA_VERSION",
    "SCHEMA_NAME",
    "CheckReport",
    "InstallResult",
    "Problem",
    "SchemaExists",
    "check",
    "check_on",
    "function_signature",
    "install",
    "install_on",
    "required_agent_privileges",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pyagent.schema' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pyagent.schema.{home}"), name)
