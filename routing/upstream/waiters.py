"""Tasks in line for what one of them at a time gets (a pooled connection, a GPU slot): FIFO, no overtaking."""

from __future__ import annotations

import asyncio
from collections import deque


def wake_first(waiters: deque[asyncio.Future[None]]) -> bool:
    """Hand the turn to the first waiter still waiting (one that timed out or was cancelled is passed
    over and dropped); False when nobody is left to take it."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return True
    return False
