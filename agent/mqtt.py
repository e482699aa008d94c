"""A thin wrapper over paho-mqtt 2.x: session, birth/Last Will, subscriptions, manual acknowledgement. The client
itself (auth, TLS, Last Will, backoff, TCP_NODELAY) comes from :func:`ids_core.mqtt.make_client`, as the flow
meter's does.

Flow messages are acknowledged (PUBACK) only after their verdicts and alerts are safely in the
outbox, so a crash between receiving and scoring loses nothing: the broker redelivers to our
persistent session. Reconnects use paho's capped exponential backoff.

Limits before bytes: with MQTT 5 the CONNECT carries a Maximum Packet Size (:func:`max_packet_size`), so the
broker never sends a message much larger than the agent accepts — it drops it instead of sending it. MQTT
3.1.1 has no such property: there, the broker's ``message_size_limit`` is the bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from agent.config import AgentConfig
from ids_core.mqtt import OFFLINE, ONLINE, connect_properties, make_client

log = logging.getLogger(__name__)


# a PUBLISH around its payload: fixed header (1 + up to 4 bytes of remaining length), topic length (2),
# packet id (2), properties length (up to 4) and room for the publisher's properties (user properties, content type)
PACKET_OVERHEAD = 1 + 4 + 2 + 2 + 4 + 4096
MQTT_MAX_PACKET = 1 + 4 + 268_435_455  # the largest packet MQTT can express


def max_packet_size(cfg: AgentConfig) -> int:
    """The Maximum Packet Size the agent announces (MQTT 5): twice its largest accepted message, plus overhead.

    One connection has one maximum: that of the flow limit, or of the bundle limit when bundles are enabled
    (whichever is larger). A message up to twice its limit still arrives and is refused with its reason (dead
    letter ``too_large``, bundle status ``rejected too_large``), so its publisher learns why; a larger one is
    dropped by the broker and never read. A flow message between the flow limit and this maximum (bundles
    enabled) is dead-lettered unparsed by the pipeline's ``limits.max_message_bytes`` check.
    """
    accepted = [(cfg.limits.max_message_bytes, cfg.topic("flows"))]
    if cfg.bundle.enabled:
        accepted.append((cfg.bundle.max_bytes, cfg.bundle_topic))
    largest = max(2 * size + len(topic.encode()) for size, topic in accepted)
    return min(MQTT_MAX_PACKET, largest + PACKET_OVERHEAD)


@dataclass(slots=True)
class Inbound:
    """One received message, with what is needed to acknowledge it later."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    dup: bool
    generation: int  # connection number it arrived on
    received: float  # time.monotonic()


class MqttLink:
    """The agent's one broker connection."""

    def __init__(
        self,
        cfg: AgentConfig,
        *,
        on_flows: Callable[[Inbound], None],
        on_bundle: Callable[[Inbound], None] | None = None,
        on_published: Callable[[int], None] | None = None,
        on_connected: Callable[[bool], None] | None = None,
        receive_maximum: int = 1024,
    ) -> None:
        self.cfg = cfg
        m = cfg.mqtt
        self.v5 = m.protocol == "5"
        self.flows_topic = cfg.topic("flows")
        self.subscription = f"$share/{m.shared_group}/{self.flows_topic}" if m.shared_group else self.flows_topic
        self.status_topic = cfg.instance_topic("status")
        self.connected = threading.Event()
        self.generation = 0
        self.session_present = False
        self.disconnects = 0
        self._owed: set[int] = set()  # packet ids scored but not acknowledged before a disconnect
        self._on_flows, self._on_bundle = on_flows, on_bundle
        self._on_published, self._on_connected = on_published, on_connected
        self._receive_maximum = max(1, min(receive_maximum, 65535))
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        client = make_client(self.cfg.mqtt, self.cfg.client_id, self.status_topic, manual_ack=True)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_connect_fail = self._handle_connect_fail
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        return client

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background; the agent serves (and stores alerts) while the broker is away."""
        m = self.cfg.mqtt
        props = connect_properties(m)
        if props is not None:
            props.ReceiveMaximum = self._receive_maximum
            props.MaximumPacketSize = max_packet_size(self.cfg)
        kwargs: dict[str, Any] = {"clean_start": m.clean_start, "properties": props} if self.v5 else {}
        self.client.connect_async(m.host, m.port, keepalive=m.keepalive, **kwargs)
        self.client.loop_start()
        log.info("connecting to %s:%d as %s (MQTT %s, maximum packet size %s)", m.host, m.port, self.cfg.client_id,
                 m.protocol, max_packet_size(self.cfg) if self.v5 else "set by the broker")  # fmt: skip

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` (retained), then disconnect cleanly and stop the network thread."""
        if self.connected.is_set():
            info = self.client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
            deadline = time.monotonic() + timeout
            while not info.is_published() and time.monotonic() < deadline and self.connected.is_set():
                time.sleep(0.01)
        self.client.disconnect()
        self.client.loop_stop()

    # ------------------------------------------------------------------ operations

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Hand a message to paho; returns its mid, or None when not connected (nothing is queued)."""
        if not self.connected.is_set():
            return None
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        return info.mid

    def ack(self, msg: Inbound) -> None:
        """Acknowledge a scored QoS>0 message (PUBACK).

        If the connection it came on is gone, the broker will re-deliver it to our session with the
        same packet id and DUP set: it is remembered as owed and acknowledged then, not scored again.
        """
        if msg.qos == 0:
            return
        if msg.generation == self.generation and self.connected.is_set():
            self.client.ack(msg.mid, msg.qos)
        else:
            self._owed.add(msg.mid)

    def skip(self, msg: Inbound) -> bool:
        """True for a re-delivery (DUP, same packet id) of a message already scored, or being scored, since the
        connection it first came on was lost: it is acknowledged with its batch but not scored again.

        A message received on a lost connection is always scored (a broker that crashed may have lost it,
        and then nothing would come again); its packet id is remembered so that the re-delivery, if any, is
        recognised.
        """
        if msg.qos == 0:
            return False
        if msg.generation < self.generation:
            self._owed.add(msg.mid)
            return False
        if msg.dup and msg.mid in self._owed:
            self._owed.discard(msg.mid)
            return True
        return False

    # ------------------------------------------------------------------ paho callbacks (network thread)

    def _handle_connect(self, client: mqtt.Client, _ud: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        self.generation += 1
        self.session_present = bool(getattr(flags, "session_present", False))
        if not self.session_present:
            self._owed.clear()  # a new session re-delivers nothing; these packet ids will be reused
        qos = self.cfg.mqtt.qos
        client.subscribe(self.subscription, qos=qos)
        if self._on_bundle is not None and self.cfg.bundle.enabled:
            client.subscribe(self.cfg.bundle_topic, qos=1)
        client.publish(self.status_topic, ONLINE, qos=1, retain=True)
        self.connected.set()
        log.info("connected (session present: %s), subscribed to %s", self.session_present, self.subscription)
        if self._on_connected:
            self._on_connected(self.session_present)

    def _handle_connect_fail(self, _c: mqtt.Client, _ud: Any) -> None:
        log.warning("cannot connect to %s:%d (network or TLS failure); retrying with backoff",
                    self.cfg.mqtt.host, self.cfg.mqtt.port)  # fmt: skip

    def _handle_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if was:
            self.disconnects += 1
            log.warning("disconnected from the broker (%s); reconnecting with backoff", reason)

    def _handle_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        inbound = Inbound(msg.topic, msg.payload, msg.mid, msg.qos, bool(msg.dup), self.generation, time.monotonic())
        if self._on_bundle is not None and mqtt.topic_matches_sub(self.cfg.bundle_topic, msg.topic):
            self._on_bundle(inbound)
        else:
            self._on_flows(inbound)

    def _handle_publish(self, _c: mqtt.Client, _ud: Any, mid: int, _reason: Any, _props: Any) -> None:
        if self._on_published:
            self._on_published(mid)
