"""The settings every gateway daemon (agent, flow meter) has: its gateway, state, broker, metrics, stats and logs."""

from __future__ import annotations

from dataclasses import dataclass

from ids_core.metrics_server import MetricsSettings
from ids_core.mqtt import TOPIC_PART, MqttSettings
from ids_core.statedir import StateDirConfig
from ids_core.typedconfig import ConfigError, setting


@dataclass
class DaemonConfig(StateDirConfig):
    """Base of a daemon's configuration dataclass; its own sections follow these."""

    gateway_id: str = setting("gateway", help="names this gateway in topics (<prefix>/<gateway_id>/…) and client ids")
    state_dir: str = setting("", help="the sqlite outbox and the daemon's state ('' = $STATE_DIRECTORY or ./state)")
    mqtt: MqttSettings = setting(factory=MqttSettings)
    metrics: MetricsSettings = setting(factory=MetricsSettings)
    stats_interval: float = setting(30.0, min=0.1, max=86400.0, help="seconds between stats messages")
    log_level: str = setting("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    def validate(self) -> None:
        self.check_topic_level("gateway_id")

    def check_topic_level(self, key: str) -> None:
        """``key``'s value must be usable as one MQTT topic level."""
        value = getattr(self, key)
        if not TOPIC_PART.match(value) or "/" in value:
            raise ConfigError(f"{key}: {value!r} must be one topic level of [A-Za-z0-9_.-]")
