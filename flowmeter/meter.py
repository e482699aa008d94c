"""The flow table: packets in, finished flows out (as the reference's ``FlowGenerator`` closes them).

A flow ends when a packet of the same flow key arrives more than ``flow_timeout_us`` after the flow's first packet
(that packet starts the next flow, which keeps the old flow's Src/Dst), when a packet with FIN arrives (it is added,
then the flow ends), at ``expire(now)`` (live capture: the flow timeout has passed), when the table is full (the
oldest flows are evicted and counted), and at ``flush()``.

A flow closed by ``expire`` or eviction leaves its orientation behind (key → Src is the key's first endpoint), so
the next packet of that key starts a flow with the old Src/Dst, as the reference's timeout restart does (quirk 7b):
live records then equal the records of the same packets read from a file. The reference keeps a silent flow's
entry until the end of the capture, so no age makes an orientation safe to forget; what bounds it is the count
(``max_flows`` orientations, the oldest forgotten first, counted in ``stats.orientations_dropped``), like the table.
A FIN close leaves nothing (the reference's next flow is fresh there too); ``flush()`` forgets everything.
"""

from __future__ import annotations

import logging
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

from flowmeter.decode import FRAGMENT, SNAPLEN_CUT, decode
from flowmeter.flow import Flow
from flowmeter.settings import MeterSettings

log = logging.getLogger(__name__)

_SIGNED4 = 0x80808080  # xor → unsigned order of the signed-byte order the reference compares addresses in (quirk 7)
_SIGNED_BYTES = bytes(b ^ 0x80 for b in range(256))
_IGNORED = frozenset({"not_ip", "ipv6_disabled"})
_KEY4 = struct.Struct("!IIHHB").pack
_PORTS = struct.Struct("!HHB").pack


def _packed(key: tuple) -> bytes:
    """A flow key as 13 (IPv4) or 37 (IPv6) bytes: an orientation kept costs ~150 bytes instead of ~270."""
    if key[0].__class__ is int:
        return _KEY4(*key)
    return key[0] + key[1] + _PORTS(key[2], key[3], key[4])


_COUNTER_NAMES = (
    "packets", "bytes", "flow_packets", "flows_out", "active_flows", "evictions", "orientations_kept",
    "orientations_dropped", "single_packet_dropped",
)  # fmt: skip


class MeterStats:
    """Counters. ``packets == flow_packets + sum(bad.values()) + sum(ignored.values())``."""

    def __init__(self, table: dict, orientations: dict) -> None:
        self._table = table
        self._orientations = orientations
        self.packets = 0  # frames seen
        self.bytes = 0  # captured bytes of those frames
        self.flow_packets = 0  # frames that went into a flow
        self.flows_out = 0
        self.single_packet_dropped = 0  # only with single_packet_flows=False (the reference's rule)
        self.evictions = 0
        self.orientations_dropped = 0  # orientations of expired/evicted flows forgotten at the bound (max_flows)
        self.bad: Counter[str] = Counter()  # bad packets by cause
        self.ignored: Counter[str] = Counter()  # frames that are not IP (ARP, LLDP, …)
        self.notes: Counter[str] = Counter()  # packets used but unusual: fragments, snaplen-cut

    @property
    def active_flows(self) -> int:
        return len(self._table)

    @property
    def orientations_kept(self) -> int:
        """Keys whose flow was closed by expiry or eviction and whose next flow will keep its Src/Dst."""
        return len(self._orientations)

    def as_dict(self) -> dict[str, Any]:
        counts = {name: getattr(self, name) for name in _COUNTER_NAMES}
        return {**counts, "bad": dict(self.bad), "ignored": dict(self.ignored), "notes": dict(self.notes)}


class FlowMeter:
    """Packets → IoTID20 flow records (dicts with ``ids_core.columns`` names), handed to ``emit``."""

    def __init__(self, settings: MeterSettings, emit: Callable[[dict[str, object]], None]) -> None:
        self.settings = settings
        self._emit = emit
        self._flows: dict[tuple, Flow] = {}
        # packed key → True if the closed flow's Src was the key's first endpoint (expired or evicted flows only)
        self._orientations: dict[bytes, bool] = {}
        self.stats = MeterStats(self._flows, self._orientations)
        self._flow_timeout = settings.flow_timeout_us
        self._activity_timeout = settings.activity_timeout_us
        self._max_flows = settings.max_flows
        self._evict_batch = max(1, settings.max_flows // 100)
        self._keep_single = settings.single_packet_flows
        self._ipv6 = settings.ipv6

    def packet(self, ts_us: int, frame: bytes | memoryview, linktype: int) -> None:
        """One captured frame (time stamp in µs since the epoch)."""
        stats = self.stats
        stats.packets += 1
        stats.bytes += len(frame)
        d = decode(frame, linktype)
        if d.__class__ is str:
            if d in _IGNORED:
                stats.ignored[d] += 1  # type: ignore[index]
            else:
                stats.bad[d] += 1  # type: ignore[index]
            return
        src, dst, sport, dport, proto, payload, hdr, flags, window = d  # type: ignore[misc]
        if flags & 0x300:
            if flags & FRAGMENT:
                stats.notes["fragment"] += 1
            if flags & SNAPLEN_CUT:
                stats.notes["snaplen_cut"] += 1
        if src.__class__ is int:
            forward = (src ^ _SIGNED4) <= (dst ^ _SIGNED4)
        else:
            if not self._ipv6:
                stats.ignored["ipv6_disabled"] += 1
                return
            forward = src.translate(_SIGNED_BYTES) <= dst.translate(_SIGNED_BYTES)
        stats.flow_packets += 1
        key = (src, dst, sport, dport, proto) if forward else (dst, src, dport, sport, proto)
        flows = self._flows
        flow = flows.get(key)
        if flow is None:
            orientations = self._orientations
            if orientations:
                keeps = orientations.pop(_packed(key), None)
                if keeps is not None:  # closed by expire()/eviction: continue as the reference's restart (quirk 7b)
                    if keeps:
                        src, dst, sport, dport = key[0], key[1], key[2], key[3]
                    else:
                        src, dst, sport, dport = key[1], key[0], key[3], key[2]
            if len(flows) >= self._max_flows:
                self._evict()
            flows[key] = Flow(key, ts_us, src, dst, sport, dport, proto, payload, hdr, flags, window)
        elif ts_us - flow.start > self._flow_timeout:
            del flows[key]
            self._close(flow)
            flows[key] = Flow(key, ts_us, src, dst, sport, dport, proto, payload, hdr, flags, window, flow)
        elif flags & 1:  # FIN (either direction) ends the flow after adding the packet (quirk 6)
            flow.add(ts_us, src, payload, hdr, window, 0)
            del flows[key]
            self._close(flow)
        else:
            flow.add(ts_us, src, payload, hdr, window, self._activity_timeout)

    def expire(self, now_us: int) -> None:
        """Close every flow whose flow timeout has passed at ``now_us`` (live capture calls this periodically).

        The records are those the reference writes when the next packet of each key arrives (that packet's flow
        keeps the closed flow's Src/Dst) provided every later packet is stamped at ``now_us`` or later: a packet
        stamped within a closed flow's timeout would have joined that flow. A capture that hands packets over late
        (a ring block's timeout) should pass its clock minus that delay.
        """
        flows = self._flows
        limit = now_us - self._flow_timeout
        done = []
        for key, flow in flows.items():  # insertion order = start order
            if flow.start >= limit:
                break
            done.append(key)
        for key in done:
            self._close_remembering(flows.pop(key))

    def flush(self) -> None:
        """End of capture or shutdown: close every active flow (and forget the orientations of closed ones)."""
        flows = list(self._flows.values())
        self._flows.clear()
        self._orientations.clear()
        for flow in flows:
            self._close(flow)

    def _evict(self) -> None:
        flows = self._flows
        keys = []
        for key in flows:
            keys.append(key)
            if len(keys) >= self._evict_batch:
                break
        self.stats.evictions += len(keys)
        if self.stats.evictions == len(keys):
            log.warning("flow table full (%d flows): evicting the oldest flows", self._max_flows)
        for key in keys:
            self._close_remembering(flows.pop(key))

    def _close_remembering(self, flow: Flow) -> None:
        """Close a flow the reference would still hold, keeping its orientation for the key's next flow."""
        key = flow.key
        orientations = self._orientations
        orientations[_packed(key)] = flow.src == key[0]  # equal IPs (loopback): the key is in first-packet order
        if len(orientations) > self._max_flows:
            drop = []
            for old in orientations:  # insertion order = oldest first; in batches (a dict's front is slow to pop)
                drop.append(old)
                if len(drop) >= self._evict_batch:
                    break
            for old in drop:
                del orientations[old]
            self.stats.orientations_dropped += len(drop)
        self._close(flow)

    def _close(self, flow: Flow) -> None:
        if flow.packets > 1 or self._keep_single:
            self.stats.flows_out += 1
            self._emit(flow.record())
        else:
            self.stats.single_packet_dropped += 1
