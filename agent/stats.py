"""Counters, latency percentiles and histograms of the running agent: the one source of the stats topic
(every ``stats_interval``) and of the Prometheus endpoint (:mod:`agent.metrics`, when ``metrics.listen`` is set)."""

from __future__ import annotations

import bisect
import collections
import math
import threading
import time
from typing import Any

import numpy as np

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # seconds
BATCH_BUCKETS = tuple(float(1 << i) for i in range(17))  # flows per batch: 1, 2, 4, … 65,536 (batch.max_records)


class Distribution:
    """Samples of one quantity: the last ``size`` (for the stats topic's percentiles and means) and, since the
    start, a cumulative histogram over ``buckets`` (upper bounds, inclusive) with sum and count — the Prometheus
    histogram of the same samples (:mod:`agent.metrics`). Thread-safe."""

    def __init__(self, buckets: tuple[float, ...], size: int = 2048) -> None:
        self.buckets = buckets
        self._edges = np.asarray(buckets, dtype=np.float64)  # for searchsorted (a tuple is converted on every call)
        self._lock = threading.Lock()
        self._samples: collections.deque[float] = collections.deque(maxlen=size)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # per bucket, the last one is +Inf
        self._sum = 0.0

    def add(self, value: float) -> None:
        with self._lock:
            self._samples.append(value)
            self._counts[bisect.bisect_left(self.buckets, value)] += 1
            self._sum += value

    append = add

    def extend(self, values: list[float]) -> None:
        if not values:
            return
        a = np.asarray(values, dtype=np.float64)
        per_bucket = np.bincount(self._edges.searchsorted(a, side="left"), minlength=len(self.buckets) + 1)
        with self._lock:
            self._samples.extend(values)
            self._counts += per_bucket
            self._sum += float(a.sum())

    def recent(self) -> list[float]:
        with self._lock:
            return list(self._samples)

    def histogram(self) -> tuple[list[tuple[float, int]], float, int]:
        """(cumulative count per upper bound, the last one ``inf``), sum, count — since the start."""
        with self._lock:
            counts, total = self._counts.cumsum().tolist(), self._sum
        return list(zip((*self.buckets, math.inf), counts, strict=True)), total, counts[-1]


class Latency(Distribution):
    """Durations in seconds; the stats topic shows the last ``size`` as percentiles in milliseconds."""

    def __init__(self, size: int = 2048) -> None:
        super().__init__(LATENCY_BUCKETS, size)

    def percentiles(self) -> dict[str, float | None]:
        samples = self.recent()
        if not samples:
            return {"p50_ms": None, "p99_ms": None}
        a = np.asarray(samples, dtype=np.float64) * 1000
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
        self.batch_sizes = Distribution(BATCH_BUCKETS)  # flows per interpreter call
        self.bundle_events: collections.Counter[tuple[str, str]] = collections.Counter()  # (event, reason)

    def add(self, **counts: int) -> None:
        with self._lock:
            self.counters.update(counts)

    def deadletter(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.deadletter_reasons[reason] += n
            self.counters["deadlettered"] += n

    def bundle(self, event: str, reason: str = "") -> None:
        """A bundle install outcome (the ``event`` of a bundle status document, and its ``reason`` if any)."""
        with self._lock:
            self.bundle_events[event, reason] += 1

    def bundle_counts(self) -> dict[tuple[str, str], int]:
        """Bundle install outcomes by (event, reason); the stats document counts them by event."""
        with self._lock:
            return dict(self.bundle_events)

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        with self._lock:
            counts = dict(self.counters)
            reasons = dict(self.deadletter_reasons)
            bundles: collections.Counter[str] = collections.Counter()
            for (event, _reason), n in self.bundle_events.items():
                bundles[event] += n
        sizes = self.batch_sizes.recent()
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
            "bundle_events": dict(bundles),
            "other": {k: v for k, v in counts.items() if k not in _MAIN},
            **extra,
        }


_MAIN = {"messages_in", "flows_in", "flows_scored", "alerts_out", "alerts_suppressed", "deadlettered"}
