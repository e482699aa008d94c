"""The one timestamp format of every published document (agent and flow meter): RFC 3339, UTC, µs, ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime | float | None = None) -> str:
    """``2024-05-01T12:00:00.000123Z``: a timezone-aware datetime, epoch seconds, or now.

    A naive datetime is rejected (its zone is unknown).
    """
    if moment is None:
        moment = datetime.now(UTC)
    elif isinstance(moment, int | float):
        moment = datetime.fromtimestamp(moment, UTC)
    elif moment.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {moment!r}")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
