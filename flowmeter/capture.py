"""Live capture from a Linux interface: ``(ts_us, frame, linktype)`` like ``flowmeter.pcapfile.read_capture``.

A stdlib ``AF_PACKET`` socket — the kernel interface libpcap itself uses on Linux — so the gateway needs no compiled
dependency and only ``CAP_NET_RAW``, on arm64 and x86-64 alike:

- time stamps are the kernel's receive time (``SO_TIMESTAMPNS``, truncated to µs as libpcap does), so a live run and
  a tcpdump of the same traffic give the same records;
- a BPF filter expression (tcpdump syntax) is compiled by the system's libpcap through ctypes (``pcap_compile`` on
  a dead handle; ``libpcap0.8`` on Debian) and attached to the socket before it is bound, so the kernel drops what
  does not match and not one unfiltered packet is queued;
- the kernel's drop counter (``PACKET_STATISTICS``: packets the socket's receive buffer had no room for) and the
  interface's own ``rx_dropped`` are read and reported by ``stats()``;
- buffers are bounded: the socket's receive buffer (``rcvbuf_bytes``; beyond it the kernel drops and counts) and one
  frame of at most ``snaplen`` bytes in Python at a time;
- 802.1Q tags that the NIC stripped (VLAN offload) are put back from ``PACKET_AUXDATA``, as libpcap does; on a
  loopback interface the outgoing copy of each packet is skipped (it is seen again incoming), as libpcap does.

``stop()`` (from another thread or a signal handler) ends the iteration promptly; ``on_tick(now_us)`` is called
every ``tick_s`` seconds from the iterating thread, with or without traffic, so the caller can run
``meter.expire(now_us)`` without a second thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# Linux constants (include/uapi/linux/if_ether.h, if_packet.h, asm-generic/socket.h, if_arp.h)
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_AUXDATA = 8
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
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
DEFAULT_RCVBUF = 4 * 1024 * 1024
_BATCH = 256  # packets read before the stop flag and the tick clock are looked at again
_TIMESPEC = struct.Struct("@qq")
_AUXDATA = struct.Struct("@IIIHHHH")
_TPACKET_STATS = struct.Struct("@II")


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
    try:
        return int(Path(f"/sys/class/net/{interface}/type").read_text())
    except (OSError, ValueError):
        return ARPHRD_ETHER  # /sys of another namespace or not mounted: the socket's own address says it later


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
    """Packets from ``interface``, iterated as ``(ts_us, frame, linktype)``; a context manager."""

    def __init__(
        self,
        interface: str,
        *,
        bpf: str | None = None,
        snaplen: int = DEFAULT_SNAPLEN,
        promisc: bool = False,
        rcvbuf_bytes: int = DEFAULT_RCVBUF,
        tick_s: float = 1.0,
        on_tick: Callable[[int], None] | None = None,
    ) -> None:
        if not 64 <= snaplen <= MAX_SNAPLEN:
            raise ValueError(f"snaplen must be 64…{MAX_SNAPLEN}, got {snaplen}")
        if rcvbuf_bytes < 4096:
            raise ValueError(f"rcvbuf_bytes must be >= 4096, got {rcvbuf_bytes}")
        if tick_s <= 0:
            raise ValueError(f"tick_s must be > 0, got {tick_s}")
        self.interface = interface
        self.snaplen = snaplen
        self.tick_s = tick_s
        self.on_tick = on_tick
        self._packets = 0
        self._kernel_drops = 0
        self._stats_lock = threading.Lock()
        self._stopping = False
        try:
            self.ifindex = socket.if_nametoindex(interface)
        except OSError:
            names = ", ".join(sorted(n for _, n in socket.if_nameindex()))
            raise LiveCaptureError(f"no interface {interface!r} here (have: {names})") from None
        hatype = _hardware_type(interface)
        if hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
            self.linktype, kind = LINKTYPE_ETHERNET, socket.SOCK_RAW
        elif hatype in (ARPHRD_NONE, ARPHRD_RAWIP):
            self.linktype, kind = LINKTYPE_RAW, socket.SOCK_RAW
        else:  # other link layers: the kernel strips the header, we write a Linux cooked (SLL) one
            self.linktype, kind = LINKTYPE_LINUX_SLL, socket.SOCK_DGRAM
        self._skip_outgoing = hatype == ARPHRD_LOOPBACK
        program = compile_bpf(bpf, self.linktype, snaplen) if bpf else None
        try:
            # protocol 0: the socket receives nothing until bind(), so the filter is in place before any packet
            sock = socket.socket(socket.AF_PACKET, kind, 0)
        except PermissionError:
            raise LiveCaptureError(
                "capturing needs CAP_NET_RAW (run as root, or grant it: systemd AmbientCapabilities=CAP_NET_RAW,"
                " or setcap cap_net_raw+ep on the interpreter)"
            ) from None
        try:
            self.rcvbuf = self._set_rcvbuf(sock, rcvbuf_bytes)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            if program is not None:
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
        self._ancbuf = socket.CMSG_SPACE(_TIMESPEC.size) + socket.CMSG_SPACE(_AUXDATA.size)
        log.info(
            "capturing on %s (link type %d, filter %r, receive buffer %d bytes)", interface, self.linktype, bpf,
            self.rcvbuf,
        )  # fmt: skip

    @staticmethod
    def _set_rcvbuf(sock: socket.socket, size: int) -> int:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)  # beyond rmem_max; needs CAP_NET_ADMIN
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)  # capped at net.core.rmem_max
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

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
        """Stop and release the socket (idempotent)."""
        self._stopping = True
        if self._sock.fileno() >= 0:
            self._read_kernel_stats()
            self._sock.close()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _read_kernel_stats(self) -> None:
        # the kernel resets its counters on each read; tp_packets includes the drops
        with contextlib.suppress(OSError):
            _, drops = _TPACKET_STATS.unpack(self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size))
            with self._stats_lock:
                self._kernel_drops += drops

    def stats(self) -> dict[str, int]:
        """``packets`` handed out, ``kernel_drops`` (no room in the socket buffer), ``if_drops`` (the interface's own
        ``rx_dropped`` since the start; -1 when unreadable)."""
        if self._sock.fileno() >= 0:
            self._read_kernel_stats()
        now = _if_dropped(self.interface)
        if_drops = now - self._if_dropped0 if now is not None and self._if_dropped0 is not None else -1
        with self._stats_lock:
            return {"packets": self._packets, "kernel_drops": self._kernel_drops, "if_drops": if_drops}

    def __iter__(self) -> Iterator[tuple[int, bytes, int]]:
        sock, wake, linktype = self._sock, self._wake_r, self.linktype
        recv = self._recv
        next_tick = time.monotonic() + self.tick_s
        while not self._stopping:
            wait = max(0.0, next_tick - time.monotonic())
            try:
                ready, _, _ = select.select([sock, wake], [], [], wait)
            except InterruptedError:
                ready = []
            if sock in ready:
                for _ in range(_BATCH):
                    pkt = recv()
                    if pkt is None:
                        break
                    if pkt is not _SKIP:
                        self._packets += 1
                        yield pkt[0], pkt[1], linktype
                    if self._stopping:
                        return
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_s
                if self.on_tick is not None:
                    self.on_tick(time.time_ns() // 1000)

    def _recv(self) -> tuple[int, bytes] | object | None:
        """One packet, ``_SKIP`` for one not to hand out, None when none is waiting."""
        try:
            data, anc, _flags, addr = self._sock.recvmsg(self.snaplen, self._ancbuf, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                log.error("interface %s went away: %s", self.interface, e.strerror)
                self._stopping = True
                return None
            raise
        if self._skip_outgoing and addr[2] == PACKET_OUTGOING:
            return _SKIP
        ts_us = None
        vlan = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack_from(payload)
                ts_us = sec * 1_000_000 + nsec // 1000
            elif level == SOL_PACKET and kind == PACKET_AUXDATA:
                status, _len, _snap, _mac, _net, tci, tpid = _AUXDATA.unpack_from(payload)
                if status & TP_STATUS_VLAN_VALID or tci:
                    vlan = (tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100, tci)
        if ts_us is None:
            ts_us = time.time_ns() // 1000
        if self.linktype == LINKTYPE_ETHERNET:
            if vlan is not None and len(data) >= 12:
                data = data[:12] + struct.pack("!HH", *vlan) + data[12:]
                if len(data) > self.snaplen:
                    data = data[: self.snaplen]
        elif self.linktype == LINKTYPE_LINUX_SLL:
            _ifname, proto, pkttype, hatype, hwaddr = addr
            data = struct.pack("!HHH8sH", pkttype, hatype, len(hwaddr), hwaddr[:8], proto) + data
        return ts_us, data


_SKIP = object()
