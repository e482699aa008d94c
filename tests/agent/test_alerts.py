"""Alert documents and the per-source rate limiter, with explicit clocks (no sleeps)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from agent.alerts import OVERFLOW_SOURCE, RateLimiter
from agent.documents import alert as make_alert
from agent.documents import community_id
from ids_core.eve import read_alert

MODEL = {"name": "uni-hybrid-t8", "version": "3", "sha256": "ab" * 32, "path": "/var/lib/x"}
IDENT = {
    "flow_id": "192.168.0.13-192.168.0.16-10000-10101-17",
    "src_ip": "192.168.0.13",
    "dst_ip": "192.168.0.16",
    "src_port": 10000.0,
    "dst_port": 10101,
    "protocol": 17,
    "timestamp": "25/04/2019 10:15:33 AM",
    "seq": 42,
    "sensor": "br0",
}
T0 = 1_700_000_000.0  # wall-clock seconds


# ------------------------------------------------------------------------------------------ alerts


def test_alert_shape():
    now = datetime(2024, 5, 1, 12, 0, 0, 123, tzinfo=UTC)
    columns = {"Tot_Fwd_Pkts": 3.0, "Tot_Bwd_Pkts": 2.0, "TotLen_Fwd_Pkts": 120.0, "TotLen_Bwd_Pkts": 64.0,
               "Flow_Duration": 2_500_000.0, "Flow_Byts/s": 73.6}  # fmt: skip
    doc = make_alert(gateway="gw-1", ident=IDENT, score=0.97, threshold=0.5, model=MODEL, now=now, columns=columns)
    assert doc == {
        "timestamp": "2024-05-01T12:00:00.000123+0000",
        "event_type": "alert",
        "host": "gw-1",
        "src_ip": "192.168.0.13",
        "src_port": 10000,
        "dest_ip": "192.168.0.16",
        "dest_port": 10101,
        "proto": "UDP",
        "community_id": community_id({**IDENT, "src_port": 10000}),
        "flow": {
            "pkts_toserver": 3,
            "pkts_toclient": 2,
            "bytes_toserver": 120,
            "bytes_toclient": 64,
            "start": "2019-04-25T10:15:33.000000+0000",
            "end": "2019-04-25T10:15:35.500000+0000",
            "age": 2,
        },
        "alert": {
            "action": "allowed",
            "gid": 1,
            "signature_id": 1_990_001,
            "rev": 1,
            "signature": "edge-ids anomalous flow",
            "category": "Anomalous network flow",
            "severity": 1,
            "metadata": {
                "score": ["0.97"],
                "threshold": ["0.5"],
                "verdict": ["malicious"],
                "model_name": ["uni-hybrid-t8"],
                "model_version": ["3"],
                "model_sha256": ["ab" * 32],
                "sensor": ["br0"],
                "seq": ["42"],
                "flow_id": ["192.168.0.13-192.168.0.16-10000-10101-17"],
                "flow_timestamp": ["25/04/2019 10:15:33 AM"],
            },
        },
    }
    assert doc["community_id"].startswith("1:")
    json.dumps(doc, allow_nan=False)  # serialisable as is


def test_read_alert_gives_back_what_went_in():
    doc = make_alert(gateway="gw-1", ident=IDENT, score=0.1 + 0.7, threshold=0.55, model=MODEL)
    got = read_alert(json.loads(json.dumps(doc)))
    assert got.score == 0.1 + 0.7 and got.threshold == 0.55  # shortest round-trip text: the same float
    assert (got.gateway, got.seq, got.sensor) == ("gw-1", 42, "br0")
    assert got.flow_id == IDENT["flow_id"] and got.flow_timestamp == IDENT["timestamp"]
    assert got.model == {k: MODEL[k] for k in ("name", "version", "sha256")} and got.attack_category is None
    with pytest.raises(ValueError, match="expected event_type 'alert'"):
        read_alert({"event_type": "gap"})


def test_attack_category_goes_to_category_and_metadata():
    doc = make_alert(gateway="g", ident={}, score=0.9, threshold=0.5, model=MODEL, attack=("DoS-SYN", 0.875))
    assert doc["alert"]["category"] == "Anomalous network flow: DoS-SYN"
    assert doc["alert"]["metadata"]["attack_category"] == ["DoS-SYN"]
    assert doc["alert"]["metadata"]["attack_probability"] == ["0.875"]
    assert read_alert(doc).attack_category == "DoS-SYN"


def test_alert_timestamp_is_utc_with_microseconds_and_offset():
    local = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    doc = make_alert(gateway="g", ident={}, score=0.9, threshold=0.5, model=MODEL, now=local)
    assert doc["timestamp"] == "2024-05-01T12:00:00.000000+0000"
    default = make_alert(gateway="g", ident={}, score=0.9, threshold=0.5, model=MODEL)
    assert datetime.fromisoformat(default["timestamp"]).tzinfo is not None
    with pytest.raises(ValueError, match="timezone-aware"):
        make_alert(gateway="g", ident={}, score=0.9, threshold=0.5, model=MODEL, now=datetime(2024, 5, 1))


def test_numeric_flow_timestamp_is_kept_as_given_and_starts_the_flow():
    doc = make_alert(gateway="g", ident={"timestamp": 1556187333.5}, score=0.9, threshold=0.5, model=MODEL,
                     columns={"Flow_Duration": 1_000_001.0})  # fmt: skip
    assert doc["alert"]["metadata"]["flow_timestamp"] == ["1556187333.5"]
    assert doc["flow"] == {"start": "2019-04-25T10:15:33.500000+0000", "end": "2019-04-25T10:15:34.500001+0000",
                           "age": 1}  # fmt: skip


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, None])
def test_non_finite_or_negative_counters_are_left_out(bad):
    columns = {"Tot_Fwd_Pkts": bad, "Tot_Bwd_Pkts": 1.0, "Flow_Duration": bad}
    doc = make_alert(gateway="g", ident={"timestamp": "not a time"}, score=0.9, threshold=0.5, model=MODEL,
                     columns=columns)  # fmt: skip
    assert doc["flow"] == {"pkts_toclient": 1}
    json.dumps(doc, allow_nan=False)


def test_alert_leaves_out_missing_identity_fields():
    doc = make_alert(gateway="g", ident={"src_ip": "10.0.0.1"}, score=0.6, threshold=0.5, model=MODEL)
    assert doc["src_ip"] == "10.0.0.1"
    for key in ("flow_id", "dest_ip", "src_port", "dest_port", "proto", "community_id", "flow"):
        assert key not in doc
    for key in ("flow_id", "flow_timestamp", "seq", "sensor"):
        assert key not in doc["alert"]["metadata"]
    assert doc["alert"]["severity"] == 2  # 0.6 is in the lower half of [0.5, 1]


@pytest.mark.parametrize(
    ("protocol", "proto"), [(6, "TCP"), (17.0, "UDP"), ("1", "ICMP"), (47, "47"), ("sctp", "SCTP"), (132, "SCTP")]
)
def test_protocol_names(protocol, proto):
    doc = make_alert(gateway="g", ident={"protocol": protocol}, score=1.0, threshold=0.5, model=MODEL)
    assert doc["proto"] == proto


def test_community_id_only_with_a_known_five_tuple():
    def cid(**changes):
        return community_id({**IDENT, **changes})

    assert cid() == cid(src_ip=IDENT["dst_ip"], dst_ip=IDENT["src_ip"], src_port=10101, dst_port=10000)
    assert cid(protocol=1) is None  # ICMP: CICFlowMeter's port 0 is not the ICMP type/code
    assert cid(src_port=None) is None and cid(dst_ip=None) is None
    assert cid(src_ip="not-an-ip") is None and cid(dst_port=70000) is None


def test_alert_below_threshold_is_refused():
    with pytest.raises(ValueError, match="expected score >= threshold"):
        make_alert(gateway="g", ident={}, score=0.4, threshold=0.5, model=MODEL)
    with pytest.raises(ValueError, match="finite"):
        make_alert(gateway="g", ident={}, score=float("nan"), threshold=0.5, model=MODEL)


# ------------------------------------------------------------------------------------ rate limiter


def test_limits_per_source_within_window():
    rl = RateLimiter(max_alerts=3, per_seconds=10)
    assert [rl.allow("a", T0 + i) for i in range(5)] == [True, True, True, False, False]
    assert rl.suppressed_total == 2
    assert rl.allow("a", T0 + 10)  # a new window opens at T0 + 10


def test_sources_are_independent():
    rl = RateLimiter(max_alerts=2, per_seconds=10)
    assert [rl.allow("a", T0) for _ in range(3)] == [True, True, False]
    assert [rl.allow("b", T0 + 1) for _ in range(3)] == [True, True, False]
    assert rl.tracked_sources == 2


def test_exactly_one_summary_with_the_right_count():
    rl = RateLimiter(max_alerts=2, per_seconds=60)
    for i in range(7):
        rl.allow("10.0.0.9", T0 + i)
    rl.allow("10.0.0.8", T0 + 1)  # within the limit: no summary for it
    assert rl.summaries(T0 + 59.9) == []  # window still open
    (summary,) = rl.summaries(T0 + 60)
    assert summary == {
        "timestamp": "2023-11-14T22:14:20.000000+0000",
        "event_type": "alert_summary",
        "src_ip": "10.0.0.9",
        "suppressed": 5,
        "allowed": 2,
        "window_start": "2023-11-14T22:13:20.000000+0000",
        "window_end": "2023-11-14T22:14:20.000000+0000",
        "limit": {"max_alerts": 2, "per_seconds": 60.0},
    }
    assert rl.summaries(T0 + 61) == []
    assert rl.summaries(T0 + 600) == []
    assert rl.tracked_sources == 0  # idle sources are forgotten


def test_summary_of_a_window_ended_by_a_new_alert_is_not_lost():
    rl = RateLimiter(max_alerts=1, per_seconds=10)
    rl.allow("a", T0)
    rl.allow("a", T0 + 1)  # suppressed
    assert rl.allow("a", T0 + 11)  # a new window; the old one's summary is queued
    rl.allow("a", T0 + 12)  # suppressed in the new window
    assert [s["suppressed"] for s in rl.summaries(T0 + 12)] == [1]
    assert [s["suppressed"] for s in rl.summaries(T0 + 21)] == [1]


def test_uncollected_windows_of_a_source_merge_into_one_summary():
    rl = RateLimiter(max_alerts=1, per_seconds=10)
    for start in (T0, T0 + 10, T0 + 20):
        rl.allow("a", start)
        rl.allow("a", start + 1)
    (summary,) = rl.summaries(T0 + 30)
    assert summary["suppressed"] == 3 and summary["allowed"] == 3
    assert summary["window_start"] == "2023-11-14T22:13:20.000000+0000"
    assert summary["window_end"] == "2023-11-14T22:13:50.000000+0000"


def test_disabled_allows_everything():
    for max_alerts in (0, -1):
        rl = RateLimiter(max_alerts=max_alerts, per_seconds=0)
        assert all(rl.allow("a", T0) for _ in range(1000))
        assert rl.summaries(T0 + 1e6) == [] and rl.tracked_sources == 0


def test_memory_is_bounded_and_overflow_is_limited_and_counted():
    rl = RateLimiter(max_alerts=2, per_seconds=10, max_sources=100)
    allowed = sum(rl.allow(f"10.0.{i // 256}.{i % 256}", T0) for i in range(10_000))
    assert rl.tracked_sources == 101  # 100 sources + the shared overflow window
    assert rl.overflowed == 9_900
    assert allowed == 100 + 2  # one each for the tracked sources, the overflow window's limit
    (summary,) = rl.summaries(T0 + 10)
    assert summary["src_ip"] == OVERFLOW_SOURCE and summary["suppressed"] == 9_898
    assert rl.tracked_sources == 0


def test_pending_summaries_are_bounded_when_nobody_collects():
    rl = RateLimiter(max_alerts=1, per_seconds=1, max_sources=10)
    for i in range(50):  # 50 sources, each in its own ended window with one suppression
        t = T0 + 2 * i
        rl.allow(f"s{i}", t)
        rl.allow(f"s{i}", t)
    out = rl.summaries(T0 + 1000)
    assert len(out) == 11  # 10 sources + one merged overflow summary
    assert sum(s["suppressed"] for s in out) == 50
    assert out[-1]["src_ip"] == OVERFLOW_SOURCE and out[-1]["suppressed"] == 40


def test_clock_going_backwards_ends_the_window():
    rl = RateLimiter(max_alerts=1, per_seconds=10)
    rl.allow("a", T0)
    assert not rl.allow("a", T0 + 1)
    assert rl.allow("a", T0 - 3600)  # e.g. NTP stepped the clock back
    assert [s["suppressed"] for s in rl.summaries(T0 - 3600)] == [1]


def test_invalid_settings():
    with pytest.raises(ValueError, match="per_seconds"):
        RateLimiter(max_alerts=1, per_seconds=0)
    with pytest.raises(ValueError, match="max_sources"):
        RateLimiter(max_alerts=1, per_seconds=1, max_sources=0)
