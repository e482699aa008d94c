"""A thin wrapper over paho-mqtt 2.x: session, TLS, auth, birth/Last Will, backoff, manual acknowledgement.

Flow messages are acknowledged (PUBACK) only after their verdicts and alerts are safely in the
outbox, so a crash between receiving and scoring loses nothing: the broker redelivers to our
persistent session. Reconnects use paho's capped exponential backoff.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.config import AgentConfig, credential

log = logging.getLogger(__name__)

ONLINE, OFFLINE = b"online", b"offline"


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
        m = self.cfg.mqtt
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.cfg.client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            clean_session=None if self.v5 else m.clean_start,
            manual_ack=True,
        )
        client.enable_logger(logging.getLogger("paho"))
        if m.username:
            client.username_pw_set(m.username, self.cfg.mqtt.resolved_password())
        if m.tls.enabled:
            client.tls_set(
                ca_certs=m.tls.ca_file or None,
                certfile=m.tls.cert_file or None,
                keyfile=m.tls.key_file or _path_or_none(credential("mqtt-client-key")),
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
            client.tls_insecure_set(m.tls.insecure)
        client.will_set(self.status_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(int(max(1, m.reconnect_min_delay)), int(m.reconnect_max_delay))
        client.max_inflight_messages_set(m.max_inflight)
        client.max_queued_messages_set(0)  # the outbox is our bounded queue; paho only holds what is in flight
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_connect_fail = self._handle_connect_fail
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        client.on_socket_open = _no_delay
        return client

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background; the agent serves (and stores alerts) while the broker is away."""
        m = self.cfg.mqtt
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = m.session_expiry
            props.ReceiveMaximum = self._receive_maximum
        kwargs: dict[str, Any] = {"clean_start": m.clean_start, "properties": props} if self.v5 else {}
        self.client.connect_async(m.host, m.port, keepalive=m.keepalive, **kwargs)
        self.client.loop_start()
        log.info("connecting to %s:%d as %s (MQTT %s)", m.host, m.port, self.cfg.client_id, m.protocol)

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


def _no_delay(_client: mqtt.Client, _ud: Any, sock: Any) -> None:
    """Send PUBACKs and alerts at once: with Nagle's algorithm a small write waits for the broker's delayed ACK
    of the previous one (up to 40 ms on Linux); paho leaves it on."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _path_or_none(path: Any) -> str | None:
    return str(path) if path else None
