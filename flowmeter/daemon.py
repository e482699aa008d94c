"""The flow meter as a daemon: packets (live interface or pcap files) → flow records → outbox → MQTT.

Threads: the main thread reads packets, runs the meter and its timers (expiry, batching, stats, watchdog);
paho's network thread handles the connection and PUBACKs; the forwarder (:mod:`ids_core.forwarder`) drains the
outbox to the broker. One stop event ends them. SIGTERM/SIGINT: stop reading, write every active flow, store the
last records, give the forwarder a few seconds to deliver them, publish ``offline``, exit 0; what the broker did
not acknowledge stays in the outbox for the next start.

Topics: records ``<prefix>/<gw>/flows`` (JSON arrays, QoS ``mqtt.qos``), status ``<prefix>/<gw>/flowmeter/
<sensor>/status`` (retained ``online``/``offline``, Last Will), stats ``…/flowmeter/<sensor>/stats`` (QoS 0,
every ``stats_interval``).
"""

from __future__ import annotations

import inspect
import json
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from flowmeter.capture import LiveCapture
from flowmeter.config import OUTBOX_FILE, FlowmeterConfig
from flowmeter.meter import FlowMeter
from flowmeter.pcapfile import CaptureError, read_capture
from flowmeter.publisher import RecordBatcher
from flowmeter.settings import MeterSettings
from ids_core import metrics_server, systemd
from ids_core.forwarder import Forwarder
from ids_core.mqtt import PublishLink
from ids_core.outbox import Outbox
from ids_core.timestamps import utc_timestamp
from ids_core.typedconfig import ConfigError

log = logging.getLogger("flowmeter")

_CHECK_EVERY = 2048  # pcap input: packets between looks at the clock and the stop event
FINISH_TIMEOUT_S = 5.0  # at shutdown: how long the forwarder may deliver the last records


def open_capture(cfg: FlowmeterConfig, interface: str, bpf: str, tick_s: float, on_tick: Any) -> LiveCapture:
    """A live capture with the configured filter and buffers (the kernel buffer's parameter name depends on the
    capture's buffering: a receive buffer or a packet ring)."""
    params = inspect.signature(LiveCapture).parameters
    size_key = "ring_bytes" if "ring_bytes" in params else "rcvbuf_bytes"
    return LiveCapture(
        interface,
        bpf=bpf or None,
        snaplen=cfg.capture.snaplen,
        promisc=cfg.capture.promisc,
        tick_s=tick_s,
        on_tick=on_tick,
        **{size_key: cfg.capture.buffer_bytes},
    )


def start_metrics(daemon: FlowmeterDaemon) -> metrics_server.MetricsServer:
    """The Prometheus endpoint on ``metrics.listen`` (a ``ConfigError`` naming the setting if it cannot start)."""
    from flowmeter.metrics import FlowmeterCollector  # prometheus_client only when asked for

    listen = daemon.cfg.metrics.listen
    try:
        return metrics_server.serve(listen, FlowmeterCollector(daemon))
    except OSError as e:
        raise ConfigError(f"metrics.listen: {listen}: {e.strerror or e}") from e


class FlowmeterDaemon:
    """Wires capture, meter, batcher, outbox, link and forwarder; :meth:`run` until the input ends or a signal."""

    def __init__(
        self,
        cfg: FlowmeterConfig,
        *,
        meter_settings: MeterSettings | None = None,
        interface: str = "",
        bpf: str = "",
        pcaps: Sequence[str] = (),
    ) -> None:
        if bool(interface) == bool(pcaps):
            raise ValueError("give either an interface or pcap files")
        self.cfg, self.pcaps, self.interface = cfg, list(pcaps), interface
        self.stop_event = threading.Event()
        self.started = time.monotonic()
        self.capture_errors: Counter[str] = Counter()
        self.bad_files = 0
        self.tick_s = min(1.0, max(0.02, cfg.publish.max_wait_ms / 2000))
        # the capture is opened first: a bad interface or filter stops start-up before anything is written
        self.capture = open_capture(cfg, interface, bpf, self.tick_s, self._tick) if interface else None
        try:
            state = cfg.make_state_dir()
            self.outbox = Outbox(state / OUTBOX_FILE, cfg.outbox.max_messages)
        except BaseException:
            if self.capture is not None:
                self.capture.close()
            raise
        try:
            self.link = PublishLink(
                cfg.mqtt,
                cfg.client_id,
                cfg.own_topic("status"),
                on_published=lambda mid: self.forwarder.on_published(mid),
                on_connected=lambda _session_present: self.forwarder.wake(),
            )
            self.forwarder = Forwarder(self.outbox, self.link, self.stop_event, in_flight=cfg.mqtt.max_inflight)
            self.batcher = RecordBatcher(
                self.outbox,
                topic=cfg.flows_topic,
                sensor=cfg.sensor,
                qos=cfg.mqtt.qos,
                max_records=cfg.publish.max_records,
                max_wait_s=cfg.publish.max_wait_ms / 1000,
                max_message_bytes=cfg.publish.max_message_bytes,
                columnar=cfg.publish.format == "columnar",
                wake=self.forwarder.wake,
            )
            self.meter = FlowMeter(meter_settings or cfg.meter.settings(), self.batcher.add)
            self._stats_lock = threading.Lock()  # the capture's drop counter is read from the metrics thread too
            self.metrics = start_metrics(self) if cfg.metrics.listen else None
        except BaseException:
            self.outbox.close()
            if self.capture is not None:
                self.capture.close()
            raise
        self._watchdog = systemd.watchdog_interval()
        self._last_ping = 0.0
        self._next_stats = time.monotonic() + cfg.stats_interval

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        self.forwarder.start()
        self.link.start()
        source = f"interface {self.interface}" if self.capture else f"{len(self.pcaps)} capture file(s)"
        systemd.ready()
        systemd.status(f"metering {source}")
        log.info("flow meter ready: %s → %s as sensor %s (next seq %d)", source, self.cfg.flows_topic,
                 self.cfg.sensor, self.batcher.next_seq)  # fmt: skip
        try:
            if self.capture is not None:
                for ts, frame, linktype in self.capture:
                    self.meter.packet(ts, frame, linktype)
            else:
                self._read_files()
                if not self.stop_event.is_set():
                    self._deliver_all()
        finally:
            self._shutdown()
        return 1 if self.bad_files and self.bad_files == len(self.pcaps) else 0

    def _read_files(self) -> None:
        packet, stop = self.meter.packet, self.stop_event
        for path in self.pcaps:
            try:
                reader = read_capture(path)
            except CaptureError as e:
                log.error("%s", e)
                self.bad_files += 1
                continue
            for i, (ts, frame, linktype) in enumerate(reader):
                packet(ts, frame, linktype)
                if i % _CHECK_EVERY == 0:
                    if stop.is_set():
                        return
                    self._timers()
            self.meter.flush()  # end of a capture file: every active flow is finished (as the reference does)
            self.capture_errors.update(reader.errors)
            if reader.errors:
                log.warning("%s: corrupt records: %s", path, dict(reader.errors))
        self.batcher.flush()

    def _deliver_all(self) -> None:
        """Pcap input: stay until the broker has every record (or a signal: the rest waits in the outbox)."""
        log.info("input done: %d records in %d messages; waiting for the broker to acknowledge them",
                 self.batcher.records_out, self.batcher.messages_out)  # fmt: skip
        while not self.forwarder.drained() and not self.stop_event.wait(self.tick_s):
            self._timers()

    def _tick(self, now_us: int) -> None:
        """Live capture: called every ``tick_s`` from the capture loop, with or without traffic."""
        self.meter.expire(now_us)
        self._timers()

    def _timers(self) -> None:
        if self.batcher.due():
            self.batcher.flush()
        now = time.monotonic()
        if now >= self._next_stats:
            self._next_stats = now + self.cfg.stats_interval
            self.publish_stats()
        if self._watchdog and now - self._last_ping >= self._watchdog:
            systemd.watchdog_ping()
            self._last_ping = now

    def _on_stop(self, signum: int, _frame: Any) -> None:
        log.info("signal %s: shutting down", signal.Signals(signum).name)
        self.stop_event.set()
        if self.capture is not None:
            self.capture.stop()

    def _shutdown(self) -> None:
        systemd.stopping()
        self.stop_event.set()
        self.meter.flush()  # every active flow is written
        self.batcher.flush()
        self.forwarder.finish(timeout=FINISH_TIMEOUT_S)
        self.publish_stats()
        self.link.stop()
        if self.metrics is not None:
            self.metrics.stop()
        if self.capture is not None:
            self.capture.close()
        left = self.outbox.depth
        self.outbox.close()
        log.info("stopped: %d records out, next seq %d, %d messages left in the outbox for the next start",
                 self.batcher.records_out, self.batcher.next_seq, left)  # fmt: skip

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        m = self.meter.stats.as_dict()
        with self._stats_lock:
            cap = self.capture.stats() if self.capture is not None else {}
        return {
            "timestamp": utc_timestamp(),
            "event_type": "flowmeter_stats",
            "gateway": self.cfg.gateway_id,
            "sensor": self.cfg.sensor,
            "source": self.interface or "pcap",
            "uptime_s": round(time.monotonic() - self.started, 3),
            **m,
            "kernel_drops": cap.get("kernel_drops", 0),
            "if_drops": cap.get("if_drops", -1),
            "capture_errors": dict(self.capture_errors),
            "records_out": self.batcher.records_out,
            "messages_out": self.batcher.messages_out,
            "records_waiting": self.batcher.waiting,
            "next_seq": self.batcher.next_seq,
            "outbox_depth": self.outbox.depth,
            "outbox_dropped": self.outbox.dropped,
            "messages_published": self.forwarder.published,
            "connected": self.link.connected.is_set(),
            "disconnects": self.link.disconnects,
        }

    def publish_stats(self) -> None:
        doc = self.stats()
        log.debug("stats %s", doc)
        payload = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
        self.link.publish(self.cfg.own_topic("stats"), payload, qos=0)
