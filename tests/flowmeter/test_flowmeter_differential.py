"""Differential test against the Java reference: seeded random captures (hosts, ports, flags, payloads, gaps around
both timeouts, loopback pairs, time going backwards) must give exactly the reference's flows."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pcap_craft import ACK, CWR, ECE, FIN, PSH, RST, SYN, T0, URG, ether, icmp_echo, ipv4, tcp, udp, write_pcap

from bench.flowmeter_parity import compare, java_available, junk_pairs, read_reference, run_ours, run_reference

HOSTS = ["10.0.0.1", "10.0.0.2", "192.168.1.5", "172.16.0.9"]
PORTS = [(1000, 80), (1001, 80), (53000, 53), (2000, 2001)]
FLAGS = [SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST, ACK | URG, ACK | ECE | CWR, FIN | PSH | ACK]


def random_capture(seed: int, gaps: list[int], n: int = 2500) -> list[tuple[int, bytes]]:
    rnd = random.Random(seed)
    t = T0
    out = []
    for _ in range(n):
        t += rnd.choice(gaps)
        a, b = rnd.sample(HOSTS, 2)
        if rnd.random() < 0.05:
            b = a  # both IPs equal: the two directions are separate flows
        sport, dport = rnd.choice(PORTS)
        if rnd.random() < 0.5:
            a, b, sport, dport = b, a, dport, sport
        payload = b"p" * rnd.choice([0, 0, 1, 10, 100, 1460])
        kind = rnd.random()
        if kind < 0.6:
            flags = rnd.choice(FLAGS)
            if rnd.random() < 0.7:
                flags &= ~FIN
            l3 = ipv4(a, b, 6, tcp(sport, dport, flags, payload, window=rnd.randrange(65536)))
        elif kind < 0.9:
            l3 = ipv4(a, b, 17, udp(sport, dport, payload))
        else:
            l3 = ipv4(a, b, 1, icmp_echo(8, payload[:64]))
        out.append((t, ether(l3)))
    return out


SLOW = [0, 1, 5, 50, 300, 900, 1001, 1500, 5000, 30_000, 99_999, 100_001, 2_000_000, 5_000_001, -40]
FAST = [0, 1, 2, 10, 50, 200, 999, 1000, 1001, 3000, 20_000, -5]


@pytest.mark.skipif(not java_available(), reason="java or ../shared/tools/cicflowmeter missing (Debian JRE + jars)")
@pytest.mark.parametrize(
    ("seed", "gaps", "timeouts"),
    [(1, SLOW, (120_000_000, 5_000_000)), (2, SLOW, (100_000, 1_000)), (3, FAST, (100_000, 1_000))],
)
def test_random_capture_equals_the_reference(
    tmp_path: Path, seed: int, gaps: list[int], timeouts: tuple[int, int]
) -> None:
    pcap = write_pcap(tmp_path / f"random{seed}.pcap", random_capture(seed, gaps))
    ref = read_reference(run_reference(pcap, tmp_path / "ref", timeouts))
    ours, _ = run_ours(pcap, timeouts)
    result = compare(pcap, ref, ours, junk_pairs(pcap), timeouts)
    assert result.ok, (result.missing[:5], result.extra[:5], result.examples)
    assert result.matched == len(ref) > 40
