"""Job history retention: delete old pga_joblog rows (and, by cascade, their step logs)
in small batches, so no lock is held for long and pgAdmin keeps working meanwhile."""

from __future__ import annotations

import asyncio

from pyagent.db import ControlDB

SECONDS_PER_DAY = 86400.0


async def purge_old_logs(db: ControlDB, days: float, batch: int = 1000, pause: float = 0.01) -> int:
    """Delete finished job runs older than `days`; returns how many runs were deleted."""
    total = 0
    while True:
        deleted = await db.execute(
            "purge_old_joblogs", {"seconds": days * SECONDS_PER_DAY, "batch": batch}
        )
        total += max(deleted, 0)
        if deleted < batch:
            return total
        # Give other sessions (and this agent's own work) room between batches.
        await asyncio.sleep(pause)
