"""The labels file written beside a lab capture, and the labelling of flow records (or packets) from it.

``labels.json`` says, for each attack, its IoTID20 category and sub-category, the attacker's addresses, the
victims, and when the tool actually ran: ``start_us``/``stop_us`` in µs since the Unix epoch on the system clock
(CLOCK_REALTIME), the clock the kernel stamps captured packets with, so pcap times and label windows compare
directly. A flow is labelled with an attack when one of its endpoints is that attack's attacker and it starts
inside the attack's window (± a tolerance); for ARP spoofing, also when it runs between a victim and the spoofed
host until the scheduled stop (that traffic crossed the attacker; after it arpspoof repairs the caches). Everything
else is ``Normal``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FORMAT = "iotids-lab-labels/1"
MAX_LABELS_BYTES = 4 * 1024 * 1024
IOTID20_TIMESTAMP = "%d/%m/%Y %I:%M:%S %p"  # CICFlowMeter's format: whole seconds, local time of the meter
NORMAL = ("Normal", "Normal", "Normal")


class LabelsError(ValueError):
    """A labels file that cannot be read, or a flow row whose time cannot be parsed."""


@dataclasses.dataclass(frozen=True)
class FlowLabel:
    label: str  # IoTID20 Label: Normal | Anomaly
    cat: str  # IoTID20 Cat
    sub_cat: str  # IoTID20 Sub_Cat
    attack: str = ""  # the scenario's attack name ("" for Normal)

    def columns(self) -> dict[str, str]:
        """The three IoTID20 label columns."""
        return {"Label": self.label, "Cat": self.cat, "Sub_Cat": self.sub_cat}


NORMAL_LABEL = FlowLabel(*NORMAL)


def write_labels(path: Path, labels: Mapping[str, Any]) -> None:
    """Write ``labels`` atomically (temp file + rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, **labels}, indent=1) + "\n")
    tmp.replace(path)


def read_labels(path: Path) -> dict[str, Any]:
    """Read and check a labels file."""
    try:
        size = path.stat().st_size
        if size > MAX_LABELS_BYTES:
            raise LabelsError(f"{path}: {size} bytes, larger than {MAX_LABELS_BYTES}")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise LabelsError(f"{path}: cannot read: {e}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise LabelsError(f"{path}: not JSON: {e}") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LabelsError(f"{path}: not a lab labels file (format {FORMAT!r} expected)")
    for i, attack in enumerate(data.get("attacks", [])):
        for key in ("name", "category", "sub_category", "attacker_addresses", "start_us", "stop_us"):
            if key not in attack:
                raise LabelsError(f"{path}: attacks[{i}] has no {key!r}")
    return data


@dataclasses.dataclass(frozen=True)
class _Window:
    label: FlowLabel
    start_s: float
    stop_s: float
    attacker: frozenset[str]
    pairs: frozenset[frozenset[str]]  # ARP spoofing: {victim, spoofed} address pairs
    pairs_stop_s: float  # poisoning ends at the scheduled stop; the tool's re-ARP tail repairs the caches


class Labeler:
    """Labels (src, dst, time) triples from a labels mapping; ``tolerance_s`` widens each window both ways."""

    def __init__(self, labels: Mapping[str, Any], tolerance_s: float = 1.0) -> None:
        self.tolerance_s = tolerance_s
        self.windows: list[_Window] = []
        for a in labels.get("attacks", []):
            label = FlowLabel("Anomaly", a["category"], a["sub_category"], a["name"])
            pairs = frozenset(
                frozenset((victim, a["spoofed_address"]))
                for victim in a.get("victim_addresses", [])
                if a.get("spoofed_address")
            )
            start, stop = a["start_us"] / 1e6, a["stop_us"] / 1e6
            pairs_stop = min(stop, a.get("scheduled_stop_us", a["stop_us"]) / 1e6)
            self.windows.append(_Window(label, start, stop, frozenset(a["attacker_addresses"]), pairs, pairs_stop))

    def label(self, src: str, dst: str, t_lo: float, t_hi: float | None = None) -> FlowLabel:
        """The label of traffic between ``src`` and ``dst`` that started in [t_lo, t_hi] (epoch seconds)."""
        t_hi = t_lo if t_hi is None else t_hi
        best: tuple[int, float, float, FlowLabel] | None = None
        for w in self.windows:
            lo, hi = w.start_s - self.tolerance_s, w.stop_s + self.tolerance_s
            if t_hi < lo or t_lo > hi:
                continue
            if src in w.attacker or dst in w.attacker:
                rank = 0  # the attacker's own packets beat the diverted traffic of an ARP spoof
            elif frozenset((src, dst)) in w.pairs and t_lo <= w.pairs_stop_s + self.tolerance_s:
                rank = 1
            else:
                continue
            distance = max(0.0, w.start_s - t_hi, t_lo - w.stop_s)
            # inside two windows (an attack's tail, e.g. arpspoof re-ARPing, overlaps the next): the one that
            # started last before the flow did
            recency = -w.start_s if w.start_s <= t_hi else float("inf")
            if best is None or (rank, distance, recency) < best[:3]:
                best = (rank, distance, recency, w.label)
        return best[3] if best else NORMAL_LABEL


def flow_start(row: Mapping[str, Any], tz: dt.tzinfo = dt.UTC) -> tuple[float, float]:
    """The interval (epoch seconds) a flow record's ``Timestamp`` says the flow started in.

    IoTID20/CICFlowMeter text (``25/07/2019 03:25:53 AM``, whole seconds, read in ``tz`` — the reference runs
    with TZ=UTC) gives a one-second interval; ISO text, epoch seconds or a datetime give an exact instant.
    """
    value = row.get("Timestamp")
    if isinstance(value, dt.datetime):
        t = (value if value.tzinfo else value.replace(tzinfo=tz)).timestamp()
        return t, t
    if isinstance(value, int | float) and not isinstance(value, bool):
        t = float(value) / (1e6 if value > 1e14 else 1.0)  # µs or seconds since the epoch
        return t, t
    if not isinstance(value, str) or not value.strip():
        raise LabelsError(f"flow has no usable Timestamp: {value!r}")
    text = value.strip()
    try:
        t = dt.datetime.strptime(text, IOTID20_TIMESTAMP).replace(tzinfo=tz).timestamp()
        return t, t + 1.0  # the format truncates to whole seconds
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            t = float(text)
        except ValueError:
            raise LabelsError(
                f"flow Timestamp {text!r} is neither {IOTID20_TIMESTAMP!r}, ISO 8601 nor a number"
            ) from None
        t /= 1e6 if t > 1e14 else 1.0
        return t, t
    t = (parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)).timestamp()
    return t, t


def label_flows(
    flow_rows: Iterable[Mapping[str, Any]],
    labels: Mapping[str, Any] | Path,
    *,
    tolerance_s: float = 1.0,
    tz: dt.tzinfo = dt.UTC,
) -> list[FlowLabel]:
    """One label per flow record (IoTID20 columns ``Src_IP``, ``Dst_IP``, ``Timestamp``), in order."""
    if isinstance(labels, Path):
        labels = read_labels(labels)
    labeler = Labeler(labels, tolerance_s)
    out = []
    for i, row in enumerate(flow_rows):
        try:
            t_lo, t_hi = flow_start(row, tz)
        except LabelsError as e:
            raise LabelsError(f"flow {i}: {e}") from None
        out.append(labeler.label(str(row.get("Src_IP", "")), str(row.get("Dst_IP", "")), t_lo, t_hi))
    return out
