"""Job control: retries with backoff, cancelling a running job, and failure alerts.

- `options`: a job's @RETRIES, @RETRY_DELAY, @ALERT as job control uses them (read by
  pyagent.annotations) and the pure retry rules.
- `retry`: the release of a failed run that may bring its next run forward.
- `cancel`: the cancel request (`pyagent jobs cancel`) and its outcome.
- `jobcontrol`: what the supervisor calls (tracking of running jobs, side tasks, close),
  over `cancelwatch` (the agent's watcher that acts on a cancel request), `afterrun` (a
  cancelled run's leftovers, the alert hand-off) and `history` (the run-history gauges).
- `alerts`: the alert document and its delivery (webhook, command); imported only when set.
- `metrics`: per-job last success / last failure metrics read from the run history.
- `cli`: the run command's options (imported by the CLI only); `pyagent jobs cancel` is in
  pyagent.jobs.cli.
"""
