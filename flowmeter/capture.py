"""Live capture from a Linux interface: ``(ts_us, frame, linktype)`` like ``flowmeter.pcapfile.read_capture``.

A stdlib ``AF_PACKET`` socket with a ``TPACKET_V3`` ring — the kernel interface libpcap itself uses on Linux — so the
gateway needs no compiled dependency and only ``CAP_NET_RAW``, on arm64 and x86-64 alike (``bench/capture.py``: as
cheap per packet as libpcap through pcapy-ng):

- time stamps are the kernel's receive time (truncated to µs as libpcap does), so a live run and a tcpdump of the
  same traffic give the same records;
- a BPF filter expression (tcpdump syntax) is compiled by the system's libpcap through ctypes (``pcap_compile`` on
  a dead handle; ``libpcap0.8`` on Debian) and attached to the socket before it is bound, so the kernel drops what
  does not match and not one unfiltered packet is queued; its return value (or, without a filter, a one-instruction
  program) cuts each packet to ``snaplen``;
- the kernel's drop counter (``PACKET_STATISTICS``: packets the ring had no room for) and the interface's own
  ``rx_dropped`` are read and reported by ``stats()``;
- memory is bounded: the ring (``ring_bytes``, mapped once; beyond it the kernel drops and counts) and the frame
  being handed out;
- 802.1Q tags that the NIC stripped (VLAN offload) are put back, as libpcap does; on a loopback interface the
  outgoing copy of each packet is skipped (it is seen again incoming), as libpcap does.

``stop()`` (from another thread or a signal handler) ends the iteration within the block timeout (50 ms by default),
after handing out what the kernel had already captured (libpcap/tcpdump lose a partly filled block); ``on_tick(now_us)``
is called every ``tick_s`` seconds from the iterating thread, with or without traffic, so the caller can run
``meter.expire(now_us)`` without a second thread. Its ``now_us`` lags the clock by twice the block timeout: a block
reaches us up to a block timeout after its first packet, so expiring at the wall clock could close a flow just
before a late packet of it arrives (and live records would then differ from the capture file's). (libpcap's own read
timeout does not fire while no packet arrives.)
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import mmap
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# Linux constants (include/uapi/linux/if_ether.h, if_packet.h, asm-generic/socket.h, if_arp.h)
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_NONE = 0xFFFE
ARPHRD_RAWIP = 519
# pcap link types (tcpdump.org/linktypes.html) and the DLT values pcap_open_dead takes for them on Linux
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
_DLT = {LINKTYPE_ETHERNET: 1, LINKTYPE_RAW: 12}
_PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF

MAX_SNAPLEN = 262_144
DEFAULT_SNAPLEN = 65_535
DEFAULT_BLOCK = 256 * 1024
DEFAULT_RING = 4 * 1024 * 1024
_FRAME_BYTES = 2048  # TPACKET_V3 packs packets tightly in a block; the kernel only checks this for consistency
_TPACKET_REQ3 = struct.Struct("@7I")  # block size, block count, frame size, frame count, retire timeout, priv, features
_BLOCK_HDR = struct.Struct("@III")  # at +8 in a block: block_status, num_pkts, offset_to_first_pkt
_TPACKET3_HDR = struct.Struct("@6IHH4xIH")  # next, sec, nsec, snaplen, len, status, mac, net, (rxhash), tci, tpid
_SLL_OFFSET = 48  # TPACKET_ALIGN(sizeof(struct tpacket3_hdr)): the sockaddr_ll the kernel writes after the header
_SLL_PKTTYPE = _SLL_OFFSET + 10
_SOCKADDR_LL = struct.Struct("@HHiHBB8s")
_SLL = struct.Struct("!HHH8sH")
_VLAN = struct.Struct("!HH")
_U32 = struct.Struct("@I")
_BPF_ACCEPT = struct.Struct("@HBBI")  # BPF_RET | BPF_K: accept this many bytes
_TPACKET_STATS = struct.Struct("@III")  # tpacket_stats_v3: packets, drops, freeze_q_cnt


class LiveCaptureError(RuntimeError):
    """Capture cannot start (no such interface, no CAP_NET_RAW, bad filter, no libpcap); the message says why."""


class _BpfInsn(ctypes.Structure):
    _fields_ = (("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32))


class _BpfProgram(ctypes.Structure):
    _fields_ = (("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn)))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def _libpcap() -> ctypes.CDLL:
    names = [n for n in (ctypes.util.find_library("pcap"),) if n] + ["libpcap.so.0.8", "libpcap.so.1", "libpcap.so"]
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = (ctypes.c_int, ctypes.c_int)
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = (
            ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32,
        )  # fmt: skip
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = (ctypes.c_void_p,)
        lib.pcap_freecode.argtypes = (ctypes.POINTER(_BpfProgram),)
        lib.pcap_close.argtypes = (ctypes.c_void_p,)
        return lib
    raise LiveCaptureError("a BPF filter needs libpcap to compile it (Debian: apt-get install libpcap0.8)")


def compile_bpf(expression: str, linktype: int = LINKTYPE_ETHERNET, snaplen: int = DEFAULT_SNAPLEN) -> bytes:
    """A tcpdump filter expression → the kernel's ``struct sock_filter`` array (8 bytes per instruction)."""
    if linktype not in _DLT:
        raise LiveCaptureError(f"BPF filters are supported on Ethernet and raw-IP interfaces, not link type {linktype}")
    lib = _libpcap()
    handle = lib.pcap_open_dead(_DLT[linktype], snaplen)
    if not handle:
        raise LiveCaptureError("pcap_open_dead failed")
    prog = _BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1, _PCAP_NETMASK_UNKNOWN) != 0:
            raise LiveCaptureError(f"bad filter {expression!r}: {lib.pcap_geterr(handle).decode(errors='replace')}")
        try:
            return ctypes.string_at(prog.bf_insns, prog.bf_len * ctypes.sizeof(_BpfInsn))
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(handle)


def _attach_filter(sock: socket.socket, program: bytes) -> None:
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // ctypes.sizeof(_BpfInsn), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))  # the kernel copies the program


def _hardware_type(interface: str) -> int:
    """The interface's ARPHRD type, from a packet socket bound to it (right in any network namespace)."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as probe:
        probe.bind((interface, 0))
        return probe.getsockname()[3]


def _if_dropped(interface: str) -> int | None:
    """The interface's ``rx_dropped`` from /proc/net/dev (which is per network namespace, like the socket)."""
    try:
        for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
            name, _, fields = line.partition(":")
            if name.strip() == interface:
                return int(fields.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return None


class LiveCapture:
    """Packets from ``interface``, iterated as ``(ts_us, frame, linktype)``; a context manager.

    The kernel fills a ``TPACKET_V3`` ring shared with this process (``ring_bytes``, in blocks of ``block_bytes``; a
    block is handed over when full or ``block_timeout_ms`` after its first packet), so packets are read without a
    system call each and small packets are packed tightly: the ring holds tens of thousands of them.
    """

    def __init__(
        self,
        interface: str,
        *,
        bpf: str | None = None,
        snaplen: int = DEFAULT_SNAPLEN,
        promisc: bool = False,
        ring_bytes: int = DEFAULT_RING,
        block_bytes: int | None = None,
        block_timeout_ms: int = 50,
        tick_s: float = 1.0,
        on_tick: Callable[[int], None] | None = None,
    ) -> None:
        if not 64 <= snaplen <= MAX_SNAPLEN:
            raise ValueError(f"snaplen must be 64…{MAX_SNAPLEN}, got {snaplen}")
        page = mmap.PAGESIZE
        if block_bytes is None:  # 256 KiB, or the next power of two that holds one packet of snaplen bytes
            block_bytes = max(DEFAULT_BLOCK, page, 1 << (snaplen + 255).bit_length())
        if block_bytes % page or block_bytes & (block_bytes - 1) or block_bytes < snaplen + 256:
            raise ValueError(f"block_bytes must be a power of two, a multiple of {page} and > snaplen + 256")
        if ring_bytes < 2 * block_bytes:
            raise ValueError(
                f"ring_bytes ({ring_bytes}) must hold two blocks of {block_bytes} bytes (snaplen {snaplen})"
            )
        if tick_s <= 0 or not 1 <= block_timeout_ms <= 60_000:
            raise ValueError("tick_s must be > 0 and block_timeout_ms 1…60000")
        self.interface = interface
        self.snaplen = snaplen
        self.tick_s = tick_s
        self.on_tick = on_tick
        self._packets = 0
        self._kernel_drops = 0
        self._stopping = False
        try:
            self.ifindex = socket.if_nametoindex(interface)
        except OSError:
            names = ", ".join(sorted(n for _, n in socket.if_nameindex()))
            raise LiveCaptureError(f"no interface {interface!r} here (have: {names})") from None
        try:
            hatype = _hardware_type(interface)
            program = None
            if hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
                self.linktype, kind = LINKTYPE_ETHERNET, socket.SOCK_RAW
            elif hatype in (ARPHRD_NONE, ARPHRD_RAWIP):
                self.linktype, kind = LINKTYPE_RAW, socket.SOCK_RAW
            else:  # other link layers: the kernel strips the header, we write a Linux cooked (SLL) one
                self.linktype, kind = LINKTYPE_LINUX_SLL, socket.SOCK_DGRAM
            # the filter's return value is the snaplen (as libpcap does it): without a filter, "accept snaplen bytes"
            program = compile_bpf(bpf, self.linktype, snaplen) if bpf else _BPF_ACCEPT.pack(0x06, 0, 0, snaplen)
            # protocol 0: the socket receives nothing until bind(), so the filter is in place before any packet
            sock = socket.socket(socket.AF_PACKET, kind, 0)
        except PermissionError:
            raise LiveCaptureError(
                "capturing needs CAP_NET_RAW (run as root, or grant it: systemd AmbientCapabilities=CAP_NET_RAW,"
                " or setcap cap_net_raw+ep on the interpreter)"
            ) from None
        self._skip_outgoing = hatype == ARPHRD_LOOPBACK
        self._block_bytes = block_bytes
        self._block_timeout_s = block_timeout_ms / 1000
        self._blocks = ring_bytes // block_bytes
        try:
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            # asks the kernel to stamp packets when they arrive (netif_rx) instead of when each tap sees them: earlier,
            # and the same time stamp for every capture of the packet (tcpdump's too)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            frames = block_bytes // _FRAME_BYTES * self._blocks
            req = _TPACKET_REQ3.pack(block_bytes, self._blocks, _FRAME_BYTES, frames, block_timeout_ms, 0, 0)
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self._ring = mmap.mmap(sock.fileno(), block_bytes * self._blocks, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip
            _attach_filter(sock, program)
            sock.bind((interface, ETH_P_ALL))
            if promisc:
                mreq = struct.pack("@iHH8s", self.ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size)  # reset: count from now on
        except OSError as e:
            sock.close()
            raise LiveCaptureError(f"cannot capture on {interface!r}: {e.strerror or e}") from None
        self._sock = sock
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._if_dropped0 = _if_dropped(interface)
        self._block = 0
        log.info(
            "capturing on %s (link type %d, filter %r, ring %d × %d bytes)", interface, self.linktype, bpf,
            self._blocks, block_bytes,
        )  # fmt: skip

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> None:
        """End the iteration promptly (safe from another thread or a signal handler)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Stop and release the socket and its ring (idempotent)."""
        self._stopping = True
        if self._sock.fileno() >= 0:
            self._read_kernel_stats()
            with contextlib.suppress(BufferError):  # a frame still referenced would pin the map; it goes with GC
                self._ring.close()
            self._sock.close()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _read_kernel_stats(self) -> None:
        # the kernel resets its counters on each read; tp_packets includes the drops
        with contextlib.suppress(OSError):
            raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size)
            self._kernel_drops += _TPACKET_STATS.unpack(raw)[1]

    def stats(self) -> dict[str, int]:
        """``packets`` handed out, ``kernel_drops`` (no room in the ring), ``if_drops`` (the interface's own
        ``rx_dropped`` since the start; -1 when unreadable)."""
        if self._sock.fileno() >= 0:
            self._read_kernel_stats()
        now = _if_dropped(self.interface)
        if_drops = now - self._if_dropped0 if now is not None and self._if_dropped0 is not None else -1
        return {"packets": self._packets, "kernel_drops": self._kernel_drops, "if_drops": if_drops}

    def __iter__(self) -> Iterator[tuple[int, bytes, int]]:
        ring, sock, wake, linktype = self._ring, self._sock, self._wake_r, self.linktype
        block_bytes, blocks = self._block_bytes, self._blocks
        skip_outgoing, snaplen, sll = self._skip_outgoing, self.snaplen, linktype == LINKTYPE_LINUX_SLL
        unpack_hdr, unpack_block = _TPACKET3_HDR.unpack_from, _BLOCK_HDR.unpack_from
        next_tick = time.monotonic() + self.tick_s
        drain_until = None  # after stop(): the kernel hands over its partly filled block within the block timeout
        while True:
            if self._stopping:
                if drain_until is None:
                    drain_until = time.monotonic() + self._block_timeout_s + 0.02
                    waitables = [sock]
                elif time.monotonic() >= drain_until:
                    return
            else:
                waitables = [sock, wake]
            base = self._block * block_bytes
            status, count, first = unpack_block(ring, base + 8)
            if not status & TP_STATUS_USER:
                until = next_tick if drain_until is None else min(next_tick, drain_until)
                select.select(waitables, [], [], max(0.0, until - time.monotonic()))  # EINTR: retried
            else:
                # the kernel wrote the block before it set TP_STATUS_USER; the status was read first
                off = base + first
                for _ in range(count):
                    nxt, sec, nsec, caplen, _len, pstatus, mac, net, tci, tpid = unpack_hdr(ring, off)
                    if skip_outgoing and ring[off + _SLL_PKTTYPE] == PACKET_OUTGOING:
                        off += nxt
                        continue
                    if sll:
                        frame = _sll_header(ring, off) + ring[off + net : off + net + caplen]
                    else:
                        frame = ring[off + mac : off + mac + caplen]
                        if (tci or pstatus & TP_STATUS_VLAN_VALID) and linktype == LINKTYPE_ETHERNET:
                            tpid = tpid if pstatus & TP_STATUS_VLAN_TPID_VALID else 0x8100
                            frame = (frame[:12] + _VLAN.pack(tpid, tci) + frame[12:])[:snaplen]
                    off += nxt
                    self._packets += 1
                    yield sec * 1_000_000 + nsec // 1000, frame, linktype
                _U32.pack_into(ring, base + 8, TP_STATUS_KERNEL)  # hand the block back
                self._block = (self._block + 1) % blocks
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_s
                if self.on_tick is not None:  # every packet stamped before this has been handed out
                    self.on_tick(time.time_ns() // 1000 - int(2e6 * self._block_timeout_s))


def _sll_header(ring: mmap.mmap, off: int) -> bytes:
    """A Linux cooked-capture header from the ring's ``sockaddr_ll`` after the packet header."""
    _family, proto, _ifindex, hatype, pkttype, halen, addr = _SOCKADDR_LL.unpack_from(ring, off + _SLL_OFFSET)
    return _SLL.pack(pkttype, hatype, halen, addr, socket.ntohs(proto))
