"""The flow meter daemon's configuration: one YAML file, then environment variables, then command-line overrides.

Environment: ``EDGE_IDS_FLOWMETER__MQTT__HOST=broker.lan`` sets ``mqtt.host`` (sections joined by ``__``; a prefix
of its own, so the agent's ``EDGE_IDS__`` variables never reach it). The ``mqtt:`` section is the agent's
(:class:`ids_core.mqtt.MqttSettings`): the same keys, secrets and systemd credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from flowmeter.capture import DEFAULT_SNAPLEN, MAX_SNAPLEN
from flowmeter.settings import (
    DEFAULT_ACTIVITY_TIMEOUT_US,
    DEFAULT_FLOW_TIMEOUT_US,
    DEFAULT_MAX_FLOWS,
    MeterSettings,
)
from ids_core.daemonconfig import DaemonConfig
from ids_core.typedconfig import ConfigError, load_layered, setting

# config/flowmeter.yaml, shipped inside the package (defaults/flowmeter.yaml) so a wheel finds it as a checkout does
DEFAULT_CONFIG = Path(str(resources.files("flowmeter") / "defaults" / "flowmeter.yaml"))
ENV_PREFIX = "EDGE_IDS_FLOWMETER__"
OUTBOX_FILE = "flowmeter-outbox.sqlite"  # its own name: the agent's outbox.sqlite may share a state directory
AGENT_MAX_RECORDS = 5000  # the agent's default limits.max_records_per_message

__all__ = ["ConfigError", "FlowmeterConfig", "load_config"]


@dataclass
class CaptureSettings:
    interface: str = setting("", help="live capture on this interface (CAP_NET_RAW); '' = the pcap files given")
    bpf: str = setting("", help="tcpdump filter expression applied in the kernel ('' = every packet)")
    snaplen: int = setting(DEFAULT_SNAPLEN, min=64, max=MAX_SNAPLEN, help="bytes kept per packet")
    buffer_bytes: int = setting(
        4 << 20, min=1 << 19, max=1 << 30, help="kernel buffer for packets not yet read; beyond it drops are counted"
    )
    promisc: bool = setting(False, help="promiscuous mode (mirror/SPAN ports)")


@dataclass
class MeterSection:
    flow_timeout_us: int = setting(DEFAULT_FLOW_TIMEOUT_US, min=1, help="a flow ends this long after its first packet")
    activity_timeout_us: int = setting(DEFAULT_ACTIVITY_TIMEOUT_US, min=1, help="gap that splits Active/Idle periods")
    max_flows: int = setting(DEFAULT_MAX_FLOWS, min=1, help="active flows kept; beyond it the oldest are evicted")
    single_packet_flows: bool = setting(True, help="write flows of one packet (false = the reference's rule)")
    ipv6: bool = setting(True, help="meter IPv6 (false = the reference's rule: ignored)")

    def settings(self) -> MeterSettings:
        return MeterSettings(
            flow_timeout_us=self.flow_timeout_us,
            activity_timeout_us=self.activity_timeout_us,
            max_flows=self.max_flows,
            single_packet_flows=self.single_packet_flows,
            ipv6=self.ipv6,
        )


@dataclass
class PublishSettings:
    format: str = setting(
        "columnar", choices=("columnar", "records"), help="columnar batches (names once) or JSON arrays of records"
    )
    max_records: int = setting(256, min=1, max=AGENT_MAX_RECORDS, help="records per message")
    max_wait_ms: float = setting(500.0, min=0.0, max=60_000.0, help="longest a finished flow waits for its message")
    max_message_bytes: int = setting(
        1 << 20, min=4096, max=255 << 20, help="messages are split below this (the agent's max_message_bytes)"
    )


@dataclass
class OutboxSettings:
    max_messages: int = setting(10_000, min=1, help="messages kept while the broker is away; oldest dropped")


@dataclass
class FlowmeterConfig(DaemonConfig):
    sensor: str = setting("flowmeter", help="names this meter in records (sensor + seq) and its topics")
    capture: CaptureSettings = setting(factory=CaptureSettings)
    meter: MeterSection = setting(factory=MeterSection)
    publish: PublishSettings = setting(factory=PublishSettings)
    outbox: OutboxSettings = setting(factory=OutboxSettings)

    def validate(self) -> None:
        super().validate()
        self.check_topic_level("sensor")
        if self.mqtt.shared_group:
            raise ConfigError("mqtt.shared_group: the flow meter only publishes; leave it empty")
        if self.mqtt.qos == 0:
            raise ConfigError("mqtt.qos: 0 is not allowed for flow records (the outbox keeps them until PUBACK)")
        if self.meter.flow_timeout_us <= 0 or self.meter.activity_timeout_us <= 0:
            raise ConfigError("meter: timeouts must be > 0 µs")

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"edge-ids-flowmeter-{self.gateway_id}-{self.sensor}"

    @property
    def flows_topic(self) -> str:
        """``<prefix>/<gateway_id>/flows``: where the agent listens."""
        return f"{self.mqtt.topic_prefix}/{self.gateway_id}/flows"

    def own_topic(self, leaf: str) -> str:
        """``<prefix>/<gateway_id>/flowmeter/<sensor>/<leaf>`` (status, stats): one set per meter."""
        return f"{self.mqtt.topic_prefix}/{self.gateway_id}/flowmeter/{self.sensor}/{leaf}"


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, environ: dict[str, str] | None = None
) -> FlowmeterConfig:
    """YAML file (default ``config/flowmeter.yaml``), then environment, then ``overrides`` (``a.b=value``)."""
    return load_layered(FlowmeterConfig, path or DEFAULT_CONFIG, overrides, env_prefix=ENV_PREFIX, environ=environ)
