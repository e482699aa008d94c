"""The agent's configuration: one YAML file, then environment variables, then command-line overrides.

Environment: ``EDGE_IDS__MQTT__HOST=broker.lan`` sets ``mqtt.host`` (sections joined by ``__``).
The ``mqtt:`` section (:class:`ids_core.mqtt.MqttSettings`, shared with the flow meter): secrets may come from
files, and from ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``): ``mqtt-password`` and ``mqtt-client-key``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ids_core import typedconfig
from ids_core.daemonconfig import DaemonConfig
from ids_core.mqtt import MqttSettings, TlsSettings, credential
from ids_core.typedconfig import ConfigError, load_layered, setting

# config/agent.yaml, shipped inside the package (defaults/agent.yaml) so a wheel finds it as a checkout does
DEFAULT_CONFIG = Path(str(resources.files("agent") / "defaults" / "agent.yaml"))
ENV_PREFIX = "EDGE_IDS__"
MAX_PAYLOAD_BYTES = 255 << 20  # MQTT's packet limit (268,435,455 bytes) less room for the topic and properties

__all__ = ["AgentConfig", "ConfigError", "MqttSettings", "TlsSettings", "credential", "load_config"]


@dataclass
class ModelSettings:
    dir: str = setting("", help="directory holding model_int8.tflite and spec.json ('' = the installed bundle slot)")
    runtime: str = setting("auto", choices=("auto", "ai_edge_litert", "tflite_runtime"))
    threads: int = setting(1, min=1, max=64, help="interpreter threads")
    max_batch: int = setting(
        0,
        min=0,
        max=4096,
        help="windows per interpreter call (bigger batches are split); 0 = auto: 2048 / T, at most"
        " 256 (256 at T=1, 33 at T=62: as fast per window as 256 and ~30 MB smaller)",
    )


@dataclass
class BatchSettings:
    max_records: int = setting(256, min=1, max=65536, help="flows scored together (one interpreter call)")
    max_wait_ms: float = setting(5.0, min=0.0, max=10000.0, help="longest a flow waits for its batch to fill")
    queue_bytes: int = setting(
        32 << 20, min=1 << 16, help="flow messages buffered between MQTT and inference (bytes); then the broker waits"
    )


@dataclass
class WindowSettings:
    max_keys: int = setting(4096, min=1, help="streams whose last T-1 flows are remembered (LRU)")


@dataclass
class RateLimitSettings:
    max_alerts: int = setting(20, min=0, help="alerts per source per window (0 = unlimited)")
    per_seconds: float = setting(60.0, min=0.001)


@dataclass
class AlertSettings:
    threshold: float | None = setting(
        None, help="alert when a flow's score is above this (0 < t < 1); None = the model's spec.json threshold"
    )
    rate_limit: RateLimitSettings = setting(factory=RateLimitSettings)
    publish_verdicts: bool = setting(False, help="also publish every flow's score on <prefix>/<gw>/verdicts")
    max_per_message: int = setting(
        1,
        min=1,
        max=1000,
        help="alerts per message on the alerts topic: 1 = one EVE document per message; more = up to that many of "
        "one batch per message, one EVE document per line (as in Suricata's eve.json); bundles cannot change it",
    )

    def validate(self) -> None:
        t = self.threshold
        if t is not None and not (math.isfinite(t) and 0.0 < t < 1.0):
            problem = "is out of range" if math.isfinite(t) else "is not a finite number"
            raise ConfigError(f"alerts.threshold: {t!r} {problem}; allowed: above 0 and below 1, or null (the model's)")

    def threshold_for(self, model_threshold: float) -> float:
        """The threshold in force: this site's ``threshold`` when set, else the model's (its spec.json)."""
        return model_threshold if self.threshold is None else self.threshold


@dataclass
class MessageLimitSettings:
    max_message_bytes: int = setting(
        1 << 20, min=1024, max=MAX_PAYLOAD_BYTES, help="larger flow messages are dead-lettered unparsed"
    )
    max_records_per_message: int = setting(5000, min=1)


@dataclass
class OutboxSettings:
    max_messages: int = setting(100_000, min=10, help="alerts kept while the broker is away; oldest dropped")


@dataclass
class BundleSettings:
    enabled: bool = setting(False, help="accept signed model bundles over MQTT")
    topic: str = setting("", help="fleet topic ('' = <prefix>/fleet/bundle); published retained")
    public_keys: list[str] = setting(factory=list, help="PEM files of the Ed25519 keys bundles must be signed by")
    max_bytes: int = setting(16 << 20, min=1024, max=MAX_PAYLOAD_BYTES, help="larger bundles are never received")
    probation_seconds: float = setting(300.0, min=0.0, help="a new model that fails in this time is rolled back")
    probation_min_windows: int = setting(
        64, min=1, help="different windows that must get one same score before the new model is failed as constant"
    )
    selftest_tolerance: int = setting(
        0, min=0, max=255, help="int8 steps a self-test output may differ (0 = bit-exact, right for LiteRT)"
    )

    def validate(self) -> None:
        if self.enabled and not self.public_keys:
            raise ConfigError("bundle.public_keys: at least one key is needed when bundle.enabled is true")


@dataclass
class AgentConfig(DaemonConfig):
    model: ModelSettings = setting(factory=ModelSettings)
    batch: BatchSettings = setting(factory=BatchSettings)
    windows: WindowSettings = setting(factory=WindowSettings)
    alerts: AlertSettings = setting(factory=AlertSettings)
    limits: MessageLimitSettings = setting(factory=MessageLimitSettings)
    outbox: OutboxSettings = setting(factory=OutboxSettings)
    bundle: BundleSettings = setting(factory=BundleSettings)
    log_json: bool = setting(False, help="one JSON object per log line")

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"edge-ids-{self.gateway_id}"

    def topic(self, leaf: str) -> str:
        """``<prefix>/<gateway_id>/<leaf>``."""
        return f"{self.mqtt.topic_prefix}/{self.gateway_id}/{leaf}"

    def instance_topic(self, leaf: str) -> str:
        """Per-agent topics (status, stats): ``<prefix>/<gw>/<leaf>``, plus ``/<client_id>`` in a shared group,
        where several agents serve one gateway and each must report its own liveness."""
        return self.topic(f"{leaf}/{self.client_id}" if self.mqtt.shared_group else leaf)

    @property
    def bundle_topic(self) -> str:
        return self.bundle.topic or f"{self.mqtt.topic_prefix}/fleet/bundle"


def env_overrides(environ: dict[str, str] | None = None) -> list[str]:
    """``EDGE_IDS__SECTION__KEY=value`` environment variables as ``section.key=value`` overrides."""
    return typedconfig.env_overrides(ENV_PREFIX, environ)


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, environ: dict[str, str] | None = None
) -> AgentConfig:
    """YAML file (default ``config/agent.yaml``), then environment, then ``overrides`` (``a.b=value``)."""
    return load_layered(AgentConfig, path or DEFAULT_CONFIG, overrides, env_prefix=ENV_PREFIX, environ=environ)
