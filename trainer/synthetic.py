"""SYNTHETIC IoTID20-shaped flows — generated, not captured. Never use them to report detection results.

Why this exists: the real ``IoT Network Intrusion Dataset.csv`` (625,783 flows) is not redistributable with
the product, yet the out-of-the-box demo, the trainer's smoke runs and tests must work on a machine that does
not have it. This module writes flows in the *exact* layout of the real file (86 columns, names, order,
dtypes, label spellings, Flow_ID/Timestamp formats, the +inf quirk, constant columns, exact duplicates) so
the same loader/cleaner/trainer code runs on both. No real row is copied: every value is drawn from
hand-written per-Sub_Cat templates (numpy + pandas, seeded).

How a flow is made: each Sub_Cat has one or more traffic *profiles* (protocol, endpoints, ports, packet
counts, payload sizes, TCP header sizes, flags, receive window, packet gaps). Per flow the generator draws
the packets themselves (direction, payload, header, arrival time in µs) and derives every CICFlowMeter
statistic from them, so the columns are mutually consistent: totals/means/std (ddof=1), IATs,
``Flow_Byts/s = bytes / duration``, ``Pkt_Len_*`` with CICFlowMeter's double-counted first packet,
``Down/Up_Ratio = bwd // fwd``, subflows = totals, Active/Idle split at a 5 µs activity timeout.
Durations stay below 100,000 µs as in the real file.

Time structure: flows come in sessions (bursts) from one source — lab devices 192.168.0.x, a lab attacker,
Mirai-infected devices, external hosts, spoofed SYN-flood sources — on a few capture days per attack over
~113 days, so windows keyed by ``Src_IP`` in time order carry information. Rows are returned in time order.

Realism knobs: ~1.5 % label noise (a flow drawn from another class's profile, typically benign background
traffic, carrying its session's labels), overlapping templates (e.g. MITM relays camera traffic), ~0.05 %
rows with ``Flow_Byts/s`` and ``Flow_Pkts/s`` both +inf (zero-duration flows, Anomaly only), and ~25 %
exact duplicate rows (the real file has 26 %). External addresses come from the documentation/benchmark
ranges 203.0.113.0/24, 198.51.100.0/24 and 198.18.0.0/15 (RFC 5737 / RFC 2544), which marks the rows as
synthetic to anyone who looks; files written by :func:`write_csv` default to ``SYNTHETIC-iotid20-<n>.csv``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ids_core.columns import (
    COLUMNS,
    CONSTANT_COLUMNS,
    IDENTIFIER_COLUMNS,
    INT_COLUMNS,
    LABEL_ANOMALY,
    LABEL_COLUMNS,
    LABEL_NORMAL,
    NUMERIC_COLUMNS,
    SUB_CAT_COUNTS,
    SUB_CAT_TO_CAT,
    SUB_CAT_VALUES,
    TIMESTAMP_FORMAT,
)

__all__ = [
    "COLUMNS",
    "IDENTIFIER_COLUMNS",
    "LABEL_COLUMNS",
    "NUMERIC_COLUMNS",
    "ClassMixError",
    "default_class_mix",
    "generate",
    "main",
    "write_csv",
]

log = logging.getLogger(__name__)

NOISE_FRACTION = 0.015  # flows whose traffic comes from another class's profile (label noise)
INF_FRACTION = 0.0005  # zero-duration Anomaly flows: Flow_Byts/s = Flow_Pkts/s = +inf
ACTIVITY_TIMEOUT_US = 5  # packet gaps above this are "idle", runs of shorter gaps are "active"
MAX_DURATION_US = 99_900
CAPTURE_START = pd.Timestamp("2019-05-20 04:56:00")
SPAN_DAYS = 112
N_CAPTURE_DAYS = 24
ATTACK_DAYS_PER_SUB_CAT = 4
DEFAULT_FILENAME = "SYNTHETIC-iotid20-{n}.csv"


class ClassMixError(ValueError):
    """A class_mix that names an unknown Sub_Cat or has no positive weight."""


# --------------------------------------------------------------------------- hosts (invented lab)

GATEWAY = "192.168.0.1"
CAMERA = "192.168.0.13"  # smart camera, service port 9020
ATTACKER = "192.168.0.15"  # lab attack laptop (scans, ARP spoofing)
PHONE = "192.168.0.16"  # camera app
LAPTOP = "192.168.0.18"
SPEAKER = "192.168.0.24"  # smart speaker
SSDP_GROUP = "239.255.255.250"
CLOUD = ("203.0.113.10", "203.0.113.25", "198.51.100.7", "198.51.100.42")
NTP_SERVER = "198.51.100.123"
WEB_VICTIM = "203.0.113.80"
BOTS = (CAMERA, SPEAKER)
SPOOFED = "<spoofed>"  # per flow, from a per-session pool in 198.18.0.0/15
LAN_SWEEP = "<lan-sweep>"  # per flow, any 192.168.0.1-254

# --------------------------------------------------------------------------- profiles

Choice = Mapping[int, float]
# ("choice", {port: p}) per flow | ("range", lo, hi) per flow | ("session", lo, hi) one per session |
# ("seq", lo, hi) a session base plus small increments per flow (a client's ephemeral ports)
Port = tuple[str, Mapping[int, float]] | tuple[str, int, int]
Mode = tuple[float, int, int, float]  # (weight, payload lo, payload hi, P(packet has no payload))
WIN_RANGES = {-2: (29_000, 65_535), -3: (30, 300)}  # Init_Bwd_Win_Byts pseudo-values drawn from a range


@dataclass(frozen=True)
class _Profile:
    """One kind of traffic of a Sub_Cat; all numbers per flow unless stated."""

    sub_cat: str
    weight: float  # share of the Sub_Cat's rows
    proto: int
    src_ip: tuple[str, ...]  # one per session (or SPOOFED / LAN_SWEEP per flow)
    dst_ip: tuple[str, ...]
    src_port: Port
    dst_port: Port
    n_fwd: Choice
    n_bwd: Choice
    fwd_payload: tuple[Mode, ...]
    bwd_payload: tuple[Mode, ...]
    gap_us: tuple[float, float]  # packet gap lognormal (median µs, sigma)
    session_len: int  # mean flows per session (before duplicates)
    flow_gap_s: float  # mean time between flow starts in a session
    dup_rate: float  # share of the profile's rows that are exact copies
    tcp_hdr: Choice = field(default_factory=lambda: {32: 1.0})  # per packet, TCP only
    flags: Mapping[str, float] = field(default_factory=dict)  # TCP only
    bwd_win: Choice = field(default_factory=lambda: {-1: 1.0})  # TCP only; UDP / 0 -> -1


EPHEMERAL: Port = ("range", 32_768, 60_999)
ANY_PORT: Port = ("range", 1, 65_535)
PROFILES_FILE = Path(__file__).with_name("synthetic_profiles.yaml")
HOSTS = {
    "gateway": GATEWAY, "camera": CAMERA, "attacker": ATTACKER, "phone": PHONE, "laptop": LAPTOP,
    "speaker": SPEAKER, "ssdp_group": SSDP_GROUP, "ntp_server": NTP_SERVER, "web_victim": WEB_VICTIM,
    "spoofed": SPOOFED, "lan_sweep": LAN_SWEEP, **{f"cloud_{c}": ip for c, ip in zip("abcd", CLOUD, strict=True)},
}  # fmt: skip
_HOST_GROUPS = {"cloud": CLOUD, "bots": BOTS}
_PORT_NAMES = {"ephemeral": EPHEMERAL, "any": ANY_PORT}


def load_profiles(path: Path = PROFILES_FILE) -> tuple[_Profile, ...]:
    """The traffic profiles of ``synthetic_profiles.yaml`` (its header explains the fields)."""

    def hosts(value: str | list[str]) -> tuple[str, ...]:
        if isinstance(value, str):
            return _HOST_GROUPS[value]
        return tuple(HOSTS.get(h, h) for h in value)

    def port(value: str | dict[str, Any]) -> Port:
        if isinstance(value, str):
            return _PORT_NAMES[value]
        ((kind, spec),) = value.items()
        return (kind, spec) if kind == "choice" else (kind, *spec)

    def modes(value: list[list[float]]) -> tuple[Mode, ...]:
        return tuple((float(w), int(lo), int(hi), float(p)) for w, lo, hi, p in value)

    profiles = []
    for entry in yaml.safe_load(path.read_text()):
        e = dict(entry)
        e.update(src_ip=hosts(e["src_ip"]), dst_ip=hosts(e["dst_ip"]), src_port=port(e["src_port"]),
                 dst_port=port(e["dst_port"]), fwd_payload=modes(e["fwd_payload"]),
                 bwd_payload=modes(e["bwd_payload"]), gap_us=tuple(e["gap_us"]))  # fmt: skip
        profiles.append(_Profile(**e))
    return tuple(profiles)


_PROFILES: tuple[_Profile, ...] = load_profiles()

_SUB_CAT_INDEX = {s: i for i, s in enumerate(SUB_CAT_VALUES)}
_NORMAL_INDEX = _SUB_CAT_INDEX[LABEL_NORMAL]
_PROFILE_SUB = np.array([_SUB_CAT_INDEX[p.sub_cat] for p in _PROFILES])
_TCP_FLAGS = (
    "FIN_Flag_Cnt", "SYN_Flag_Cnt", "RST_Flag_Cnt", "PSH_Flag_Cnt",
    "ACK_Flag_Cnt", "URG_Flag_Cnt", "CWE_Flag_Count", "ECE_Flag_Cnt",
)  # fmt: skip


# --------------------------------------------------------------------------- small helpers


def default_class_mix() -> dict[str, float]:
    """The full file's Sub_Cat proportions."""
    total = sum(SUB_CAT_COUNTS.values())
    return {s: c / total for s, c in SUB_CAT_COUNTS.items()}


def _allocate(n: int, weights: Sequence[float]) -> np.ndarray:
    """Split n into integer parts proportional to weights (largest remainder, deterministic)."""
    w = np.asarray(weights, dtype=np.float64)
    if n == 0 or w.sum() <= 0:
        return np.zeros(len(w), dtype=np.int64)
    raw = n * w / w.sum()
    out = np.floor(raw).astype(np.int64)
    rest = n - int(out.sum())
    out[np.argsort(-(raw - out), kind="stable")[:rest]] += 1
    return out


def _draw(rng: np.random.Generator, choice: Choice, size: int) -> np.ndarray:
    values = np.fromiter(choice.keys(), dtype=np.int64)
    p = np.fromiter(choice.values(), dtype=np.float64)
    return rng.choice(values, size=size, p=p / p.sum())


def _ip_strings(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    return np.array([f"{w}.{x}.{y}.{z}" for w, x, y, z in zip(a, b, c, d, strict=True)], dtype=object)


def _ports(rng: np.random.Generator, spec: Port, sess: np.ndarray, n_sess: int) -> np.ndarray:
    kind = spec[0]
    n = len(sess)
    if kind == "choice":
        return _draw(rng, spec[1], n)
    lo, hi = spec[1], spec[2]
    if kind == "range":
        return rng.integers(lo, hi + 1, n)
    if kind == "session":
        return rng.integers(lo, hi + 1, n_sess)[sess]
    if kind == "seq":  # a client's ephemeral ports: a session base plus small increments
        base = rng.integers(lo, hi + 1, n_sess)[sess]
        steps = rng.integers(1, 7, n)
        csum = np.cumsum(steps)
        first = np.r_[0, np.flatnonzero(np.diff(sess)) + 1] if n else np.zeros(0, np.int64)
        within = csum - np.repeat(csum[first] - steps[first], np.diff(np.r_[first, n]))
        return lo + (base - lo + within) % (hi - lo + 1)
    raise ValueError(f"expected a port spec kind choice/range/session/seq, got {kind!r}")


def _ips(
    rng: np.random.Generator, spec: tuple[str, ...], sess: np.ndarray, n_sess: int, avoid: np.ndarray | None
) -> np.ndarray:
    n = len(sess)
    if spec == (SPOOFED,):  # a pool of ~2,000 spoofed sources per session in 198.18.0.0/15
        addr = (rng.integers(0, 1 << 17, n_sess)[sess] + rng.integers(0, 2000, n)) % (1 << 17)
        return _ip_strings(np.full(n, 198), 18 + (addr >> 16), (addr >> 8) & 255, 1 + (addr & 255) % 254)
    if spec == (LAN_SWEEP,):
        last = rng.integers(1, 255, n)
        out = _ip_strings(np.full(n, 192), np.full(n, 168), np.zeros(n, np.int64), last)
        if avoid is not None:
            clash = out == avoid
            out[clash] = _ip_strings(
                np.full(clash.sum(), 192), np.full(clash.sum(), 168), np.zeros(clash.sum(), np.int64),
                last[clash] % 254 + 1,
            )  # fmt: skip
        return out
    pool = np.array(spec, dtype=object)
    pick = rng.integers(0, len(pool), n_sess)[sess]
    out = pool[pick]
    if avoid is not None and len(pool) > 1:
        clash = out == avoid
        out[clash] = pool[(pick[clash] + 1) % len(pool)]
    return out


def _gstats(values: np.ndarray, group: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Per group (values sorted by group): count, sum, mean, std (ddof=1; 0 below 2 values), max, min."""
    values = values.astype(np.float64)
    cnt = np.bincount(group, minlength=n).astype(np.float64)
    tot = np.bincount(group, weights=values, minlength=n)
    mean = np.divide(tot, cnt, out=np.zeros(n), where=cnt > 0)
    ss = np.bincount(group, weights=(values - mean[group]) ** 2, minlength=n)
    std = np.sqrt(np.divide(ss, cnt - 1, out=np.zeros(n), where=cnt > 1))
    mx, mn = np.zeros(n), np.zeros(n)
    if values.size:
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        mx[group[starts]] = np.maximum.reduceat(values, starts)
        mn[group[starts]] = np.minimum.reduceat(values, starts)
    return cnt, tot, mean, std, mx, mn


def _put(out: dict[str, np.ndarray], names: str, values: Sequence[np.ndarray]) -> None:
    for name, value in zip(names.split(), values, strict=True):
        out[name] = value


def _within_gaps(t: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaps between consecutive packets of the same flow (packets sorted by flow, then time)."""
    same = flow[1:] == flow[:-1]
    return (t[1:] - t[:-1])[same], flow[1:][same]


# --------------------------------------------------------------------------- flows


@dataclass
class _Flows:
    """Per-flow arrays for the unique flows (before duplication)."""

    sub: np.ndarray  # Sub_Cat index (the label)
    prof: np.ndarray  # profile the traffic was drawn from
    time_us: np.ndarray
    reps: np.ndarray  # copies of the row in the output (>= 1)
    src_ip: np.ndarray
    dst_ip: np.ndarray
    src_port: np.ndarray
    dst_port: np.ndarray


def _sessions(rng: np.random.Generator, n_per_profile: np.ndarray) -> _Flows:
    """Sessions of flows per profile: endpoints per session, flow start times, duplicate counts."""
    day_offsets = np.sort(rng.choice(np.arange(1, SPAN_DAYS), N_CAPTURE_DAYS - 2, replace=False))
    days = np.r_[0, day_offsets, SPAN_DAYS]
    attack_subs = [s for s in SUB_CAT_VALUES if s != LABEL_NORMAL]
    attack_days = {s: rng.choice(days, ATTACK_DAYS_PER_SUB_CAT, replace=False) for s in attack_subs}
    t0 = int(CAPTURE_START.value // 1000)
    parts: list[tuple[np.ndarray, ...]] = []
    for pi, (prof, c) in enumerate(zip(_PROFILES, n_per_profile, strict=True)):
        if c == 0:
            continue
        d = round(c * prof.dup_rate)
        u = int(c - d)
        k = int(min(u, max(1, round(u / prof.session_len))))
        sizes = rng.multinomial(u - k, rng.dirichlet(np.full(k, 2.0))) + 1
        sess = np.repeat(np.arange(k), sizes)
        day_pool = days if prof.sub_cat == LABEL_NORMAL else attack_days[prof.sub_cat]
        start = t0 + rng.choice(day_pool, k) * 86_400_000_000 + rng.integers(0, 21 * 3_600_000_000, k)
        gaps = rng.exponential(prof.flow_gap_s * 1e6, u).astype(np.int64) + 1
        csum = np.cumsum(gaps)
        first = np.r_[0, np.cumsum(sizes)[:-1]]
        time_us = start[sess] + csum - np.repeat(csum[first], sizes)
        reps = 1 + rng.multinomial(d, np.full(u, 1.0 / u))
        src = _ips(rng, prof.src_ip, sess, k, None)
        dst = _ips(rng, prof.dst_ip, sess, k, src)
        sport = _ports(rng, prof.src_port, sess, k)
        dport = _ports(rng, prof.dst_port, sess, k)
        parts.append((np.full(u, _PROFILE_SUB[pi]), np.full(u, pi), time_us, reps, src, dst, sport, dport))
    cols = [np.concatenate(x) for x in zip(*parts, strict=True)]
    return _Flows(*cols)


def _add_label_noise(rng: np.random.Generator, flows: _Flows) -> None:
    """Redraw ~NOISE_FRACTION of the flows from another class's profile; labels stay the session's."""
    n = len(flows.sub)
    noisy = np.flatnonzero(rng.random(n) < NOISE_FRACTION)
    if noisy.size == 0:
        return
    normal_p = np.flatnonzero(_PROFILE_SUB == _NORMAL_INDEX)
    attack_p = np.flatnonzero(_PROFILE_SUB != _NORMAL_INDEX)
    w_normal = np.array([_PROFILES[i].weight for i in normal_p])
    is_normal = flows.sub[noisy] == _NORMAL_INDEX
    to_normal = ~is_normal & (rng.random(noisy.size) < 0.7)  # mostly benign background in attack captures
    new = rng.choice(attack_p, noisy.size)
    new[to_normal] = rng.choice(normal_p, int(to_normal.sum()), p=w_normal / w_normal.sum())
    same = _PROFILE_SUB[new] == flows.sub[noisy]  # an attack flow drew its own class: use benign traffic
    new[same] = rng.choice(normal_p, int(same.sum()), p=w_normal / w_normal.sum())
    flows.prof[noisy] = new
    for pi in np.unique(new):
        idx = noisy[new == pi]
        prof = _PROFILES[pi]
        one = np.arange(idx.size)
        flows.src_ip[idx] = _ips(rng, prof.src_ip, one, idx.size, None)
        flows.dst_ip[idx] = _ips(rng, prof.dst_ip, one, idx.size, flows.src_ip[idx])
        flows.src_port[idx] = _ports(rng, prof.src_port, one, idx.size)
        flows.dst_port[idx] = _ports(rng, prof.dst_port, one, idx.size)


def _packets(
    rng: np.random.Generator, prof_of_flow: np.ndarray, zero_dur: np.ndarray
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, ...]]:
    """Draw every flow's packets; return per-flow drawn attributes and the packet arrays (sorted by flow)."""
    n = len(prof_of_flow)
    nf = np.zeros(n, np.int64)
    nb = np.zeros(n, np.int64)
    proto = np.zeros(n, np.int64)
    win = np.full(n, -1, np.int64)
    flags = {f: np.zeros(n, np.int64) for f in _TCP_FLAGS}
    pk: list[tuple[np.ndarray, ...]] = []
    for pi, prof in enumerate(_PROFILES):
        idx = np.flatnonzero(prof_of_flow == pi)
        m = idx.size
        if m == 0:
            continue
        f = _draw(rng, prof.n_fwd, m)
        b = np.maximum(_draw(rng, prof.n_bwd, m), 2 - f)  # at least two packets per flow
        nf[idx], nb[idx], proto[idx] = f, b, prof.proto
        if prof.proto == 6:
            for name, p in prof.flags.items():
                flags[name][idx] = rng.random(m) < p
            w = _draw(rng, prof.bwd_win, m)
            for code, (lo, hi) in WIN_RANGES.items():
                sel = w == code
                w[sel] = rng.integers(lo, hi + 1, int(sel.sum()))
            win[idx] = w
        # packets: direction (random order within the flow), payload, header, gap before the packet
        npk = f + b
        flow = np.repeat(idx, npk)
        pos = np.arange(flow.size) - np.repeat(np.cumsum(npk) - npk, npk)
        fwd = pos < np.repeat(f, npk)
        order = np.lexsort((rng.random(flow.size), flow))
        fwd = fwd[order]
        length = np.zeros(flow.size, np.int64)
        for is_fwd, modes in ((True, prof.fwd_payload), (False, prof.bwd_payload)):
            mw = np.array([x[0] for x in modes])
            mode = rng.choice(len(modes), m, p=mw / mw.sum())
            lo = np.array([x[1] for x in modes])[mode]
            hi = np.array([x[2] for x in modes])[mode]
            pz = np.array([x[3] for x in modes])[mode]
            rows = np.repeat(np.arange(m), npk)
            val = rng.integers(lo[rows], hi[rows] + 1)
            val[rng.random(flow.size) < pz[rows]] = 0
            length[fwd == is_fwd] = val[fwd == is_fwd]
        if prof.proto == 6:
            hdr = _draw(rng, prof.tcp_hdr, flow.size)
        else:
            hdr = np.full(flow.size, 8 if prof.proto == 17 else 0, np.int64)
        med, sigma = prof.gap_us
        scale = np.repeat(rng.lognormal(0.0, 0.3, m), npk)
        gap = np.maximum(1, np.rint(med * scale * rng.lognormal(0.0, sigma, flow.size))).astype(np.int64)
        gap[pos == 0] = 0
        pk.append((flow, fwd, length, hdr, gap))
    flow, fwd, length, hdr, gap = (np.concatenate(x) for x in zip(*pk, strict=True))
    order = np.argsort(flow, kind="stable")
    flow, fwd, length, hdr, gap = flow[order], fwd[order], length[order], hdr[order], gap[order]
    # zero-duration (inf) flows: no gaps and some payload; other flows: cap the duration
    zp = zero_dur[flow]
    gap[zp] = 0
    length[zp & (length == 0)] = 32
    dur = np.bincount(flow, weights=gap, minlength=n)
    too_long = dur > MAX_DURATION_US
    if too_long.any():
        factor = np.where(too_long, MAX_DURATION_US / np.maximum(dur, 1), 1.0)[flow]
        scaled = np.maximum(1, np.floor(gap * factor)).astype(np.int64)
        gap = np.where(too_long[flow] & (gap > 0), scaled, gap)
    start = np.r_[0, np.flatnonzero(flow[1:] != flow[:-1]) + 1]
    csum = np.cumsum(gap)
    t = csum - np.repeat(csum[start] - gap[start], np.diff(np.r_[start, flow.size]))
    drawn = {"nf": nf, "nb": nb, "proto": proto, "win": win, **flags}
    return drawn, (flow, fwd, length, hdr, t)


def _features(drawn: dict[str, np.ndarray], packets: tuple[np.ndarray, ...], zero_dur: np.ndarray) -> dict:
    """All 79 numeric columns, CICFlowMeter-style, from the packets."""
    flow, fwd, length, hdr, t = packets
    n = len(drawn["nf"])
    out: dict[str, np.ndarray] = {}
    npk = np.bincount(flow, minlength=n)
    starts = np.cumsum(npk) - npk
    dur = (t[starts + npk - 1] - t[starts]).astype(np.int64)
    out["Protocol"] = drawn["proto"]
    out["Flow_Duration"] = dur
    fc, ft, fm, fs, fx, fn = _gstats(length[fwd], flow[fwd], n)
    bc, bt, bm, bs, bx, bn = _gstats(length[~fwd], flow[~fwd], n)
    out["Tot_Fwd_Pkts"], out["Tot_Bwd_Pkts"] = fc.astype(np.int64), bc.astype(np.int64)
    out["TotLen_Fwd_Pkts"], out["TotLen_Bwd_Pkts"] = ft, bt
    _put(out, "Fwd_Pkt_Len_Max Fwd_Pkt_Len_Min Fwd_Pkt_Len_Mean Fwd_Pkt_Len_Std", (fx, fn, fm, fs))
    _put(out, "Bwd_Pkt_Len_Max Bwd_Pkt_Len_Min Bwd_Pkt_Len_Mean Bwd_Pkt_Len_Std", (bx, bn, bm, bs))
    secs = np.where(dur > 0, dur, 1) / 1e6
    out["Flow_Byts/s"] = np.where(zero_dur, np.inf, (ft + bt) / secs)
    out["Flow_Pkts/s"] = np.where(zero_dur, np.inf, (fc + bc) / secs)
    g, gf = _within_gaps(t, flow)
    _put(out, "Flow_IAT_Mean Flow_IAT_Std Flow_IAT_Max Flow_IAT_Min", _gstats(g, gf, n)[2:])
    for side, sel in (("Fwd", fwd), ("Bwd", ~fwd)):
        sg, sgf = _within_gaps(t[sel], flow[sel])
        names = " ".join(f"{side}_IAT_{s}" for s in ("Tot", "Mean", "Std", "Max", "Min"))
        _put(out, names, _gstats(sg, sgf, n)[1:])
    out["Fwd_PSH_Flags"] = np.zeros(n, np.int64)
    has_payload = (ft + bt) > 0
    psh = drawn["PSH_Flag_Cnt"] * has_payload
    out["Bwd_PSH_Flags"] = psh
    out["Fwd_URG_Flags"] = np.zeros(n, np.int64)
    out["Bwd_URG_Flags"] = drawn["URG_Flag_Cnt"]
    out["Fwd_Header_Len"] = np.bincount(flow[fwd], weights=hdr[fwd], minlength=n).astype(np.int64)
    out["Bwd_Header_Len"] = np.bincount(flow[~fwd], weights=hdr[~fwd], minlength=n).astype(np.int64)
    out["Fwd_Pkts/s"] = np.where(zero_dur, 0.0, fc / secs)
    out["Bwd_Pkts/s"] = np.where(zero_dur, 0.0, bc / secs)
    # CICFlowMeter counts a flow's first packet twice in the packet-length statistics
    first = length[starts].astype(np.float64)
    total = ft + bt
    mean2 = (total + first) / (npk + 1)
    ss2 = np.bincount(flow, weights=(length - mean2[flow]) ** 2, minlength=n) + (first - mean2) ** 2
    var2 = ss2 / npk
    out["Pkt_Len_Min"] = np.minimum(np.where(fc > 0, fn, np.inf), np.where(bc > 0, bn, np.inf))
    out["Pkt_Len_Max"] = np.maximum(fx, bx)
    out["Pkt_Len_Mean"], out["Pkt_Len_Std"], out["Pkt_Len_Var"] = mean2, np.sqrt(var2), var2
    for name in _TCP_FLAGS:
        out[name] = drawn[name]
    out["PSH_Flag_Cnt"] = psh
    out["Down/Up_Ratio"] = np.where(fc > 0, bc // np.maximum(fc, 1), 0).astype(np.float64)
    out["Pkt_Size_Avg"] = (total + first) / npk
    out["Fwd_Seg_Size_Avg"], out["Bwd_Seg_Size_Avg"] = fm, bm
    out["Subflow_Fwd_Pkts"], out["Subflow_Fwd_Byts"] = out["Tot_Fwd_Pkts"], ft.astype(np.int64)
    out["Subflow_Bwd_Pkts"], out["Subflow_Bwd_Byts"] = out["Tot_Bwd_Pkts"], bt.astype(np.int64)
    out["Init_Bwd_Win_Byts"] = drawn["win"]
    out["Fwd_Act_Data_Pkts"] = np.bincount(flow[fwd], weights=length[fwd] > 0, minlength=n).astype(np.int64)
    # Active/Idle: gaps above the activity timeout are idle times; runs of shorter gaps are active periods
    idle = g > ACTIVITY_TIMEOUT_US
    _put(out, "Idle_Mean Idle_Std Idle_Max Idle_Min", _gstats(g[idle], gf[idle], n)[2:])
    pos = np.flatnonzero(~idle)
    sf = gf[pos]
    run_start = np.r_[True, (pos[1:] != pos[:-1] + 1) | (sf[1:] != sf[:-1])] if pos.size else pos.astype(bool)
    run_id = np.cumsum(run_start) - 1
    run_len = np.bincount(run_id, weights=g[pos]) if pos.size else np.zeros(0)
    _put(out, "Active_Mean Active_Std Active_Max Active_Min", _gstats(run_len, sf[run_start], n)[2:])
    for name, value in CONSTANT_COLUMNS.items():
        out[name] = np.full(n, value, np.int64)
    return out


def _validated_mix(class_mix: Mapping[str, float] | None) -> np.ndarray:
    mix = default_class_mix() if class_mix is None else dict(class_mix)
    unknown = sorted(set(mix) - set(SUB_CAT_VALUES))
    if unknown:
        raise ClassMixError(f"expected class_mix keys among {list(SUB_CAT_VALUES)}, got {unknown}")
    w = np.array([float(mix.get(s, 0.0)) for s in SUB_CAT_VALUES])
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ClassMixError(f"expected finite non-negative weights with a positive sum, got {mix}")
    return w


def _format_timestamps(time_us: np.ndarray) -> np.ndarray:
    secs = time_us // 1_000_000
    uniq, inv = np.unique(secs, return_inverse=True)
    text = pd.to_datetime(uniq, unit="s").strftime(TIMESTAMP_FORMAT).to_numpy(dtype=object)
    return text[inv]


def _empty_frame() -> pd.DataFrame:
    data = {c: pd.Series([], dtype="int64" if c in INT_COLUMNS else "float64") for c in NUMERIC_COLUMNS}
    data |= {c: pd.Series([], dtype="str") for c in (*IDENTIFIER_COLUMNS, *LABEL_COLUMNS)}
    return pd.DataFrame(data)[list(COLUMNS)]


def generate(n_rows: int, seed: int = 0, *, class_mix: Mapping[str, float] | None = None) -> pd.DataFrame:
    """``n_rows`` SYNTHETIC flows in the full IoTID20 layout (86 columns, file order/dtypes), in time order.

    ``class_mix`` maps Sub_Cat -> relative weight (missing Sub_Cats get 0); default: the full file's mix.
    Row counts per Sub_Cat follow the mix exactly (largest remainder); the same seed gives the same frame.
    """
    if n_rows < 0:
        raise ValueError(f"expected n_rows >= 0, got {n_rows}")
    weights = _validated_mix(class_mix)
    if n_rows == 0:
        return _empty_frame()
    rng = np.random.default_rng(seed)
    per_sub = _allocate(n_rows, weights)
    per_profile = np.zeros(len(_PROFILES), np.int64)
    for si, count in enumerate(per_sub):
        members = np.flatnonzero(np.equal(_PROFILE_SUB, si))
        per_profile[members] = _allocate(int(count), [_PROFILES[i].weight for i in members])
    flows = _sessions(rng, per_profile)
    _add_label_noise(rng, flows)
    n = len(flows.sub)
    # +inf rows: zero-duration Anomaly flows, never duplicated (count ~ INF_FRACTION of the rows)
    zero_dur = np.zeros(n, bool)
    candidates = np.flatnonzero(flows.sub != _NORMAL_INDEX)
    n_inf = min(candidates.size, round(n_rows * INF_FRACTION) or (1 if n_rows >= 1000 else 0))
    if n_inf:
        pick = rng.choice(candidates, n_inf, replace=False)
        zero_dur[pick] = True
        for inf_flow in pick[flows.reps[pick] > 1]:  # its copies go to another flow of the same Sub_Cat
            donors = np.flatnonzero((flows.sub == flows.sub[inf_flow]) & ~zero_dur)
            if donors.size:
                flows.reps[rng.choice(donors)] += flows.reps[inf_flow] - 1
                flows.reps[inf_flow] = 1
    drawn, packets = _packets(rng, flows.prof, zero_dur)
    feats = _features(drawn, packets, zero_dur)
    proto = feats["Protocol"]
    sport = np.where(proto == 0, 0, flows.src_port)
    dport = np.where(proto == 0, 0, flows.dst_port)
    feats["Src_Port"], feats["Dst_Port"] = sport, dport
    src_first = flows.src_ip <= flows.dst_ip  # lower address (as text) first, as in the real rows seen
    ip_a = np.where(src_first, flows.src_ip, flows.dst_ip)
    ip_b = np.where(src_first, flows.dst_ip, flows.src_ip)
    port_a = np.where(src_first, sport, dport)
    port_b = np.where(src_first, dport, sport)
    flow_id = np.array(
        [f"{a}-{b}-{pa}-{pb}-{p}" for a, b, pa, pb, p in zip(ip_a, ip_b, port_a, port_b, proto, strict=True)],
        dtype=object,
    )
    sub_names = np.array(SUB_CAT_VALUES, dtype=object)[flows.sub]
    cat_names = np.array([SUB_CAT_TO_CAT[s] for s in SUB_CAT_VALUES], dtype=object)[flows.sub]
    label = np.where(flows.sub == _NORMAL_INDEX, LABEL_NORMAL, LABEL_ANOMALY).astype(object)
    text = {
        "Flow_ID": flow_id,
        "Src_IP": flows.src_ip,
        "Dst_IP": flows.dst_ip,
        "Timestamp": _format_timestamps(flows.time_us),
        "Label": label,
        "Cat": cat_names,
        "Sub_Cat": sub_names,
    }
    # exact duplicates sit next to their original; then everything in time order
    rows = np.repeat(np.arange(n), flows.reps)
    rows = rows[np.argsort(flows.time_us[rows], kind="stable")]
    data: dict[str, np.ndarray] = {}
    for c in COLUMNS:
        if c in text:
            data[c] = pd.array(text[c][rows], dtype="str")
        else:
            data[c] = np.asarray(feats[c][rows], dtype=np.int64 if c in INT_COLUMNS else np.float64)
    df = pd.DataFrame(data, columns=list(COLUMNS))
    log.debug("generated %d synthetic rows (%d unique flows, %d inf) seed=%d", len(df), n, n_inf, seed)
    return df


def write_csv(path: str | Path, n_rows: int, seed: int = 0, *, class_mix: Mapping[str, float] | None = None) -> Path:
    """Write ``generate(n_rows, seed)`` like the real ``IoT Network Intrusion Dataset.csv``; return the path.

    A directory (existing, or a path without a ``.csv`` suffix) gets ``SYNTHETIC-iotid20-<n_rows>.csv``.
    """
    path = Path(path)
    if path.is_dir() or (not path.exists() and path.suffix.lower() != ".csv"):
        path.mkdir(parents=True, exist_ok=True)
        path = path / DEFAULT_FILENAME.format(n=n_rows)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    generate(n_rows, seed, class_mix=class_mix).to_csv(path, index=False)
    log.info("wrote %d synthetic IoTID20 rows to %s", n_rows, path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m trainer.synthetic --rows 20000 --seed 0 --out DIR_OR_CSV``."""
    parser = argparse.ArgumentParser(
        prog="python -m trainer.synthetic",
        description="Write SYNTHETIC flows in the exact IoTID20 CSV layout (for demos/tests, not results).",
    )
    parser.add_argument("--rows", type=int, default=20_000, help="number of rows (default 20000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, default=Path("."), help="output directory or .csv path")
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error(f"expected --rows >= 0, got {args.rows}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = write_csv(args.out, args.rows, args.seed)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
