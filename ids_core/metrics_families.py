"""Prometheus metric families made at scrape time from a daemon's stats document (one source of truth: no counter
lives in the metrics code). Imported only when a daemon serves metrics (``metrics.listen``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

# stats key → (kind, metric name without the prefix (and without _total for counters), help)
Table = Mapping[str, tuple[str, str, str]]
COUNTER, GAUGE = "counter", "gauge"


class StatsCollector:
    """Base of a daemon's custom collector (``prometheus_client`` only needs ``collect`` and ``describe``)."""

    def describe(self) -> list[Metric]:
        return []  # the families follow the stats: nothing is checked at registration

    def collect(self) -> Iterator[Metric]:
        raise NotImplementedError


def families(prefix: str, stats: Mapping[str, Any], table: Table) -> Iterator[Metric]:
    """One counter or gauge per ``table`` row, its value ``stats[key]``."""
    for key, (kind, name, doc) in table.items():
        if kind == COUNTER:
            yield CounterMetricFamily(prefix + name, doc, value=stats[key])
        else:
            yield GaugeMetricFamily(prefix + name, doc, value=float(stats[key]))


def labelled(prefix: str, name: str, doc: str, label: str, counts: Mapping[str, int]) -> CounterMetricFamily:
    """A counter with one sample per ``label`` value (``counts``: value → count)."""
    family = CounterMetricFamily(prefix + name, doc, labels=[label])
    for value, n in sorted(counts.items()):
        family.add_metric([value], n)
    return family
