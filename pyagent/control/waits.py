"""How job control's loops wait: until one of some events is set, or a timeout."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_any(timeout: float, *events: asyncio.Event) -> None:
    """Return when one of `events` is set or `timeout` seconds have passed."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*waiters, return_exceptions=True)
