"""Fuzz: random frames for every link type and corrupt pcap/pcapng files; nothing escapes, counters add up."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcap_craft import ACK, PSH, T0, ether, ipv4, ipv6, tcp, tcp4, udp, udp4, write_pcap, write_pcapng

from flowmeter.decode import SUPPORTED_LINKTYPES
from flowmeter.meter import FlowMeter
from flowmeter.pcapfile import CaptureError, read_capture
from flowmeter.settings import MeterSettings

LINKTYPES = sorted(SUPPORTED_LINKTYPES | {2, 147, 65535})
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check(m: FlowMeter, out: list[dict]) -> None:
    s = m.stats
    assert s.packets == s.flow_packets + sum(s.bad.values()) + sum(s.ignored.values())
    m.flush()
    assert s.active_flows == 0 and s.flows_out == len(out)
    for r in out:
        assert r["Tot_Fwd_Pkts"] + r["Tot_Bwd_Pkts"] >= 1


# headers that reach the deep paths: IPv4/IPv6 with random fields, then random bytes
_ip_prefix = st.one_of(
    st.builds(lambda b: b"\x45" + b, st.binary(min_size=0, max_size=60)),
    st.builds(lambda v, b: bytes([v]) + b, st.integers(0x40, 0x4F), st.binary(min_size=0, max_size=80)),
    st.builds(lambda b: b"\x60" + b, st.binary(min_size=0, max_size=120)),
    st.builds(
        lambda ihl, tot, frag, proto, tail: struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tot, 0, frag, 64, proto, 0,
                                                        b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02") + tail,
        st.integers(0, 15), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.sampled_from([1, 6, 17, 4, 41, 255]),
        st.binary(max_size=80),
    ),
    st.builds(
        lambda nxt, plen, tail: struct.pack("!IHBB", 0x60000000, plen, nxt, 64) + b"\x20" * 32 + tail,
        st.sampled_from([0, 6, 17, 43, 44, 51, 58, 60, 59]), st.integers(0, 0xFFFF), st.binary(max_size=80),
    ),
)  # fmt: skip
_l2 = {
    1: [b"\x00" * 12 + b"\x08\x00", b"\x00" * 12 + b"\x86\xdd", b"\x00" * 12 + b"\x81\x00\x00\x01\x08\x00"],
    113: [b"\x00" * 14 + b"\x08\x00", b"\x00" * 14 + b"\x86\xdd"],
    276: [b"\x08\x00" + b"\x00" * 18, b"\x86\xdd" + b"\x00" * 18],
    0: [b"\x02\x00\x00\x00", b"\x1e\x00\x00\x00"],
    108: [b"\x00\x00\x00\x02"],
}


@FUZZ
@given(frames=st.lists(st.tuples(st.sampled_from(LINKTYPES), st.binary(max_size=200)), max_size=30))
def test_random_frames_never_raise(frames: list[tuple[int, bytes]]) -> None:
    out: list[dict] = []
    m = FlowMeter(MeterSettings(max_flows=8), out.append)
    for i, (linktype, frame) in enumerate(frames):
        m.packet(T0 + i, memoryview(frame) if i % 2 else frame, linktype)
    _check(m, out)


@FUZZ
@given(
    frames=st.lists(
        st.tuples(st.sampled_from(sorted(_l2)), st.integers(0, 2), _ip_prefix, st.integers(-50, 5_000_000)),
        min_size=1,
        max_size=30,
    )
)
def test_random_ip_headers_never_raise(frames: list[tuple[int, int, bytes, int]]) -> None:
    out: list[dict] = []
    m = FlowMeter(MeterSettings(flow_timeout_us=1_000_000, activity_timeout_us=1000, max_flows=4), out.append)
    ts = T0
    for linktype, which, l3, gap in frames:
        heads = _l2[linktype]
        ts += gap  # time may go backwards
        m.packet(ts, heads[which % len(heads)] + l3, linktype)
        if gap > 4_000_000:
            m.expire(ts)
    _check(m, out)


def _valid_captures(tmp: Path) -> dict[str, bytes]:
    pkts = [
        (T0, tcp4("10.0.0.1", "10.0.0.2", 1, 2)),
        (T0 + 5, udp4("10.0.0.2", "10.0.0.1", 2, 1, b"x" * 30)),
        (T0 + 9, ether(ipv6("::1", "::2", 6, tcp(3, 4, PSH | ACK, b"y" * 9)), 0x86DD)),
    ]
    a = write_pcap(tmp / "a.pcap", pkts).read_bytes()
    ng = [(0, T0, pkts[0][1]), (1, T0 * 1000, ipv4("10.0.0.3", "10.0.0.4", 17, udp(5, 6)))]
    b = write_pcapng(tmp / "b.pcapng", [(1, None), (101, 9)], ng).read_bytes()
    return {"pcap": a, "pcapng": b}


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return _valid_captures(tmp_path_factory.mktemp("valid"))


@FUZZ
@given(
    kind=st.sampled_from(["pcap", "pcapng"]),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 400)),
    tail=st.binary(max_size=40),
)
def test_corrupt_captures_never_raise(
    valid: dict[str, bytes], tmp_path: Path, kind: str, edits: list[tuple[int, int]], cut: int | None, tail: bytes
) -> None:
    raw = bytearray(valid[kind])
    for pos, byte in edits:
        if pos < len(raw):
            raw[pos] = byte
    if cut is not None:
        raw = raw[:cut]
    raw += tail
    path = tmp_path / f"fuzz.{kind}"
    path.write_bytes(bytes(raw))
    try:
        reader = read_capture(path)
    except CaptureError:
        return  # not recognisable as a capture: a clear error at open, nothing read
    out: list[dict] = []
    m = FlowMeter(MeterSettings(), out.append)
    n = 0
    for ts, frame, linktype in reader:
        assert isinstance(ts, int) and len(frame) <= 262_144
        m.packet(ts, frame, linktype)
        n += 1
    assert reader.records == n == m.stats.packets
    _check(m, out)
