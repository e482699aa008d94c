"""Parity with the Java reference (CICFlowMeter 99dc827) on every shared pcap, for two timeout pairs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.flowmeter_parity import (
    PCAP_DIR,
    TIMEOUT_SETS,
    Comparison,
    compare,
    java_available,
    junk_pairs,
    read_reference,
    run_ours,
    run_reference,
    shared_pcaps,
)

PCAPS = shared_pcaps()
pytestmark = [
    pytest.mark.skipif(not java_available(), reason="java or ../shared/tools/cicflowmeter missing (Debian JRE + jars)"),
    pytest.mark.skipif(not PCAPS, reason="no shared pcaps in ../shared/pcaps"),
]


@pytest.fixture(scope="session")
def reference_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, tuple[int, int]], Path]:
    """One reference run per timeout pair over the whole pcap folder (one JVM each)."""
    runs = {}
    for name, timeouts in TIMEOUT_SETS.items():
        outdir = run_reference(PCAP_DIR, tmp_path_factory.mktemp(name.split()[0]), timeouts)
        for pcap in PCAPS:
            runs[(pcap.name, timeouts)] = outdir / f"{pcap.name}_Flow.csv"
    return runs


@pytest.mark.parametrize("timeouts", list(TIMEOUT_SETS.values()), ids=[n.split()[0] for n in TIMEOUT_SETS])
@pytest.mark.parametrize("pcap", PCAPS, ids=[p.stem for p in PCAPS])
def test_every_reference_flow_is_found_and_agrees(
    pcap: Path, timeouts: tuple[int, int], reference_runs: dict[tuple[str, tuple[int, int]], Path]
) -> None:
    ref = read_reference(reference_runs[(pcap.name, timeouts)])
    ours, stats = run_ours(pcap, timeouts)
    result: Comparison = compare(pcap, ref, ours, junk_pairs(pcap), timeouts)
    assert not result.missing, f"reference flows not found: {result.missing[:5]}"
    assert not result.column_mismatch, result.examples
    assert not result.extra, f"flows of ours that are not deliberate: {result.extra[:5]}"
    assert result.matched + len(result.missing_junk) == len(ref)
    # extras are exactly the deliberate ones: single-packet and IPv6 flows
    assert result.matched + result.extra_single + result.extra_ipv6 == len(ours)
    assert stats["packets"] == stats["flow_packets"] + sum(stats["bad"].values()) + sum(stats["ignored"].values())
