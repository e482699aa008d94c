"""The flow meter's Prometheus view (``metrics.listen``), derived at each scrape from what its stats topic publishes.

One source of truth: every sample comes from :meth:`flowmeter.daemon.FlowmeterDaemon.stats` (the body of the
``…/flowmeter/<sensor>/stats`` document); no counter lives here. Names: ``edge_ids_flowmeter_*``, counters end in
``_total``, sizes are ``_bytes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from flowmeter.daemon import FlowmeterDaemon

PREFIX = "edge_ids_flowmeter_"

# stats document key → (metric name without the prefix and _total, help)
COUNTERS = {
    "packets": ("packets", "Frames seen by the meter."),
    "bytes": ("captured_bytes", "Captured bytes of those frames."),
    "flow_packets": ("flow_packets", "Frames that went into a flow."),
    "flows_out": ("flows", "Flows finished and written (FIN, timeouts, eviction, end of input)."),
    "evictions": ("evictions", "Flows written early because meter.max_flows was reached."),
    "orientations_dropped": ("orientations_dropped", "Remembered flow orientations forgotten at meter.max_flows."),
    "single_packet_dropped": ("single_packet_dropped", "Single-packet flows not written (the reference's rule)."),
    "kernel_drops": ("kernel_drops", "Packets the kernel dropped: no room in the capture ring."),
    "records_out": ("records", "Flow records stored in the outbox for the broker."),
    "messages_out": ("messages", "Flows messages (JSON arrays) stored in the outbox."),
    "outbox_dropped": ("outbox_dropped", "Outbox messages dropped at outbox.max_messages."),
    "messages_published": ("messages_published", "Outbox messages acknowledged by the broker."),
    "disconnects": ("mqtt_disconnects", "Connections to the broker lost (each followed by reconnects with backoff)."),
}
LABELLED = {  # stats document key → (metric name, label, help)
    "bad": ("bad_packets", "cause", "Packets that could not be decoded, by cause."),
    "ignored": ("ignored_frames", "kind", "Frames that are not IP (ARP, LLDP, …), by kind."),
    "notes": ("unusual_packets", "note", "Packets used but unusual (fragments, snaplen-cut), by note."),
    "capture_errors": ("capture_file_errors", "cause", "Corrupt records in capture files, by cause."),
}
GAUGES = {
    "active_flows": ("active_flows", "Flows in the flow table."),
    "records_waiting": ("records_waiting", "Finished flows waiting for their message (publish.max_wait_ms)."),
    "outbox_depth": ("outbox_messages", "Messages in the outbox waiting for the broker."),
    "next_seq": ("next_seq", "The seq the next record gets (persisted across restarts)."),
    "connected": ("mqtt_connected", "1 while connected to the broker, else 0."),
    "uptime_s": ("uptime_seconds", "Seconds since start."),
}


class FlowmeterCollector(Collector):
    """A ``prometheus_client`` custom collector over a running :class:`flowmeter.daemon.FlowmeterDaemon`."""

    def __init__(self, daemon: FlowmeterDaemon) -> None:
        self.daemon = daemon

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self.daemon.stats()
        for key, (name, doc) in COUNTERS.items():
            yield CounterMetricFamily(PREFIX + name, doc, value=stats[key])
        if stats["if_drops"] >= 0:  # -1: the interface's counter is unreadable (or pcap input)
            yield CounterMetricFamily(PREFIX + "interface_drops", "The interface's own receive drops since start.",
                                      value=stats["if_drops"])  # fmt: skip
        for key, (name, label, doc) in LABELLED.items():
            family = CounterMetricFamily(PREFIX + name, doc, labels=[label])
            for value, n in sorted(stats[key].items()):
                family.add_metric([value], n)
            yield family
        for key, (name, doc) in GAUGES.items():
            yield GaugeMetricFamily(PREFIX + name, doc, value=float(stats[key]))
        yield InfoMetricFamily(PREFIX + "sensor", "This flow meter.",
                               value={k: str(stats[k]) for k in ("gateway", "sensor", "source")})  # fmt: skip
