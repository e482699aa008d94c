"""pcap and pcapng files → ``(ts_us, frame, linktype)``, over a memory map with ``struct`` and every length checked.

A file that is neither pcap nor pcapng raises ``CaptureError`` when opened. After that nothing raises: a record
whose length runs past the file, past the snaplen, or past ``MAX_RECORD`` ends the reading of a pcap file (its
records have no marker to resynchronise on) and skips the block in a pcapng file when the block framing allows;
every such case is counted in ``reader.errors`` by cause.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

MAX_RECORD = 262_144  # the largest snaplen libpcap writes; no frame is larger
MAX_BLOCK = 16 * 1024 * 1024

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1),  # byte order, divisor of the fraction to µs: µs files
    b"\xa1\xb2\xc3\xd4": (">", 1),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000),  # ns files
    b"\xa1\xb2\x3c\x4d": (">", 1_000),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"

Packet = tuple[int, bytes, int]


class CaptureError(ValueError):
    """The file is not a capture this reader knows (or cannot be opened)."""


class CaptureReader:
    """Iterate to get packets; ``errors`` counts corrupt records by cause, ``records`` the packets yielded."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.errors: Counter[str] = Counter()
        self.records = 0
        try:
            size = os.path.getsize(self.path)
            with open(self.path, "rb") as fh:
                head = fh.read(4)
        except OSError as e:
            raise CaptureError(f"{self.path}: cannot read: {e}") from e
        if head in _PCAP_MAGIC:
            self.format = "pcap"
        elif head == _PCAPNG_SHB:
            self.format = "pcapng"
        else:
            raise CaptureError(f"{self.path}: not a pcap or pcapng file (magic {head.hex() or 'empty'})")
        self.size = size

    def __iter__(self) -> Iterator[Packet]:
        with open(self.path, "rb") as fh:
            if self.size == 0:
                return
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                if self.format == "pcap":
                    yield from self._pcap(mm)
                else:
                    yield from self._pcapng(mm)

    def _pcap(self, mm: mmap.mmap) -> Iterator[Packet]:
        size = len(mm)
        if size < 24:
            self.errors["truncated_file_header"] += 1
            return
        endian, divisor = _PCAP_MAGIC[mm[0:4]]
        snaplen, network = struct.unpack_from(endian + "II", mm, 16)
        linktype = network & 0x0FFFFFFF
        limit = snaplen if 0 < snaplen < MAX_RECORD else MAX_RECORD
        rec = struct.Struct(endian + "IIII").unpack_from
        off = 24
        records = 0
        try:
            while off < size:
                if size - off < 16:
                    self.errors["truncated_record_header"] += 1
                    break
                sec, frac, incl, _orig = rec(mm, off)
                off += 16
                if incl > limit:
                    self.errors["record_too_long"] += 1
                    break
                if incl > size - off:
                    self.errors["truncated_record"] += 1
                    break
                frame = mm[off : off + incl]
                off += incl
                records += 1
                yield (sec * 1_000_000 + frac // divisor, frame, linktype)
        finally:
            self.records += records

    def _pcapng(self, mm: mmap.mmap) -> Iterator[Packet]:
        size = len(mm)
        off = 0
        endian = "<"
        interfaces: list[tuple[int, int, int, int]] = []  # linktype, snaplen, ticks per second, offset (s)
        while off < size:
            if size - off < 12:
                self.errors["truncated_block"] += 1
                return
            btype_raw = mm[off : off + 4]
            if btype_raw == _PCAPNG_SHB:
                bom = mm[off + 8 : off + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    endian = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    endian = ">"
                else:
                    self.errors["bad_section_header"] += 1
                    return
                interfaces = []
            btype, blen = struct.unpack_from(endian + "II", mm, off)
            if blen < 12 or blen % 4 or blen > MAX_BLOCK or blen > size - off:
                self.errors["bad_block_length"] += 1
                return
            (trailer,) = struct.unpack_from(endian + "I", mm, off + blen - 4)
            if trailer != blen:
                self.errors["bad_block_trailer"] += 1
                return
            body, body_len = off + 8, blen - 12
            off += blen
            if btype == 1:  # interface description
                if body_len < 8:
                    self.errors["bad_interface_block"] += 1
                    continue
                lt, _res, snap = struct.unpack_from(endian + "HHI", mm, body)
                tps, tsoff = _idb_options(mm, body + 8, body + body_len, endian)
                interfaces.append((lt, snap, tps, tsoff))
            elif btype in (6, 2):  # enhanced packet / obsolete packet block
                if body_len < 20:
                    self.errors["bad_packet_block"] += 1
                    continue
                if btype == 6:
                    iface, hi, lo, cap, _orig = struct.unpack_from(endian + "IIIII", mm, body)
                else:
                    iface, _drops, hi, lo, cap, _orig = struct.unpack_from(endian + "HHIIII", mm, body)
                if iface >= len(interfaces):
                    self.errors["unknown_interface"] += 1
                    continue
                lt, snap, tps, tsoff = interfaces[iface]
                if cap > body_len - 20 or cap > MAX_RECORD:
                    self.errors["bad_packet_length"] += 1
                    continue
                ticks = (hi << 32) | lo
                ts = (ticks * 1_000_000) // tps + tsoff * 1_000_000
                self.records += 1
                yield (ts, mm[body + 20 : body + 20 + cap], lt)
            elif btype == 3:  # simple packet block: interface 0, no time stamp
                if not interfaces or body_len < 4:
                    self.errors["bad_packet_block"] += 1
                    continue
                (orig,) = struct.unpack_from(endian + "I", mm, body)
                lt, snap, _tps, _tsoff = interfaces[0]
                cap = min(orig, body_len - 4, snap or MAX_RECORD, MAX_RECORD)
                self.records += 1
                yield (0, mm[body + 4 : body + 4 + cap], lt)


def _idb_options(mm: mmap.mmap, off: int, end: int, endian: str) -> tuple[int, int]:
    """if_tsresol → ticks per second (default 10^6), if_tsoffset → seconds."""
    tps, tsoff = 1_000_000, 0
    while end - off >= 4:
        code, length = struct.unpack_from(endian + "HH", mm, off)
        off += 4
        if code == 0 or length > end - off:
            break
        if code == 9 and length >= 1:
            v = mm[off]
            exp = v & 0x7F
            if exp <= 30 or (v & 0x80 and exp <= 63):
                tps = (2**exp) if v & 0x80 else 10**exp
        elif code == 14 and length >= 8:
            (tsoff,) = struct.unpack_from(endian + "q", mm, off)
        off += (length + 3) & ~3
    return tps, tsoff


def read_capture(path: str | Path) -> CaptureReader:
    """Open a pcap or pcapng file (``CaptureError`` if it is neither); iterate it for ``(ts_us, frame, linktype)``."""
    return CaptureReader(path)
