"""trafficlab.netns: real namespaces, veths and bridges; everything gone afterwards, nothing routed out."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from trafficlab.netns import Topology, list_namespaces, require_netns, sweep_stale

pytestmark = pytest.mark.skipif(require_netns() is not None, reason=str(require_netns()))


ECHO = """
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 7777))
print("ready", flush=True)
data, peer = s.recvfrom(100)
s.sendto(data, peer)
"""
SEND = """
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(b"hello", (sys.argv[1], 7777))
assert s.recv(100) == b"hello"
"""


def reachable(src, dst, addr: str) -> bool:
    """A UDP datagram from ``src`` to ``addr`` (bound in ``dst``) and its echo come back (one each, bounded)."""
    server = dst.popen([sys.executable, "-c", ECHO, addr], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        return src.run([sys.executable, "-c", SEND, addr], check=False, timeout=5).returncode == 0
    finally:
        server.kill()
        server.wait()


def routes(ns, family: str) -> list[dict]:
    return json.loads(ns.run(["ip", "-j", family, "route", "show", "table", "all"]).stdout or "[]")


def test_veth_pair_carries_v4_and_v6_inside_and_is_deleted_on_exit() -> None:
    with Topology() as topo:
        a, b = topo.namespace("a"), topo.namespace("b")
        topo.link(a, "veth0", b, "veth0")
        topo.address(a, "veth0", "10.77.0.1/24")
        topo.address(b, "veth0", "10.77.0.2/24")
        topo.address(a, "veth0", "fd77::1/64")
        topo.address(b, "veth0", "fd77::2/64")
        assert reachable(a, b, "10.77.0.2")
        assert reachable(b, a, "fd77::1")
        names = [a.name, b.name]
        assert set(names) <= set(list_namespaces())
        for ns in (a, b):
            for fam in ("-4", "-6"):
                assert not [r for r in routes(ns, fam) if r.get("dst") == "default"], f"default route in {ns}"
        # no address of ours is reachable from the host: the veths live only in the namespaces
        host_links = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
        assert "10.77.0.1" not in host_links
    assert not set(names) & set(list_namespaces())


def test_bridge_joins_three_hosts() -> None:
    with Topology() as topo:
        gw, d1, d2 = topo.namespace("gw"), topo.namespace("dev1"), topo.namespace("dev2")
        br = topo.bridge(gw)
        for i, dev in enumerate((d1, d2), start=1):
            topo.link(dev, "eth0", gw, f"p{i}")
            topo.attach(gw, f"p{i}", br)
            topo.address(dev, "eth0", f"10.78.0.{10 + i}/24")
        topo.address(gw, br, "10.78.0.1/24")
        assert reachable(d1, d2, "10.78.0.12")
        assert reachable(d2, gw, "10.78.0.1")


def test_processes_killed_and_namespaces_deleted_after_an_error() -> None:
    procs = []
    with pytest.raises(RuntimeError, match="boom"), Topology() as topo:
        ns = topo.namespace("x")
        procs.append(ns.popen(["sleep", "60"]))
        # a process the topology did not start itself (a daemon that forked away) is killed too
        ns.run(["sh", "-c", "setsid sleep 61 >/dev/null 2>&1 < /dev/null &"])
        deadline = time.monotonic() + 5
        while len(ns.pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        orphans = [p for p in ns.pids() if p != procs[0].pid]
        assert orphans
        name = ns.name
        raise RuntimeError("boom")
    assert procs[0].poll() is not None
    assert name not in list_namespaces()
    for pid in orphans:
        assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_sweep_deletes_a_dead_runs_namespaces_but_not_a_live_ones() -> None:
    stale = "idst" + "abc123" + "-gw"  # family "idst": a run that died without cleaning up (no lock held)
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        with Topology("idst") as live:  # entering sweeps the family
            assert stale not in list_namespaces()
            ns = live.namespace("gw")
            assert sweep_stale("idst") == []
            assert ns.name in list_namespaces()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, check=False)


def test_names_are_checked() -> None:
    with Topology() as topo:
        ns = topo.namespace("a")
        with pytest.raises(ValueError, match="interface name"):
            topo.up(ns, "x" * 16)
        with pytest.raises(ValueError, match="role"):
            topo.namespace("Bad/Role")
        with pytest.raises(ValueError, match="already exists"):
            topo.namespace("a")
        assert topo.namespace("smart-plug_2").name.endswith("-smart-plug_2")
    with pytest.raises(ValueError, match="prefix"):
        Topology("way-too-long-prefix")
