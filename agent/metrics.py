"""The agent's Prometheus view (``metrics.listen``), derived at each scrape from what the stats topic publishes.

One source of truth: counters and gauges come from :meth:`agent.daemon.Agent.stats_snapshot` (the body of the stats
document), histograms from the :class:`agent.stats.Distribution` objects whose recent samples give the stats
topic its percentiles. No counter lives here, so the endpoint and the stats topic cannot disagree.

Names follow Prometheus' conventions: ``edge_ids_agent_*``, counters end in ``_total``, durations are ``_seconds``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from agent import __version__
from agent.records import Reason
from agent.stats import Distribution
from ids_core.metrics_families import StatsCollector, families, labelled, read_catalogue

if TYPE_CHECKING:
    from agent.daemon import Agent

PREFIX = "edge_ids_agent_"

CATALOGUE = read_catalogue("agent")  # agent/metrics.yaml
DEADLETTER_REASONS = (*(str(r) for r in Reason), "inference_error")


class AgentCollector(StatsCollector):
    """A ``prometheus_client`` custom collector over a running :class:`agent.daemon.Agent`."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        snap = agent.stats_snapshot()
        yield from counters(snap)
        yield from gauges(snap)
        for attr, (name, doc) in CATALOGUE["histograms"].items():
            yield histogram(PREFIX + name, doc, getattr(agent.stats, attr))
        events = CounterMetricFamily(PREFIX + "bundle_events", "Bundle install outcomes (bundle status events).",
                                     labels=["event", "reason"])  # fmt: skip
        for (event, reason), n in sorted(agent.stats.bundle_counts().items()):
            events.add_metric([event, reason], n)
        yield events
        model = snap["model"]
        yield InfoMetricFamily(PREFIX + "model", "The model serving now.",
                               value={k: str(model[k]) for k in ("name", "version", "sha256")})  # fmt: skip
        yield InfoMetricFamily(PREFIX + "build", "The agent.",
                               value={"version": __version__, "gateway": snap["gateway"],
                                      "client_id": snap["client_id"]})  # fmt: skip
        yield GaugeMetricFamily(PREFIX + "start_time_seconds", "Start time, seconds since the epoch.",
                                value=agent.stats.started)  # fmt: skip


def counters(snap: dict[str, Any]) -> Iterator[Metric]:
    yield from families(PREFIX, snap, CATALOGUE)
    known, other = CATALOGUE["other"], snap["other"]
    for key in sorted(known.keys() | other.keys()):
        if key.isidentifier():
            (doc,) = known.get(key, (f"Stats counter {key}.",))
            yield CounterMetricFamily(PREFIX + key, doc, value=other.get(key, 0))
    reasons = {reason: 0 for reason in DEADLETTER_REASONS} | snap["deadletter_reasons"]
    yield labelled(PREFIX, "deadletters", "Rejected flow records and messages, by reason.", "reason", reasons)


def gauges(snap: dict[str, Any]) -> Iterator[Metric]:
    seqs = snap["sequences"]
    yield GaugeMetricFamily(PREFIX + "sequence_sensors", "Sensors whose seqs are tracked.", value=seqs["sensors"])
    yield GaugeMetricFamily(PREFIX + "sequence_missing_flows", "Seqs still expected (holes not yet declared gaps).",
                            value=seqs["missing"])  # fmt: skip


def histogram(name: str, doc: str, dist: Distribution) -> HistogramMetricFamily:
    buckets, total, _count = dist.histogram()
    return HistogramMetricFamily(name, doc, buckets=[(floatToGoString(le), n) for le, n in buckets], sum_value=total)
