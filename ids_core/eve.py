"""The agent's alerts as Suricata EVE carries them: what we add under ``alert.metadata`` and how to read it back.

EVE's ``alert.metadata`` is open; Suricata writes every value there as an array of strings
(``{"policy": ["balanced"]}``), and so do we: :func:`encode_metadata` writes, :func:`read_alert` reads. The
agent makes the documents (``agent.documents.alert``); everything that reads them (demo, bench, tests) uses
:func:`read_alert`, so the key names below are spelled once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# alert.metadata keys, in document order
SCORE, THRESHOLD, VERDICT = "score", "threshold", "verdict"
MODEL_NAME, MODEL_VERSION, MODEL_SHA256 = "model_name", "model_version", "model_sha256"
SENSOR, SEQ, FLOW_ID, FLOW_TIMESTAMP = "sensor", "seq", "flow_id", "flow_timestamp"
ATTACK_CATEGORY, ATTACK_PROBABILITY = "attack_category", "attack_probability"


def encode_metadata(values: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{key: [text]}`` for every value that is not None: floats in their shortest round-trip form
    (``repr``), so a score read back with :func:`read_alert` is the same float."""
    return {key: [encode_value(value)] for key, value in values.items() if value is not None}


@dataclass(frozen=True, slots=True)
class AlertReading:
    """What a consumer needs from one ``alert`` document, typed."""

    gateway: str | None
    score: float
    threshold: float
    seq: int | None
    sensor: str | None
    flow_id: str | None
    flow_timestamp: str | None
    model: dict[str, str | None]
    attack_category: str | None = None


def documents_in(payload: bytes) -> list[dict[str, Any]]:
    """The EVE documents of one message on the alerts topic: one document, or one per line when the agent groups
    alerts (``alerts.max_per_message`` > 1; the layout of Suricata's ``eve.json``)."""
    return [json.loads(line) for line in payload.splitlines() if line.strip()]


def read_alert(doc: Mapping[str, Any]) -> AlertReading:
    """Read an ``alert`` document back; ``ValueError`` names what is missing or malformed."""
    if doc.get("event_type") != "alert":
        raise ValueError(f"expected event_type 'alert', got {doc.get('event_type')!r}")
    meta = doc.get("alert", {}).get("metadata", {})

    def first(key: str) -> str | None:
        value = meta.get(key)
        return value[0] if isinstance(value, list) and value else None

    score, threshold, seq = first(SCORE), first(THRESHOLD), first(SEQ)
    if score is None or threshold is None:
        raise ValueError(f"expected alert.metadata {SCORE!r} and {THRESHOLD!r}, got keys {sorted(meta)}")
    return AlertReading(
        gateway=doc.get("host"),
        score=float(score),
        threshold=float(threshold),
        seq=None if seq is None else int(seq),
        sensor=first(SENSOR),
        flow_id=first(FLOW_ID),
        flow_timestamp=first(FLOW_TIMESTAMP),
        model={"name": first(MODEL_NAME), "version": first(MODEL_VERSION), "sha256": first(MODEL_SHA256)},
        attack_category=first(ATTACK_CATEGORY),
    )


def encode_value(value: Any) -> str:
    """One ``alert.metadata`` value as text (floats: shortest round-trip ``repr``; non-finite refused)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value}")
        return repr(value)
    return str(value)
