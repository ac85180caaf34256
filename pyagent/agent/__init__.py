"""The agent: a supervisor (`supervisor`) that claims due jobs and starts their runs
(`jobrun`), with its side components: the LISTEN relay (`listener`), operations reporting
(`reporting`), signal handling (`signals`) and the poll loop's decisions (`polling`)."""

from pyagent.agent.supervisor import Agent, run_agent

__all__ = ["Agent", "run_agent"]
