"""Command-line pieces of job control: the run command's options (`pyagent jobs cancel` is in
pyagent.jobs.cli).
Imported by `pyagent.cli` only (the core never imports click code)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from pyagent.annotations import MAX_RETRIES, AnnotationError, parse_retry_delay
from pyagent.envconfig import ALERT_WEBHOOK_VAR
from pyagent.settings import DEFAULT_RETRY_DELAY, ControlSettings

# Every default is written once, in ControlSettings.
_DEFAULTS = ControlSettings()

F = TypeVar("F", bound=Callable[..., Any])


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """A duration: 30 s, 500 ms, 2 m, 1 h, or a bare number of seconds."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            if value < 0:
                self.fail(f"{value!r}: must not be negative", param, ctx)
            return float(value)
        try:
            return parse_retry_delay(str(value))
        except AnnotationError as exc:
            self.fail(str(exc), param, ctx)


def control_options(command: F) -> F:
    """The run command's job-control options (retries, alerts)."""
    decorators = [
        click.option(
            "--retries",
            type=click.IntRange(0, MAX_RETRIES),
            default=_DEFAULTS.retries,
            show_default=True,
            envvar="PYAGENT_RETRIES",
            help="Default number of retries of a failed run; a job's @RETRIES=N; wins.",
        ),
        click.option(
            "--retry-delay",
            type=DurationType(),
            default=_DEFAULTS.retry_delay,
            show_default="1 m",
            envvar="PYAGENT_RETRY_DELAY",
            help="Default delay before the first retry (doubled for each further one, "
            "up to 1 h); a job's @RETRY_DELAY=...; wins.",
        ),
        click.option(
            "--alert-webhook",
            metavar="URL",
            help=f"POST a JSON alert (Slack-compatible) on failed/aborted runs. "
            f"Also {ALERT_WEBHOOK_VAR} or {ALERT_WEBHOOK_VAR}_FILE. user:password@ in the URL is "
            "sent as basic auth. Logged as scheme://host only.",
        ),
        click.option(
            "--alert-command",
            metavar="CMD",
            envvar="PYAGENT_ALERT_COMMAND",
            help="Run CMD (/bin/sh -c) with the JSON alert on stdin on failed/aborted runs.",
        ),
        click.option(
            "--alert-timeout",
            type=click.FloatRange(min=0.1),
            default=_DEFAULTS.alert_timeout,
            show_default=True,
            envvar="PYAGENT_ALERT_TIMEOUT",
            help="Seconds one alert delivery attempt may take.",
        ),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def control_settings(options: dict[str, Any]) -> ControlSettings:
    """ControlSettings from the run command's options (they are removed from `options`);
    the webhook URL also comes from PYAGENT_ALERT_WEBHOOK(_FILE). Raises UsageError."""
    from pyagent import envconfig

    webhook = options.pop("alert_webhook", None)
    if not webhook:
        try:
            webhook = envconfig.read_env(ALERT_WEBHOOK_VAR)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
    if webhook:
        from pyagent.control.alerts import parse_webhook

        webhook = webhook.strip()
        try:
            parse_webhook(webhook)
        except ValueError as exc:
            # Say what is wrong without echoing the secret.
            raise click.UsageError(f"--alert-webhook: {exc}") from None
    return ControlSettings(
        retries=int(options.pop("retries", 0)),
        retry_delay=float(options.pop("retry_delay", DEFAULT_RETRY_DELAY)),
        alert_webhook=webhook or None,
        alert_command=options.pop("alert_command", None) or None,
        alert_timeout=float(options.pop("alert_timeout", 10.0)),
    )


def secrets_of(settings: ControlSettings) -> list[str]:
    """Values that must never appear in a log line (the webhook URL, its path, query and
    credentials)."""
    if not settings.alert_webhook:
        return []
    from pyagent.control.alerts import webhook_secrets

    return webhook_secrets(settings.alert_webhook)
