"""The flow meter's Prometheus view (``metrics.listen``), derived at each scrape from what its stats topic publishes.

One source of truth: every sample comes from :meth:`flowmeter.daemon.FlowmeterDaemon.stats` (the body of the
``…/flowmeter/<sensor>/stats`` document); no counter lives here. Names: ``edge_ids_flowmeter_*``, counters end in
``_total``, sizes are ``_bytes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import CounterMetricFamily, InfoMetricFamily, Metric

from ids_core.metrics_families import COUNTER, GAUGE, StatsCollector, Table, families, labelled

if TYPE_CHECKING:
    from flowmeter.daemon import FlowmeterDaemon

PREFIX = "edge_ids_flowmeter_"

# stats document key → (kind, metric name without the prefix (and _total), help)
METRICS: Table = {
    "packets": (COUNTER, "packets", "Frames seen by the meter."),
    "bytes": (COUNTER, "captured_bytes", "Captured bytes of those frames."),
    "flow_packets": (COUNTER, "flow_packets", "Frames that went into a flow."),
    "flows_out": (COUNTER, "flows", "Flows finished and written (FIN, timeouts, eviction, end of input)."),
    "evictions": (COUNTER, "evictions", "Flows written early because meter.max_flows was reached."),
    "orientations_dropped": (
        COUNTER,
        "orientations_dropped",
        "Flow orientations forgotten at meter.max_flows.",
    ),
    "single_packet_dropped": (
        COUNTER,
        "single_packet_dropped",
        "Single-packet flows not written (reference rule).",
    ),
    "kernel_drops": (COUNTER, "kernel_drops", "Packets the kernel dropped: no room in the capture ring."),
    "records_out": (COUNTER, "records", "Flow records stored in the outbox for the broker."),
    "messages_out": (COUNTER, "messages", "Flow messages stored in the outbox."),
    "outbox_dropped": (COUNTER, "outbox_dropped", "Outbox messages dropped at outbox.max_messages."),
    "messages_published": (COUNTER, "messages_published", "Outbox messages acknowledged by the broker."),
    "disconnects": (
        COUNTER,
        "mqtt_disconnects",
        "Connections to the broker lost (then reconnects with backoff).",
    ),
    "active_flows": (GAUGE, "active_flows", "Flows in the flow table."),
    "records_waiting": (GAUGE, "records_waiting", "Finished flows waiting for their message (publish.max_wait_ms)."),
    "outbox_depth": (GAUGE, "outbox_messages", "Messages in the outbox waiting for the broker."),
    "next_seq": (GAUGE, "next_seq", "The seq the next record gets (persisted across restarts)."),
    "connected": (GAUGE, "mqtt_connected", "1 while connected to the broker, else 0."),
    "uptime_s": (GAUGE, "uptime_seconds", "Seconds since start."),
}
LABELLED = {  # stats document key → (metric name, label, help)
    "bad": ("bad_packets", "cause", "Packets that could not be decoded, by cause."),
    "ignored": ("ignored_frames", "kind", "Frames that are not IP (ARP, LLDP, …), by kind."),
    "notes": ("unusual_packets", "note", "Packets used but unusual (fragments, snaplen-cut), by note."),
    "capture_errors": ("capture_file_errors", "cause", "Corrupt records in capture files, by cause."),
}


class FlowmeterCollector(StatsCollector):
    """A ``prometheus_client`` custom collector over a running :class:`flowmeter.daemon.FlowmeterDaemon`."""

    def __init__(self, daemon: FlowmeterDaemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        stats = self.daemon.stats()
        yield from families(PREFIX, stats, METRICS)
        if stats["if_drops"] >= 0:  # -1: the interface's counter is unreadable (or pcap input)
            yield CounterMetricFamily(PREFIX + "interface_drops", "The interface's own receive drops since start.",
                                      value=stats["if_drops"])  # fmt: skip
        for key, (name, label, doc) in LABELLED.items():
            yield labelled(PREFIX, name, doc, label, stats[key])
        yield InfoMetricFamily(PREFIX + "sensor", "This flow meter.",
                               value={k: str(stats[k]) for k in ("gateway", "sensor", "source")})  # fmt: skip
