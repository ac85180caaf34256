"""The pgagent schema shipped in sql/: install it (`installer`), inspect an existing one
(`checker`: ours or the extension's), what it must hold (`expected`) and what the agent's
role needs (`privileges`).

The names below are loaded on first use, so the agent, which needs only `privileges`, does
not load the checker."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyagent.schema.checker import check, check_on
    from pyagent.schema.expected import (
        AGENT_FUNCTIONS,
        AGENT_TABLE_PRIVILEGES,
        JOB_CLASSES,
        function_signature,
        required_agent_privileges,
    )
    from pyagent.schema.installer import (
        REQUIRED_SCHEMA_VERSION,
        SCHEMA_NAME,
        InstallResult,
        SchemaExists,
        install,
        install_on,
    )
    from pyagent.schema.report import PROBLEM_CODES, CheckReport, Problem

_HOMES = {
    "check": "checker",
    "check_on": "checker",
    "AGENT_FUNCTIONS": "expected",
    "AGENT_TABLE_PRIVILEGES": "expected",
    "JOB_CLASSES": "expected",
    "function_signature": "expected",
    "required_agent_privileges": "expected",
    "REQUIRED_SCHEMA_VERSION": "installer",
    "SCHEMA_NAME": "installer",
    "InstallResult": "installer",
    "SchemaExists": "installer",
    "install": "installer",
    "install_on": "installer",
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
    value = getattr(importlib.import_module(f"pyagent.schema.{home}"), name)
    globals()[name] = value  # found directly from now on
    return value
