"""Smoke test of ``bench/flowmeter.py --quick``: it runs end to end into a tmp dir and reports every case it measured
(speed itself is measured in bench/, never asserted here)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED_PCAPS

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not SHARED_PCAPS, reason="no shared pcaps")
def test_quick_bench_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "results"
    work = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "flowmeter.py"), "--quick", "--out-dir", str(out),
         "--work-dir", str(work), "--packets", "5000"],
        capture_output=True, text=True, timeout=300, cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "flowmeter.json").read_text())
    md = (out / "flowmeter.md").read_text()
    assert res["capture"]["packets"] >= 5000 and not work.exists()  # the generated captures are removed
    expected = {"ours_records", "ours_refrules", "ours_csv"} | ({"ours_mqtt"} if shutil.which("mosquitto") else set())
    cases = res["cases"]
    assert {c["case"] for c in cases.values()} == expected
    for case in cases.values():
        run = case["runs"][0]
        assert run["rc"] == 0 and run["cpu_s"] > 0 and run["flows"] > 0
        if case["case"] != "ours_mqtt":
            assert run["packets"] == res["capture"]["packets"]
    for t in ("iotid20", "reference"):  # every record the meter wrote arrived through the daemon and the broker
        records = cases[f"ours_records/{t}"]["runs"][0]["flows"]
        assert cases[f"ours_csv/{t}"]["runs"][0]["flows"] == records > cases[f"ours_refrules/{t}"]["runs"][0]["flows"]
        if "ours_mqtt/" + t in cases:
            assert cases[f"ours_mqtt/{t}"]["runs"][0]["flows"] == records
    assert [r["active_flows"] for r in res["rss"]] == [1_000, 10_000]
    assert res["orientations"]["orientation_bytes"] > 0
    assert "packets / CPU-s" in md and "RSS < 150 MB with 10,000 active flows" in md
    # --render reproduces the report from the JSON
    again = subprocess.run(
        [sys.executable, str(REPO / "bench" / "flowmeter.py"), "--render", str(out / "flowmeter.json"),
         "--out-dir", str(out)],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )  # fmt: skip
    assert again.returncode == 0 and (out / "flowmeter.md").read_text() == md
