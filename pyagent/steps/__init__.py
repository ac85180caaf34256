"""Step executors: each runs one step and returns a StepResult."""
