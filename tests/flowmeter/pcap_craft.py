"""Packet and capture builders for the flow-meter tests (struct only; checksums are left 0, nothing reads them)."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from pathlib import Path

MAC_A = b"\x02\x00\x00\x00\x00\x01"
MAC_B = b"\x02\x00\x00\x00\x00\x02"
T0 = 1_600_000_000_000_000  # 13/09/2020 12:26:40 PM UTC, in µs
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


def tcp(
    sport: int, dport: int, flags: int = ACK, payload: bytes = b"", window: int = 1000, options: bytes = b""
) -> bytes:
    assert len(options) % 4 == 0
    doff = (20 + len(options)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 1, doff << 4, flags, window, 0, 0) + options + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp_echo(kind: int = 8, payload: bytes = b"") -> bytes:
    return struct.pack("!BBHHH", kind, 0, 0, 1, 1) + payload


def ipv4(src: str, dst: str, proto: int, l4: bytes, frag: int = 0, options: bytes = b"") -> bytes:
    ihl = (20 + len(options)) // 4
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(l4), 1, frag, 64, proto, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    return head + options + l4


def ipv6(src: str, dst: str, nxt: int, l4: bytes, ext: bytes = b"") -> bytes:
    head = struct.pack("!IHBB", 0x60000000, len(ext) + len(l4), nxt, 64)
    return head + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + ext + l4


def ether(l3: bytes, ethertype: int = 0x0800, pad_to: int = 60) -> bytes:
    frame = MAC_B + MAC_A + struct.pack("!H", ethertype) + l3
    return frame + b"\x00" * max(0, pad_to - len(frame))


def tcp4(src: str, dst: str, sport: int, dport: int, flags: int = ACK, payload: bytes = b"", **kw: object) -> bytes:
    return ether(ipv4(src, dst, 6, tcp(sport, dport, flags, payload, **kw)))  # type: ignore[arg-type]


def udp4(src: str, dst: str, sport: int, dport: int, payload: bytes = b"") -> bytes:
    return ether(ipv4(src, dst, 17, udp(sport, dport, payload)))


def write_pcap(path: Path, packets: Iterable[tuple[int, bytes]], linktype: int = 1, snaplen: int = 65535) -> Path:
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
        for ts, frame in packets:
            cap = frame[:snaplen]
            fh.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(cap), len(frame)) + cap)
    return path


def _block(btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def write_pcapng(
    path: Path, interfaces: list[tuple[int, int | None]], packets: Iterable[tuple[int, int, bytes]]
) -> Path:
    """``interfaces``: (linktype, if_tsresol byte or None); ``packets``: (interface, ticks, frame)."""
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for linktype, tsresol in interfaces:
        opts = b""
        if tsresol is not None:
            opts = struct.pack("<HHB3x", 9, 1, tsresol) + struct.pack("<HH", 0, 0)
        out.append(_block(1, struct.pack("<HHI", linktype, 0, 0) + opts))
    for iface, ticks, frame in packets:
        body = struct.pack("<IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)) + frame
        out.append(_block(6, body))
    path.write_bytes(b"".join(out))
    return path
