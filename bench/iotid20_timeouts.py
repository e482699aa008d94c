"""Which flow timeout and activity timeout was IoTID20 made with? Evidence from the real rows, per class.

How the reference (CICFlowMeter 99dc827) uses the two settings, read from its FlowGenerator/BasicFlow:
- flow timeout FT: a packet more than FT after the flow's *first* packet closes the flow (and starts a new one), so
  every written ``Flow_Duration`` is <= FT; a capture cut at FT has a smooth duration density that stops dead at FT.
- activity timeout AT: each gap between consecutive packets that is > AT adds an Idle value (and the active period
  before it, if > 0, an Active value); a gap <= AT extends the active period. The packet that carries FIN closes
  the flow without this step, so its gap is never idle — UDP rows have no FIN, their non-idle gaps bound AT from
  below for sure.
So per class: FT >= max Flow_Duration (= it when the density stops dead there); AT < the smallest Idle value;
AT >= every non-idle gap (a UDP 2-packet flow with Idle 0 has one: its Flow_IAT; a UDP row whose Flow_IAT_Min is
below its Idle_Min has one: Flow_IAT_Min; an Active period of x µs made of one gap: x).

``--reference`` also runs the Java reference on the shared real captures with the candidate settings and compares
the flows it writes with IoTID20's Normal rows.

    python bench/iotid20_timeouts.py                 # evidence only, seconds
    python bench/iotid20_timeouts.py --reference     # + the Java reference on ../shared/pcaps (~1 min)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEFAULT_DATA = SHARED / "data" / "iotid20" / "iotid20_2000.csv"
DEFAULT_PCAPS = SHARED / "pcaps"
DEFAULT_REFERENCE = SHARED / "tools" / "cicflowmeter" / "run.sh"
DEFAULT_OUT = REPO / "bench" / "results" / "iotid20_timeouts.md"
CLASSES = ("Normal", "DoS", "Mirai", "Scan", "MITM ARP Spoofing")
# (name, flow timeout µs, activity timeout µs)
CANDIDATES = (
    ("reference default", 120_000_000, 5_000_000),
    ("DoS-like", 100_000, 1_000),
    ("Normal-like", 550, 1),
    ("Mirai-like", 300, 1),
    ("Scan/MITM-like", 180, 1),
)
TOP_WINDOW_US = 10  # the density just below the ceiling, to say how many rows a higher ceiling would have added


def load(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    df["Cat"] = df["Target"]
    df["n_pkts"] = df["Tot_Fwd_Pkts"] + df["Tot_Bwd_Pkts"]
    df["has_idle"] = df["Idle_Max"] > 0
    return df


def nonidle_gaps(g: pd.DataFrame) -> pd.Series:
    """Gaps (µs) each row proves were *not* idle: its only gap when a 2-packet flow has no Idle value, or its
    smallest gap when that is below its smallest Idle value (NaN when the row proves nothing)."""
    two_no_idle = (g["n_pkts"] == 2) & ~g["has_idle"]
    below = g["has_idle"] & (g["Flow_IAT_Min"] < g["Idle_Min"])
    out = pd.Series(np.nan, index=g.index)
    out[two_no_idle] = g.loc[two_no_idle, "Flow_IAT_Max"]
    out[below] = g.loc[below, "Flow_IAT_Min"]
    return out


def class_evidence(df: pd.DataFrame) -> list[dict]:
    rows = []
    for cat in CLASSES:
        g = df[df["Cat"] == cat]
        dur = g["Flow_Duration"]
        mx = int(dur.max())
        top = int(((dur > mx - TOP_WINDOW_US) & (dur <= mx)).sum())
        gaps = nonidle_gaps(g)
        udp = g["Protocol"] == 17
        idle_min = g.loc[g["has_idle"], "Idle_Min"]
        act = g.loc[g["Active_Max"] > 0, "Active_Min"]
        rows.append(
            {
                "class": cat,
                "rows": len(g),
                "tcp/udp/0": f"{(g.Protocol == 6).sum()}/{udp.sum()}/{(g.Protocol == 0).sum()}",
                "pkts p50/max": f"{int(g.n_pkts.median())}/{int(g.n_pkts.max())}",
                "dur p50": int(dur.median()),
                "dur p90": int(dur.quantile(0.9)),
                "dur max": mx,
                "rows at max": int((dur == mx).sum()),
                f"rows in last {TOP_WINDOW_US} µs": top,
                "rows with Idle": f"{g.has_idle.mean():.1%}",
                "Idle = Flow IAT": f"{np.isclose(g.Idle_Mean, g.Flow_IAT_Mean).mean():.1%}",
                "rows with Active": int((g["Active_Max"] > 0).sum()),
                "min Active": int(act.min()) if len(act) else None,
                "min Idle": int(idle_min.min()) if len(idle_min) else None,
                "max non-idle gap, UDP": _int(gaps[udp].max()),
                "max non-idle gap, TCP (may be FIN)": _int(gaps[~udp].max()),
            }
        )
    return rows


def _int(x: float) -> int | None:
    return None if pd.isna(x) else int(x)


def threshold_table(df: pd.DataFrame, cat: str, lo: int, hi: int, step: int) -> list[dict]:
    """2-packet flows of ``cat`` by their single gap: how many carry an Idle value (gap > AT) and how many do not."""
    g = df[(df["Cat"] == cat) & (df["n_pkts"] == 2)]
    rows = []
    for start in range(lo, hi, step):
        b = g[(g["Flow_IAT_Max"] >= start) & (g["Flow_IAT_Max"] < start + step)]
        rows.append({"gap µs": f"{start}–{start + step - 1}", "flows": len(b), "with Idle": int(b.has_idle.sum())})
    return rows


def consistency(df: pd.DataFrame) -> list[dict]:
    """Share of each class's rows that a (FT, AT) setting could have written: duration <= FT, every Idle value > AT,
    every gap the row proves non-idle <= AT (TCP included: a FIN can excuse one gap, so this is strict)."""
    out = []
    for name, ft, at in CANDIDATES:
        row: dict = {"setting": f"{name} ({ft:,} / {at:,})"}
        for cat in CLASSES:
            g = df[df["Cat"] == cat]
            gaps = nonidle_gaps(g)
            ok = (g["Flow_Duration"] <= ft) & (~g["has_idle"] | (g["Idle_Min"] > at)) & (gaps.isna() | (gaps <= at))
            ok_udp = ok | (g["Protocol"] != 17)
            row[cat] = f"{ok.mean():.1%} ({ok_udp.mean():.1%})"
        out.append(row)
    return out


def run_reference(run_sh: Path, pcaps: Path, ft: int, at: int, work: Path) -> tuple[pd.DataFrame, float, int]:
    """The reference's flows (IoTID20 column names) for every pcap in ``pcaps``, its run time and its valid packets."""
    out = work / f"{ft}_{at}"
    env = dict(os.environ, CFM_FLOW_TIMEOUT=str(ft), CFM_ACTIVITY_TIMEOUT=str(at), TZ="UTC")
    t0 = time.monotonic()
    proc = subprocess.run([str(run_sh), str(pcaps), str(out)], env=env, check=True, capture_output=True, timeout=600)
    valid = sum(int(v) for v in re.findall(r"Valid=(\d+)", proc.stdout.decode()))
    secs = time.monotonic() - t0
    frames = [pd.read_csv(p) for p in sorted(out.glob("*_Flow.csv"))]
    ref = pd.concat(frames, ignore_index=True)
    ref.columns = [c.replace(" ", "_") for c in ref.columns]
    for col in ref.columns[7:-1]:  # the features ("Infinity"/"NaN" rates included); not the ids and Label
        ref[col] = pd.to_numeric(ref[col], errors="coerce")
    # the reference's junk flows from non-IPv4 frames (quirk 9: ARP/IPv6 re-read as IPv4) are not traffic
    ref = ref[~ref["Src_IP"].astype(str).str.startswith("8.6.0.1")]
    ref["n_pkts"] = ref["Tot_Fwd_Pkts"] + ref["Tot_Bwd_Pkts"]
    ref["has_idle"] = ref["Idle_Max"] > 0
    return ref, secs, valid


def ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov distance (max gap between the empirical CDFs)."""
    a, b = np.sort(a), np.sort(b)
    xs = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, xs, "right") / len(a) - np.searchsorted(b, xs, "right") / len(b))))


def describe(g: pd.DataFrame, normal: pd.DataFrame | None) -> dict:
    d = g["Flow_Duration"].to_numpy(float)
    row = {
        "flows": len(g),
        "dur p10/p50/p90/max µs": "/".join(f"{np.quantile(d, q):,.0f}" for q in (0.1, 0.5, 0.9, 1.0)),
        "pkts p50/p90": f"{g.n_pkts.median():.0f}/{g.n_pkts.quantile(0.9):.0f}",
        "rows with Idle": f"{g.has_idle.mean():.0%}",
        "Idle = Flow IAT": f"{np.isclose(g.Idle_Mean, g.Flow_IAT_Mean).mean():.0%}",
        "rows with Active": f"{(g.Active_Max > 0).mean():.0%}",
    }
    if normal is not None:
        for col in ("Flow_Duration", "Flow_IAT_Mean", "Idle_Mean", "n_pkts"):
            row[f"KS {col}"] = f"{ks(g[col].to_numpy(float), normal[col].to_numpy(float)):.2f}"
    return row


def md_table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append(
            "| "
            + " | ".join("–" if r[k] is None else f"{r[k]:,}" if isinstance(r[k], int) else str(r[k]) for k in keys)
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--reference", action="store_true", help="also run the Java reference on --pcaps")
    ap.add_argument("--pcaps", type=Path, default=DEFAULT_PCAPS)
    ap.add_argument("--run-sh", type=Path, default=DEFAULT_REFERENCE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    df = load(args.data)
    evidence = class_evidence(df)
    parts = [
        "# The timeouts IoTID20 was made with, estimated from the real rows",
        "",
        f"- Command: `python bench/iotid20_timeouts.py{' --reference' if args.reference else ''}` — "
        f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"pandas {pd.__version__}, numpy {np.__version__}",
        f"- Data: `{args.data.name}` (10,000 real IoTID20 rows, 2,000 per class, see SCHEMA.md / SOURCE.txt)",
        "",
        "## Per class: durations, idle and active periods",
        "",
        md_table(evidence),
        "",
        f"`rows in last {TOP_WINDOW_US} µs`: rows with a duration in (max − {TOP_WINDOW_US}, max]. Where that"
        " density is several rows per µs and there is not one row above the max, the max is a hard ceiling — the"
        " flow timeout.",
        "`max non-idle gap`: the largest gap a row proves was *not* counted as idle (so AT ≥ it); UDP rows have no"
        " FIN, TCP ones may owe it to the FIN packet, which skips the idle step.",
        "",
        "## DoS: the activity timeout shows as a step in 2-packet flows",
        "",
        md_table(threshold_table(df, "DoS", 900, 1100, 10)),
        "",
        "## Mirai: gaps of 0–3 µs in 2-packet flows",
        "",
        md_table(threshold_table(df, "Mirai", 0, 4, 1)),
        "",
        "## Share of each class's rows that a setting could have written (UDP rows only in brackets)",
        "",
        md_table(consistency(df)),
        "",
    ]
    if args.reference:
        normal = df[df["Cat"] == "Normal"]
        rows = [{"source": "IoTID20 Normal rows", **describe(normal, None)}]
        with tempfile.TemporaryDirectory(prefix="iotid20-timeouts-") as tmp:
            for name, ft, at in CANDIDATES:
                ref, _secs, valid = run_reference(args.run_sh, args.pcaps, ft, at, Path(tmp))
                row = {"source": f"reference, {name} ({ft:,} / {at:,})", **describe(ref, normal)}
                row["packets in written flows"] = f"{ref.n_pkts.sum() / valid:.0%} of {valid:,}"
                rows.append(row)
        parts += [
            "## The Java reference on the shared real captures, beside IoTID20's Normal rows",
            "",
            f"`{args.run_sh}` on every pcap in `{args.pcaps}` ({len(list(args.pcaps.glob('*.pcap')))} files) with each"
            " setting; ARP junk flows (quirk 9) removed. `packets in written flows`: the reference writes no"
            " single-packet flow, so the rest of the packets vanish at that setting. KS = Kolmogorov–Smirnov distance"
            " to the Normal rows (0 = same distribution, 1 = disjoint).",
            "",
            md_table([{k: r.get(k, "") for k in rows[1]} for r in rows]),
            "",
        ]
    parts.append(f"_{time.monotonic() - t0:.0f} s_")
    text = "\n".join(parts) + "\n"
    if args.out:
        body = text
        if args.out.exists() and "<!-- conclusion -->" in args.out.read_text():
            body += "\n<!-- conclusion -->" + args.out.read_text().split("<!-- conclusion -->", 1)[1]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(body)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
