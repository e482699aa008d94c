"""Alert documents and the per-source rate limiter, with explicit clocks (no sleeps)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from agent.alerts import OVERFLOW_SOURCE, RateLimiter
from agent.documents import alert as make_alert

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
    doc = make_alert(gateway="gw-1", ident=IDENT, score=0.97, threshold=0.5, model=MODEL, now=now)
    assert doc == {
        "timestamp": "2024-05-01T12:00:00.000123Z",
        "event_type": "alert",
        "gateway": "gw-1",
        "flow_id": "192.168.0.13-192.168.0.16-10000-10101-17",
        "src_ip": "192.168.0.13",
        "src_port": 10000,
        "dest_ip": "192.168.0.16",
        "dest_port": 10101,
        "proto": "UDP",
        "flow_timestamp": "25/04/2019 10:15:33 AM",
        "seq": 42,
        "sensor": "br0",
        "alert": {
            "signature": "edge-ids anomalous flow",
            "category": "Anomalous network flow",
            "severity": 1,
            "score": 0.97,
            "threshold": 0.5,
            "verdict": "malicious",
        },
        "model": {"name": "uni-hybrid-t8", "version": "3", "sha256": "ab" * 32},
    }
    json.dumps(doc)  # serialisable as is


def test_alert_timestamp_is_utc_rfc3339_with_microseconds():
    local = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    doc = make_alert(gateway="g", ident={}, score=0.9, threshold=0.5, model=MODEL, now=local)
    assert doc["timestamp"] == "2024-05-01T12:00:00.000000Z"
    default = make_alert(gateway="g", ident={}, score=0.9, threshold=0.5, model=MODEL)
    assert datetime.fromisoformat(default["timestamp"]).tzinfo is not None
    with pytest.raises(ValueError, match="timezone-aware"):
        make_alert(gateway="g", ident={}, score=0.9, threshold=0.5, model=MODEL, now=datetime(2024, 5, 1))


def test_numeric_flow_timestamp_is_kept_as_given():
    doc = make_alert(gateway="g", ident={"timestamp": 1556187333.5}, score=0.9, threshold=0.5, model=MODEL)
    assert doc["flow_timestamp"] == 1556187333.5


def test_alert_leaves_out_missing_identity_fields():
    doc = make_alert(gateway="g", ident={"src_ip": "10.0.0.1"}, score=0.6, threshold=0.5, model=MODEL)
    assert doc["src_ip"] == "10.0.0.1"
    for key in ("flow_id", "dest_ip", "src_port", "dest_port", "proto", "flow_timestamp", "seq", "sensor"):
        assert key not in doc
    assert doc["alert"]["severity"] == 2  # 0.6 is in the lower half of [0.5, 1]


@pytest.mark.parametrize(("protocol", "proto"), [(6, "TCP"), (17.0, "UDP"), ("1", "ICMP"), (47, 47), ("sctp", "SCTP")])
def test_protocol_names(protocol, proto):
    doc = make_alert(gateway="g", ident={"protocol": protocol}, score=1.0, threshold=0.5, model=MODEL)
    assert doc["proto"] == proto


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
        "timestamp": "2023-11-14T22:14:20.000000Z",
        "event_type": "alert_summary",
        "src_ip": "10.0.0.9",
        "suppressed": 5,
        "allowed": 2,
        "window_start": "2023-11-14T22:13:20.000000Z",
        "window_end": "2023-11-14T22:14:20.000000Z",
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
    assert summary["window_start"] == "2023-11-14T22:13:20.000000Z"
    assert summary["window_end"] == "2023-11-14T22:13:50.000000Z"


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
