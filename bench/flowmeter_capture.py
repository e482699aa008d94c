"""The benchmark's capture: the shared pcaps replicated with shifted times and addresses, and a pcap's head."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from flowmeter.pcapfile import read_capture

BASE_US = 1_700_000_000_000_000  # replicas start here (2023-11-14)
GAP_CAP_US = 60_000_000  # gaps within a shared pcap are capped at 60 s (one spans 2.5 years)


def _ip_offsets(frame: bytes) -> tuple[int, int, int] | None:
    """(source offset, destination offset, address length) of an Ethernet frame's IP header, or None."""
    off, et = 14, int.from_bytes(frame[12:14], "big") if len(frame) >= 14 else 0
    while et in (0x8100, 0x88A8) and len(frame) >= off + 4:
        et, off = int.from_bytes(frame[off + 2 : off + 4], "big"), off + 4
    if et == 0x0800 and len(frame) >= off + 20:
        return off + 12, off + 16, 4
    if et == 0x86DD and len(frame) >= off + 40:
        return off + 8, off + 24, 16
    return None


def shared_round(pcap_dir: Path) -> list[tuple[int, bytes]]:
    """Every Ethernet packet of the shared pcaps, one file after the other, times relative to 0 (gaps capped)."""
    out: list[tuple[int, bytes]] = []
    now = 0
    for pcap in sorted(p for p in pcap_dir.glob("*.pcap*") if p.is_file()):
        prev = None
        for ts, frame, linktype in read_capture(pcap):
            if linktype != 1:
                continue
            if prev is not None:
                now += max(0, min(ts - prev, GAP_CAP_US))
            prev = ts
            out.append((now, bytes(frame)))
        now += 1000
    return out


def write_replicated(path: Path, packets: list[tuple[int, bytes]], min_packets: int) -> dict[str, Any]:
    """Replica r: times + r × the round's span, IP addresses with bytes 1–2 (IPv4) / 2–3 (IPv6) xor r."""
    span = packets[-1][0] + 1000
    replicas = -(-min_packets // len(packets))
    offsets = [_ip_offsets(f) for _, f in packets]
    rec = struct.Struct("<IIII").pack
    n = 0
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for r in range(replicas):
            hi, lo = r >> 8, r & 0xFF
            t0 = BASE_US + r * span
            chunk = []
            for (rel, frame), where in zip(packets, offsets, strict=True):
                if where is not None and r:
                    b = bytearray(frame)
                    s, d, alen = where
                    k = 1 if alen == 4 else 2
                    b[s + k] ^= hi
                    b[s + k + 1] ^= lo
                    b[d + k] ^= hi
                    b[d + k + 1] ^= lo
                    frame = bytes(b)
                ts = t0 + rel
                chunk.append(rec(ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)) + frame)
            fh.write(b"".join(chunk))
            n += len(packets)
    return {"packets": n, "replicas": replicas, "round_packets": len(packets), "round_span_s": span / 1e6,
            "bytes": path.stat().st_size}  # fmt: skip


def write_head(src: Path, dst: Path, count: int) -> int:
    """The first ``count`` packets of a pcap file (µs, Ethernet) into ``dst``."""
    rec = struct.Struct("<IIII").pack
    n = 0
    with open(dst, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, frame, _lt in read_capture(src):
            fh.write(rec(ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)) + bytes(frame))
            n += 1
            if n >= count:
                break
    return n
