"""Every document the agent publishes, made in one place with one timestamp format and one JSON encoder.

Topics (``<prefix>/<gateway>/…``): ``alerts`` carries ``alert``, ``alert_summary`` and ``gap`` events;
``verdicts`` one ``verdicts`` document per batch; ``deadletter`` ``deadletter`` documents (and one
``deadletter_summary`` per message past :data:`DEADLETTERS_PER_MESSAGE`); ``stats/<client_id>`` ``stats``;
``bundle/status`` ``bundle_status``; ``status/…`` the plain payloads ``online`` / ``offline``
(:data:`ids_core.mqtt.ONLINE`, shared with the flow meter).
Every JSON document starts with ``timestamp`` (RFC 3339, UTC, microseconds, ``Z``) and ``event_type``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ids_core.timestamps import rfc3339

SIGNATURE = "edge-ids anomalous flow"
CATEGORY = "Anomalous network flow"
PROTOCOL_NAMES = {6: "TCP", 17: "UDP", 1: "ICMP"}

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


def timestamp(moment: datetime | float | None = None) -> str:
    """``2024-05-01T12:00:00.000123Z``: a timezone-aware datetime, epoch seconds, or now; a naive datetime is
    rejected (its zone is unknown). One format for the agent and the flow meter: :func:`ids_core.timestamps.rfc3339`."""
    return rfc3339(moment)


def dumps(doc: Any) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities are refused (they are not JSON)."""
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def _head(event_type: str, gateway: str, now: datetime | float | None) -> dict[str, Any]:
    return {"timestamp": timestamp(now), "event_type": event_type, "gateway": gateway}


# --------------------------------------------------------------------------- alerts topic


def alert(
    *,
    gateway: str,
    ident: Mapping[str, Any],
    score: float,
    threshold: float,
    model: Mapping[str, Any],
    now: datetime | None = None,
) -> dict[str, Any]:
    """One EVE-like ``alert`` document for a flow scored at or above ``threshold``.

    ``ident`` keys (all optional): flow_id, src_ip, dst_ip, src_port, dst_port, protocol, timestamp, seq,
    sensor; missing ones are left out of the document. Severity follows Suricata (1 = high): 1 when the
    score is in the upper half of ``[threshold, 1]``, else 2.
    """
    score, threshold = float(score), float(threshold)
    if not (math.isfinite(score) and math.isfinite(threshold)):
        raise ValueError(f"expected finite score and threshold, got {score} and {threshold}")
    if score < threshold:
        raise ValueError(f"expected score >= threshold {threshold}, got {score}")
    doc = _head("alert", gateway, now)
    if ident.get("flow_id") is not None:
        doc["flow_id"] = str(ident["flow_id"])
    for src_key, doc_key in _ENDPOINT_KEYS:
        value = ident.get(src_key)
        if value is not None:
            doc[doc_key] = _port(value) if doc_key.endswith("port") else str(value)
    if ident.get("protocol") is not None:
        doc["proto"] = _proto(ident["protocol"])
    if ident.get("timestamp") is not None:
        doc["flow_timestamp"] = ident["timestamp"]  # as the record gave it (text or epoch number)
    if ident.get("seq") is not None:
        doc["seq"] = int(ident["seq"])
    if ident.get("sensor") is not None:
        doc["sensor"] = str(ident["sensor"])
    doc["alert"] = {
        "signature": SIGNATURE,
        "category": CATEGORY,
        "severity": 1 if score - threshold >= (1.0 - threshold) / 2 else 2,
        "score": score,
        "threshold": threshold,
        "verdict": "malicious",
    }
    doc["model"] = {key: model.get(key) for key in ("name", "version", "sha256")}
    return doc


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
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every flow of a batch: its identifiers (flow_id, seq, sensor, src_ip when given), score and verdict."""
    return {
        **_head("verdicts", gateway, now),
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


def _port(value: Any) -> int | str:
    """Ports from CSV often arrive as floats (``80.0``); keep anything unparsable as text."""
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return str(value)


def _proto(value: Any) -> str | int:
    """``TCP``/``UDP``/``ICMP`` for 6/17/1, the number for other protocols, text kept upper-case."""
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return str(value).upper()
    return PROTOCOL_NAMES.get(number, number)
