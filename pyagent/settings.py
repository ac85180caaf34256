"""The agent's configuration: one frozen, typed object built by the CLI."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Final, Literal

from pyagent.conninfo import mask_conninfo
from pyagent.liveness import LeaseTerms, lease_terms

LogFormat = Literal["text", "json"]
BatchEnv = Literal["inherit", "clean"]
# Whose rights a step runs with: the agent's (pgAgent's way) or its author's
# (docs/security.md).
StepRights = Literal["agent", "author"]

# pgAgent's -l value for ERROR, the default (1 = WARNING, 2 = DEBUG: pyagent.logsetup).
LOG_ERROR = 0


def default_station() -> str:
    """The host name pgAgent would use (gethostname), matched against jobhostagent."""
    return socket.gethostname()


# A job with @RETRIES and no @RETRY_DELAY waits this long before its first retry.
DEFAULT_RETRY_DELAY = 60.0


@dataclass(frozen=True)
class ControlSettings:
    """The agent-wide job-control configuration (built by the CLI)."""

    retries: int = 0
    retry_delay: float = DEFAULT_RETRY_DELAY
    # The webhook URL is a secret: never logged in full (see `safe_url`).
    alert_webhook: str | None = None
    alert_command: str | None = None
    # Seconds one alert delivery attempt may take (webhook request, or the command).
    alert_timeout: float = 10.0

    @property
    def alerts_enabled(self) -> bool:
        return bool(self.alert_webhook or self.alert_command)



@dataclass(frozen=True)
class Settings:
    """Everything the agent needs to run; built once, never mutated."""

    conninfo: str
    # --step-conninfo: the connection options of SQL steps that name a database
    # (jstdbname), whose dbname replaces this one's; None = the agent's own conninfo.
    step_conninfo: str | None = None
    poll_interval: float = 5.0
    retry_interval: float = 30.0
    log_level: int = LOG_ERROR
    log_file: str | None = None
    log_format: LogFormat = "text"
    station: str = field(default_factory=default_station)
    max_jobs: int = 16
    max_connections_per_target: int = 8
    # Connections of the bookkeeping pool (runs' log rows and releases, job control).
    bookkeeping_pool_size: int = 4
    connect_timeout: float = 10.0
    grace_period: float = 25.0
    listen: bool = True
    allow_batch: bool = True
    batch_env: BatchEnv = "inherit"
    step_rights: StepRights = "agent"
    # Under step_rights "author": roles whose members' steps run with the agent's rights.
    trusted_roles: tuple[str, ...] = ()
    max_output_bytes: int = 1024 * 1024
    application_name: str = "pyagent"
    # Default timeouts (seconds) when a job or step has no @JOB_TIMEOUT / @JOB_STEP_TIMEOUT.
    job_timeout: float | None = None
    # Delete pga_joblog rows (and their step logs) older than this many days; None = keep.
    log_retention_days: float | None = None
    # --http HOST:PORT for /livez, /readyz and /metrics; None = off.
    http_listen: tuple[str, int] | None = None
    retention_batch: int = 1000
    retention_interval: float = 600.0
    step_timeout: float | None = None
    # Retries, alerts (pyagent.control): --retries, --retry-delay, --alert-*.
    control: ControlSettings = field(default_factory=ControlSettings)
    # --lease: seconds without a renewal after which other agents may clear this one
    # (None: pyagent.liveness.default_lease, three poll intervals and at least 15 s).
    lease: float | None = None

    @property
    def lease_terms(self) -> LeaseTerms:
        """How this agent renews its lease, and when others may judge it dead."""
        return lease_terms(self.poll_interval, self.lease)

    @property
    def step_base_conninfo(self) -> str:
        """What SQL steps that name a database connect with (their dbname replaced)."""
        return self.step_conninfo or self.conninfo

    @property
    def safe_conninfo(self) -> str:
        """The connection string with any password masked, for logs and titles."""
        return mask_conninfo(self.conninfo)


# Settings' defaults by field name (DEFAULTS.poll_interval), for the CLI's options and the
# management commands: every default is written once, in Settings.
DEFAULTS: Final = Settings(conninfo="")
