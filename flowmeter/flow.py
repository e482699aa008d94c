"""One flow's state and its IoTID20 record, computed as CICFlowMeter 99dc827 (``BasicFlow``) computes it.

The state is constant in the number of packets: running sums, min/max and the incremental (Welford) mean and
second moment of Apache commons-math ``SummaryStatistics``, updated with the same floating-point operations in the
same order, so means and standard deviations agree with the reference to the last bit or nearly so. Quirks of the
reference (README, "The flow meter") are marked ``quirk N`` with the number of the reference README.
"""

from __future__ import annotations

import math
import socket
import time
from typing import Any

from flowmeter.decode import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG
from ids_core.columns import COLUMNS, LABEL_COLUMNS

RECORD_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in LABEL_COLUMNS)
_NAN = math.nan
_INF = math.inf


def ip_text(addr: int | bytes) -> str:
    """An address as the record writes it (dotted quad; IPv6 compressed)."""
    if addr.__class__ is int:
        return socket.inet_ntoa(addr.to_bytes(4, "big"))  # type: ignore[union-attr]
    return socket.inet_ntop(socket.AF_INET6, addr)  # type: ignore[arg-type]


_ts_cache: dict[int, str] = {}


def java_timestamp(start_us: int) -> str:
    """``dd/MM/yyyy hh:mm:ss a`` of ``start_us // 1000`` ms in UTC, as the reference (run with TZ=UTC) writes it."""
    seconds = (start_us // 1000) // 1000
    text = _ts_cache.get(seconds)
    if text is None:
        t = time.gmtime(seconds)
        hour = t.tm_hour % 12 or 12
        text = (
            f"{t.tm_mday:02d}/{t.tm_mon:02d}/{t.tm_year:04d} {hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} "
            f"{'AM' if t.tm_hour < 12 else 'PM'}"
        )
        if len(_ts_cache) > 4096:
            _ts_cache.clear()
        _ts_cache[seconds] = text
    return text


def _rate(count: float, duration: int) -> float:
    """``count / (duration / 1e6)`` with Java's double division (x/0 = Infinity, 0/0 = NaN)."""
    if duration == 0:
        return _INF if count > 0 else (_NAN if count == 0 else -_INF)
    return count / (duration / 1000000)


def _step(n: int, m1: float, m2: float, lo: int, hi: int, x: int) -> tuple[float, float, int, int]:
    """The n-th value ``x`` of a commons-math ``SummaryStatistics``: mean and second moment as ``FirstMoment`` /
    ``SecondMoment`` update them (Welford, the same operations in the same order), min and max."""
    dev = x - m1
    nd = dev / n
    return m1 + nd, m2 + (n - 1) * dev * nd, x if x < lo else lo, x if x > hi else hi


def _std(m2: float, n: int) -> float:
    return math.sqrt(m2 / (n - 1)) if n > 1 else 0.0


class Direction:
    """One direction's packets: payload lengths (count, sum, min, max, Welford mean and second moment), the gaps
    between its packets (the same statistics) and its header bytes. Made with its first packet; a direction without
    packets is :data:`NO_PACKETS`."""

    __slots__ = ("hdr", "iat_m1", "iat_m2", "iat_max", "iat_min", "iat_sum", "last", "m1", "m2", "max", "min", "n",
                 "sum")  # fmt: skip

    def __init__(self, p: int, ts: int, hdr: int) -> None:
        self.n = 1
        self.m1 = float(p)  # Welford's first step: m1 = x, m2 = 0
        self.m2 = self.iat_m1 = self.iat_m2 = 0.0
        self.sum = self.min = self.max = p
        self.last, self.hdr = ts, hdr
        self.iat_sum = self.iat_min = self.iat_max = 0

    def add(self, p: int, ts: int, hdr: int) -> None:
        n = self.n = self.n + 1
        self.hdr += hdr
        self.m1, self.m2, self.min, self.max = _step(n, self.m1, self.m2, self.min, self.max, p)
        self.sum += p
        iat = ts - self.last
        if n == 2:  # the first gap: min and max start at it (Welford's first step needs no special case)
            self.iat_min = self.iat_max = iat
        self.iat_m1, self.iat_m2, self.iat_min, self.iat_max = _step(
            n - 1, self.iat_m1, self.iat_m2, self.iat_min, self.iat_max, iat
        )
        self.iat_sum += iat
        self.last = ts

    def put_lengths(self, r: dict[str, Any], names: tuple[str, ...]) -> None:
        """``<side>_Pkt_Len_{Max,Min,Mean,Std}``; empty statistics are written as the integer 0 (quirk 11)."""
        mx, mn, mean, std = names
        if self.n:  # always but for NO_PACKETS
            r[mx], r[mn], r[mean], r[std] = float(self.max), float(self.min), self.m1, _std(self.m2, self.n)
        else:
            r[mx] = r[mn] = r[mean] = r[std] = 0

    def put_gaps(self, r: dict[str, Any], names: tuple[str, ...]) -> None:
        """``<side>_IAT_{Tot,Mean,Std,Max,Min}`` (0 below two packets)."""
        tot, mean, std, mx, mn = names
        if self.n > 1:
            r[tot], r[mean], r[std] = float(self.iat_sum), self.iat_m1, _std(self.iat_m2, self.n - 1)
            r[mx], r[mn] = float(self.iat_max), float(self.iat_min)
        else:
            r[tot] = r[mean] = r[std] = r[mx] = r[mn] = 0


LENGTHS = {side: tuple(f"{side}_Pkt_Len_{s}" for s in ("Max", "Min", "Mean", "Std")) for side in ("Fwd", "Bwd")}
GAPS = {side: tuple(f"{side}_IAT_{s}" for s in ("Tot", "Mean", "Std", "Max", "Min")) for side in ("Fwd", "Bwd")}
NO_PACKETS = Direction(0, 0, 0)  # shared and never added to: the forward side until its first packet
NO_PACKETS.n = 0


class Flow:
    """A bidirectional flow. ``__init__`` is the reference's ``firstPacket``, ``add`` its ``addPacket``."""

    __slots__ = ("active", "aend", "astart", "bwd", "bwin", "dport", "dst", "fact", "first_flags", "first_payload",
                 "fwd", "iat_m1", "iat_m2", "iat_max", "iat_min", "idle", "key", "last", "lm1", "lm2", "lmax", "lmin",
                 "proto", "sport", "src", "start")  # fmt: skip

    def __init__(
        self,
        key: tuple,
        ts: int,
        src: int | bytes,
        dst: int | bytes,
        sport: int,
        dport: int,
        proto: int,
        payload: int,
        hdr: int,
        flags: int,
        window: int,
        previous: Flow | None = None,
    ) -> None:
        self.key = key
        if previous is None:
            self.src, self.dst, self.sport, self.dport = src, dst, sport, dport
        else:  # a flow restarted by the flow timeout keeps the old flow's Src/Dst (FlowGenerator.addPacket)
            self.src, self.dst, self.sport, self.dport = previous.src, previous.dst, previous.sport, previous.dport
        self.proto = proto
        self.start = self.last = ts
        self.first_flags = flags & 0xFF  # quirk 3: flag counts and PSH/URG come from the first packet only
        self.first_payload = payload
        # quirk 1: the first packet is always backward (an identity test on a fresh array copy in firstPacket)
        self.fwd = NO_PACKETS
        self.fact = 0
        self.bwd = Direction(payload, ts, hdr)
        self.bwin = window
        # quirk 2: the first packet's length enters the flow's length statistics twice (n = fn + bn + 1)
        self.lmin = self.lmax = payload
        self.lm1 = float(payload)
        self.lm2 = 0.0
        self.iat_min = self.iat_max = 0
        self.iat_m1 = self.iat_m2 = 0.0
        self.astart = self.aend = ts
        self.active: list[float] | None = None
        self.idle: list[float] | None = None

    def add(self, ts: int, src: int | bytes, p: int, hdr: int, window: int, activity_timeout: int) -> None:
        """One more packet (``activity_timeout`` 0: a FIN packet, which does not update Active/Idle)."""
        if activity_timeout:
            if ts - self.aend > activity_timeout:  # updateActiveIdleTime (quirk 13)
                self._idle_gap(ts)
            else:
                self.aend = ts
        fwd, bwd = self.fwd, self.bwd
        # flowLengthStats (Welford as commons-math FirstMoment/SecondMoment)
        n = fwd.n + bwd.n + 2
        self.lm1, self.lm2, self.lmin, self.lmax = _step(n, self.lm1, self.lm2, self.lmin, self.lmax, p)
        if src == self.src:
            if p >= 1:
                self.fact += 1
            if fwd is NO_PACKETS:
                fwd = self.fwd = Direction(p, ts, hdr)
            else:
                fwd.add(p, ts, hdr)
            # min_seg_size_forward = min(header, 0) stays 0 (quirk 1): nothing to update
        else:
            bwd.add(p, ts, hdr)
            self.bwin = window  # quirk 5: Init_Bwd_Win_Byts is the last backward packet's window
        iat = ts - self.last
        m = fwd.n + bwd.n - 1
        if m == 1:  # the flow's first gap: min and max start at it
            self.iat_min = self.iat_max = iat
        self.iat_m1, self.iat_m2, self.iat_min, self.iat_max = _step(
            m, self.iat_m1, self.iat_m2, self.iat_min, self.iat_max, iat
        )
        self.last = ts

    def _idle_gap(self, ts: int) -> None:
        active = self.aend - self.astart
        if active > 0:
            if self.active is None:
                self.active = [0, 0.0, 0.0, active, active]  # n, m1, m2, min, max
            _stat_add(self.active, active)
        idle = ts - self.aend
        if self.idle is None:
            self.idle = [0, 0.0, 0.0, idle, idle]
        _stat_add(self.idle, idle)
        self.astart = self.aend = ts

    @property
    def packets(self) -> int:
        return self.fwd.n + self.bwd.n

    def record(self) -> dict[str, Any]:
        """The IoTID20 columns (minus labels) with the values and types the reference writes."""
        fwd, bwd = self.fwd, self.bwd
        fn, bn = fwd.n, bwd.n
        duration = self.last - self.start
        lo, hi, lo_port, hi_port, _ = self.key
        flags = self.first_flags
        fbytes, bbytes = fwd.sum, bwd.sum
        ln = fn + bn + 1
        iat_n = fn + bn - 1
        # quirk 4: subflow counting runs for the first packet only; sfCount is 1 unless its time stamp is ~0
        sf = 1 if (self.start - self.start / 1000000) > 1.0 else 0
        r: dict[str, Any] = {
            "Flow_ID": f"{ip_text(lo)}-{ip_text(hi)}-{lo_port}-{hi_port}-{self.proto}",
            "Src_IP": ip_text(self.src),
            "Src_Port": self.sport,
            "Dst_IP": ip_text(self.dst),
            "Dst_Port": self.dport,
            "Protocol": self.proto,
            "Timestamp": java_timestamp(self.start),
            "Flow_Duration": duration,
            "Tot_Fwd_Pkts": fn,
            "Tot_Bwd_Pkts": bn,
            "TotLen_Fwd_Pkts": float(fbytes),
            "TotLen_Bwd_Pkts": float(bbytes),
        }
        fwd.put_lengths(r, LENGTHS["Fwd"])
        bwd.put_lengths(r, LENGTHS["Bwd"])
        r["Flow_Byts/s"] = _rate(float(fbytes + bbytes), duration)  # quirk 10
        r["Flow_Pkts/s"] = _rate(float(fn + bn), duration)
        if iat_n:
            r["Flow_IAT_Mean"] = self.iat_m1
            r["Flow_IAT_Std"] = _std(self.iat_m2, iat_n)
            r["Flow_IAT_Max"] = float(self.iat_max)
            r["Flow_IAT_Min"] = float(self.iat_min)
        else:  # a single-packet flow: commons-math's empty statistics are NaN
            r["Flow_IAT_Mean"] = r["Flow_IAT_Std"] = r["Flow_IAT_Max"] = r["Flow_IAT_Min"] = _NAN
        fwd.put_gaps(r, GAPS["Fwd"])
        bwd.put_gaps(r, GAPS["Bwd"])
        r["Fwd_PSH_Flags"] = 0  # quirk 1: the first packet's PSH/URG go to the backward counters
        r["Bwd_PSH_Flags"] = 1 if flags & PSH else 0
        r["Fwd_URG_Flags"] = 0
        r["Bwd_URG_Flags"] = 1 if flags & URG else 0
        r["Fwd_Header_Len"] = fwd.hdr
        r["Bwd_Header_Len"] = bwd.hdr
        r["Fwd_Pkts/s"] = fn / (duration / 1000000) if duration > 0 else 0.0
        r["Bwd_Pkts/s"] = bn / (duration / 1000000) if duration > 0 else 0.0
        r["Pkt_Len_Min"] = float(self.lmin)
        r["Pkt_Len_Max"] = float(self.lmax)
        r["Pkt_Len_Mean"] = self.lm1
        r["Pkt_Len_Std"] = _std(self.lm2, ln)
        r["Pkt_Len_Var"] = self.lm2 / (ln - 1)
        r["FIN_Flag_Cnt"] = 1 if flags & FIN else 0
        r["SYN_Flag_Cnt"] = 1 if flags & SYN else 0
        r["RST_Flag_Cnt"] = 1 if flags & RST else 0
        r["PSH_Flag_Cnt"] = 1 if flags & PSH else 0
        r["ACK_Flag_Cnt"] = 1 if flags & ACK else 0
        r["URG_Flag_Cnt"] = 1 if flags & URG else 0
        r["CWE_Flag_Count"] = 1 if flags & CWR else 0
        r["ECE_Flag_Cnt"] = 1 if flags & ECE else 0
        r["Down/Up_Ratio"] = float(bn // fn) if fn else 0.0  # quirk 12: integer division
        r["Pkt_Size_Avg"] = float(fbytes + bbytes + self.first_payload) / (fn + bn)
        r["Fwd_Seg_Size_Avg"] = fbytes / fn if fn else 0.0
        r["Bwd_Seg_Size_Avg"] = bbytes / bn
        for c in ("Fwd_Byts/b_Avg", "Fwd_Pkts/b_Avg", "Fwd_Blk_Rate_Avg", "Bwd_Byts/b_Avg", "Bwd_Pkts/b_Avg"):
            r[c] = 0  # quirk 4: bulk state is updated for the first packet only, so no bulk ever completes
        r["Bwd_Blk_Rate_Avg"] = 0
        r["Subflow_Fwd_Pkts"] = fn // sf if sf else 0
        r["Subflow_Fwd_Byts"] = fbytes // sf if sf else 0
        r["Subflow_Bwd_Pkts"] = bn // sf if sf else 0
        r["Subflow_Bwd_Byts"] = bbytes // sf if sf else 0
        r["Init_Fwd_Win_Byts"] = -1  # quirk 1
        r["Init_Bwd_Win_Byts"] = self.bwin
        r["Fwd_Act_Data_Pkts"] = self.fact
        r["Fwd_Seg_Size_Min"] = 0  # quirk 1
        _put_stat(r, ("Active_Mean", "Active_Std", "Active_Max", "Active_Min"), self.active)
        _put_stat(r, ("Idle_Mean", "Idle_Std", "Idle_Max", "Idle_Min"), self.idle)
        return r


def _stat_add(s: list, x: int) -> None:
    n = s[0] = s[0] + 1
    s[1], s[2], s[3], s[4] = _step(n, s[1], s[2], s[3], s[4], x)


def _put_stat(r: dict[str, Any], names: tuple[str, str, str, str], s: list | None) -> None:
    if s is None:
        for name in names:
            r[name] = 0
        return
    mean, std, mx, mn = names
    r[mean] = s[1]
    r[std] = _std(s[2], s[0])
    r[mx] = float(s[4])
    r[mn] = float(s[3])
