"""Labelling flow records from a lab labels file: attacker address + time window → the attack, else Normal."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from trafficlab.labels import LabelsError, flow_start, label_flows, read_labels, write_labels

T0 = dt.datetime(2026, 12, 5, 10, 0, 0, tzinfo=dt.UTC).timestamp()
ATTACKER = ["10.77.0.200", "fd77::c8"]


def _attack(name: str, cat: str, sub: str, start: float, stop: float, **extra: object) -> dict:
    return {"name": name, "category": cat, "sub_category": sub, "attacker_addresses": ATTACKER,
            "victim_addresses": ["10.77.0.10"], "start_us": int((T0 + start) * 1e6),
            "stop_us": int((T0 + stop) * 1e6), **extra}  # fmt: skip


LABELS = {
    "attacks": [
        _attack("scan", "Scan", "Scan Hostport", 10.0, 20.0),
        _attack("spoof", "MITM ARP Spoofing", "MITM ARP Spoofing", 30.0, 43.5, spoofed_address="10.77.0.1"),
        _attack("guess", "Mirai", "Mirai-Hostbruteforceg", 41.2, 50.0),
    ]
}


def iotid20(seconds_after_t0: float) -> str:
    return dt.datetime.fromtimestamp(T0 + seconds_after_t0, dt.UTC).strftime("%d/%m/%Y %I:%M:%S %p")


def sub_cats(rows: list[dict], **kw: object) -> list[str]:
    return [label.sub_cat for label in label_flows(rows, LABELS, **kw)]


def test_attacker_flows_inside_a_window_get_the_attack_and_the_rest_is_normal():
    rows = [
        {"Src_IP": "10.77.0.200", "Dst_IP": "10.77.0.10", "Timestamp": iotid20(12)},
        {"Src_IP": "10.77.0.10", "Dst_IP": "10.77.0.200", "Timestamp": iotid20(19.5)},  # the victim's answer
        {"Src_IP": "10.77.0.10", "Dst_IP": "10.77.0.1", "Timestamp": iotid20(12)},  # benign, same time
        {"Src_IP": "10.77.0.200", "Dst_IP": "10.77.0.10", "Timestamp": iotid20(25)},  # attacker, no window
        {"Src_IP": "fd77::c8", "Dst_IP": "fd77::a", "Timestamp": iotid20(15)},  # its IPv6 address counts too
    ]
    labels = label_flows(rows, LABELS)
    assert [x.sub_cat for x in labels] == ["Scan Hostport", "Scan Hostport", "Normal", "Normal", "Scan Hostport"]
    assert labels[0].columns() == {"Label": "Anomaly", "Cat": "Scan", "Sub_Cat": "Scan Hostport"}
    assert labels[2].columns() == {"Label": "Normal", "Cat": "Normal", "Sub_Cat": "Normal"}
    assert labels[0].attack == "scan" and labels[2].attack == ""


def test_the_tolerance_widens_each_window():
    row = {"Src_IP": "10.77.0.200", "Dst_IP": "10.77.0.10", "Timestamp": T0 + 20.8}
    assert sub_cats([row]) == ["Scan Hostport"]
    assert sub_cats([row], tolerance_s=0.5) == ["Normal"]
    early = {"Src_IP": "10.77.0.200", "Dst_IP": "10.77.0.10", "Timestamp": iotid20(8.5)}  # text says 8 s: [8, 9)
    assert sub_cats([early]) == ["Scan Hostport"]  # 9 + 1 s tolerance reaches the start at 10
    assert sub_cats([early], tolerance_s=0.0) == ["Normal"]


def test_arp_spoofing_labels_the_victims_traffic_with_the_spoofed_host_only():
    rows = [
        {"Src_IP": "10.77.0.10", "Dst_IP": "10.77.0.1", "Timestamp": iotid20(35)},  # crossed the attacker
        {"Src_IP": "10.77.0.1", "Dst_IP": "10.77.0.10", "Timestamp": iotid20(36)},
        {"Src_IP": "10.77.0.10", "Dst_IP": "10.77.0.11", "Timestamp": iotid20(35)},  # not via the spoofed host
        {"Src_IP": "10.77.0.10", "Dst_IP": "10.77.0.1", "Timestamp": iotid20(55)},  # after the window
    ]
    assert sub_cats(rows) == ["MITM ARP Spoofing", "MITM ARP Spoofing", "Normal", "Normal"]


def test_overlapping_windows_go_to_the_attack_that_started_last():
    """arpspoof re-ARPs after its stop time, so its window runs into the next attack of the same attacker."""
    rows = [
        {"Src_IP": "10.77.0.200", "Dst_IP": "10.77.0.11", "Timestamp": T0 + 41.0},  # before the guessing began
        {"Src_IP": "10.77.0.200", "Dst_IP": "10.77.0.11", "Timestamp": T0 + 41.5},
        {"Src_IP": "10.77.0.200", "Dst_IP": "10.77.0.11", "Timestamp": iotid20(41.5)},  # [41, 42)
        # victim ↔ spoofed host during the tail: the attacker's own packets rank first, this is still the spoof
        {"Src_IP": "10.77.0.10", "Dst_IP": "10.77.0.1", "Timestamp": T0 + 42.0},
    ]
    assert sub_cats(rows) == [
        "MITM ARP Spoofing",
        "Mirai-Hostbruteforceg",
        "Mirai-Hostbruteforceg",
        "MITM ARP Spoofing",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("05/12/2026 10:00:07 AM", (T0 + 7, T0 + 8)),
        ("05/12/2026 10:00:07 PM", (T0 + 7 + 12 * 3600, T0 + 8 + 12 * 3600)),
        ("2026-12-05T10:00:07.250000+00:00", (T0 + 7.25, T0 + 7.25)),
        ("2026-12-05 10:00:07.5", (T0 + 7.5, T0 + 7.5)),
        (T0 + 7.25, (T0 + 7.25, T0 + 7.25)),
        (int((T0 + 7.25) * 1e6), (T0 + 7.25, T0 + 7.25)),
        (str(T0 + 7), (T0 + 7, T0 + 7)),
        (dt.datetime(2026, 12, 5, 10, 0, 7), (T0 + 7, T0 + 7)),
    ],
)
def test_flow_start_reads_iotid20_iso_and_epoch_times(value, expected):
    assert flow_start({"Timestamp": value}) == pytest.approx(expected)


def test_a_flow_without_a_usable_time_is_an_error_naming_the_flow():
    rows = [{"Src_IP": "a", "Dst_IP": "b", "Timestamp": iotid20(1)}, {"Src_IP": "a", "Dst_IP": "b"}]
    with pytest.raises(LabelsError, match="flow 1: flow has no usable Timestamp"):
        label_flows(rows, LABELS)
    with pytest.raises(LabelsError, match=r"flow 0: .*'yesterday' is neither"):
        label_flows([{"Timestamp": "yesterday"}], LABELS)


def test_the_labels_file_round_trips_and_bad_files_are_refused(tmp_path: Path):
    path = tmp_path / "labels.json"
    write_labels(path, LABELS)
    assert read_labels(path)["attacks"] == LABELS["attacks"]
    rows = [{"Src_IP": "10.77.0.200", "Dst_IP": "10.77.0.10", "Timestamp": iotid20(12)}]
    assert label_flows(rows, path)[0].sub_cat == "Scan Hostport"
    path.write_text(json.dumps({"attacks": []}))
    with pytest.raises(LabelsError, match="not a lab labels file"):
        read_labels(path)
    path.write_text(json.dumps({"format": "iotids-lab-labels/1", "attacks": [{"name": "x"}]}))
    with pytest.raises(LabelsError, match="attacks\\[0\\] has no 'category'"):
        read_labels(path)
    path.write_text("{")
    with pytest.raises(LabelsError, match="not JSON"):
        read_labels(path)
    with pytest.raises(LabelsError, match="cannot read"):
        read_labels(tmp_path / "missing.json")


def test_the_victims_traffic_is_normal_again_once_the_poisoning_is_scheduled_to_stop():
    """arpspoof repairs the caches after its stop time: the victim's packets go direct again during that tail."""
    spoof = _attack("spoof", "MITM ARP Spoofing", "MITM ARP Spoofing", 30.0, 43.5, spoofed_address="10.77.0.1")
    spoof["scheduled_stop_us"] = int((T0 + 33.5) * 1e6)
    victim = {"Src_IP": "10.77.0.10", "Dst_IP": "10.77.0.1"}
    rows = [{**victim, "Timestamp": T0 + 33.0}, {**victim, "Timestamp": T0 + 40.0}]
    attacker_tail = {"Src_IP": "10.77.0.200", "Dst_IP": "10.77.0.10", "Timestamp": T0 + 40.0}
    got = label_flows([*rows, attacker_tail], {"attacks": [spoof]})
    assert [x.sub_cat for x in got] == ["MITM ARP Spoofing", "Normal", "MITM ARP Spoofing"]
