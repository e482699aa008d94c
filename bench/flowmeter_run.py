"""One whole run: the capture, the cases in interleaved rounds, the memory probes → the results dict."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from flowmeter_capture import shared_round, write_head, write_replicated
from flowmeter_children import ORACLE, SHARED, java, orientation_cost, ours, pypi, pypi_version, rss
from flowmeter_mqtt import Mosquitto, ours_mqtt

from flowmeter.settings import REFERENCE_TIMEOUTS, TIMEOUT_PRESETS

TIMEOUTS: dict[str, tuple[int, int]] = {"iotid20": TIMEOUT_PRESETS["iotid20"], "reference": REFERENCE_TIMEOUTS}


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        text = Path("/proc/cpuinfo").read_text()
        cpu = next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name"))
    jv = ""
    if shutil.which("java"):
        p = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
        jv = (p.stderr.splitlines() or [""])[0]
    mv = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False) if shutil.which(
        "mosquitto") else None  # fmt: skip
    return {
        "host": platform.node(), "arch": platform.machine(), "cpu": cpu, "cores": os.cpu_count(),
        "kernel": platform.release(), "python": platform.python_version(), "java": jv,
        "mosquitto": (mv.stdout.splitlines() or [""])[0] if mv else "",
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    core = cores - 1 if cores > 1 else None  # the tools on the last core, Mosquitto on the others
    other = 0 if cores > 1 else None
    started = time.monotonic()
    res: dict[str, Any] = {
        "command": "python bench/flowmeter.py" + (" --quick" if args.quick else ""),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_start": os.getloadavg(),
        "core": core,
        "rounds": args.rounds,
        "timeouts": TIMEOUTS,
        "notes": [],
    }
    round_pkts = shared_round(SHARED / "pcaps")
    big, tiny, small = work / "replicated.pcap", work / "tiny.pcap", work / "pypi.pcap"
    res["capture"] = write_replicated(big, round_pkts, args.packets)
    write_head(big, tiny, 20)
    res["pypi_packets"] = write_head(big, small, args.pypi_packets)
    mosq = Mosquitto(work, other) if shutil.which("mosquitto") else None
    if mosq is None:
        res["notes"].append("mosquitto not found: no MQTT case")
    pypi_python = Path(args.pypi_python)
    pv = None if args.quick else pypi_version(pypi_python)
    res["pypi_version"] = pv
    if pv is None and not args.quick:
        res["notes"].append(f"PyPI cicflowmeter not found in {pypi_python.parent.parent} (see bench/README.md)")
    java_ok = not args.quick and not args.no_java and shutil.which("java") is not None and ORACLE.exists()
    cases: list[tuple[str, str, Any]] = []  # (case id, timeouts name, callable(pcap, i))
    for tname, t in TIMEOUTS.items():
        cases.append(("ours_records", tname, lambda p, i, t=t: ours(p, "records", t, core, work)))
        cases.append(("ours_refrules", tname, lambda p, i, t=t: ours(p, "refrules", t, core, work)))
        cases.append(("ours_csv", tname, lambda p, i, t=t: ours(p, "csv", t, core, work)))
        if mosq is not None:
            cases.append(("ours_mqtt", tname, lambda p, i, t=t: ours_mqtt(p, t, core, work, mosq.port, i)))
        if java_ok:
            cases.append(("java", tname, lambda p, i, t=t: java(p, t, "", core, work)))
            cases.append(("java_niomx", tname, lambda p, i, t=t: java(p, t, "-Dnio.mx=2gb", core, work)))
            if tname == "reference":  # the anchors in MEASUREMENTS.md were taken without pinning
                cases.append(("java_2cores", tname, lambda p, i, t=t: java(p, t, "", None, work)))
                cases.append(("java_niomx_2cores", tname, lambda p, i, t=t: java(p, t, "-Dnio.mx=2gb", None, work)))
    results: dict[str, dict[str, Any]] = {}
    try:
        # start-up: each case on the 20-packet pcap, median of the rounds
        for r in range(args.rounds):
            for case, tname, fn in cases:
                key = f"{case}/{tname}"
                results.setdefault(key, {"case": case, "timeouts": tname, "startup": [], "runs": []})
                results[key]["startup"].append(fn(tiny, 1000 + r))
            for case, tname, fn in cases:
                key = f"{case}/{tname}"
                results[key]["runs"].append(fn(big, r))
                print(f"round {r + 1}: {key}: {results[key]['runs'][-1]['cpu_s']:.2f} CPU-s", file=sys.stderr)
        if pv is not None:
            key = "pypi/own"
            results[key] = {"case": "pypi", "timeouts": "own", "startup": [], "runs": []}
            for _ in range(args.rounds):
                try:
                    results[key]["startup"].append(pypi(tiny, pypi_python, core, work))
                    results[key]["runs"].append(pypi(small, pypi_python, core, work))
                except RuntimeError as e:
                    results[key]["error"] = str(e)
                    break
    finally:
        if mosq is not None:
            mosq.stop()
    res["cases"] = results
    counts = (1_000, 10_000) if args.quick else (10_000, 100_000)
    res["rss"] = [rss(n, "active", 100_000, core) for n in counts]
    if not args.quick:
        res["rss"].append(rss(250_000, "flood", 100_000, core))
        res["rss"].append(rss(100_000, "kept+active", 100_000, core))
    res["orientations"] = orientation_cost(counts[-1], core)
    res["load_end"] = os.getloadavg()
    res["seconds"] = time.monotonic() - started
    if not args.keep:
        for p in (big, tiny, small):
            p.unlink(missing_ok=True)
    return res
