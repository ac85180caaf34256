"""Signal handling: the first SIGTERM/SIGINT asks for a graceful stop, a second one stops at
once, SIGHUP is acknowledged (there is nothing to reload)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable

from pyagent.logsetup import get_logger


class SignalHandler:
    """Turns signals into calls of `on_stop` (first) and a hard exit (second)."""

    def __init__(self, on_stop: Callable[[signal.Signals], None]) -> None:
        self._on_stop = on_stop
        self._received = 0

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        get_logger().warning(
            "SIGHUP received: nothing to reload (the log file is reopened for every line)",
            always=True,
        )

    def _on_signal(self, sig: signal.Signals) -> None:
        self._received += 1
        if self._received == 1:
            self._on_stop(sig)
            return
        get_logger().warning(f"{sig.name} received again: stopping at once", always=True)
        from pyagent.steps import batch

        batch.kill_all_groups()
        os._exit(1)
