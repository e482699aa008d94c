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
from ids_core.metrics_families import COUNTER, GAUGE, StatsCollector, Table, families, labelled

if TYPE_CHECKING:
    from agent.daemon import Agent

PREFIX = "edge_ids_agent_"

# stats document key → (kind, metric name without the prefix (and _total), help)
METRICS: Table = {
    "messages_in": (COUNTER, "messages_in", "Flow messages received."),
    "flows_in": (COUNTER, "flows_in", "Flow records received (scored or dead-lettered)."),
    "flows_scored": (COUNTER, "flows_scored", "Flows given a verdict by the model."),
    "alerts_out": (COUNTER, "alerts", "Alerts published (stored in the outbox for the broker)."),
    "alerts_suppressed": (COUNTER, "alerts_suppressed", "Alerts withheld by the per-source rate limit."),
    "outbox_dropped": (COUNTER, "outbox_dropped", "Outbox messages dropped at outbox.max_messages."),
    "published": (COUNTER, "messages_published", "Outbox messages acknowledged by the broker."),
    "windows_evicted": (COUNTER, "windows_evicted", "Stream histories forgotten at windows.max_keys."),
    "disconnects": (COUNTER, "mqtt_disconnects", "Connections to the broker lost (then reconnects with backoff)."),
    "outbox_depth": (GAUGE, "outbox_messages", "Messages in the outbox waiting for the broker."),
    "queue_depth": (GAUGE, "queue_messages", "Flow messages received and not yet scored."),
    "streams": (GAUGE, "streams", "Streams whose window history is kept."),
    "connected": (GAUGE, "mqtt_connected", "1 while connected to the broker, else 0."),
}
# the stats document's ``other`` counters, shown from the start (0); any other key there is shown once it appears
OTHER = {
    "nonfinite_values": "Infinity/NaN feature values scored by the non-finite rule.",
    "redeliveries_skipped": "Re-delivered flows (sensor/seq already answered) acknowledged without scoring.",
    "redelivered_messages_skipped": "Re-delivered messages (same packet id) acknowledged without scoring.",
    "deadletters_summarised": "Rejected records counted in a deadletter_summary instead of one dead letter each.",
    "seq_gaps": "Gap events: ranges of a sensor's flows that never arrived.",
    "seq_gap_flows": "Flows named by gap events.",
    "seq_late": "Flows of a declared gap that arrived later (scored).",
    "seq_restarts": "Publishers that restarted from seq 0.",
}
DEADLETTER_REASONS = (*(str(r) for r in Reason), "inference_error")
HISTOGRAMS = {  # Stats attribute → (metric name, help)
    "inference": ("inference_seconds", "Interpreter time per batch."),
    "flow_latency": ("flow_latency_seconds", "Per flow: message arrival to its verdict in the outbox."),
    "batch_sizes": ("batch_size", "Flows per interpreter call."),
}


class AgentCollector(StatsCollector):
    """A ``prometheus_client`` custom collector over a running :class:`agent.daemon.Agent`."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        snap = agent.stats_snapshot()
        yield from counters(snap)
        yield from gauges(snap)
        for attr, (name, doc) in HISTOGRAMS.items():
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
    yield from families(PREFIX, snap, METRICS)
    other = snap["other"]
    for key in sorted(OTHER.keys() | other.keys()):
        if key.isidentifier():
            yield CounterMetricFamily(PREFIX + key, OTHER.get(key, f"Stats counter {key}."), value=other.get(key, 0))
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
