"""``iotids-demo --pcap``: a real capture through the flow meter, Mosquitto and the agent, every record answered."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PCAPS = REPO.parent / "shared" / "pcaps"


@pytest.mark.slow
def test_demo_meters_a_capture_and_every_flow_gets_a_verdict(tmp_path, quick_run):
    pcap = PCAPS / "zeek__dnp3__dnp3.pcap"
    if not pcap.exists():
        pytest.skip(f"shared capture not found at {pcap}")
    out = tmp_path / "run"
    shutil.copytree(quick_run.out_dir, out)
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--skip-training", "--out", str(out), "--pcap", str(pcap)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "demo_pcap_summary.json").read_text())
    assert summary["flows_published"] > 0
    assert summary["missing"] == 0 and summary["verdicts"] + summary["dead_lettered"] == summary["flows_published"]
