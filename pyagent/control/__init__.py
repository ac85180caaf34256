"""Job control: retries with backoff, cancelling a running job, and failure alerts.

- `options`: a job's @RETRIES, @RETRY_DELAY, @ALERT as job control uses them (read by
  pyagent.annotations) and the pure retry rules.
- `retry`: the release of a failed run that may bring its next run forward.
- `cancel`: the cancel request (CLI and SQL) and the agent's watcher that acts on it.
- `alerts`: the alert document and its delivery (webhook, command); imported only when set.
- `metrics`: per-job last success / last failure metrics read from the run history.
- `runtime`: what the supervisor calls (side tasks, tracking of running jobs).
- `cli`: the run command's options (imported by the CLI only); `pyagent jobs cancel` is in
  pyagent.jobs.cli.
"""
