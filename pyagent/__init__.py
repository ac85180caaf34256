"""pyagent: a pure-Python, drop-in replacement for the pgAgent job scheduler."""

__version__ = "0.1.0"
