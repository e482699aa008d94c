"""The flow meter's Prometheus view (``metrics.listen``), derived at each scrape from what its stats topic publishes.

One source of truth: every sample comes from :meth:`flowmeter.daemon.FlowmeterDaemon.stats` (the body of the
``…/flowmeter/<sensor>/stats`` document); no counter lives here. Names: ``edge_ids_flowmeter_*``, counters end in
``_total``, sizes are ``_bytes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import CounterMetricFamily, InfoMetricFamily, Metric

from ids_core.metrics_families import StatsCollector, families, labelled, read_catalogue

if TYPE_CHECKING:
    from flowmeter.daemon import FlowmeterDaemon

PREFIX = "edge_ids_flowmeter_"

CATALOGUE = read_catalogue("flowmeter")  # flowmeter/metrics.yaml


class FlowmeterCollector(StatsCollector):
    """A ``prometheus_client`` custom collector over a running :class:`flowmeter.daemon.FlowmeterDaemon`."""

    def __init__(self, daemon: FlowmeterDaemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        stats = self.daemon.stats()
        yield from families(PREFIX, stats, CATALOGUE)
        if stats["if_drops"] >= 0:  # -1: the interface's counter is unreadable (or pcap input)
            yield CounterMetricFamily(PREFIX + "interface_drops", "The interface's own receive drops since start.",
                                      value=stats["if_drops"])  # fmt: skip
        for key, (name, label, doc) in CATALOGUE["labelled"].items():
            yield labelled(PREFIX, name, doc, label, stats[key])
        yield InfoMetricFamily(PREFIX + "sensor", "This flow meter.",
                               value={k: str(stats[k]) for k in ("gateway", "sensor", "source")})  # fmt: skip
