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


def _std(m2: float, n: int) -> float:
    return math.sqrt(m2 / (n - 1)) if n > 1 else 0.0


class Flow:
    """A bidirectional flow. ``__init__`` is the reference's ``firstPacket``, ``add`` its ``addPacket``."""

    __slots__ = (
        "active",
        "aend",
        "astart",
        "bhdr",
        "biat_m1",
        "biat_m2",
        "biat_max",
        "biat_min",
        "biat_sum",
        "blast",
        "bm1",
        "bm2",
        "bmax",
        "bmin",
        "bn",
        "bsum",
        "bwin",
        "dport",
        "dst",
        "fact",
        "fhdr",
        "fiat_m1",
        "fiat_m2",
        "fiat_max",
        "fiat_min",
        "fiat_sum",
        "first_flags",
        "first_payload",
        "flast",
        "fm1",
        "fm2",
        "fmax",
        "fmin",
        "fn",
        "fsum",
        "iat_m1",
        "iat_m2",
        "iat_max",
        "iat_min",
        "idle",
        "key",
        "last",
        "lm1",
        "lm2",
        "lmax",
        "lmin",
        "proto",
        "sport",
        "src",
        "start",
    )  # fmt: skip

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
        self.fn = self.fsum = self.fmin = self.fmax = self.flast = self.fhdr = self.fact = 0
        self.fm1 = self.fm2 = 0.0
        self.fiat_sum = self.fiat_min = self.fiat_max = 0
        self.fiat_m1 = self.fiat_m2 = 0.0
        self.bn = 1
        self.bsum = self.bmin = self.bmax = payload
        self.bm1 = float(payload)
        self.bm2 = 0.0
        self.blast = ts
        self.bhdr = hdr
        self.bwin = window
        self.biat_sum = self.biat_min = self.biat_max = 0
        self.biat_m1 = self.biat_m2 = 0.0
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
        # flowLengthStats (Welford as commons-math FirstMoment/SecondMoment)
        n = self.fn + self.bn + 2
        dev = p - self.lm1
        nd = dev / n
        self.lm1 += nd
        self.lm2 += (n - 1) * dev * nd
        if p < self.lmin:
            self.lmin = p
        elif p > self.lmax:
            self.lmax = p
        if src == self.src:
            if p >= 1:
                self.fact += 1
            n = self.fn = self.fn + 1
            self.fhdr += hdr
            if n == 1:  # Welford's first step: m1 = x, m2 += 0 (skipped: no new float object)
                self.fm1 = float(p)
                self.fsum = self.fmin = self.fmax = p
            else:
                dev = p - self.fm1
                nd = dev / n
                self.fm1 += nd
                self.fm2 += (n - 1) * dev * nd
                self.fsum += p
                if p < self.fmin:
                    self.fmin = p
                elif p > self.fmax:
                    self.fmax = p
                iat = ts - self.flast
                m = n - 1
                if m == 1:
                    self.fiat_m1 = float(iat)
                    self.fiat_sum = self.fiat_min = self.fiat_max = iat
                else:
                    dev = iat - self.fiat_m1
                    nd = dev / m
                    self.fiat_m1 += nd
                    self.fiat_m2 += (m - 1) * dev * nd
                    self.fiat_sum += iat
                    if iat < self.fiat_min:
                        self.fiat_min = iat
                    elif iat > self.fiat_max:
                        self.fiat_max = iat
            self.flast = ts
            # min_seg_size_forward = min(header, 0) stays 0 (quirk 1): nothing to update
        else:
            n = self.bn = self.bn + 1
            dev = p - self.bm1
            nd = dev / n
            self.bm1 += nd
            self.bm2 += (n - 1) * dev * nd
            self.bsum += p
            if p < self.bmin:
                self.bmin = p
            elif p > self.bmax:
                self.bmax = p
            self.bwin = window  # quirk 5: Init_Bwd_Win_Byts is the last backward packet's window
            self.bhdr += hdr
            iat = ts - self.blast
            m = n - 1
            if m == 1:
                self.biat_m1 = float(iat)
                self.biat_sum = self.biat_min = self.biat_max = iat
            else:
                dev = iat - self.biat_m1
                nd = dev / m
                self.biat_m1 += nd
                self.biat_m2 += (m - 1) * dev * nd
                self.biat_sum += iat
                if iat < self.biat_min:
                    self.biat_min = iat
                elif iat > self.biat_max:
                    self.biat_max = iat
            self.blast = ts
        iat = ts - self.last
        m = self.fn + self.bn - 1
        if m == 1:
            self.iat_m1 = float(iat)
            self.iat_min = self.iat_max = iat
        else:
            dev = iat - self.iat_m1
            nd = dev / m
            self.iat_m1 += nd
            self.iat_m2 += (m - 1) * dev * nd
            if iat < self.iat_min:
                self.iat_min = iat
            elif iat > self.iat_max:
                self.iat_max = iat
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
        return self.fn + self.bn

    def record(self) -> dict[str, Any]:
        """The IoTID20 columns (minus labels) with the values and types the reference writes."""
        fn, bn = self.fn, self.bn
        duration = self.last - self.start
        lo, hi, lo_port, hi_port, _ = self.key
        flags = self.first_flags
        fbytes, bbytes = self.fsum, self.bsum
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
        if fn:
            r["Fwd_Pkt_Len_Max"] = float(self.fmax)
            r["Fwd_Pkt_Len_Min"] = float(self.fmin)
            r["Fwd_Pkt_Len_Mean"] = self.fm1
            r["Fwd_Pkt_Len_Std"] = _std(self.fm2, fn)
        else:  # empty statistics are written as the integer 0 (quirk 11)
            r["Fwd_Pkt_Len_Max"] = r["Fwd_Pkt_Len_Min"] = r["Fwd_Pkt_Len_Mean"] = r["Fwd_Pkt_Len_Std"] = 0
        r["Bwd_Pkt_Len_Max"] = float(self.bmax)
        r["Bwd_Pkt_Len_Min"] = float(self.bmin)
        r["Bwd_Pkt_Len_Mean"] = self.bm1
        r["Bwd_Pkt_Len_Std"] = _std(self.bm2, bn)
        r["Flow_Byts/s"] = _rate(float(fbytes + bbytes), duration)  # quirk 10
        r["Flow_Pkts/s"] = _rate(float(fn + bn), duration)
        if iat_n:
            r["Flow_IAT_Mean"] = self.iat_m1
            r["Flow_IAT_Std"] = _std(self.iat_m2, iat_n)
            r["Flow_IAT_Max"] = float(self.iat_max)
            r["Flow_IAT_Min"] = float(self.iat_min)
        else:  # a single-packet flow: commons-math's empty statistics are NaN
            r["Flow_IAT_Mean"] = r["Flow_IAT_Std"] = r["Flow_IAT_Max"] = r["Flow_IAT_Min"] = _NAN
        if fn > 1:
            r["Fwd_IAT_Tot"] = float(self.fiat_sum)
            r["Fwd_IAT_Mean"] = self.fiat_m1
            r["Fwd_IAT_Std"] = _std(self.fiat_m2, fn - 1)
            r["Fwd_IAT_Max"] = float(self.fiat_max)
            r["Fwd_IAT_Min"] = float(self.fiat_min)
        else:
            r["Fwd_IAT_Tot"] = r["Fwd_IAT_Mean"] = r["Fwd_IAT_Std"] = r["Fwd_IAT_Max"] = r["Fwd_IAT_Min"] = 0
        if bn > 1:
            r["Bwd_IAT_Tot"] = float(self.biat_sum)
            r["Bwd_IAT_Mean"] = self.biat_m1
            r["Bwd_IAT_Std"] = _std(self.biat_m2, bn - 1)
            r["Bwd_IAT_Max"] = float(self.biat_max)
            r["Bwd_IAT_Min"] = float(self.biat_min)
        else:
            r["Bwd_IAT_Tot"] = r["Bwd_IAT_Mean"] = r["Bwd_IAT_Std"] = r["Bwd_IAT_Max"] = r["Bwd_IAT_Min"] = 0
        r["Fwd_PSH_Flags"] = 0  # quirk 1: the first packet's PSH/URG go to the backward counters
        r["Bwd_PSH_Flags"] = 1 if flags & PSH else 0
        r["Fwd_URG_Flags"] = 0
        r["Bwd_URG_Flags"] = 1 if flags & URG else 0
        r["Fwd_Header_Len"] = self.fhdr
        r["Bwd_Header_Len"] = self.bhdr
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
    dev = x - s[1]
    nd = dev / n
    s[1] += nd
    s[2] += (n - 1) * dev * nd
    if x < s[3]:
        s[3] = x
    elif x > s[4]:
        s[4] = x


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
