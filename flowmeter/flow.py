"""One flow's state and its IoTID20 record, computed as CICFlowMeter 99dc827 (``BasicFlow``) computes it.

The state is constant in the number of packets: running sums, min/max and the incremental (Welford) mean and
second moment of Apache commons-math ``SummaryStatistics`` (:class:`Summary`), updated with the same floating-point
operations in the same order, so means and standard deviations agree with the reference to the last bit or nearly
so. Quirks of the reference (README, "The flow meter") are marked ``quirk N`` with the number of the reference README.
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


class Summary:
    """Apache commons-math ``SummaryStatistics`` as ``BasicFlow`` uses it: count, sum, min, max and the incremental
    (Welford) mean and second moment, with the same floating-point operations in the same order. Made with its first
    value (``n`` > 1: that value counted ``n`` times, quirk 2)."""

    __slots__ = ("m1", "m2", "max", "min", "n", "sum")

    def __init__(self, x: int, n: int = 1) -> None:
        self.n = n
        self.m1 = float(x)  # Welford's first step: m1 = x, m2 = 0 (and again for each repeat of the same x)
        self.m2 = 0.0
        self.sum = self.min = self.max = x

    def add(self, x: int) -> None:
        n = self.n = self.n + 1
        dev = x - self.m1
        nd = dev / n
        self.m1 += nd
        self.m2 += (n - 1) * dev * nd
        self.sum += x
        if x < self.min:
            self.min = x
        elif x > self.max:
            self.max = x

    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0

    def put(self, r: dict[str, Any], mean: str, std: str, mx: str, mn: str) -> None:
        """Mean, standard deviation, max and min into record ``r`` under these column names."""
        r[mean], r[std], r[mx], r[mn] = self.m1, self.std(), float(self.max), float(self.min)


def _columns(prefix: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{prefix}_{name}" for name in names)


_FWD_IAT, _BWD_IAT = (_columns(side, "IAT_Tot", "IAT_Mean", "IAT_Std", "IAT_Max", "IAT_Min") for side in ("Fwd", "Bwd"))
_ACTIVE, _IDLE = (_columns(period, "Mean", "Std", "Max", "Min") for period in ("Active", "Idle"))


def _add(stats: Summary | None, x: int) -> Summary:
    """``stats`` with ``x`` added (a new :class:`Summary` when there is none yet)."""
    if stats is None:
        return Summary(x)
    stats.add(x)
    return stats


class Flow:
    """A bidirectional flow. ``__init__`` is the reference's ``firstPacket``, ``add`` its ``addPacket``.

    Statistics exist once they have a value (``None`` before): ``fwd``/``bwd`` payload lengths per direction,
    ``fwd_iat``/``bwd_iat`` the gaps between a direction's packets, ``lengths`` and ``iat`` the flow's, ``active``
    and ``idle`` the activity periods."""

    __slots__ = ("active", "aend", "astart", "bhdr", "blast", "bwd", "bwd_iat", "bwin", "dport", "dst", "fact",
                 "fhdr", "first_flags", "first_payload", "flast", "fwd", "fwd_iat", "iat", "idle", "key", "last",
                 "lengths", "proto", "sport", "src", "start")  # fmt: skip

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
        self.fwd: Summary | None = None
        self.fwd_iat: Summary | None = None
        self.fhdr = self.fact = self.flast = 0
        self.bwd = Summary(payload)
        self.bwd_iat: Summary | None = None
        self.blast, self.bhdr, self.bwin = ts, hdr, window
        self.lengths = Summary(payload, n=2)  # quirk 2: the first packet's length enters the flow's statistics twice
        self.iat: Summary | None = None
        self.astart = self.aend = ts
        self.active: Summary | None = None
        self.idle: Summary | None = None

    def add(self, ts: int, src: int | bytes, p: int, hdr: int, window: int, activity_timeout: int) -> None:
        """One more packet (``activity_timeout`` 0: a FIN packet, which does not update Active/Idle)."""
        if activity_timeout:
            if ts - self.aend > activity_timeout:  # updateActiveIdleTime (quirk 13)
                self._idle_gap(ts)
            else:
                self.aend = ts
        self.lengths.add(p)  # flowLengthStats
        if src == self.src:
            if p >= 1:
                self.fact += 1
            fwd = self.fwd
            if fwd is None:
                self.fwd = Summary(p)
            else:
                fwd.add(p)
                if (gaps := self.fwd_iat) is None:
                    self.fwd_iat = Summary(ts - self.flast)
                else:
                    gaps.add(ts - self.flast)
            self.fhdr += hdr
            self.flast = ts
            # min_seg_size_forward = min(header, 0) stays 0 (quirk 1): nothing to update
        else:
            self.bwd.add(p)
            if (gaps := self.bwd_iat) is None:
                self.bwd_iat = Summary(ts - self.blast)
            else:
                gaps.add(ts - self.blast)
            self.bwin = window  # quirk 5: Init_Bwd_Win_Byts is the last backward packet's window
            self.bhdr += hdr
            self.blast = ts
        if (gaps := self.iat) is None:
            self.iat = Summary(ts - self.last)
        else:
            gaps.add(ts - self.last)
        self.last = ts

    def _idle_gap(self, ts: int) -> None:
        active = self.aend - self.astart
        if active > 0:
            self.active = _add(self.active, active)
        self.idle = _add(self.idle, ts - self.aend)
        self.astart = self.aend = ts

    @property
    def packets(self) -> int:
        return (self.fwd.n if self.fwd else 0) + self.bwd.n

    def record(self) -> dict[str, Any]:
        """The IoTID20 columns (minus labels) with the values and types the reference writes."""
        fwd, bwd = self.fwd, self.bwd
        fn, bn = (fwd.n if fwd else 0), bwd.n
        duration = self.last - self.start
        lo, hi, lo_port, hi_port, _ = self.key
        flags = self.first_flags
        fbytes, bbytes = (fwd.sum if fwd else 0), bwd.sum
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
        if fwd:
            r["Fwd_Pkt_Len_Max"], r["Fwd_Pkt_Len_Min"] = float(fwd.max), float(fwd.min)
            r["Fwd_Pkt_Len_Mean"], r["Fwd_Pkt_Len_Std"] = fwd.m1, fwd.std()
        else:  # empty statistics are written as the integer 0 (quirk 11)
            r["Fwd_Pkt_Len_Max"] = r["Fwd_Pkt_Len_Min"] = r["Fwd_Pkt_Len_Mean"] = r["Fwd_Pkt_Len_Std"] = 0
        r["Bwd_Pkt_Len_Max"], r["Bwd_Pkt_Len_Min"] = float(bwd.max), float(bwd.min)
        r["Bwd_Pkt_Len_Mean"], r["Bwd_Pkt_Len_Std"] = bwd.m1, bwd.std()
        r["Flow_Byts/s"] = _rate(float(fbytes + bbytes), duration)  # quirk 10
        r["Flow_Pkts/s"] = _rate(float(fn + bn), duration)
        if self.iat:
            self.iat.put(r, "Flow_IAT_Mean", "Flow_IAT_Std", "Flow_IAT_Max", "Flow_IAT_Min")
        else:  # a single-packet flow: commons-math's empty statistics are NaN
            r["Flow_IAT_Mean"] = r["Flow_IAT_Std"] = r["Flow_IAT_Max"] = r["Flow_IAT_Min"] = _NAN
        for (tot, *names), iat in ((_FWD_IAT, self.fwd_iat), (_BWD_IAT, self.bwd_iat)):
            if iat:
                r[tot] = float(iat.sum)
                iat.put(r, *names)
            else:
                r[tot] = 0
                for name in names:
                    r[name] = 0
        r["Fwd_PSH_Flags"] = 0  # quirk 1: the first packet's PSH/URG go to the backward counters
        r["Bwd_PSH_Flags"] = 1 if flags & PSH else 0
        r["Fwd_URG_Flags"] = 0
        r["Bwd_URG_Flags"] = 1 if flags & URG else 0
        r["Fwd_Header_Len"] = self.fhdr
        r["Bwd_Header_Len"] = self.bhdr
        r["Fwd_Pkts/s"] = fn / (duration / 1000000) if duration > 0 else 0.0
        r["Bwd_Pkts/s"] = bn / (duration / 1000000) if duration > 0 else 0.0
        lengths = self.lengths
        r["Pkt_Len_Min"], r["Pkt_Len_Max"] = float(lengths.min), float(lengths.max)
        r["Pkt_Len_Mean"], r["Pkt_Len_Std"] = lengths.m1, lengths.std()
        r["Pkt_Len_Var"] = lengths.m2 / (lengths.n - 1)
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
        for names, period in ((_ACTIVE, self.active), (_IDLE, self.idle)):
            if period:
                period.put(r, *names)
            else:
                for name in names:
                    r[name] = 0
        return r
