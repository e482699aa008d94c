"""Helpers for the tests of the shipped systemd units: a unit's settings, and systemd-analyze when it is usable."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

OFFLINE_SECURITY_SINCE = 252  # --offline needs 250, --threshold 251; the units target 252


def unit_settings(unit: Path) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file, values in file order (comments and section headers skipped)."""
    settings: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def systemd_version() -> int:
    """The installed systemd's version (skips the test when systemd-analyze is missing)."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.match(r"systemd (\d+)", out)
    assert match, f"expected 'systemd NNN' from --version, got {out[:80]!r}"
    return int(match.group(1))


def systemd_analyze() -> str:
    """systemd-analyze, if it can rate a unit offline (else the test is skipped)."""
    if systemd_version() < OFFLINE_SECURITY_SINCE:
        pytest.skip(f"systemd-analyze too old for --offline security analysis (need >= {OFFLINE_SECURITY_SINCE})")
    return shutil.which("systemd-analyze") or "systemd-analyze"
