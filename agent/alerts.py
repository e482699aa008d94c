"""Alert documents (Suricata eve.json style) and per-source alert rate limiting.

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
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

SIGNATURE = "edge-ids anomalous flow"
CATEGORY = "Anomalous network flow"
OVERFLOW_SOURCE = "*"
PROTOCOL_NAMES = {6: "TCP", 17: "UDP", 1: "ICMP"}

# ident key -> alert key, in document order
_ENDPOINT_KEYS = (
    ("src_ip", "src_ip"),
    ("src_port", "src_port"),
    ("dst_ip", "dest_ip"),
    ("dst_port", "dest_port"),
)


def rfc3339(moment: datetime) -> str:
    """``2024-05-01T12:00:00.000123Z`` (UTC, microseconds); a naive datetime is rejected."""
    if moment.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {moment!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_alert(
    *,
    gateway: str,
    ident: dict[str, Any],
    score: float,
    threshold: float,
    model: dict[str, Any],
    now: datetime | None = None,
) -> dict[str, Any]:
    """One EVE-like ``alert`` document for a flow scored at or above ``threshold``.

    ``ident`` keys (all optional): flow_id, src_ip, dst_ip, src_port, dst_port, protocol, timestamp, seq,
    sensor; missing ones are left out of the document. Severity follows Suricata (1 = high): 1 when the
    score is in the upper half of ``[threshold, 1]``, else 2.
    """
    score, threshold = float(score), float(threshold)
    if not (math.isfinite(score) and math.isfinite(threshold)):
        raise ValueError(f"expected finite score and threshold, got {score} and {threshold}")
    if score < threshold:
        raise ValueError(f"expected score >= threshold {threshold}, got {score}")
    doc: dict[str, Any] = {
        "timestamp": rfc3339(now or datetime.now(UTC)),
        "event_type": "alert",
        "gateway": gateway,
    }
    if ident.get("flow_id") is not None:
        doc["flow_id"] = str(ident["flow_id"])
    for src_key, doc_key in _ENDPOINT_KEYS:
        value = ident.get(src_key)
        if value is not None:
            doc[doc_key] = _port(value) if doc_key.endswith("port") else str(value)
    if ident.get("protocol") is not None:
        doc["proto"] = _proto(ident["protocol"])
    if ident.get("timestamp") is not None:
        doc["flow_timestamp"] = ident["timestamp"]  # as the record gave it (text or epoch number)
    if ident.get("seq") is not None:
        doc["seq"] = int(ident["seq"])
    if ident.get("sensor") is not None:
        doc["sensor"] = str(ident["sensor"])
    doc["alert"] = {
        "signature": SIGNATURE,
        "category": CATEGORY,
        "severity": 1 if score - threshold >= (1.0 - threshold) / 2 else 2,
        "score": score,
        "threshold": threshold,
        "verdict": "malicious",
    }
    doc["model"] = {key: model.get(key) for key in ("name", "version", "sha256")}
    return doc


def _port(value: Any) -> int | str:
    """Ports from CSV often arrive as floats (``80.0``); keep anything unparsable as text."""
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return str(value)


def _proto(value: Any) -> str | int:
    """``TCP``/``UDP``/``ICMP`` for 6/17/1, the number for other protocols, text kept upper-case."""
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return str(value).upper()
    return PROTOCOL_NAMES.get(number, number)


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
            self._ready[key] = {
                "timestamp": _epoch_rfc3339(end),
                "event_type": "alert_summary",
                "src_ip": key,
                "suppressed": window.suppressed,
                "allowed": window.allowed,
                "window_start": _epoch_rfc3339(window.start),
                "window_end": _epoch_rfc3339(end),
                "limit": {"max_alerts": self.max_alerts, "per_seconds": self.per_seconds},
            }
        else:  # a later window of the same key before anyone collected: one summary spanning both
            summary["suppressed"] += window.suppressed
            summary["allowed"] += window.allowed
            summary["window_start"] = min(summary["window_start"], _epoch_rfc3339(window.start))
            summary["window_end"] = summary["timestamp"] = max(summary["window_end"], _epoch_rfc3339(end))


def _epoch_rfc3339(seconds: float) -> str:
    return rfc3339(datetime.fromtimestamp(seconds, UTC))
