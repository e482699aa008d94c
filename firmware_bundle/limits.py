"""Upper bounds on every input the verifier reads (checked before the input is parsed or hashed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds for :func:`firmware_bundle.verifier.verify_bundle`.

    Attributes:
        max_bundle_bytes: the whole bundle, checked before anything is parsed.
        max_manifest_bytes: manifest.json, checked before it is verified or decoded.
        max_members: tar members (headers) read before giving up.
        max_file_bytes: any single listed file (manifest ``size`` and the member itself).
        max_name_length: a member name.
        max_clock_skew: how far ``created`` may lie after the reference time (gateway clocks lag).
    """

    max_bundle_bytes: int = 16 * MIB
    max_manifest_bytes: int = 64 * 1024
    max_members: int = 16
    max_file_bytes: int = 16 * MIB
    max_name_length: int = 100
    max_clock_skew: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        for name in ("max_bundle_bytes", "max_manifest_bytes", "max_members", "max_file_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name}: expected >= 1, got {getattr(self, name)}")
        if self.max_clock_skew < timedelta(0):
            raise ValueError(f"Limits.max_clock_skew: expected >= 0, got {self.max_clock_skew}")
