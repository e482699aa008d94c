"""One way to connect to the broker, for every daemon (agent, flow meter): settings, secrets, TLS, auth, Last Will,
backoff and TCP_NODELAY, on a paho-mqtt 2.x client; and :class:`PublishLink`, a publish-only connection.

A daemon's ``mqtt:`` section is :class:`MqttSettings`. Secrets come from the setting, a file, or
``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``): ``mqtt-password`` and ``mqtt-client-key``. A missing,
unreadable or malformed TLS file is a :class:`~ids_core.typedconfig.ConfigError` naming its setting, found before
any connection is tried (:func:`check_tls_files`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ids_core.typedconfig import ConfigError, setting

log = logging.getLogger(__name__)

ONLINE, OFFLINE = b"online", b"offline"  # the retained status payloads (birth / Last Will)
TOPIC_PART = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


@dataclass
class TlsSettings:
    enabled: bool = False
    ca_file: str = setting("", help="CA bundle that signed the broker's certificate ('' = system CAs)")
    cert_file: str = setting("", help="client certificate for mutual TLS")
    key_file: str = setting("", help="client key for mutual TLS ('' = $CREDENTIALS_DIRECTORY/mqtt-client-key)")
    insecure: bool = setting(False, help="skip hostname verification (testing only)")


@dataclass
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = setting(1883, min=1, max=65535)
    protocol: str = setting("5", choices=("5", "3.1.1"), help="MQTT protocol version")
    client_id: str = setting(
        "",
        help="fixed client id for the persistent session ('' = edge-ids-<gateway_id>; the flow meter: "
        "edge-ids-flowmeter-<gateway_id>-<sensor>)",
    )
    clean_start: bool = setting(False, help="False keeps the broker session: flows queued while down arrive later")
    session_expiry: int = setting(86400, min=0, help="seconds the broker keeps our session (MQTT 5)")
    keepalive: int = setting(30, min=5, max=65535)
    qos: int = setting(1, choices=(0, 1, 2), help="QoS for subscriptions and alerts (flow meter: records, 1 or 2)")
    topic_prefix: str = setting("edge-ids", help="topics are <prefix>/<gateway_id>/{flows,alerts,...}")
    shared_group: str = setting("", help="subscribe via $share/<group>/... so several agents split one stream")
    username: str = ""
    password: str = setting("", secret=True, help="prefer password_file or the mqtt-password credential")
    password_file: str = ""
    tls: TlsSettings = setting(factory=TlsSettings)
    reconnect_min_delay: float = setting(1.0, min=0.1)
    reconnect_max_delay: float = setting(60.0, min=1.0)
    max_inflight: int = setting(
        100, min=1, max=65535, help="QoS 1 messages in flight before the outbox holds the rest back"
    )

    def validate(self) -> None:
        if not TOPIC_PART.match(self.topic_prefix):
            raise ConfigError(f"mqtt.topic_prefix: {self.topic_prefix!r} must be topic levels of [A-Za-z0-9_.-]")
        if self.shared_group and ("/" in self.shared_group or not TOPIC_PART.match(self.shared_group)):
            raise ConfigError(f"mqtt.shared_group: {self.shared_group!r} must be one topic level of [A-Za-z0-9_.-]")
        if self.shared_group and self.protocol != "5":
            raise ConfigError("mqtt.shared_group needs mqtt.protocol 5 (shared subscriptions are MQTT 5)")
        if self.password and self.password_file:
            raise ConfigError("mqtt.password and mqtt.password_file are exclusive; set one")
        if (self.password or self.password_file) and not self.username:
            raise ConfigError("mqtt.password must be provided with mqtt.username")
        if bool(self.tls.cert_file) != bool(self.tls.key_file or credential("mqtt-client-key")):
            raise ConfigError("mqtt.tls.cert_file and mqtt.tls.key_file must be given together (mutual TLS)")
        if self.reconnect_max_delay < self.reconnect_min_delay:
            raise ConfigError("mqtt.reconnect_max_delay must be >= mqtt.reconnect_min_delay")

    def resolved_password(self) -> str | None:
        if self.password:
            return self.password
        if self.password_file:
            return read_secret(Path(self.password_file), "mqtt.password_file")
        cred = credential("mqtt-password")
        return read_secret(cred, "credential mqtt-password") if cred and self.username else None


def read_secret(path: Path, what: str) -> str:
    """A secret file's text (stripped); a ConfigError naming ``what`` and the path when it cannot be read."""
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise ConfigError(f"{what}: {path}: cannot read: {reason}") from None


def credential(name: str) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/<name>`` when systemd provided it."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    path = Path(directory) / name if directory else None
    return path if path and path.exists() else None


def check_tls_files(tls: TlsSettings) -> None:
    """Read and load the CA, certificate and key the way the TLS handshake will, so that a missing, unreadable
    or malformed file stops start-up with a ConfigError naming its setting and path."""
    key_file = tls.key_file or _path_or_none(credential("mqtt-client-key"))
    files = (("mqtt.tls.ca_file", tls.ca_file), ("mqtt.tls.cert_file", tls.cert_file), ("mqtt.tls.key_file", key_file))
    for name, path in files:
        if path and not os.path.isfile(path):
            raise ConfigError(f"{name}: {path}: no such file")
        if path and not os.access(path, os.R_OK):
            raise ConfigError(f"{name}: {path}: not readable by this user")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.ca_file:
        try:
            ctx.load_verify_locations(cafile=tls.ca_file)
        except ssl.SSLError as e:
            raise ConfigError(f"mqtt.tls.ca_file: {tls.ca_file}: not a PEM CA certificate ({e.reason or e})") from None
    if tls.cert_file:
        try:
            ctx.load_cert_chain(tls.cert_file, key_file, password=b"")  # an encrypted key fails, never prompts
        except ssl.SSLError as e:
            raise ConfigError(
                f"mqtt.tls.cert_file/key_file: {tls.cert_file}, {key_file}: not a matching PEM certificate and "
                f"unencrypted private key ({e.reason or e})"
            ) from None


def make_client(m: MqttSettings, client_id: str, will_topic: str, *, manual_ack: bool = False) -> mqtt.Client:
    """A paho client with the settings' auth, TLS (files checked first), Last Will ``offline`` (QoS 1, retained)
    on ``will_topic``, capped exponential reconnect backoff, the in-flight window, no paho-side queue (the
    caller's outbox is the bounded queue) and TCP_NODELAY. Callbacks are the caller's."""
    v5 = m.protocol == "5"
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else m.clean_start,
        manual_ack=manual_ack,
    )
    client.enable_logger(logging.getLogger("paho"))
    if m.username:
        client.username_pw_set(m.username, m.resolved_password())
    if m.tls.enabled:
        check_tls_files(m.tls)
        client.tls_set(
            ca_certs=m.tls.ca_file or None,
            certfile=m.tls.cert_file or None,
            keyfile=m.tls.key_file or _path_or_none(credential("mqtt-client-key")),
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        client.tls_insecure_set(m.tls.insecure)
    client.will_set(will_topic, OFFLINE, qos=1, retain=True)
    client.reconnect_delay_set(int(max(1, m.reconnect_min_delay)), int(m.reconnect_max_delay))
    # The forwarder keeps at most mqtt.max_inflight messages in flight (the outbox is the bounded queue), so paho
    # needs no limit of its own; and with one it scans every message it holds on each PUBACK (_update_inflight):
    # ~15 µs per alert at 100 in flight, a seventh of the agent's CPU in an alert storm (py-spy, 2026-12-05).
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.on_socket_open = no_delay
    return client


def connect_properties(m: MqttSettings) -> Properties | None:
    """MQTT 5 CONNECT properties every daemon sends (session expiry); None with MQTT 3.1.1."""
    if m.protocol != "5":
        return None
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = m.session_expiry
    return props


def no_delay(_client: mqtt.Client, _ud: Any, sock: Any) -> None:
    """Send PUBACKs and messages at once: with Nagle's algorithm a small write waits for the broker's delayed ACK
    of the previous one (up to 40 ms on Linux); paho leaves it on."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _path_or_none(path: Any) -> str | None:
    return str(path) if path else None


class PublishLink:
    """A broker connection with a retained ``online``/``offline`` status (birth, Last Will, clean stop), capped
    exponential reconnects and a count of lost connections; what :class:`ids_core.forwarder.Forwarder` needs
    (``connected``, :meth:`publish`). The flow meter uses it as it is; the agent's ``MqttLink`` adds its
    subscriptions and acknowledgements through the hooks (``_connect_properties``, ``_on_session``, the notes)."""

    def __init__(
        self,
        m: MqttSettings,
        client_id: str,
        status_topic: str,
        *,
        on_published: Callable[[int], None] | None = None,
        on_connected: Callable[[bool], None] | None = None,
        manual_ack: bool = False,
    ) -> None:
        self.settings, self.client_id, self.status_topic = m, client_id, status_topic
        self.v5 = m.protocol == "5"
        self.connected = threading.Event()
        self.disconnects = 0
        self._stopping = False
        self._on_published, self._on_connected = on_published, on_connected
        self.client = make_client(m, client_id, status_topic, manual_ack=manual_ack)
        self.client.on_connect = self._handle_connect
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_connect_fail = self._handle_connect_fail
        self.client.on_publish = self._handle_publish

    # ------------------------------------------------------------------ hooks

    def _connect_properties(self) -> Properties | None:
        """The CONNECT properties (MQTT 5)."""
        return connect_properties(self.settings)

    def _on_session(self, client: mqtt.Client, session_present: bool) -> None:
        """Connected, before ``online`` is published (network thread): subscribe here."""

    def _start_note(self) -> str:
        return ""

    def _connected_note(self) -> str:
        return ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background (the daemon keeps working, and storing, while the broker is away)."""
        m = self.settings
        kwargs: dict[str, Any] = (
            {"clean_start": m.clean_start, "properties": self._connect_properties()} if self.v5 else {}
        )
        self.client.connect_async(m.host, m.port, keepalive=m.keepalive, **kwargs)
        self.client.loop_start()
        log.info(
            "connecting to %s:%d as %s (MQTT %s%s)", m.host, m.port, self.client_id, m.protocol, self._start_note()
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline`` (retained), then disconnect cleanly and stop the network thread."""
        self._stopping = True
        if self.connected.is_set():
            info = self.client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
            deadline = time.monotonic() + timeout
            while not info.is_published() and time.monotonic() < deadline and self.connected.is_set():
                time.sleep(0.01)
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Hand a message to paho; its mid, or None when not connected (nothing is queued)."""
        if not self.connected.is_set():
            return None
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.mid if info.rc == mqtt.MQTT_ERR_SUCCESS else None

    # ------------------------------------------------------------------ paho callbacks (network thread)

    def _handle_connect(self, client: mqtt.Client, _ud: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        session_present = bool(getattr(flags, "session_present", False))
        self._on_session(client, session_present)
        client.publish(self.status_topic, ONLINE, qos=1, retain=True)
        self.connected.set()
        log.info("connected (session present: %s)%s", session_present, self._connected_note())
        if self._on_connected:
            self._on_connected(session_present)

    def _handle_connect_fail(self, _c: mqtt.Client, _ud: Any) -> None:
        log.warning("cannot connect to %s:%d (network or TLS failure); retrying with backoff",
                    self.settings.host, self.settings.port)  # fmt: skip

    def _handle_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if was and not self._stopping:
            self.disconnects += 1
            log.warning("disconnected from the broker (%s); reconnecting with backoff", reason)

    def _handle_publish(self, _c: mqtt.Client, _ud: Any, mid: int, _reason: Any, _props: Any) -> None:
        if self._on_published:
            self._on_published(mid)
