"""Exit statuses of every pyagent command, defined here only (README, docs/jobs.md and
docs/schema.md list them). Standard library only: the agent's CLI imports it too."""

from __future__ import annotations

# Every command.
EXIT_OK = 0
EXIT_FAILED = 1  # an error (one line, no traceback); `jobs run --wait`: the job failed
EXIT_USAGE = 2  # bad usage: click's status for bad arguments, ours for bad values
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it

# `pyagent jobs ...`
EXIT_CHANGES = 3  # apply/adopt --dry-run: there is something to change
EXIT_TIMEOUT = 4  # run --wait --timeout: the run did not end in time
EXIT_NO_AGENT = 5  # run --wait: no live agent can pick the job up
EXIT_NOT_RUNNING = 6  # cancel: the job is not running (nothing changed)
EXIT_LOCK_TIMEOUT = 7  # apply: another apply (or a row lock) outlasted --lock-timeout
EXIT_CONFLICT = 8  # apply: a job it changes was edited by someone else after it read it

# `pyagent schema check`
CHECK_OK = EXIT_OK  # the schema is usable
CHECK_PROBLEMS = EXIT_FAILED  # problems found (listed, with the GRANTs)
CHECK_CANNOT_CONNECT = 3  # could not connect or run the check
