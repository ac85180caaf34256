"""pyagent benchmark suite (see README.md)."""
