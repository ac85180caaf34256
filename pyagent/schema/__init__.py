"""The pgagent schema shipped in sql/: install it (`install`), inspect an existing one
(`check`: ours or the extension's), what it must hold (`expected`) and what the agent's
role needs (`privileges`)."""

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
