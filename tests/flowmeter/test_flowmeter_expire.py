"""``FlowMeter.expire`` (live capture) gives the records of the same packets read without it: a flow closed early
leaves its orientation, so the key's next flow keeps the old Src/Dst as the reference's timeout restart does."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest
from conftest import SHARED, SHARED_PCAPS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcap_craft import ACK, FIN, PSH, RST, SYN, T0, ether, icmp_echo, ipv4, ipv6, tcp, udp, udp4

from flowmeter.csvout import java_value
from flowmeter.flow import RECORD_COLUMNS
from flowmeter.meter import FlowMeter
from flowmeter.pcapfile import read_capture
from flowmeter.settings import TIMEOUT_PRESETS, MeterSettings

A, B = "10.0.0.1", "10.0.0.2"
Packets = Sequence[tuple[int, bytes, int]]


def rows(records: list[dict]) -> Counter:
    """Records as a multiset of rows in the reference's text (NaN equal to NaN; emission order ignored)."""
    return Counter(tuple(java_value(r[c]) for c in RECORD_COLUMNS) for r in records)


def run(packets: Packets, meter_settings: MeterSettings, expire_after: set[int] | None = None) -> list[dict]:
    """Meter ``packets``; after packet i in ``expire_after`` call ``expire(now)`` with the latest ``now`` the
    precondition allows: the current packet's time, or an earlier one if a later packet is stamped before it."""
    out: list[dict] = []
    meter = FlowMeter(meter_settings, out.append)
    later_min = [0] * len(packets)  # the smallest time stamp after packet i
    low = 1 << 62
    for i in range(len(packets) - 1, -1, -1):
        later_min[i] = low
        low = min(low, packets[i][0])
    for i, (ts, frame, linktype) in enumerate(packets):
        meter.packet(ts, frame, linktype)
        if expire_after is not None and i in expire_after:
            meter.expire(min(ts, later_min[i]))
    meter.flush()
    assert meter.stats.evictions == 0  # the comparison assumes no table limit was reached
    return out


def test_the_capture_helpers_reproduction() -> None:
    """A→B at 0, B→A at 100, B→A at 700, A→B at 800 µs: the second flow is 10.0.0.1:1111, Fwd 1 / Bwd 1."""
    pkts = [(T0, udp4(A, B, 1111, 53)), (T0 + 100, udp4(B, A, 53, 1111)),
            (T0 + 700, udp4(B, A, 53, 1111)), (T0 + 800, udp4(A, B, 1111, 53))]  # fmt: skip
    for expire_at in (None, T0 + 600, T0 + 700):
        out: list[dict] = []
        m = FlowMeter(MeterSettings(), out.append)
        for i, (ts, frame) in enumerate(pkts):
            if i == 2 and expire_at is not None:
                m.expire(expire_at)
                assert m.stats.active_flows == 0 and m.stats.orientations_kept == 1
            m.packet(ts, frame, 1)
        m.flush()
        second = [(r["Src_IP"], r["Src_Port"], r["Tot_Fwd_Pkts"], r["Tot_Bwd_Pkts"]) for r in out][1]
        assert second == ("10.0.0.1", 1111, 1, 1), expire_at
        assert m.stats.orientations_kept == 0


def test_fin_close_leaves_no_orientation() -> None:
    """After a FIN the reference's next flow is fresh (oriented by its own first packet), with or without expiry."""
    pkts = [(T0, tcp4_(A, B, 1000, 80, SYN)), (T0 + 10, tcp4_(B, A, 80, 1000, FIN | ACK)),
            (T0 + 5000, tcp4_(B, A, 80, 1000, ACK)), (T0 + 5010, tcp4_(A, B, 1000, 80, ACK))]  # fmt: skip
    plain = run([(t, f, 1) for t, f in pkts], MeterSettings())
    assert [(r["Src_IP"], r["Tot_Fwd_Pkts"], r["Tot_Bwd_Pkts"]) for r in plain] == [(A, 0, 2), (B, 0, 2)]
    out: list[dict] = []
    m = FlowMeter(MeterSettings(), out.append)
    for ts, frame in pkts:
        m.packet(ts, frame, 1)
        m.expire(ts)
        assert m.stats.orientations_kept == 0  # the FIN closed the first flow: nothing to keep
    m.flush()
    assert rows(out) == rows(plain) and m.stats.active_flows == 0


def test_eviction_keeps_the_orientation_and_the_memory_is_bounded() -> None:
    out: list[dict] = []
    m = FlowMeter(MeterSettings(max_flows=10), out.append)
    m.packet(T0, udp4(A, B, 1111, 53), 1)
    for i in range(10):  # fill the table: the A→B flow is evicted first
        m.packet(T0 + 1 + i, udp4("10.1.0.1", "10.1.0.2", 2000 + i, 53), 1)
    assert m.stats.evictions == 1 and m.stats.orientations_kept == 1
    m.packet(T0 + 100, udp4(B, A, 53, 1111), 1)  # the evicted flow's key: Src stays A
    assert m.stats.evictions == 2 and m.stats.orientations_kept == 1  # its orientation used, the next one kept
    m.flush()
    mine = [r for r in out if r["Flow_ID"] == "10.0.0.1-10.0.0.2-1111-53-17"]
    assert [(r["Src_IP"], r["Tot_Fwd_Pkts"], r["Tot_Bwd_Pkts"]) for r in mine] == [(A, 0, 1), (A, 0, 1)]
    # expire 25 flows: at most max_flows orientations are kept, the oldest forgotten first and counted
    m = FlowMeter(MeterSettings(max_flows=10), out.append)
    for i in range(25):
        m.packet(T0 + i, udp4(A, B, 3000 + i, 53), 1)
        m.expire(T0 + i + 10_000)
        assert m.stats.orientations_kept <= 10
    assert m.stats.orientations_kept + m.stats.orientations_dropped == 25 and m.stats.orientations_dropped >= 15
    assert m.stats.as_dict()["orientations_dropped"] == m.stats.orientations_dropped
    m.flush()
    assert m.stats.orientations_kept == 0


def tcp4_(src: str, dst: str, sport: int, dport: int, flags: int) -> bytes:
    return ether(ipv4(src, dst, 6, tcp(sport, dport, flags)))


@pytest.mark.skipif(not SHARED_PCAPS, reason=f"no shared pcaps in {SHARED / 'pcaps'}")
@pytest.mark.parametrize("preset", list(TIMEOUT_PRESETS))
@pytest.mark.parametrize("every", [1, 3, 50])
def test_shared_pcaps_with_expiry_equal_without(preset: str, every: int) -> None:
    flow, activity = TIMEOUT_PRESETS[preset]
    s = MeterSettings(flow_timeout_us=flow, activity_timeout_us=activity)
    differs = 0
    for pcap in SHARED_PCAPS:
        packets = [(ts, bytes(frame), lt) for ts, frame, lt in read_capture(pcap)]
        plain = run(packets, s)
        assert rows(run(packets, s, set(range(0, len(packets), every)))) == rows(plain), pcap.name
        differs += sum((rows(plain) - rows(run_without_orientations(packets, s, every))).values())
    if preset == "iotid20":  # the check can fail: forgetting the orientations changes 27-29 rows (wikipedia.pcap)
        assert differs >= 20


def run_without_orientations(packets: Packets, s: MeterSettings, every: int) -> list[dict]:
    """The meter before the fix: expire() forgets each closed flow's orientation at once."""
    out: list[dict] = []
    meter = FlowMeter(s, out.append)
    for i, (ts, frame, linktype) in enumerate(packets):
        meter.packet(ts, frame, linktype)
        if i % every == 0:
            meter.expire(ts)
            meter._orientations.clear()
    meter.flush()
    return out


HOSTS = ["10.0.0.1", "10.0.0.2", "192.168.1.5", "10.0.0.1"]
V6 = ["fe80::1", "2001:db8::2"]
PORTS = [(1000, 80), (53000, 53), (2000, 2001)]
FLAGS = [SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST]

GAPS = [0, 1, 2, 50, 400, 549, 550, 551, 700, 1000, 1001, 1200, 3000, -30]  # µs; time may go backwards
KINDS = ["tcp", "tcp", "udp", "icmp", "v6"]
SIZES = [0, 0, 1, 100]
TIMEOUTS = [(550, 1), (1000, 100), (100_000, 1_000)]

packet_strategy = st.tuples(
    st.sampled_from(GAPS),
    st.integers(0, 3), st.integers(0, 3),  # hosts (equal: loopback-like pair)
    st.integers(0, 2), st.booleans(),  # ports, reversed
    st.sampled_from(KINDS), st.sampled_from(FLAGS), st.sampled_from(SIZES),
)  # fmt: skip


def build(spec: list[tuple]) -> list[tuple[int, bytes, int]]:
    t = T0
    out = []
    for gap, a, b, port, rev, kind, flags, size in spec:
        t += gap
        sport, dport = PORTS[port]
        if rev:
            sport, dport = dport, sport
        payload = b"p" * size
        if kind == "v6":
            l3, ethertype = ipv6(V6[a % 2], V6[b % 2], 17, udp(sport, dport, payload)), 0x86DD
        else:
            if kind == "tcp":
                proto, l4 = 6, tcp(sport, dport, flags, payload)
            elif kind == "udp":
                proto, l4 = 17, udp(sport, dport, payload)
            else:
                proto, l4 = 1, icmp_echo(8, payload)
            l3, ethertype = ipv4(HOSTS[a], HOSTS[b], proto, l4), 0x0800
        out.append((t, ether(l3, ethertype), 1))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=st.lists(packet_strategy, min_size=1, max_size=60),
    points=st.sets(st.integers(0, 59)),
    timeouts=st.sampled_from(TIMEOUTS),
)
def test_random_captures_with_expiry_at_random_points_equal_without(
    spec: list[tuple], points: set[int], timeouts: tuple[int, int]
) -> None:
    packets = build(spec)
    s = MeterSettings(flow_timeout_us=timeouts[0], activity_timeout_us=timeouts[1])
    assert rows(run(packets, s, points)) == rows(run(packets, s))


def test_seeded_random_captures_with_expiry_equal_without() -> None:
    """The same with a fixed seed (forgetting orientations changes about half of these captures' records)."""
    rnd = random.Random(7)
    for _ in range(150):
        spec = [
            (rnd.choice(GAPS), rnd.randrange(4), rnd.randrange(4), rnd.randrange(3), rnd.random() < 0.5,
             rnd.choice(KINDS), rnd.choice(FLAGS), rnd.choice(SIZES))
            for _ in range(rnd.randrange(1, 60))
        ]  # fmt: skip
        packets = build(spec)
        flow, activity = rnd.choice(TIMEOUTS)
        s = MeterSettings(flow_timeout_us=flow, activity_timeout_us=activity)
        points = set(rnd.sample(range(60), rnd.randrange(60)))
        assert rows(run(packets, s, points)) == rows(run(packets, s)), spec
