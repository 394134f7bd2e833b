"""glibc malloc settings of the operator process (no-ops with another C library).

Each thread that allocates while another one does gets a malloc arena of its own (up to 8 per core):
the EgressRouter workers, the Route API pool and kopf's executor parse JSON bodies in parallel, and
every arena keeps what a burst freed, so the RSS stays at the burst's high-water mark. Threads that
hold the GIL most of the time gain nothing from many arenas: two are enough. A periodic
malloc_trim(0) gives the pages that are free again back to the system.
"""
from __future__ import annotations

import asyncio
import ctypes
from typing import Any

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
ARENAS = 2
TRIM_SECONDS = 30.0


def _glibc() -> Any:
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def limit_arenas(count: int = ARENAS) -> None:
    """Before the process starts its threads."""
    if (libc := _glibc()) is not None:
        libc.mallopt(M_ARENA_MAX, count)


async def trim_forever(seconds: float = TRIM_SECONDS) -> None:
    if (libc := _glibc()) is None:
        return
    while True:
        await asyncio.sleep(seconds)
        libc.malloc_trim(0)
