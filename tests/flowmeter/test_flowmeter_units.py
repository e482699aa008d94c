"""Units of the flow meter: Java number/time formatting, decoder causes, capture readers, table limits, CSV + CLI."""

from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path

import pytest
from pcap_craft import ACK, SYN, T0, ether, ipv4, tcp, tcp4, udp, udp4, write_pcap, write_pcapng

from flowmeter import decode as dec
from flowmeter.cli import main as cli_main
from flowmeter.csvout import java_double
from flowmeter.flow import RECORD_COLUMNS, java_timestamp
from flowmeter.meter import FlowMeter
from flowmeter.pcapfile import CaptureError, read_capture
from flowmeter.settings import REFERENCE_TIMEOUTS, MeterSettings

C, S = "10.0.0.1", "10.0.0.2"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (52.0, "52.0"), (359523.8095238095, "359523.8095238095"), (1.5e7, "1.5E7"), (3.216e7, "3.216E7"),
        (1e7, "1.0E7"), (9999999.5, "9999999.5"), (0.001, "0.001"), (1e-4, "1.0E-4"), (0.00012345, "1.2345E-4"),
        (1234567.0, "1234567.0"), (0.0, "0.0"), (-0.0, "-0.0"), (-2.5e9, "-2.5E9"), (math.inf, "Infinity"),
        (-math.inf, "-Infinity"), (math.nan, "NaN"), (4761.9047619047615, "4761.9047619047615"),
    ],
)  # fmt: skip
def test_java_double(value: float, text: str) -> None:
    assert java_double(value) == text


def test_java_timestamp() -> None:
    assert java_timestamp(T0) == "13/09/2020 12:26:40 PM"
    assert java_timestamp(T0 + 999_999) == "13/09/2020 12:26:40 PM"
    assert java_timestamp(1_600_041_600_000_000) == "14/09/2020 12:00:00 AM"  # midnight is 12 AM
    assert java_timestamp(1_600_045_199_000_000) == "14/09/2020 12:59:59 AM"


def _l4(frame: bytes) -> int:
    return 14 + (frame[14] & 15) * 4


@pytest.mark.parametrize(
    ("frame", "linktype", "cause"),
    [
        (b"\x00" * 10, 1, "truncated_l2"),
        (ether(b"\x00\x01" * 20, 0x0806), 1, "not_ip"),  # ARP
        (ether(b"\x45" + b"\x00" * 10, pad_to=0)[:25], 1, "ipv4_truncated"),
        (ether(b"\x44" + b"\x00" * 30), 1, "ipv4_bad_ihl"),
        (ether(b"\x55" + b"\x00" * 30), 1, "ipv4_bad_version"),
        (ether(b"\x4f" + b"\x00" * 30, pad_to=0), 1, "ipv4_truncated"),  # IHL 60 bytes, 31 captured
        (ether(struct.pack("!BBH", 0x45, 0, 10) + b"\x00" * 26), 1, "ipv4_bad_total_length"),
        (ether(ipv4(C, S, 6, b"\x00" * 10), pad_to=0), 1, "tcp_truncated"),
        (ether(ipv4(C, S, 6, tcp(1, 2)[:12] + b"\x30" + tcp(1, 2)[13:])), 1, "tcp_bad_offset"),  # doff 3
        (ether(ipv4(C, S, 6, tcp(1, 2)[:12] + b"\xf0" + tcp(1, 2)[13:])), 1, "tcp_bad_offset"),  # 60 > IP length
        (ether(ipv4(C, S, 17, b"\x00" * 4), pad_to=0), 1, "udp_truncated"),
        (b"\x60" + b"\x00" * 20, 101, "ipv6_truncated"),
        (b"\x10" * 30, 101, "not_ip"),
        (b"\x00" * 40, 147, "unknown_linktype"),
        (ether(b"\x00\x05\x81\x00" * 6, 0x8100), 1, "vlan_too_deep"),
    ],
)  # fmt: skip
def test_decode_causes(frame: bytes, linktype: int, cause: str) -> None:
    assert dec.decode(frame, linktype) == cause


def test_decode_fragments_and_snaplen_cut() -> None:
    # a non-first fragment: protocol 0, no ports, counted
    frag = dec.decode(ether(ipv4(C, S, 6, b"\x00" * 40, frag=0x0010)), 1)
    assert frag[2:8] == (0, 0, 0, 0, 0, dec.FRAGMENT)
    # a first fragment (MF set) keeps its TCP header
    first = dec.decode(ether(ipv4(C, S, 6, tcp(1000, 80, ACK, b"x" * 8), frag=0x2000)), 1)
    assert first[2:7] == (1000, 80, 6, 8, 20)
    # Ethernet padding is not payload; a snaplen-cut frame counts its real payload (from the IP length)
    padded = tcp4(C, S, 1000, 80, ACK)
    assert len(padded) == 60 and dec.decode(padded, 1)[5] == 0
    full = tcp4(C, S, 1000, 80, ACK, b"y" * 1000)
    cut = dec.decode(full[:96], 1)
    assert cut[5] == 1000 and cut[7] & dec.SNAPLEN_CUT


def test_pcap_reader_ns_and_corrupt_records(tmp_path: Path) -> None:
    frames = [(T0 + i, udp4(C, S, 1, 2, b"a" * i)) for i in range(5)]
    good = write_pcap(tmp_path / "good.pcap", frames)
    assert [(t, f) for t, f, _ in read_capture(good)] == frames
    # nanosecond magic
    raw = bytearray(good.read_bytes())
    raw[0:4] = b"\x4d\x3c\xb2\xa1"
    (tmp_path / "ns.pcap").write_bytes(raw)
    assert [t for t, _, _ in read_capture(tmp_path / "ns.pcap")][1] == T0  # fraction 1 = 1 ns → 0 µs
    # a record length beyond the snaplen: counted, reading stops, no huge allocation
    bad = bytearray(good.read_bytes())
    struct.pack_into("<I", bad, 24 + 16 + len(frames[0][1]) + 8, 0x7FFFFFFF)
    (tmp_path / "bad.pcap").write_bytes(bad)
    r = read_capture(tmp_path / "bad.pcap")
    assert len(list(r)) == 1 and r.errors == {"record_too_long": 1}
    # a file cut in the middle of a record
    (tmp_path / "cut.pcap").write_bytes(good.read_bytes()[:-10])
    r = read_capture(tmp_path / "cut.pcap")
    assert len(list(r)) == 4 and r.errors == {"truncated_record": 1}
    (tmp_path / "text.pcap").write_text("not a capture")
    with pytest.raises(CaptureError, match="not a pcap or pcapng"):
        read_capture(tmp_path / "text.pcap")


def test_pcapng_interfaces_linktypes_and_resolution(tmp_path: Path) -> None:
    l3 = ipv4(C, S, 17, udp(7, 9, b"abc"))
    path = write_pcapng(
        tmp_path / "two.pcapng",
        [(1, None), (101, 9)],  # Ethernet in µs; raw IP in ns
        [(0, T0, ether(l3)), (1, (T0 + 5) * 1000 + 999, l3)],
    )
    r = read_capture(path)
    got = list(r)
    assert [(t, lt) for t, _, lt in got] == [(T0, 1), (T0 + 5, 101)] and not r.errors
    out: list[dict] = []
    m = FlowMeter(MeterSettings(), out.append)
    for t, f, lt in got:
        m.packet(t, f, lt)
    m.flush()
    assert len(out) == 1 and out[0]["Tot_Bwd_Pkts"] + out[0]["Tot_Fwd_Pkts"] == 2
    # a broken block length ends the section, counted
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, len(raw) - 4, 12345)
    (tmp_path / "broken.pcapng").write_bytes(raw)
    r = read_capture(tmp_path / "broken.pcapng")
    assert len(list(r)) == 1 and r.errors == {"bad_block_trailer": 1}


def test_max_flows_evicts_oldest_and_counts() -> None:
    out: list[dict] = []
    m = FlowMeter(MeterSettings(max_flows=10), out.append)
    for i in range(25):
        m.packet(T0 + i, tcp4(C, S, 1000 + i, 80, SYN), 1)
        assert m.stats.active_flows <= 10
    assert m.stats.evictions == 15 and [r["Src_Port"] for r in out] == list(range(1000, 1015))
    m.flush()
    assert m.stats.flows_out == 25 and m.stats.active_flows == 0


def test_expire_closes_flows_past_the_flow_timeout() -> None:
    out: list[dict] = []
    m = FlowMeter(MeterSettings(flow_timeout_us=1000, activity_timeout_us=100), out.append)
    m.packet(T0, udp4(C, S, 1, 2), 1)
    m.packet(T0 + 500, udp4(C, S, 3, 4), 1)
    m.expire(T0 + 1000)
    assert out == []
    m.expire(T0 + 1001)
    assert [r["Src_Port"] for r in out] == [1] and m.stats.active_flows == 1
    m.expire(T0 + 10_000)
    assert [r["Src_Port"] for r in out] == [1, 3] and m.stats.active_flows == 0


def test_settings() -> None:
    assert MeterSettings.reference().flow_timeout_us, (
        MeterSettings.reference().activity_timeout_us == REFERENCE_TIMEOUTS
    )
    with pytest.raises(ValueError, match="timeouts"):
        MeterSettings(flow_timeout_us=0)
    with pytest.raises(ValueError, match="max_flows"):
        MeterSettings(max_flows=0)


def _capture(tmp_path: Path) -> Path:
    packets = [
        (T0, tcp4(C, S, 40000, 80, SYN)),
        (T0 + 10, tcp4(S, C, 80, 40000, SYN | ACK)),
        (T0 + 20, udp4(C, S, 53000, 53, b"q" * 30)),
        (T0 + 420, udp4(S, C, 53, 53000, b"r" * 60)),
    ]
    return write_pcap(tmp_path / "cli.pcap", packets)


def test_cli_writes_the_reference_layout(tmp_path: Path) -> None:
    pcap = _capture(tmp_path)
    out = tmp_path / "flows.csv"
    assert cli_main([str(pcap), "--csv", str(out), "--reference-timeouts"]) == 0
    rows = list(csv.reader(out.open()))
    assert rows[0] == [*RECORD_COLUMNS, "Label"] and len(rows) == 3
    assert {r[-1] for r in rows[1:]} == {"No Label"}
    dns = next(r for r in rows[1:] if r[0] == "10.0.0.1-10.0.0.2-53000-53-17")
    assert (
        dns[RECORD_COLUMNS.index("Flow_Byts/s")] == "225000.0" and dns[RECORD_COLUMNS.index("Fwd_Pkt_Len_Max")] == "0"
    )


def test_cli_labelled_csv_loads_in_the_trainer(tmp_path: Path) -> None:
    data = pytest.importorskip("trainer.data")
    pcap = _capture(tmp_path)
    out = tmp_path / "labelled.csv"
    assert cli_main([str(pcap), "--csv", str(out), "--cat", "Normal"]) == 0
    table = data.load_csv(out)
    assert table.layout == "full" and len(table.frame) == 2 and set(table.frame["category"]) == {"Normal"}


def test_cli_stats_and_memoryview_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcap = _capture(tmp_path)
    assert cli_main([str(pcap), "--csv", str(tmp_path / "s.csv"), "--stats"]) == 0
    stats = json.loads(capsys.readouterr().err)
    assert stats["files"] == 1 and stats["meter"][0]["packets"] == 4 and stats["meter"][0]["flows_out"] == 2
    out: list[dict] = []
    m = FlowMeter(MeterSettings(), out.append)
    for ts, frame, linktype in read_capture(pcap):
        m.packet(ts, memoryview(frame), linktype)
    m.flush()
    assert [r["Flow_ID"] for r in out] == ["10.0.0.1-10.0.0.2-40000-80-6", "10.0.0.1-10.0.0.2-53000-53-17"]


def test_cli_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.pcap").write_text("nope")
    assert cli_main([str(tmp_path / "junk.pcap"), "--csv", str(tmp_path / "o.csv")]) == 1
    with pytest.raises(SystemExit):
        cli_main([str(_capture(tmp_path))])  # no output
    with pytest.raises(SystemExit):
        cli_main([str(_capture(tmp_path)), "--csv", str(tmp_path / "o.csv"), "--sub-cat", "Nonsense"])
    with pytest.raises(SystemExit):
        cli_main(
            [str(_capture(tmp_path)), "--csv", str(tmp_path / "o.csv"), "--cat", "Normal", "--sub-cat", "Scan Hostport"]
        )
