"""The store: the only code that sends SQL to the `pgagent` schema at run time.

- `records`: the typed records and status enums every other module speaks in.
- `sqlfile`: named-block loader for the `.sql` files that hold the statements.
- `agent_store`: the agent's bookkeeping side (register, sweep zombies, claim, start a run,
  log a step, finish and release a run, unregister, purge old logs).
- `session_check`: whether a connection is a server session of its own (not a transaction
  pooler's), checked before the agent registers.
- `catalog`: the catalogue side (jobs, steps, schedules, exceptions) for the management
  commands.
"""
