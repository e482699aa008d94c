"""The Markdown report of a ``flowmeter.json``: medians per case, the tables, the targets."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

TARGET_PPS = 100_000
TARGET_RSS_MB = 150.0
LABELS = {
    "ours_records": "our meter, pcap → records (no output)",
    "ours_refrules": "our meter, pcap → records, the reference's rules (no 1-packet flows, no IPv6)",
    "ours_csv": "our meter, pcap → CSV",
    "ours_mqtt": "our meter daemon, pcap → MQTT (outbox, QoS 1, Mosquitto on loopback)",
    "java": "Java reference (run.sh), as shipped",
    "java_niomx": "Java reference, `JAVA_OPTS=-Dnio.mx=2gb`",
    "java_2cores": "Java reference, as shipped, **not pinned** (2 cores)",
    "java_niomx_2cores": "Java reference, `-Dnio.mx=2gb`, **not pinned** (2 cores)",
    "pypi": "PyPI `cicflowmeter`",
}


def summarize(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Medians per case: CPU, start-up CPU, packets per CPU-second after start-up, RSS, wall."""
    out = {}
    for key, c in res["cases"].items():
        runs = c["runs"]
        if not runs:
            out[key] = {"case": c["case"], "timeouts": c["timeouts"], "error": c.get("error", "no run")}
            continue
        packets = res["pypi_packets"] if c["case"] == "pypi" else res["capture"]["packets"]
        cpu = statistics.median(r["cpu_s"] for r in runs)
        start = statistics.median(r["cpu_s"] for r in c["startup"]) if c["startup"] else 0.0
        s = {
            "case": c["case"], "timeouts": c["timeouts"], "packets": packets, "cpu_s": cpu, "startup_cpu_s": start,
            "pps": packets / max(cpu - start, 1e-9), "pps_incl_startup": packets / cpu,
            "maxrss_mb": statistics.median(r["maxrss_mb"] for r in runs),
            "wall_s": statistics.median(r["wall_s"] for r in runs),
            "flows": runs[-1].get("flows"), "rounds": len(runs),
            "spread": (min(r["cpu_s"] for r in runs), max(r["cpu_s"] for r in runs)),
        }  # fmt: skip
        if "loop_cpu_s" in runs[0]:
            s["loop_pps"] = packets / statistics.median(r["loop_cpu_s"] for r in runs)
            s["active_at_end"] = runs[-1]["active_at_end"]
            s["rss_anon_mb"] = statistics.median(r["rss_anon_mb"] for r in runs)
            s["rss_file_mb"] = statistics.median(r["rss_file_mb"] for r in runs)
        if c.get("error"):
            s["error"] = c["error"]
        out[key] = s
    return out


def render(res: dict[str, Any]) -> str:
    m, cap = res["machine"], res["capture"]
    summ = summarize(res)
    lines = [
        "# Flow meter throughput and memory: our meter vs the Java reference and PyPI `cicflowmeter`",
        "",
        f"- Command: `{res['command']}` — {res['date']}, {res['seconds'] / 60:.1f} min",
        f"- Machine: {m['cpu']} ({m['arch']}, {m['cores']} cores), kernel {m['kernel']}, Python {m['python']}, "
        f"{m['java']}, {m['mosquitto']}",
        f"- Load average at start {res['load_start'][0]:.2f}, at end {res['load_end'][0]:.2f} (a 2-core VM shared "
        "with other work: read CPU-time rates and ratios, not wall time)",
        f"- Capture: the {cap['round_packets']:,} Ethernet packets of `../shared/pcaps` (one file after the other, "
        f"gaps capped at 60 s, round span {cap['round_span_s']:,.0f} s) replicated {cap['replicas']}× with shifted "
        f"times and addresses: **{cap['packets']:,} packets**, {cap['bytes'] / 1e6:,.0f} MB, written under /tmp",
        f"- Every tool in a child process pinned to core {res['core']} (`taskset`; Mosquitto on another core); CPU "
        "= user + system from `wait4` (the child and the children it waited for); start-up = the same case on the "
        f"capture's first 20 packets; median of {res['rounds']} interleaved rounds. packets/CPU-s = packets ÷ "
        "(CPU − start-up). Our peak RSS includes the capture file's memory map (clean page-cache pages, unmapped "
        "when the file ends); the anon column is the meter's own memory with the flows still open at the end.",
        "",
        "## Packets per CPU-second on one core",
        "",
        "| tool | timeouts (flow / activity µs) | packets | flows written | CPU-s (min–max) | start-up CPU-s "
        "| **packets / CPU-s** | × our records | meter loop only | peak RSS MB | anon RSS after the loop MB | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summ.values():
        label = LABELS.get(s["case"], s["case"])
        if s["case"] == "pypi":
            label += f" {res.get('pypi_version') or ''}"
        t = res["timeouts"].get(s["timeouts"])
        tt = f"{s['timeouts']} {t[0]:,} / {t[1]:,}" if t else "its own (fixed)"
        if "error" in s and "pps" not in s:
            lines.append(f"| {label} | {tt} | – | – | – | – | {s['error'][:200]} | – | – | – | – | – |")
            continue
        base = summ.get(f"ours_records/{s['timeouts']}") or summ.get("ours_records/reference")
        ratio = s["pps"] / base["pps"] if base else float("nan")
        loop = f"{s['loop_pps']:,.0f}" if "loop_pps" in s else "–"
        mem = f"{s['rss_anon_mb']:,.0f} ({s['active_at_end']:,} flows)" if "rss_anon_mb" in s else "–"
        lo, hi = s["spread"]
        lines.append(
            f"| {label} | {tt} | {s['packets']:,} | {s['flows'] if s['flows'] is not None else '–'} | {s['cpu_s']:.2f} "
            f"({lo:.2f}–{hi:.2f}) | {s['startup_cpu_s']:.2f} | **{s['pps']:,.0f}** | {ratio:.2f} | {loop} "
            f"| {s['maxrss_mb']:,.0f} | {mem} | {s['wall_s']:.1f} |"
        )
    lines += ["", "## Memory: peak RSS of a child holding the flows", ""]
    lines += [
        "| flows | kind | active flows held | orientations kept | evictions | interpreter + imports MB | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    kinds = {
        "active": "3-packet flows (TCP/UDP, 100-byte payloads), reference timeouts",
        "flood": "flood: single-packet flows into max_flows=100,000",
        "kept+active": "as the first rows, after as many flows closed by expire() left their orientations",
    }
    for r in res["rss"]:
        kind = kinds[r["kind"]]
        lines.append(
            f"| {r['flows']:,} | {kind} | {r['active_flows']:,} | {r['orientations_kept']:,} | {r['evictions']:,} "
            f"| {r['base_rss_mb']:.0f} | {r['hwm_mb']:.0f} |"
        )
    o = res["orientations"]
    lines += [
        "",
        f"Orientations kept by `expire()` (so a live flow's next flow keeps its Src/Dst): {o['flows']:,} of them "
        f"hold {o['orientation_bytes'] / 1e6:.1f} MB ({o['orientation_bytes'] / o['flows']:.0f} B each: the dict "
        f"entry and the packed key) — the flows themselves held {o['table_bytes'] / 1e6:.1f} MB "
        "(tracemalloc, single-packet UDP flows).",
        "",
        "## Targets",
        "",
    ]
    rec = [s for s in summ.values() if s["case"] == "ours_records" and "pps" in s]
    for s in rec:
        ok = s["pps"] >= TARGET_PPS
        lines.append(
            f"- ≥ {TARGET_PPS:,} packets per CPU-second on one core, pcap → records, {s['timeouts']} timeouts: "
            f"**{'met' if ok else 'not met'}** ({s['pps']:,.0f})"
        )
    for s in summ.values():
        if s["case"] in ("ours_csv", "ours_mqtt") and "pps" in s:
            lines.append(
                f"- the same with output ({LABELS[s['case']].split(', ', 1)[1]}), {s['timeouts']} timeouts: "
                f"{'met' if s['pps'] >= TARGET_PPS else 'not met'} ({s['pps']:,.0f})"
            )
    big = [r for r in res["rss"] if r["kind"] == "active"][-1]
    lines.append(
        f"- RSS < {TARGET_RSS_MB:.0f} MB with {big['flows']:,} active flows: "
        f"**{'met' if big['hwm_mb'] < TARGET_RSS_MB else 'not met'}** ({big['hwm_mb']:.0f} MB peak)"
    )
    lines += [f"- Note: {n}" for n in res.get("notes", [])]
    return "\n".join(lines) + "\n"


def write_report(res: dict[str, Any], out_md: Path, out_json: Path) -> str:
    text = render(res)
    body = text
    if out_md.exists() and "<!-- notes -->" in out_md.read_text():  # hand-written notes survive a re-run
        body += "\n<!-- notes -->" + out_md.read_text().split("<!-- notes -->", 1)[1]
    out_md.write_text(body)
    out_json.write_text(json.dumps(res, indent=1, default=str) + "\n")
    return text
