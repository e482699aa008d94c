"""The agent's broker connection: :class:`ids_core.mqtt.PublishLink` (the connection both daemons share: auth, TLS,
birth/Last Will, backoff, TCP_NODELAY, publishing) plus the persistent session's subscriptions and manual
acknowledgement.

Flow messages are acknowledged (PUBACK) only after their verdicts and alerts are safely in the
outbox, so a crash between receiving and scoring loses nothing: the broker redelivers to our
persistent session. Reconnects use paho's capped exponential backoff.

Limits before bytes: with MQTT 5 the CONNECT carries a Maximum Packet Size (:func:`max_packet_size`), so the
broker never sends a message much larger than the agent accepts — it drops it instead of sending it. MQTT
3.1.1 has no such property: there, the broker's ``message_size_limit`` is the bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

from agent.config import AgentConfig
from ids_core.mqtt import PublishLink

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


class MqttLink(PublishLink):
    """The agent's one broker connection: :class:`ids_core.mqtt.PublishLink` (the connection, status, backoff,
    publishing) plus the flows subscription, manual acknowledgement and re-delivery bookkeeping."""

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
        self.flows_topic = cfg.topic("flows")
        self.subscription = f"$share/{m.shared_group}/{self.flows_topic}" if m.shared_group else self.flows_topic
        self.generation = 0
        self.session_present = False
        self._owed: set[int] = set()  # packet ids scored but not acknowledged before a disconnect
        self._on_flows, self._on_bundle = on_flows, on_bundle
        self._receive_maximum = max(1, min(receive_maximum, 65535))
        super().__init__(m, cfg.client_id, cfg.instance_topic("status"), on_published=on_published,
                         on_connected=on_connected, manual_ack=True)  # fmt: skip
        self.client.on_message = self._handle_message

    def _connect_properties(self) -> Properties | None:
        props = super()._connect_properties()
        if props is not None:
            props.ReceiveMaximum = self._receive_maximum
            props.MaximumPacketSize = max_packet_size(self.cfg)
        return props

    def _start_note(self) -> str:
        return f", maximum packet size {max_packet_size(self.cfg) if self.v5 else 'set by the broker'}"

    def _connected_note(self) -> str:
        return f", subscribed to {self.subscription}"

    # ------------------------------------------------------------------ operations

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

    def _on_session(self, client: mqtt.Client, session_present: bool) -> None:
        self.generation += 1
        self.session_present = session_present
        if not session_present:
            self._owed.clear()  # a new session re-delivers nothing; these packet ids will be reused
        client.subscribe(self.subscription, qos=self.cfg.mqtt.qos)
        if self._on_bundle is not None and self.cfg.bundle.enabled:
            client.subscribe(self.cfg.bundle_topic, qos=1)

    def _handle_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        inbound = Inbound(msg.topic, msg.payload, msg.mid, msg.qos, bool(msg.dup), self.generation, time.monotonic())
        if self._on_bundle is not None and mqtt.topic_matches_sub(self.cfg.bundle_topic, msg.topic):
            self._on_bundle(inbound)
        else:
            self._on_flows(inbound)
