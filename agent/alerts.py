"""Per-source alert rate limiting (the alert documents themselves are made in :mod:`agent.documents`).

Rate limiting uses a **fixed window per source**: a source's window opens at its first alert and lasts
``per_seconds``; within it at most ``max_alerts`` alerts pass and the rest are suppressed and counted.
When the window has ended, :meth:`RateLimiter.summaries` returns one ``alert_summary`` document for it
(only if something was suppressed), exactly once, and the source is forgotten. Memory is bounded:
at most ``max_sources`` windows are tracked; alerts from further sources share one overflow window
(``src_ip`` ``"*"``), limited and summarised the same way, so a flood of spoofed sources can neither
exhaust memory nor escape the limit.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from agent import documents

log = logging.getLogger(__name__)

OVERFLOW_SOURCE = "*"


@dataclass(slots=True)
class _Window:
    start: float
    allowed: int = 0
    suppressed: int = 0


class RateLimiter:
    """At most ``max_alerts`` alerts per ``per_seconds`` per source (fixed window); ``<= 0`` disables.

    ``now`` is seconds on the caller's clock; pass ``time.time()`` so summary windows are wall-clock
    times. A clock that goes backwards ends every open window.
    """

    def __init__(self, max_alerts: int, per_seconds: float, *, max_sources: int = 10_000) -> None:
        self.max_alerts = max_alerts
        self.per_seconds = float(per_seconds)
        self.max_sources = max_sources
        if self.enabled and not (math.isfinite(self.per_seconds) and self.per_seconds > 0):
            raise ValueError(f"expected per_seconds > 0, got {per_seconds}")
        if max_sources < 1:
            raise ValueError(f"expected max_sources >= 1, got {max_sources}")
        # Insertion order == window start order (every window has the same length), so the ended
        # windows are always a prefix of this dict.
        self._windows: dict[str, _Window] = {}
        self._ready: dict[str, dict[str, Any]] = {}  # summaries of ended windows, not yet collected
        self.suppressed_total = 0
        self.overflowed = 0  # alerts counted in the shared overflow window

    @property
    def enabled(self) -> bool:
        return self.max_alerts > 0

    @property
    def tracked_sources(self) -> int:
        return len(self._windows)

    def allow(self, src: str, now: float) -> bool:
        """Count one alert from ``src``; True if it may be published."""
        if not self.enabled:
            return True
        self._expire(now)
        window = self._windows.get(src)
        if window is None:
            if len(self._windows) - (OVERFLOW_SOURCE in self._windows) >= self.max_sources:
                self.overflowed += 1
                src = OVERFLOW_SOURCE
                window = self._windows.get(src)
                if window is None:
                    log.warning("rate limiter tracks %d sources; new ones share one window", self.max_sources)
            if window is None:
                window = self._windows[src] = _Window(start=now)
        if window.allowed < self.max_alerts:
            window.allowed += 1
            return True
        window.suppressed += 1
        self.suppressed_total += 1
        return False

    def summaries(self, now: float) -> list[dict[str, Any]]:
        """One ``alert_summary`` per ended window that suppressed alerts, each returned exactly once."""
        if not self.enabled:
            return []
        self._expire(now)
        out = list(self._ready.values())
        self._ready.clear()
        return out

    def _expire(self, now: float) -> None:
        """Forget ended windows (a prefix of ``_windows``), queueing a summary for those that suppressed."""
        while self._windows:
            src, window = next(iter(self._windows.items()))
            if window.start + self.per_seconds > now >= window.start:
                return
            del self._windows[src]
            if window.suppressed:
                self._queue_summary(src, window)

    def _queue_summary(self, src: str, window: _Window) -> None:
        """Keep at most ``max_sources`` (+ overflow) summaries if nobody collects them: merge the rest."""
        end = window.start + self.per_seconds
        key = src if src in self._ready or len(self._ready) < self.max_sources else OVERFLOW_SOURCE
        summary = self._ready.get(key)
        if summary is None:
            self._ready[key] = documents.alert_summary(
                src_ip=key, suppressed=window.suppressed, allowed=window.allowed, start=window.start, end=end,
                max_alerts=self.max_alerts, per_seconds=self.per_seconds,
            )  # fmt: skip
        else:  # a later window of the same key before anyone collected: one summary spanning both
            summary["suppressed"] += window.suppressed
            summary["allowed"] += window.allowed
            summary["window_start"] = min(summary["window_start"], documents.timestamp(window.start))
            summary["window_end"] = summary["timestamp"] = max(summary["window_end"], documents.timestamp(end))
