"""Polling with a deadline: for tests, benchmarks and CI drivers that wait on real processes and brokers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(
    pred: Callable[[], Any],
    timeout: float,
    what: str,
    context: Callable[[], str] = lambda: "",
    *,
    every: float = 0.05,
    error: Callable[[str], BaseException] = TimeoutError,
) -> Any:
    """Poll ``pred`` until it returns something truthy (returned); after ``timeout`` s raise ``error`` naming
    ``what`` with ``context()`` (e.g. a log tail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"timed out after {timeout:.0f} s waiting for {what}\n{context()}")
        time.sleep(every)
