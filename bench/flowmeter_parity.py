"""Parity of the flow meter with the Java reference (CICFlowMeter 99dc827) on real captures, per pcap and column.

    .venv/bin/python bench/flowmeter_parity.py            # → bench/results/flowmeter_parity.md

Runs the reference (``../shared/tools/cicflowmeter/run.sh``, TZ=UTC) and the meter on every pcap in
``../shared/pcaps/`` with the reference's timeouts and with short IoTID20-like ones, matches flows by Flow_ID +
start Timestamp (+ order of occurrence), and compares every column: text exactly, numbers exactly for integers and
to 1e-9 relative for floats after parsing the reference's own text (Infinity/NaN equal as such). The tests in
``tests/flowmeter/test_flowmeter_parity.py`` use the same functions.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import platform
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flowmeter.csvout import java_value  # noqa: E402
from flowmeter.flow import RECORD_COLUMNS  # noqa: E402
from flowmeter.meter import FlowMeter  # noqa: E402
from flowmeter.pcapfile import read_capture  # noqa: E402
from flowmeter.settings import REFERENCE_TIMEOUTS, MeterSettings  # noqa: E402

SHARED = Path(os.environ.get("IOTIDS_SHARED_DIR", REPO.parent / "shared"))
ORACLE_DIR = SHARED / "tools" / "cicflowmeter"
PCAP_DIR = SHARED / "pcaps"
TIMEOUT_SETS: dict[str, tuple[int, int]] = {
    "reference 120 s / 5 s": REFERENCE_TIMEOUTS,
    "IoTID20-like 100 ms / 1 ms": (100_000, 1_000),
}
TEXT_COLUMNS = ("Flow_ID", "Src_IP", "Dst_IP", "Timestamp")
REL_TOL = 1e-9


def java_available() -> bool:
    return shutil.which(os.environ.get("JAVA", "java")) is not None and (ORACLE_DIR / "run.sh").exists()


def java_version() -> str:
    try:
        out = subprocess.run([os.environ.get("JAVA", "java"), "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return "java unknown"
    return (out.stderr.splitlines() or ["java unknown"])[0]


def shared_pcaps() -> list[Path]:
    return sorted(p for p in PCAP_DIR.glob("*.pcap*") if p.is_file())


def run_reference(pcap: Path, outdir: Path, timeouts: tuple[int, int]) -> Path:
    """The reference's CSV for ``pcap`` (its own Cmd for its default timeouts, CmdTimeouts otherwise); ``pcap`` may
    be a folder (every capture in it, one JVM), then the folder of CSVs (``<name>_Flow.csv``) is returned."""
    env = {**os.environ, "TZ": "UTC"}
    env.pop("CFM_FLOW_TIMEOUT", None)
    env.pop("CFM_ACTIVITY_TIMEOUT", None)
    if timeouts != REFERENCE_TIMEOUTS:
        env["CFM_FLOW_TIMEOUT"], env["CFM_ACTIVITY_TIMEOUT"] = str(timeouts[0]), str(timeouts[1])
    outdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["bash", str(ORACLE_DIR / "run.sh"), str(pcap), str(outdir)],
        env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
    )  # fmt: skip
    return outdir if pcap.is_dir() else outdir / f"{pcap.name}_Flow.csv"


def read_reference(path: Path) -> list[dict[str, str]]:
    """Rows of a reference CSV with IoTID20 column names (space → underscore)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return []
    names = [c.strip().replace(" ", "_") for c in rows[0]]
    return [dict(zip(names, r, strict=True)) for r in rows[1:]]


def run_ours(pcap: Path, timeouts: tuple[int, int]) -> tuple[list[dict], dict]:
    records: list[dict] = []
    meter = FlowMeter(MeterSettings(flow_timeout_us=timeouts[0], activity_timeout_us=timeouts[1]), records.append)
    reader = read_capture(pcap)
    for ts, frame, linktype in reader:
        meter.packet(ts, frame, linktype)
    meter.flush()
    return records, {**meter.stats.as_dict(), "capture_errors": dict(reader.errors)}


def junk_pairs(pcap: Path) -> set[tuple[str, str]]:
    """(src, dst) of the junk flows the reference makes of non-IPv4 frames (quirk 9): bytes 12-15 and 16-19 of the
    frame read as an IPv4 header from byte 0, in either order."""
    pairs: set[tuple[str, str]] = set()
    for _ts, frame, linktype in read_capture(pcap):
        if linktype == 1 and len(frame) >= 20 and frame[12:14] != b"\x08\x00":
            a, b = ".".join(map(str, frame[12:16])), ".".join(map(str, frame[16:20]))
            pairs.update({(a, b), (b, a)})
    return pairs


def values_agree(ours: object, ref: str) -> bool:
    """Integers exactly (and written as integers); floats to 1e-9 relative; Infinity/NaN as such."""
    if "." not in ref and "E" not in ref and ref not in ("NaN", "Infinity", "-Infinity"):
        return ours.__class__ is int and ours == int(ref)
    if ours.__class__ is not float:
        return False
    r = float(ref)
    o = float(ours)  # type: ignore[arg-type]
    if math.isnan(r) or math.isnan(o):
        return math.isnan(r) and math.isnan(o)
    if math.isinf(r) or math.isinf(o):
        return r == o
    return math.isclose(o, r, rel_tol=REL_TOL, abs_tol=0.0) or o == r


@dataclass
class Comparison:
    pcap: str
    timeouts: tuple[int, int]
    reference_rows: int = 0
    our_rows: int = 0
    matched: int = 0
    missing_junk: list[str] = field(default_factory=list)  # reference junk flows we do not make (expected)
    missing: list[str] = field(default_factory=list)  # reference flows we did not find (a failure)
    extra_single: int = 0  # our single-packet flows (deliberate)
    extra_ipv6: int = 0  # our IPv6 flows (deliberate)
    extra: list[str] = field(default_factory=list)  # other flows of ours (a failure)
    column_mismatch: Counter = field(default_factory=Counter)
    text_identical: Counter = field(default_factory=Counter)  # cells whose text equals the reference's
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.extra and not self.column_mismatch


def compare(
    pcap: Path, ref_rows: list[dict[str, str]], ours: list[dict], junk: set[tuple[str, str]], timeouts: tuple[int, int]
) -> Comparison:
    c = Comparison(pcap=pcap.name, timeouts=timeouts, reference_rows=len(ref_rows), our_rows=len(ours))
    kept: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for rec in ours:
        if ":" in rec["Src_IP"]:
            c.extra_ipv6 += 1
        elif rec["Tot_Fwd_Pkts"] + rec["Tot_Bwd_Pkts"] == 1:
            c.extra_single += 1
        else:
            kept[(rec["Flow_ID"], rec["Timestamp"])].append(rec)
    used: Counter = Counter()
    for row in ref_rows:
        k = (row["Flow_ID"], row["Timestamp"])
        i = used[k]
        if i >= len(kept.get(k, ())):
            label = f"{row['Flow_ID']} @ {row['Timestamp']}"
            (c.missing_junk if (row["Src_IP"], row["Dst_IP"]) in junk else c.missing).append(label)
            continue
        used[k] += 1
        rec = kept[k][i]
        c.matched += 1
        for col in RECORD_COLUMNS:
            ref, val = row[col], rec[col]
            good = val == ref if col in TEXT_COLUMNS else values_agree(val, ref)
            if not good:
                c.column_mismatch[col] += 1
                if len(c.examples) < 10:
                    c.examples.append(f"{row['Flow_ID']} @ {row['Timestamp']}: {col} ours {val!r} reference {ref!r}")
            if java_value(val) == ref:
                c.text_identical[col] += 1
    for k, recs in kept.items():
        for rec in recs[used[k] :]:
            c.extra.append(f"{rec['Flow_ID']} @ {rec['Timestamp']} ({rec['Tot_Fwd_Pkts'] + rec['Tot_Bwd_Pkts']} pkts)")
    return c


def run_all(workdir: Path) -> list[Comparison]:
    out = []
    for name, timeouts in TIMEOUT_SETS.items():
        refdir = run_reference(PCAP_DIR, workdir / name.split()[0], timeouts)
        for pcap in shared_pcaps():
            ours, _stats = run_ours(pcap, timeouts)
            ref = read_reference(refdir / f"{pcap.name}_Flow.csv")
            out.append(compare(pcap, ref, ours, junk_pairs(pcap), timeouts))
    return out


def render(results: list[Comparison], command: str) -> str:
    lines = [
        "# Flow meter parity with the Java reference (CICFlowMeter 99dc827)",
        "",
        f"- Command: `{command}`",
        f"- Machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs), "
        f"Python {platform.python_version()}, {java_version()}",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "- Matching: Flow_ID + start Timestamp (+ order of occurrence). Numbers: integers exactly, floats to 1e-9",
        "  relative after parsing the reference's text; Flow_ID/IPs/Timestamp exactly. `text =` counts cells whose",
        "  text is byte-identical to the reference's.",
        "- Deliberate differences (README, flow meter): the reference's junk flows from non-IPv4 frames are not made;",
        "  our single-packet flows and IPv6 flows are extra.",
        "",
        "| timeouts (flow / activity µs) | pcap | reference flows | matched | junk (expected missing) | missing |"
        " our extra: 1-packet / IPv6 / other | cells compared | cells differing | cells text-identical |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = r.matched * len(RECORD_COLUMNS)
        lines.append(
            f"| {r.timeouts[0]} / {r.timeouts[1]} | {r.pcap} | {r.reference_rows} | {r.matched} | "
            f"{len(r.missing_junk)} | {len(r.missing)} | {r.extra_single} / {r.extra_ipv6} / {len(r.extra)} | "
            f"{cells} | {sum(r.column_mismatch.values())} | {sum(r.text_identical.values())} |"
        )
    lines += ["", "## Per column (all pcaps, both timeout sets)", ""]
    lines += ["| column | cells compared | differing | text-identical |", "|---|---|---|---|"]
    total = sum(r.matched for r in results)
    for col in RECORD_COLUMNS:
        bad = sum(r.column_mismatch[col] for r in results)
        same = sum(r.text_identical[col] for r in results)
        lines.append(f"| {col} | {total} | {bad} | {same} |")
    problems = [(r, e) for r in results for e in r.examples + r.missing + r.extra]
    lines += ["", "## Differences", ""]
    lines += [f"- {r.pcap} ({r.timeouts[0]}/{r.timeouts[1]}): {e}" for r, e in problems] or ["None."]
    junk = sorted({j for r in results for j in r.missing_junk})
    lines += ["", "## Reference junk flows not made (quirk 9)", ""]
    lines += [f"- {j}" for j in junk] or ["None."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "flowmeter_parity.md"))
    p.add_argument("--workdir", default="/tmp/flowmeter_parity")
    args = p.parse_args(argv)
    if not java_available():
        print("java or the reference (../shared/tools/cicflowmeter) is missing", file=sys.stderr)
        return 2
    results = run_all(Path(args.workdir))
    text = render(results, "python bench/flowmeter_parity.py")
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
