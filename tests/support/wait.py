"""The one poll loop of the tests."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: str, fn: Callable[[], T], timeout: float = 120.0, interval: float = 0.3,
             explain: Callable[[], str] | None = None) -> T:
    """Poll fn until it returns something truthy and return that.

    An exception from fn counts as "not yet" (a server that is still starting refuses connections);
    on timeout the AssertionError names what was awaited, the last value or exception, and
    ``explain()`` (e.g. a process log) when given.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = fn()
            if last:
                return last  # type: ignore[return-value]  # truthy: the awaited value
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            detail = f"\n{explain()}" if explain else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r}){detail}")
        time.sleep(interval)
