"""Every document the agent publishes, made in one place with one timestamp format and one JSON encoder.

Topics (``<prefix>/<gateway>/…``): ``alerts`` carries only ``alert`` documents, valid Suricata EVE (checked
against Suricata's published schema by ``tests/agent/test_alerts_eve.py``), one per message or, with
``alerts.max_per_message`` > 1, one per line (read with :func:`ids_core.eve.documents_in`); ``events`` the agent's own
``alert_summary`` (rate limiting) and ``gap`` (lost flows) events, which EVE has no event type for;
``verdicts`` one ``verdicts`` document per batch; ``deadletter`` ``deadletter`` documents (and one
``deadletter_summary`` per message past :data:`DEADLETTERS_PER_MESSAGE`); ``stats/<client_id>`` ``stats``;
``bundle/status`` ``bundle_status``; ``status/…`` the plain payloads ``online`` / ``offline``
(:data:`ids_core.mqtt.ONLINE`, shared with the flow meter).
Every JSON document starts with ``timestamp`` (EVE's form: UTC, microseconds, ``+0000``) and ``event_type``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import socket
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

try:  # the alerts' and verdicts' encoder where installed (agent.records decodes with it too); json otherwise
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the fallback keeps the agent running without it
    _orjson = None

from ids_core import eve
from ids_core.columns import TIMESTAMP_FORMAT
from ids_core.timestamps import utc_timestamp

# Our one signature. gid 1 as Suricata's rules; the sid lies in the range Suricata/Snort leave for local rules
# (1,000,000–1,999,999). A subscriber filters on (gid, signature_id); rev changes only if the meaning does.
SIGNATURE = "edge-ids anomalous flow"
SIGNATURE_ID = 1_990_001
GID = 1
REV = 1
CATEGORY = "Anomalous network flow"
ACTION = "allowed"  # the agent observes; it never blocks
PROTOCOL_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "IPv6-ICMP", 132: "SCTP"}  # as Suricata names them

# Record errors of one message dead-lettered in full; the rest are counted in one deadletter_summary.
DEADLETTERS_PER_MESSAGE = 20

# ident key -> alert key, in document order
_ENDPOINT_KEYS = (
    ("src_ip", "src_ip"),
    ("src_port", "src_port"),
    ("dst_ip", "dest_ip"),
    ("dst_port", "dest_port"),
)
_VERDICT_IDENT = ("flow_id", "seq", "sensor", "src_ip")
# IoTID20 column -> EVE flow counter (fwd = the flow's initiator = toserver). Bytes are CICFlowMeter's payload
# bytes (TotLen), not Suricata's bytes on the wire.
_FLOW_COUNTERS = (
    ("Tot_Fwd_Pkts", "pkts_toserver"),
    ("Tot_Bwd_Pkts", "pkts_toclient"),
    ("TotLen_Fwd_Pkts", "bytes_toserver"),
    ("TotLen_Bwd_Pkts", "bytes_toclient"),
)
_DURATION = "Flow_Duration"  # µs
# Community ID needs real ports: CICFlowMeter records of ICMP carry port 0, not the ICMP type and code.
_COMMUNITY_ID_PROTOCOLS = frozenset({6, 17, 132})
_COMMUNITY_ID_SEED = struct.pack("!H", 0)


def timestamp(moment: datetime | float | None = None) -> str:
    """``2024-05-01T12:00:00.000123+0000``: a timezone-aware datetime, epoch seconds, or now; a naive datetime is
    rejected (its zone is unknown). One format for the agent and the flow meter: :mod:`ids_core.timestamps`."""
    return utc_timestamp(moment)


def dumps(doc: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities are refused (they are not JSON)."""
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def _head(event_type: str, gateway: str, now: datetime | float | None) -> dict[str, Any]:
    return {"timestamp": timestamp(now), "event_type": event_type, "gateway": gateway}


# --------------------------------------------------------------------------- alerts topic: EVE alerts


def alert(
    *,
    gateway: str,
    ident: Mapping[str, Any],
    score: float,
    threshold: float,
    model: Mapping[str, Any],
    now: datetime | None = None,
    columns: Mapping[str, float] | None = None,
    attack: tuple[str, float] | None = None,
) -> dict[str, Any]:
    """One Suricata EVE ``alert`` for a flow scored at or above ``threshold``.

    ``ident`` keys (all optional): flow_id, src_ip, dst_ip, src_port, dst_port, protocol, timestamp, seq,
    sensor; missing ones are left out. ``columns``: the record's numeric IoTID20 columns by name (the model's
    features), from which the ``flow`` counters, start, end and age come. ``attack``: an optional
    ``(category name, probability)`` from an attack classifier, shown in ``alert.category`` and the metadata.
    The gateway is ``host`` (Suricata's sensor name); score, threshold, model, sensor, seq and the record's
    Flow_ID/Timestamp go to ``alert.metadata`` (read them back with :func:`ids_core.eve.read_alert`).
    Severity follows Suricata (1 = high): 1 when the score is in the upper half of ``[threshold, 1]``, else 2.
    """
    names = tuple(columns or ())
    maker = AlertMaker(gateway=gateway, threshold=threshold, model=model, now=now, features=names)
    return maker.document(ident, score, [columns[n] for n in names] if columns else (), attack)


class AlertMaker:
    """The alert documents of one batch: what they share (host, timestamp, threshold, model, signature) is made
    once; :meth:`document` fills in one flow's fields. ``features`` names the values given per flow (the model's
    feature columns, in order): the ``flow`` counters are read from them by position."""

    def __init__(
        self,
        *,
        gateway: str,
        threshold: float,
        model: Mapping[str, Any],
        now: datetime | None = None,
        features: Sequence[str] = (),
    ) -> None:
        threshold = float(threshold)
        if not math.isfinite(threshold):
            raise ValueError(f"expected finite score and threshold, got a threshold of {threshold}")
        self.threshold = threshold
        self._half = (1.0 - threshold) / 2
        self._head = {"timestamp": timestamp(now), "event_type": "alert", "host": gateway}
        # metadata after the score, up to the flow's own values (eve.encode_metadata's forms, computed once)
        self._shared = eve.encode_metadata(
            {
                eve.THRESHOLD: threshold,
                eve.VERDICT: "malicious",
                eve.MODEL_NAME: model.get("name"),
                eve.MODEL_VERSION: model.get("version"),
                eve.MODEL_SHA256: model.get("sha256"),
            }
        )
        position = {name: i for i, name in enumerate(features)}
        self._counters = tuple((position[c], key) for c, key in _FLOW_COUNTERS if c in position)
        self._duration = position.get(_DURATION)

    def document(
        self,
        ident: Mapping[str, Any],
        score: float,
        values: Sequence[float] = (),
        attack: tuple[str, float] | None = None,
    ) -> dict[str, Any]:
        """One flow's alert: ``ident`` as :func:`alert` takes it, ``values`` in the order of ``features``."""
        score, threshold = float(score), self.threshold
        if not math.isfinite(score):
            raise ValueError(f"expected finite score and threshold, got {score} and {threshold}")
        if score < threshold:
            raise ValueError(f"expected score >= threshold {threshold}, got {score}")
        doc: dict[str, Any] = dict(self._head)
        for src_key, doc_key in _ENDPOINT_KEYS:
            value = ident.get(src_key)
            if value is not None:
                value = _port(value) if doc_key.endswith("port") else str(value)
                if value is not None:
                    doc[doc_key] = value
        if ident.get("protocol") is not None:
            doc["proto"] = _proto(ident["protocol"])
        cid = community_id(ident)
        if cid is not None:
            doc["community_id"] = cid
        flow = self._flow(ident.get("timestamp"), values) if values is not None else {}
        if flow:
            doc["flow"] = flow
        category = CATEGORY
        meta = {eve.SCORE: [eve.encode_value(score)], **self._shared}
        for key, value in (
            (eve.SENSOR, ident.get("sensor")),
            (eve.SEQ, None if ident.get("seq") is None else int(ident["seq"])),
            (eve.FLOW_ID, ident.get("flow_id")),
            (eve.FLOW_TIMESTAMP, ident.get("timestamp")),  # as the record gave it (text or epoch number)
        ):
            if value is not None:
                meta[key] = [eve.encode_value(value)]
        if attack is not None:
            attack_name = str(attack[0])
            category = f"{CATEGORY}: {attack_name}"
            meta[eve.ATTACK_CATEGORY] = [attack_name]
            meta[eve.ATTACK_PROBABILITY] = [eve.encode_value(float(attack[1]))]
        doc["alert"] = {
            "action": ACTION,
            "gid": GID,
            "signature_id": SIGNATURE_ID,
            "rev": REV,
            "signature": SIGNATURE,
            "category": category,
            "severity": 1 if score - threshold >= self._half else 2,
            "metadata": meta,
        }
        return doc

    def _flow(self, start_value: Any, values: Sequence[float]) -> dict[str, Any]:
        """EVE's ``flow`` object: counters, and start/end/age when the record's Timestamp and Flow_Duration are
        known. Non-finite or negative values are left out."""
        flow: dict[str, Any] = {}
        if len(values):
            for i, key in self._counters:
                count = _count(values[i])
                if count is not None:
                    flow[key] = count
        duration_us = _count(values[self._duration]) if self._duration is not None and len(values) else None
        start = _flow_start(start_value)
        if start is not None:
            flow["start"] = _start_timestamp(start)
            if duration_us is not None:
                flow["end"] = timestamp(start + timedelta(microseconds=duration_us))
        if duration_us is not None:
            flow["age"] = duration_us // 1_000_000
        return flow


def dumps_finite(doc: Mapping[str, Any]) -> bytes:
    """A document that cannot hold a non-finite number (an alert: text and integers; a verdicts document: its scores
    were checked finite before) as compact UTF-8 JSON: orjson where installed (the same JSON as :func:`dumps`, which
    refuses NaN where orjson would write ``null``), else :func:`dumps`."""
    if _orjson is not None:
        return _orjson.dumps(doc)
    return dumps(doc)


def community_id(ident: Mapping[str, Any]) -> str | None:
    """The Community ID (spec v1, seed 0) of a TCP, UDP or SCTP flow whose addresses and ports are known."""
    proto = _proto_number(ident.get("protocol"))
    src, dst = ident.get("src_ip"), ident.get("dst_ip")
    sport, dport = _port(ident.get("src_port")), _port(ident.get("dst_port"))
    if proto not in _COMMUNITY_ID_PROTOCOLS or src is None or dst is None or sport is None or dport is None:
        return None
    try:
        a, b = _address(str(src)), _address(str(dst))
    except (OSError, ValueError):  # not an IP address
        return None
    if (b, dport) < (a, sport):  # the smaller endpoint first (network byte order), as the spec orders them
        a, b, sport, dport = b, a, dport, sport
    digest = hashlib.sha1(_COMMUNITY_ID_SEED + a + b + struct.pack("!BxHH", proto, sport, dport)).digest()
    return "1:" + base64.b64encode(digest).decode()


def _address(text: str) -> bytes:
    """An IPv4 or IPv6 address in network byte order; ``OSError`` if it is neither."""
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


# --------------------------------------------------------------------------- events topic: the agent's own events


def alert_summary(
    *, src_ip: str, suppressed: int, allowed: int, start: float, end: float, max_alerts: int, per_seconds: float
) -> dict[str, Any]:
    """What the rate limiter suppressed for one source in one window (epoch seconds); no gateway yet."""
    return {
        "timestamp": timestamp(end),
        "event_type": "alert_summary",
        "src_ip": src_ip,
        "suppressed": suppressed,
        "allowed": allowed,
        "window_start": timestamp(start),
        "window_end": timestamp(end),
        "limit": {"max_alerts": max_alerts, "per_seconds": per_seconds},
    }


def gap(
    *, gateway: str, sensor: str, first: int, last: int, reason: str, now: datetime | float | None = None
) -> dict[str, Any]:
    """Flows ``first``…``last`` of ``sensor`` never arrived (lost upstream): a blind spot, published once."""
    return {
        **_head("gap", gateway, now),
        "sensor": sensor,
        "first_seq": first,
        "last_seq": last,
        "flows": last - first + 1,
        "reason": reason,
    }


# --------------------------------------------------------------------------- verdicts and dead letters


def verdicts(
    *,
    gateway: str,
    model: Mapping[str, Any],
    threshold: float,
    idents: Sequence[Mapping[str, Any]],
    scores: Sequence[float],
    message_seq: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every flow of a batch: its identifiers (flow_id, seq, sensor, src_ip when given), score and verdict.

    ``message_seq`` numbers the agent's verdicts messages from 0 (per state directory, across restarts): a missing
    number is a verdicts message lost after the agent handed it to the broker (a broker killed before writing it)."""
    return {
        **_head("verdicts", gateway, now),
        "message_seq": message_seq,
        "model": dict(model),
        "threshold": threshold,
        "verdicts": [
            {
                **{k: ident[k] for k in _VERDICT_IDENT if k in ident},
                "score": round(s, 6),
                "verdict": "malicious" if s > threshold else "benign",
            }
            for ident, s in zip(idents, scores, strict=True)
        ],
    }


def deadletter(
    *, gateway: str, source_topic: str, rejected: Mapping[str, Any], now: datetime | None = None, **extra: Any
) -> dict[str, Any]:
    """A rejected message or record: ``rejected`` is ``Rejected.to_dict()`` (reason, detail, index, excerpt,
    ident); ``extra`` adds context such as the model of a failed inference."""
    return {**_head("deadletter", gateway, now), **rejected, "source_topic": source_topic, **extra}


def deadletter_summary(
    *, gateway: str, source_topic: str, counts: Mapping[str, int], shown: int, now: datetime | None = None
) -> dict[str, Any]:
    """The record errors of one message beyond the first ``shown`` (dead-lettered in full), counted by reason."""
    suppressed = sum(counts.values())
    return {
        **_head("deadletter_summary", gateway, now),
        "reason": "deadletter_summary",
        "detail": f"{shown + suppressed} records of this message were rejected; the first {shown} were "
        f"dead-lettered in full, the other {suppressed} are counted here by reason",
        "source_topic": source_topic,
        "shown": shown,
        "suppressed": suppressed,
        "counts": dict(sorted(counts.items())),
    }


# --------------------------------------------------------------------------- the gateway's own state


def stats(snapshot: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The periodic ``stats`` document: ``snapshot`` is what :meth:`agent.stats.Stats.snapshot` returned."""
    return {"timestamp": timestamp(now), "event_type": "stats", **snapshot}


def bundle_status(*, gateway: str, event: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Install progress of a model bundle: ``event`` holds ``event`` (received, rejected, …) and its details."""
    return {**_head("bundle_status", gateway, now), **event}


# --------------------------------------------------------------------------- helpers


def _port(value: Any) -> int | None:
    """Ports from CSV often arrive as floats (``80.0``); None for anything that is not a port number."""
    try:
        port = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return port if 0 <= port <= 65535 else None


def _proto_number(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _proto(value: Any) -> str:
    """Suricata's name for the protocol number (``TCP``, ``UDP``, …), else the number as text; text kept
    upper-case."""
    number = _proto_number(value)
    if number is None:
        return str(value).upper()
    return PROTOCOL_NAMES.get(number, str(number))


def _count(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and 0 <= number < 2**63 else None


def _flow_start(value: Any) -> datetime | None:
    """A record's Timestamp: epoch seconds, IoTID20's ``25/07/2019 03:25:53 AM`` or ISO 8601 text. Text
    without a zone is read as UTC (the flow meter writes UTC); anything else gives None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (ValueError, OverflowError, OSError):
            return None
    return _text_start(str(value))


_start_timestamp = functools.lru_cache(maxsize=4096)(timestamp)  # flows sharing a start share its text


@functools.lru_cache(maxsize=4096)  # the flows of a storm share their second: each text is parsed once
def _text_start(text: str) -> datetime | None:
    try:
        try:
            moment = datetime.strptime(text, TIMESTAMP_FORMAT)
        except ValueError:
            moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
