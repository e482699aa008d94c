"""Counters and latency percentiles of the running agent (published every ``stats_interval``)."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import numpy as np


class Latency:
    """The last ``size`` samples (seconds); percentiles in milliseconds."""

    def __init__(self, size: int = 2048) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)

    def extend(self, seconds: list[float]) -> None:
        self._samples.extend(seconds)

    def percentiles(self) -> dict[str, float | None]:
        if not self._samples:
            return {"p50_ms": None, "p99_ms": None}
        a = np.fromiter(self._samples, dtype=np.float64) * 1000
        return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3)}


class Stats:
    """Thread-safe counters; ``snapshot()`` is the body of the stats document (:func:`agent.documents.stats`)."""

    def __init__(self) -> None:
        self.started = time.time()
        self._lock = threading.Lock()
        self.counters: collections.Counter[str] = collections.Counter()
        self.deadletter_reasons: collections.Counter[str] = collections.Counter()
        self.inference = Latency()  # interpreter time per batch
        self.flow_latency = Latency()  # message arrival → verdict in the outbox, per flow
        self.batch_sizes: collections.deque[int] = collections.deque(maxlen=2048)

    def add(self, **counts: int) -> None:
        with self._lock:
            self.counters.update(counts)

    def deadletter(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.deadletter_reasons[reason] += n
            self.counters["deadlettered"] += n

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        with self._lock:
            counts = dict(self.counters)
            reasons = dict(self.deadletter_reasons)
        sizes = list(self.batch_sizes)
        return {
            "uptime_s": round(time.time() - self.started, 1),
            **{
                k: counts.get(k, 0)
                for k in ("messages_in", "flows_in", "flows_scored", "alerts_out", "alerts_suppressed", "deadlettered")
            },
            "deadletter_reasons": reasons,
            "inference_latency": self.inference.percentiles(),
            "flow_latency": self.flow_latency.percentiles(),
            "batch_size_mean": round(sum(sizes) / len(sizes), 1) if sizes else None,
            "other": {k: v for k, v in counts.items() if k not in _MAIN},
            **extra,
        }


_MAIN = {"messages_in", "flows_in", "flows_scored", "alerts_out", "alerts_suppressed", "deadlettered"}
