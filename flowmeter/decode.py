"""Frames → the few fields a flow needs, with fixed-offset ``struct`` parsing and every bound checked.

``decode(frame, linktype)`` returns either a tuple
``(src, dst, src_port, dst_port, protocol, payload_bytes, header_bytes, flags, window)`` or a ``str``: the cause
why the frame makes no packet (``"not_ip"`` for ARP and other non-IP frames, the rest are bad packets).

* ``src``/``dst``: IPv4 as a 32-bit ``int``; IPv6 as 16 ``bytes`` (so the two never share a flow key).
* ``protocol``: 6 or 17; every other protocol is 0 with ports, payload and header 0 (the reference's rule).
* ``payload_bytes``/``header_bytes``: L4 payload and the TCP/UDP header length, as the reference counts them. The
  payload is measured with the IP length fields, so Ethernet padding is not payload and a packet cut by the
  capture's snaplen still counts its real payload (it then also carries ``SNAPLEN_CUT``).
* ``flags``: the TCP flag byte (FIN 0x01 … CWR 0x80), plus ``FRAGMENT`` for a non-first IP fragment (made a
  protocol-0 packet, its L4 header is not there) and ``SNAPLEN_CUT``.
* ``window``: the TCP window, -1 without a TCP header.

Like the reference (jnetpcap), an ICMP destination-unreachable / parameter-problem message is read through to the
TCP or UDP header it quotes, and IP-in-IP to the inner TCP/UDP header: outer addresses, inner ports, protocol and
flags.
"""

from __future__ import annotations

import struct

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
FRAGMENT = 0x100
SNAPLEN_CUT = 0x200

# Link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_DLT12 = 12
LINKTYPE_RAW_DLT14 = 14
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW_DLT12,
        LINKTYPE_RAW_DLT14,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
_VLAN_TYPES = frozenset({0x8100, 0x88A8, 0x9100})
_MAX_VLAN_TAGS = 4
_BSD_AF_INET = 2
_BSD_AF_INET6 = frozenset({10, 24, 28, 30})  # Linux, NetBSD/OpenBSD, FreeBSD, macOS
_IPV6_EXT = frozenset({0, 43, 60, 135, 139, 140})  # hop-by-hop, routing, dest-opts, mobility, HIP, shim6
_MAX_IPV6_EXT = 8

# IPv4 from the total length on: total length, fragment word, protocol, source, destination.
_IP4 = struct.Struct("!2xH2xHxB2xII").unpack_from
# TCP: ports, data offset byte, flags byte, window.
_TCP = struct.Struct("!HH8xBBH").unpack_from
_PORTS = struct.Struct("!HH").unpack_from
_U16 = struct.Struct("!H").unpack_from
_IP6 = struct.Struct("!4xHB").unpack_from  # payload length, next header

Decoded = tuple[int | bytes, int | bytes, int, int, int, int, int, int, int]


def decode(frame: bytes | memoryview, linktype: int) -> Decoded | str:
    """One frame → packet fields, or the cause why not (see the module doc)."""
    n = len(frame)
    if linktype == LINKTYPE_ETHERNET:
        if n < 14:
            return "truncated_l2"
        et = (frame[12] << 8) | frame[13]
        off = 14
        if et == ETH_IPV4:
            return _ipv4(frame, off, n)
        tags = 0
        while et in _VLAN_TYPES:
            tags += 1
            if tags > _MAX_VLAN_TAGS or n < off + 4:
                return "truncated_l2" if n < off + 4 else "vlan_too_deep"
            et = (frame[off + 2] << 8) | frame[off + 3]
            off += 4
        return _by_ethertype(frame, et, off, n)
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_DLT12, LINKTYPE_RAW_DLT14, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if n < 1:
            return "truncated_l3"
        version = frame[0] >> 4
        if version == 4:
            return _ipv4(frame, 0, n)
        if version == 6:
            return _ipv6(frame, 0, n)
        return "not_ip"
    if linktype == LINKTYPE_LINUX_SLL:
        if n < 16:
            return "truncated_l2"
        return _by_ethertype(frame, (frame[14] << 8) | frame[15], 16, n)
    if linktype == LINKTYPE_LINUX_SLL2:
        if n < 20:
            return "truncated_l2"
        return _by_ethertype(frame, (frame[0] << 8) | frame[1], 20, n)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if n < 4:
            return "truncated_l2"
        family = int.from_bytes(frame[0:4], "big" if linktype == LINKTYPE_LOOP else "little")
        if linktype == LINKTYPE_NULL and family > 0xFFFF:  # written by a big-endian host
            family = int.from_bytes(frame[0:4], "big")
        if family == _BSD_AF_INET:
            return _ipv4(frame, 4, n)
        if family in _BSD_AF_INET6:
            return _ipv6(frame, 4, n)
        return "not_ip"
    return "unknown_linktype"


def _by_ethertype(frame: bytes | memoryview, et: int, off: int, n: int) -> Decoded | str:
    tags = 0
    while et in _VLAN_TYPES:
        tags += 1
        if n < off + 4:
            return "truncated_l2"
        if tags > _MAX_VLAN_TAGS:
            return "vlan_too_deep"
        et = (frame[off + 2] << 8) | frame[off + 3]
        off += 4
    if et == ETH_IPV4:
        return _ipv4(frame, off, n)
    if et == ETH_IPV6:
        return _ipv6(frame, off, n)
    return "not_ip"


def _ipv4(frame: bytes | memoryview, off: int, n: int) -> Decoded | str:
    if n - off < 20:
        return "ipv4_truncated"
    vihl = frame[off]
    if vihl >> 4 != 4:
        return "ipv4_bad_version"
    hl = (vihl & 15) << 2
    if hl < 20:
        return "ipv4_bad_ihl"
    if n - off < hl:
        return "ipv4_truncated"
    total, frag, proto, src, dst = _IP4(frame, off)
    if total < hl:
        return "ipv4_bad_total_length"
    cut = SNAPLEN_CUT if off + total > n else 0
    if frag & 0x1FFF:  # a non-first fragment: no L4 header in it
        return (src, dst, 0, 0, 0, 0, 0, FRAGMENT | cut, -1)
    l4 = off + hl
    if proto == 6 or proto == 17:
        return _transport(frame, proto, l4, off + total, n, src, dst, cut)
    if proto == 1 and n - l4 >= 8 and (frame[l4] == 3 or frame[l4] == 12):
        inner = _inner_l4(frame, l4 + 8, off + total if not cut else n, n)
        if inner is not None:
            return (src, dst, *inner)
    elif proto == 4:
        inner = _inner_l4(frame, l4, off + total if not cut else n, n)
        if inner is not None:
            return (src, dst, *inner)
    return (src, dst, 0, 0, 0, 0, 0, cut, -1)


def _inner_l4(frame: bytes | memoryview, off: int, end: int, n: int) -> tuple[int, ...] | None:
    """The TCP/UDP header inside an IPv4 header at ``off`` (quoted by an ICMP error, or IP-in-IP), read as jnetpcap
    reads it: ports, protocol and flags of the inner header, payload = the rest of the outer packet."""
    if n - off < 20 or frame[off] >> 4 != 4:
        return None
    hl = (frame[off] & 15) << 2
    if hl < 20 or n - off < hl:
        return None
    _total, frag, proto, _src, _dst = _IP4(frame, off)
    if frag & 0x1FFF:
        return None
    l4 = off + hl
    end = min(end, n)
    if proto == 6 and n - l4 >= 20:
        sport, dport, doff, flags, window = _TCP(frame, l4)
        thl = (doff >> 4) << 2
        if thl < 20:
            return None
        return (sport, dport, 6, max(0, end - l4 - thl), thl, flags, window)
    if proto == 17 and n - l4 >= 8:
        sport, dport = _PORTS(frame, l4)
        return (sport, dport, 17, max(0, end - l4 - 8), 8, 0, -1)
    return None


def _ipv6(frame: bytes | memoryview, off: int, n: int) -> Decoded | str:
    if n - off < 40:
        return "ipv6_truncated"
    if frame[off] >> 4 != 6:
        return "ipv6_bad_version"
    plen, nxt = _IP6(frame, off)
    src = bytes(frame[off + 8 : off + 24])
    dst = bytes(frame[off + 24 : off + 40])
    end = off + 40 + plen
    cut = 0
    if plen == 0:  # jumbogram or a zero-length payload: trust the capture
        end = n
    elif end > n:
        cut = SNAPLEN_CUT
    pos = off + 40
    for _ in range(_MAX_IPV6_EXT):
        if nxt in _IPV6_EXT or nxt == 51:
            if n - pos < 8:
                return "ipv6_truncated"
            step = (frame[pos + 1] + 2) << 2 if nxt == 51 else (frame[pos + 1] + 1) << 3
            nxt = frame[pos]
            pos += step
            if pos > end:
                return "ipv6_bad_extension"
        elif nxt == 44:  # fragment header
            if n - pos < 8:
                return "ipv6_truncated"
            frag_off = _U16(frame, pos + 2)[0] >> 3
            nxt = frame[pos]
            pos += 8
            if frag_off:
                return (src, dst, 0, 0, 0, 0, 0, FRAGMENT | cut, -1)
        else:
            break
    else:
        return "ipv6_bad_extension"
    if nxt == 6 or nxt == 17:
        return _transport(frame, nxt, pos, end, n, src, dst, cut)
    return (src, dst, 0, 0, 0, 0, 0, cut, -1)


def _transport(
    frame: bytes | memoryview, proto: int, pos: int, end: int, n: int, src: int | bytes, dst: int | bytes, cut: int
) -> Decoded | str:
    """The TCP (6) or UDP (17) header at ``pos`` of an IP packet whose payload ends at ``end`` (IPv4 and IPv6)."""
    if proto == 6:
        if n - pos < 20:
            return "tcp_truncated"
        sport, dport, doff, flags, window = _TCP(frame, pos)
        thl = (doff >> 4) << 2
        if thl < 20 or pos + thl > end:
            return "tcp_bad_offset"
        return (src, dst, sport, dport, 6, end - pos - thl, thl, flags | cut, window)
    if n - pos < 8:
        return "udp_truncated"
    if end - pos < 8:
        return "udp_bad_length"
    sport, dport = _PORTS(frame, pos)
    return (src, dst, sport, dport, 17, end - pos - 8, 8, cut, -1)
