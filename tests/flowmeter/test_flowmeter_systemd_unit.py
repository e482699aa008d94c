"""The flow meter's systemd unit: only CAP_NET_RAW, notify + watchdog, ordered before the agent, hardening score
(systemd-analyze security --offline ≤ 2.5) and a clean verify."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from systemd_units import systemd_analyze
from systemd_units import unit_settings as shared_unit_settings

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "config" / "edge-ids-flowmeter.service"
MAX_EXPOSURE = 2.5
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def unit_settings() -> dict[str, list[str]]:
    return shared_unit_settings(UNIT)


@pytest.fixture(scope="module")
def analyze() -> str:
    return systemd_analyze()


def test_unit_has_only_cap_net_raw_and_notifies():
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"] and s["WatchdogSec"] == ["30"]
    assert s["AmbientCapabilities"] == ["CAP_NET_RAW"] and s["CapabilityBoundingSet"] == ["CAP_NET_RAW"]
    assert s["NoNewPrivileges"] == ["yes"] and s["DynamicUser"] == ["yes"]
    assert s["StateDirectory"] == ["edge-ids-flowmeter"] and s["ProtectSystem"] == ["strict"]
    assert set(s["RestrictAddressFamilies"][0].split()) == {"AF_PACKET", "AF_INET", "AF_INET6", "AF_UNIX"}
    assert s["MemoryDenyWriteExecute"] == ["yes"] and "@system-service" in s["SystemCallFilter"]
    assert "edge-ids-agent.service" in s["Before"]
    assert "PrivateUsers" not in s, "CAP_NET_RAW in a user namespace does not reach the host's interfaces"
    assert "--config /etc/edge-ids/flowmeter.yaml" in s["ExecStart"][0]


def test_security_exposure_at_most_2_5(analyze):
    cmd = [analyze, "security", "--offline=true", "--threshold=25", str(UNIT)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert match, proc.stdout[-500:] + proc.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", f"the unit parses with warnings: {proc.stderr}"


def test_verify_in_a_scratch_root(analyze, tmp_path):
    if not SYSTEM_UNITS.is_dir():
        pytest.skip(f"{SYSTEM_UNITS} not found")
    shutil.copytree(SYSTEM_UNITS, tmp_path / "usr/lib/systemd/system", symlinks=True)
    stub = tmp_path / "opt/edge-ids/venv/bin/iotids-flowmeter"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, tmp_path / "etc/systemd/system" / UNIT.name)
    proc = subprocess.run([analyze, "verify", f"--root={tmp_path}", "--man=no", UNIT.name], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout + proc.stderr == "", proc.stdout + proc.stderr
