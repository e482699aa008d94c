"""Running each tool in a child pinned to one core (CPU and peak RSS from ``wait4``): our meter, the Java reference,
the PyPI package, the memory probes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flowmeter_programs import METER_PROGRAM, ORIENT_PROGRAM, RSS_PROGRAM

from flowmeter.settings import REFERENCE_TIMEOUTS

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IOTIDS_SHARED_DIR", REPO.parent / "shared"))
ORACLE = SHARED / "tools" / "cicflowmeter" / "run.sh"


def run_child(cmd: list[str], core: int | None, env: dict[str, str] | None = None, timeout: float = 3600) -> dict:
    """Run ``cmd`` pinned to ``core``; its stdout, exit status, CPU seconds (user+sys incl. waited-for children),
    peak RSS (MB) and wall time, from ``wait4``."""
    if core is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(core), *cmd]
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return {"rc": proc.returncode, "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_mb": ru.ru_maxrss / 1024,
            "wall_s": wall, "stdout": stdout, "stderr": stderr[-3000:]}  # fmt: skip


def py_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


EXPECTED_RECORDS: dict[tuple[str, tuple[int, int]], int] = {}  # (pcap, timeouts) → records the meter wrote


def ours(pcap: Path, mode: str, timeouts: tuple[int, int], core: int | None, work: Path) -> dict:
    out = work / "ours.csv"
    args = [str(pcap), mode, str(out), str(timeouts[0]), str(timeouts[1])]
    r = run_child([sys.executable, "-c", METER_PROGRAM, *args], core, py_env())
    if r["rc"] != 0:
        raise RuntimeError(f"meter child failed: {r['stderr']}")
    res = json.loads(r["stdout"].strip().splitlines()[-1])
    if mode == "records":
        EXPECTED_RECORDS[(str(pcap), timeouts)] = res["flows"]
    if mode == "csv":
        res["csv_bytes"] = out.stat().st_size
        out.unlink()
    return {**r, **res, "stdout": "", "stderr": ""}


def java(pcap: Path, timeouts: tuple[int, int], opts: str, core: int | None, work: Path) -> dict:
    out = work / "java"
    env = {**os.environ, "TZ": "UTC", "JAVA_OPTS": opts}
    env.pop("CFM_FLOW_TIMEOUT", None)
    env.pop("CFM_ACTIVITY_TIMEOUT", None)
    if timeouts != REFERENCE_TIMEOUTS:
        env["CFM_FLOW_TIMEOUT"], env["CFM_ACTIVITY_TIMEOUT"] = str(timeouts[0]), str(timeouts[1])
    r = run_child(["bash", str(ORACLE), str(pcap), str(out)], core, env)
    csv_path = out / f"{pcap.name}_Flow.csv"
    if r["rc"] != 0 or not csv_path.exists():
        raise RuntimeError(f"reference failed ({r['rc']}): {r['stderr'][-500:]}")
    with open(csv_path, "rb") as fh:
        flows = sum(1 for _ in fh) - 1
    total = next((ln for ln in (r["stdout"] + r["stderr"]).splitlines() if "Packet stats" in ln), "")
    shutil.rmtree(out, ignore_errors=True)
    return {**r, "flows": flows, "packet_stats": total.strip(), "stdout": "", "stderr": ""}


def pypi(pcap: Path, python_bin: Path, core: int | None, work: Path) -> dict:
    out = work / "pypi.csv"
    out.unlink(missing_ok=True)
    exe = python_bin.parent / "cicflowmeter"
    r = run_child([str(exe), "-f", str(pcap), "-c", str(out)], core, {**os.environ})
    flows = 0
    if out.exists():
        with open(out, "rb") as fh:
            flows = max(0, sum(1 for _ in fh) - 1)
        out.unlink()
    if r["rc"] != 0:
        raise RuntimeError(f"cicflowmeter failed ({r['rc']}): {r['stderr'][-500:]}")
    return {**r, "flows": flows, "stdout": "", "stderr": r["stderr"][-300:]}


def pypi_version(python_bin: Path) -> str | None:
    if not python_bin.exists():
        return None
    code = "import importlib.metadata as m; print(m.version('cicflowmeter'), m.version('scapy'))"
    probe = subprocess.run([str(python_bin), "-c", code], capture_output=True, text=True, check=False)
    return probe.stdout.strip() if probe.returncode == 0 else None


def rss(n: int, kind: str, max_flows: int, core: int | None) -> dict:
    r = run_child([sys.executable, "-c", RSS_PROGRAM, str(n), kind, str(max_flows)], core, py_env())
    if r["rc"] != 0:
        raise RuntimeError(f"rss child failed: {r['stderr']}")
    return {**json.loads(r["stdout"].strip().splitlines()[-1]), "cpu_s": r["cpu_s"], "maxrss_mb": r["maxrss_mb"]}


def orientation_cost(n: int, core: int | None) -> dict:
    r = run_child([sys.executable, "-c", ORIENT_PROGRAM, str(n)], core, py_env())
    if r["rc"] != 0:
        raise RuntimeError(f"orientation child failed: {r['stderr']}")
    return json.loads(r["stdout"].strip().splitlines()[-1])
