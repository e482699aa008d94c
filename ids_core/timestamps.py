"""The one timestamp format of every published document (agent and flow meter): Suricata EVE's
``2024-05-01T12:00:00.000123+0000`` — UTC, microseconds, a ``+0000`` offset (EVE's schema rejects ``Z`` and
``+00:00``; Python's ``datetime.fromisoformat`` reads it)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_timestamp(moment: datetime | float | None = None) -> str:
    """``2024-05-01T12:00:00.000123+0000``: a timezone-aware datetime, epoch seconds, or now.

    A naive datetime is rejected (its zone is unknown).
    """
    if moment is None:
        moment = datetime.now(UTC)
    elif isinstance(moment, int | float):
        moment = datetime.fromtimestamp(moment, UTC)
    elif moment.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {moment!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")
