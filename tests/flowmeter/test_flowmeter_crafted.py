"""Crafted captures with hand-computed expectations; the IPv4 ones are also run through the Java reference."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pcap_craft import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    T0,
    ether,
    icmp_echo,
    ipv4,
    ipv6,
    tcp,
    tcp4,
    udp,
    udp4,
    write_pcap,
)

from bench.flowmeter_parity import compare, java_available, junk_pairs, read_reference, run_ours, run_reference
from flowmeter.meter import FlowMeter
from flowmeter.settings import MeterSettings

TIMEOUTS = (100_000, 1_000)  # flow / activity µs
C, S = "10.0.0.1", "10.0.0.2"
MSS = b"\x02\x04\x05\xb4"


def scenarios() -> list[tuple[int, bytes]]:
    """Every IPv4 scenario, each on its own 5-tuple, as (µs after T0, frame)."""
    p: list[tuple[int, bytes]] = []
    # A: handshake, data both ways, FIN from the client (closes), the server's FIN + last ACK (a second flow)
    p += [
        (0, tcp4(C, S, 40000, 80, SYN, window=64240, options=MSS)),
        (100, tcp4(S, C, 80, 40000, SYN | ACK, window=65160, options=MSS)),
        (200, tcp4(C, S, 40000, 80, ACK, window=502)),
        (300, tcp4(C, S, 40000, 80, PSH | ACK, b"q" * 100, window=502)),
        (500, tcp4(S, C, 80, 40000, ACK, window=509)),
        (600, tcp4(S, C, 80, 40000, PSH | ACK, b"r" * 300, window=509)),
        (1000, tcp4(C, S, 40000, 80, FIN | ACK, window=502)),
        (1100, tcp4(S, C, 80, 40000, FIN | ACK, window=509)),
        (1200, tcp4(C, S, 40000, 80, ACK, window=502)),
    ]
    # B: RST has no special handling: the flow goes on
    p += [
        (2000, tcp4(C, S, 40001, 81, SYN)),
        (2050, tcp4(S, C, 81, 40001, RST | ACK, window=0)),
        (2080, tcp4(C, S, 40001, 81, SYN)),
    ]
    # C: UDP crossing the activity timeout (1000 µs) twice
    p += [(t, udp4(C, S, 5000, 6000, b"x" * 10)) for t in (3000, 3100, 3200, 8000, 8100, 12000)]
    # D: the flow timeout (100 ms from the first packet) restarts the flow, which keeps Src = C
    p += [
        (20_000, udp4(C, S, 5001, 6001, b"a" * 20)),
        (70_000, udp4(S, C, 6001, 5001, b"b" * 30)),
        (120_001, udp4(S, C, 6001, 5001, b"c" * 40)),
        (120_101, udp4(C, S, 5001, 6001, b"d" * 50)),
    ]
    # F: a bulk transfer (10 × 1000 bytes within a second): bulk columns stay 0
    p += [(200_000 + 10 * i, tcp4(C, S, 40002, 82, PSH | ACK, b"z" * 1000)) for i in range(10)]
    # G: DNS query and reply
    p += [(300_000, udp4(C, S, 53000, 53, b"q" * 30)), (300_400, udp4(S, C, 53, 53000, b"r" * 60))]
    # H: ICMP echo request and reply: protocol 0
    p += [
        (400_000, ether(ipv4(C, S, 1, icmp_echo(8, b"p" * 56)))),
        (400_300, ether(ipv4(S, C, 1, icmp_echo(0, b"p" * 56)))),
    ]
    # K: zero duration: two packets in the same µs
    p += [(500_000, udp4(C, S, 5002, 6002, b"k" * 10)), (500_000, udp4(S, C, 6002, 5002, b"k" * 10))]
    # L: a loopback connection: both directions are separate flows
    p += [
        (600_000, tcp4("127.0.0.1", "127.0.0.1", 5555, 6666, SYN)),
        (600_010, tcp4("127.0.0.1", "127.0.0.1", 6666, 5555, SYN | ACK)),
        (600_020, tcp4("127.0.0.1", "127.0.0.1", 5555, 6666, ACK)),
        (600_030, tcp4("127.0.0.1", "127.0.0.1", 6666, 5555, ACK, b"y" * 5)),
    ]
    # M: signed-byte Flow_ID order: 192.168.x.x sorts before 10.x.x.x
    p += [
        (700_000, tcp4("10.0.0.9", "192.168.0.1", 1234, 22, SYN)),
        (700_100, tcp4("192.168.0.1", "10.0.0.9", 22, 1234, SYN | ACK)),
    ]
    # N: ICMP port unreachable is read through to the UDP header it quotes (jnetpcap): protocol 17, inner ports
    quoted = ipv4(C, S, 17, udp(5003, 6003, b"e" * 8))
    p += [
        (750_000, ether(ipv4(S, C, 1, bytes([3, 3, 0, 0, 0, 0, 0, 0]) + quoted))),
        (750_200, ether(ipv4(S, C, 1, bytes([3, 3, 0, 0, 0, 0, 0, 0]) + quoted))),
    ]
    # O: IP-in-IP is read through to the inner TCP header (outer addresses); P: IPv4 options
    p += [
        (760_000, ether(ipv4("1.1.1.1", "2.2.2.2", 4, ipv4(C, S, 6, tcp(3000, 4000, SYN))))),
        (760_010, ether(ipv4("2.2.2.2", "1.1.1.1", 4, ipv4(S, C, 6, tcp(4000, 3000, SYN | ACK, b"abc"))))),
        (770_000, ether(ipv4(C, S, 6, tcp(9000, 9001, SYN), options=b"\x01\x01\x01\x00"))),
        (770_010, ether(ipv4(S, C, 6, tcp(9001, 9000, ACK, b"q" * 7)))),
    ]
    # J: a single packet (a SYN to a silent port): the reference writes nothing
    p += [(800_000, tcp4(C, S, 40009, 9999, SYN))]
    return sorted(p, key=lambda x: x[0])


def meter(packets: list[tuple[int, bytes]], **kw: object) -> tuple[list[dict], FlowMeter]:
    out: list[dict] = []
    m = FlowMeter(MeterSettings(flow_timeout_us=TIMEOUTS[0], activity_timeout_us=TIMEOUTS[1], **kw), out.append)
    for ts, frame in packets:
        m.packet(T0 + ts, frame, 1)
    m.flush()
    return out, m


@pytest.fixture(scope="module")
def flows() -> dict[str, list[dict]]:
    out, _ = meter(scenarios())
    by_id: dict[str, list[dict]] = {}
    for r in out:
        by_id.setdefault(r["Flow_ID"], []).append(r)
    return by_id


def test_tcp_handshake_data_fin(flows: dict[str, list[dict]]) -> None:
    first, second = flows["10.0.0.1-10.0.0.2-40000-80-6"]
    expected = {
        "Src_IP": C, "Src_Port": 40000, "Dst_IP": S, "Dst_Port": 80, "Protocol": 6,
        "Timestamp": "13/09/2020 12:26:40 PM", "Flow_Duration": 1000,
        "Tot_Fwd_Pkts": 3, "Tot_Bwd_Pkts": 4,  # the SYN counts backward (quirk 1)
        "TotLen_Fwd_Pkts": 100.0, "TotLen_Bwd_Pkts": 300.0,
        "Fwd_Pkt_Len_Max": 100.0, "Fwd_Pkt_Len_Min": 0.0, "Bwd_Pkt_Len_Max": 300.0, "Bwd_Pkt_Len_Mean": 75.0,
        "Bwd_Pkt_Len_Std": 150.0, "Flow_Byts/s": 400_000.0, "Flow_Pkts/s": 7000.0,
        "Flow_IAT_Max": 400.0, "Flow_IAT_Min": 100.0,
        "Fwd_IAT_Tot": 800.0, "Fwd_IAT_Mean": 400.0, "Fwd_IAT_Max": 700.0, "Fwd_IAT_Min": 100.0,
        "Bwd_IAT_Tot": 600.0, "Bwd_IAT_Mean": 200.0, "Bwd_IAT_Max": 400.0, "Bwd_IAT_Min": 100.0,
        "Fwd_Header_Len": 60, "Bwd_Header_Len": 88, "Fwd_Pkts/s": 3000.0, "Bwd_Pkts/s": 4000.0,
        "Pkt_Len_Min": 0.0, "Pkt_Len_Max": 300.0, "Pkt_Len_Mean": 50.0,  # the SYN's 0 counted twice (quirk 2)
        "FIN_Flag_Cnt": 0, "SYN_Flag_Cnt": 1, "ACK_Flag_Cnt": 0, "PSH_Flag_Cnt": 0,  # first packet only (quirk 3)
        "Down/Up_Ratio": 1.0, "Bwd_Seg_Size_Avg": 75.0,
        "Subflow_Fwd_Pkts": 3, "Subflow_Fwd_Byts": 100, "Subflow_Bwd_Pkts": 4, "Subflow_Bwd_Byts": 300,
        "Init_Fwd_Win_Byts": -1, "Init_Bwd_Win_Byts": 509, "Fwd_Act_Data_Pkts": 1, "Fwd_Seg_Size_Min": 0,
        "Active_Mean": 0, "Idle_Mean": 0,
    }  # fmt: skip
    for col, want in expected.items():
        assert first[col] == want, col
    approx = {
        "Fwd_Pkt_Len_Mean": 100 / 3, "Fwd_Pkt_Len_Std": math.sqrt(10000 / 3),
        "Flow_IAT_Mean": 1000 / 6, "Flow_IAT_Std": math.sqrt(14666.666666666666),
        "Fwd_IAT_Std": math.sqrt(180000), "Bwd_IAT_Std": math.sqrt(30000),
        "Pkt_Len_Var": 80000 / 7, "Pkt_Len_Std": math.sqrt(80000 / 7), "Pkt_Size_Avg": 400 / 7,
        "Fwd_Seg_Size_Avg": 100 / 3,
    }  # fmt: skip
    for col, want in approx.items():
        assert first[col] == pytest.approx(want, rel=1e-12), col
    # the server's FIN starts a new flow (Src = server); the client's last ACK joins it as backward
    assert (second["Src_IP"], second["Tot_Fwd_Pkts"], second["Tot_Bwd_Pkts"]) == (S, 0, 2)
    assert (second["FIN_Flag_Cnt"], second["ACK_Flag_Cnt"], second["Flow_Duration"]) == (1, 1, 100)


def test_rst_does_not_end_the_flow(flows: dict[str, list[dict]]) -> None:
    (r,) = flows["10.0.0.1-10.0.0.2-40001-81-6"]
    assert (r["Tot_Fwd_Pkts"], r["Tot_Bwd_Pkts"], r["Flow_Duration"]) == (1, 2, 80)
    assert (r["RST_Flag_Cnt"], r["SYN_Flag_Cnt"], r["Init_Bwd_Win_Byts"]) == (0, 1, 0)


def test_activity_timeout_active_idle(flows: dict[str, list[dict]]) -> None:
    (r,) = flows["10.0.0.1-10.0.0.2-5000-6000-17"]
    assert (r["Active_Mean"], r["Active_Max"], r["Active_Min"]) == (150.0, 200.0, 100.0)
    assert r["Active_Std"] == pytest.approx(math.sqrt(5000), rel=1e-12)
    assert (r["Idle_Mean"], r["Idle_Max"], r["Idle_Min"]) == (4350.0, 4800.0, 3900.0)
    assert r["Idle_Std"] == pytest.approx(math.sqrt(405000), rel=1e-12)
    assert (r["Init_Bwd_Win_Byts"], r["Bwd_Header_Len"], r["Fwd_Header_Len"]) == (-1, 8, 40)


def test_flow_timeout_restarts_with_the_old_orientation(flows: dict[str, list[dict]]) -> None:
    first, second = flows["10.0.0.1-10.0.0.2-5001-6001-17"]
    assert (first["Src_IP"], first["Tot_Fwd_Pkts"], first["Tot_Bwd_Pkts"], first["Flow_Duration"]) == (C, 0, 2, 50_000)
    # the second flow's first packet came from S, but Src stays C, so C's packet is forward
    assert (second["Src_IP"], second["Src_Port"], second["Dst_IP"]) == (C, 5001, S)
    assert (second["Tot_Fwd_Pkts"], second["Tot_Bwd_Pkts"], second["TotLen_Fwd_Pkts"]) == (1, 1, 50.0)
    assert second["Pkt_Len_Mean"] == pytest.approx((40 + 40 + 50) / 3)


def test_bulk_columns_stay_zero_and_subflows_equal_totals(flows: dict[str, list[dict]]) -> None:
    (r,) = flows["10.0.0.1-10.0.0.2-40002-82-6"]
    assert (r["Tot_Fwd_Pkts"], r["Tot_Bwd_Pkts"], r["TotLen_Fwd_Pkts"]) == (9, 1, 9000.0)
    bulk = ["Fwd_Byts/b_Avg", "Fwd_Pkts/b_Avg", "Fwd_Blk_Rate_Avg", "Bwd_Byts/b_Avg", "Bwd_Pkts/b_Avg"]
    assert [r[c] for c in [*bulk, "Bwd_Blk_Rate_Avg"]] == [0] * 6
    assert (r["Subflow_Fwd_Pkts"], r["Subflow_Fwd_Byts"], r["Subflow_Bwd_Byts"]) == (9, 9000, 1000)
    assert (r["Bwd_PSH_Flags"], r["PSH_Flag_Cnt"], r["Fwd_PSH_Flags"], r["Fwd_Act_Data_Pkts"]) == (1, 1, 0, 9)


def test_udp_dns(flows: dict[str, list[dict]]) -> None:
    (r,) = flows["10.0.0.1-10.0.0.2-53000-53-17"]
    assert (r["Tot_Fwd_Pkts"], r["Tot_Bwd_Pkts"], r["TotLen_Bwd_Pkts"], r["Bwd_Header_Len"]) == (0, 2, 90.0, 16)
    assert (r["Fwd_Pkt_Len_Max"], r["Fwd_IAT_Tot"], r["Init_Bwd_Win_Byts"], r["Down/Up_Ratio"]) == (0, 0, -1, 0.0)
    assert r["Flow_Byts/s"] == 90 / 0.0004 and r["Pkt_Len_Mean"] == 40.0  # (30 + 30 + 60) / 3


def test_icmp_is_protocol_zero(flows: dict[str, list[dict]]) -> None:
    (r,) = flows["10.0.0.1-10.0.0.2-0-0-0"]
    assert (r["Protocol"], r["Src_Port"], r["Dst_Port"], r["TotLen_Bwd_Pkts"], r["Bwd_Header_Len"]) == (0, 0, 0, 0.0, 0)
    assert (r["Tot_Fwd_Pkts"], r["Tot_Bwd_Pkts"], r["Flow_Duration"]) == (0, 2, 300)


def test_zero_duration_rates(flows: dict[str, list[dict]]) -> None:
    (r,) = flows["10.0.0.1-10.0.0.2-5002-6002-17"]
    assert r["Flow_Duration"] == 0 and r["Flow_Byts/s"] == math.inf and r["Flow_Pkts/s"] == math.inf
    assert (r["Fwd_Pkts/s"], r["Bwd_Pkts/s"], r["Flow_IAT_Mean"]) == (0.0, 0.0, 0.0)


def test_loopback_directions_are_separate_flows(flows: dict[str, list[dict]]) -> None:
    (a,) = flows["127.0.0.1-127.0.0.1-5555-6666-6"]
    (b,) = flows["127.0.0.1-127.0.0.1-6666-5555-6"]
    # every packet after the first has Src IP == flow Src IP: forward
    assert (a["Tot_Fwd_Pkts"], a["Tot_Bwd_Pkts"], a["Src_Port"]) == (1, 1, 5555)
    assert (b["Tot_Fwd_Pkts"], b["Tot_Bwd_Pkts"], b["TotLen_Fwd_Pkts"], b["Fwd_Act_Data_Pkts"]) == (1, 1, 5.0, 1)


def test_signed_byte_flow_id(flows: dict[str, list[dict]]) -> None:
    (r,) = flows["192.168.0.1-10.0.0.9-22-1234-6"]
    assert (r["Src_IP"], r["Src_Port"]) == ("10.0.0.9", 1234)


def test_icmp_error_reads_the_quoted_udp_header(flows: dict[str, list[dict]]) -> None:
    (r,) = flows["10.0.0.1-10.0.0.2-6003-5003-17"]  # outer S→C, inner ports 5003→6003
    assert (r["Src_IP"], r["Src_Port"], r["Dst_Port"], r["Protocol"]) == (S, 5003, 6003, 17)
    assert (r["Tot_Fwd_Pkts"], r["Tot_Bwd_Pkts"], r["TotLen_Fwd_Pkts"], r["Bwd_Header_Len"]) == (1, 1, 8.0, 8)


def test_ip_in_ip_and_ip_options(flows: dict[str, list[dict]]) -> None:
    (r,) = flows["1.1.1.1-2.2.2.2-3000-4000-6"]
    assert (r["Protocol"], r["TotLen_Bwd_Pkts"], r["Bwd_Header_Len"]) == (6, 3.0, 40)
    (r,) = flows["10.0.0.1-10.0.0.2-9000-9001-6"]
    assert (r["TotLen_Bwd_Pkts"], r["Bwd_Header_Len"]) == (7.0, 40)


def test_single_packet_flow_written_unless_reference_rule(flows: dict[str, list[dict]]) -> None:
    (r,) = flows["10.0.0.1-10.0.0.2-40009-9999-6"]
    assert (r["Tot_Fwd_Pkts"], r["Tot_Bwd_Pkts"], r["Flow_Duration"], r["SYN_Flag_Cnt"]) == (0, 1, 0, 1)
    assert math.isnan(r["Flow_Byts/s"]) and r["Flow_Pkts/s"] == math.inf and math.isnan(r["Flow_IAT_Mean"])
    out, m = meter(scenarios(), single_packet_flows=False)
    assert "10.0.0.1-10.0.0.2-40009-9999-6" not in {x["Flow_ID"] for x in out}
    assert m.stats.single_packet_dropped == 1


def test_ipv6_flow() -> None:
    a, b = "2001:db8::1", "2001:db8::2"
    frames = [
        (0, ether(ipv6(a, b, 6, tcp(40000, 443, SYN, options=MSS)), 0x86DD)),
        (250, ether(ipv6(b, a, 6, tcp(443, 40000, SYN | ACK, window=7)), 0x86DD)),
        # a hop-by-hop extension header before TCP
        (500, ether(ipv6(a, b, 0, tcp(40000, 443, ACK, b"h" * 12), ext=bytes([6, 0]) + b"\x00" * 6), 0x86DD)),
    ]
    (r,), m = meter(frames)
    assert r["Flow_ID"] == "2001:db8::1-2001:db8::2-40000-443-6" and r["Src_IP"] == a
    assert (r["Tot_Fwd_Pkts"], r["Tot_Bwd_Pkts"], r["TotLen_Fwd_Pkts"], r["Init_Bwd_Win_Byts"]) == (1, 2, 12.0, 7)
    assert (r["Fwd_Header_Len"], r["Bwd_Header_Len"]) == (20, 44)
    out, m = meter(frames, ipv6=False)
    assert out == [] and m.stats.ignored["ipv6_disabled"] == 3


def test_vlan_sll_and_raw_ip_give_the_same_flow(tmp_path: Path) -> None:
    l3s = [(0, ipv4(C, S, 17, udp(5000, 6000, b"abcd"))), (40, ipv4(S, C, 17, udp(6000, 5000, b"ab")))]
    variants = {
        1: [(t, ether(b"\x00\x05\x08\x00" + l3, 0x8100)) for t, l3 in l3s],  # 802.1Q
        101: l3s,
        113: [(t, b"\x00\x00\x00\x01\x00\x06" + MAC_8 + b"\x08\x00" + l3) for t, l3 in l3s],
        276: [(t, b"\x08\x00\x00\x00\x00\x00\x00\x01\x00\x01\x00\x06" + MAC_8 + l3) for t, l3 in l3s],
        0: [(t, (2).to_bytes(4, "little") + l3) for t, l3 in l3s],
    }
    results = {}
    for linktype, frames in variants.items():
        out: list[dict] = []
        m = FlowMeter(MeterSettings(), out.append)
        for t, f in frames:
            m.packet(T0 + t, f, linktype)
        m.flush()
        assert m.stats.bad == {}, linktype
        (results[linktype],) = out
    assert results[1]["Flow_ID"] == "10.0.0.1-10.0.0.2-5000-6000-17"
    assert all(r == results[1] for r in results.values())


MAC_8 = b"\x02\x00\x00\x00\x00\x01\x00\x00"


@pytest.mark.skipif(not java_available(), reason="java or ../shared/tools/cicflowmeter missing (Debian JRE + jars)")
def test_crafted_capture_equals_the_reference(tmp_path: Path) -> None:
    pcap = write_pcap(tmp_path / "crafted.pcap", [(T0 + t, f) for t, f in scenarios()])
    ref = read_reference(run_reference(pcap, tmp_path / "ref", TIMEOUTS))
    ours, _ = run_ours(pcap, TIMEOUTS)
    result = compare(pcap, ref, ours, junk_pairs(pcap), TIMEOUTS)
    assert result.ok, (result.missing, result.extra, result.examples)
    assert result.matched == len(ref) >= 12 and result.extra_single == 1
