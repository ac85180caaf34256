"""The store: the only code that sends SQL to the `pgagent` schema at run time.

- `records`: the typed records and status enums every other module speaks in.
- `sqlfile`: named-block loader for the `.sql` files that hold the statements.
- `agent_store`: the agent's bookkeeping side (register, sweep zombies, claim, start a run,
  log a step, finish and release a run, unregister, purge old logs).
- `catalog`: the catalogue side (jobs, steps, schedules, exceptions) for the management
  commands.
"""
