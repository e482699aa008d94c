"""The lab, live: the shipped CI scenario in real namespaces with real tools; the capture is read back with dpkt.

Needs root (network namespaces) and the Debian tools; skipped with the reason otherwise. One run (~50 s) serves
every check of the module; a second, short run is aborted mid-way to prove the clean-up.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from trafficlab.netns import list_namespaces, require_netns
from trafficlab.scenario import load_scenario, parse_scenario

dpkt = pytest.importorskip("dpkt")

TOOLS = ("tcpdump", "mosquitto", "mosquitto_pub", "dnsmasq", "dig", "openssl", "curl", "nmap", "hping3", "arpspoof",
         "hydra", "timeout", "ss")  # fmt: skip
SLACK_S = 0.3  # a packet of an attack lies inside its label window, give or take the poll granularity


pytestmark = [
    pytest.mark.skipif(require_netns(TOOLS) is not None, reason=str(require_netns(TOOLS))),
    pytest.mark.timeout(180),
]


@dataclass
class Pkt:
    ts: float
    src_mac: str
    arp: tuple[int, str, str] | None  # (op, sender ip, sender mac)
    src: str = ""
    dst: str = ""
    proto: str = ""  # tcp | udp | icmp | icmp6
    sport: int = 0
    dport: int = 0
    flags: int = 0
    payload: bytes = b""


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def read_pcap(path: Path) -> list[Pkt]:
    out = []
    with open(path, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            if isinstance(eth.data, dpkt.arp.ARP):
                a = eth.data
                out.append(Pkt(ts, _mac(eth.src), (a.op, socket.inet_ntoa(a.spa), _mac(a.sha))))
                continue
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP):
                fam = socket.AF_INET
            elif isinstance(ip, dpkt.ip6.IP6):
                fam = socket.AF_INET6
            else:
                continue
            p = Pkt(ts, _mac(eth.src), None, socket.inet_ntop(fam, ip.src), socket.inet_ntop(fam, ip.dst))
            t = ip.data
            if isinstance(t, dpkt.tcp.TCP):
                p.proto, p.sport, p.dport, p.flags, p.payload = "tcp", t.sport, t.dport, t.flags, bytes(t.data)
            elif isinstance(t, dpkt.udp.UDP):
                p.proto, p.sport, p.dport, p.payload = "udp", t.sport, t.dport, bytes(t.data)
            elif isinstance(t, dpkt.icmp.ICMP):
                p.proto = "icmp"
            elif isinstance(t, dpkt.icmp6.ICMP6):
                p.proto = "icmp6"
            out.append(p)
    return out


def _isolation_problems(prefix: str) -> list[str]:
    """Every lab namespace: no default route, and no route to a documentation address outside the lab."""
    problems = []
    names = [n for n in list_namespaces() if n.startswith(prefix)]
    if not names:
        return ["no lab namespace found while the lab ran"]
    for ns in names:
        for family, outside in (("-4", "192.0.2.1"), ("-6", "2001:db8::1")):
            default = subprocess.run(["ip", "-n", ns, family, "route", "show", "default"], capture_output=True,
                                     text=True, check=True).stdout.strip()  # fmt: skip
            if default:
                problems.append(f"{ns}: default route {default}")
            get = subprocess.run(["ip", "-n", ns, family, "route", "get", outside], capture_output=True, text=True)
            if get.returncode == 0:
                problems.append(f"{ns}: a route to {outside}: {get.stdout.strip()}")
        links = subprocess.run(["ip", "-n", ns, "-o", "link"], capture_output=True, text=True, check=True).stdout
        names_ = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()}
        if any(not (n in ("lo", "eth0", "br0") or n.startswith("v")) for n in names_):
            problems.append(f"{ns}: unexpected interfaces {sorted(names_)}")
    return problems


def _net_inodes_in_use() -> set[int]:
    inodes = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                inodes.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
    return inodes


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory: pytest.TempPathFactory):
    from trafficlab.lab import run_scenario

    out = tmp_path_factory.mktemp("lab") / "ci"
    isolation: list[list[str]] = []

    def progress(elapsed: float, running: list[str]) -> None:
        if not isolation and elapsed >= 1:
            isolation.append(_isolation_problems("labci"))

    result = run_scenario(load_scenario("ci"), out, progress=progress, prefix="labci")
    labels = json.loads((out / "labels.json").read_text())
    return result, read_pcap(out / "capture.pcap"), labels, isolation


def test_the_run_writes_its_outputs_and_leaves_nothing_behind(ci_run):
    result, packets, _labels, isolation = ci_run
    out = result.out_dir
    for name in ("capture.pcap", "labels.json", "scenario.yaml", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    assert load_scenario(out / "scenario.yaml").name == "ci"
    assert isolation == [[]], "a lab namespace could route a packet out of the lab"
    assert not [n for n in list_namespaces() if n.startswith("labci")]
    assert not [p for p in result.pids if _alive(p)]
    assert not set(result.netns_inodes.values()) & _net_inodes_in_use()
    summary = result.summary
    assert summary["capture"]["returncode"] == 0
    assert summary["capture"]["captured"] == len(packets)
    assert all(d["exit_code"] == 0 for d in summary["devices"].values()), summary["devices"]
    assert summary["wall_s"] < 60


def test_every_benign_kind_is_in_the_capture(ci_run):
    _result, packets, labels, _ = ci_run
    hosts = labels["hosts"]
    gw = {hosts["gateway"]["ipv4"], hosts["gateway"]["ipv6"]}
    seen: dict[str, Counter] = defaultdict(Counter)
    stream_bytes = 0
    for p in packets:
        if p.arp or p.dst not in gw:
            continue
        dev = next((n for n, h in hosts.items() if p.src in (h["ipv4"], h["ipv6"])), None)
        if dev is None or hosts[dev]["role"] != "device":
            continue
        if p.proto == "tcp" and p.dport == 1883 and p.payload:
            seen[dev]["mqtt"] += 1
        elif p.proto == "tcp" and p.dport == 8080 and p.payload.startswith(b"GET /api/v1/status"):
            seen[dev]["http"] += 1
        elif p.proto == "tcp" and p.dport == 8080 and p.payload.startswith(b"PUT /upload/"):
            seen[dev]["stream"] += 1
        elif p.proto == "tcp" and p.dport == 8443 and p.payload[:1] == b"\x16":
            seen[dev]["tls"] += 1  # a TLS handshake record
        elif p.proto == "udp" and p.dport == 53:
            seen[dev]["dns"] += 1
        elif p.proto == "udp" and p.dport == 123 and len(p.payload) == 48:
            seen[dev]["ntp"] += 1
        if dev == "cam" and p.proto == "tcp" and p.dport == 8080:
            stream_bytes += len(p.payload)
    expected = {"thermo": {"mqtt", "dns", "ntp"}, "cam": {"http", "stream", "tls", "dns", "ntp"},
                "plug": {"mqtt", "http", "tls", "dns", "ntp"}}  # fmt: skip
    for dev, kinds in expected.items():
        assert kinds <= set(seen[dev]), f"{dev}: saw only {dict(seen[dev])}"
    assert seen["thermo"]["mqtt"] >= 30  # one message a second for 45 s (+ connect)
    assert stream_bytes >= 256_000 / 8 * 10 * 2  # at least two 10 s segments at 256 kbit/s
    plug6 = hosts["plug"]["ipv6"]
    assert any(p.src == plug6 and p.dport == 1883 for p in packets), "the IPv6 device's MQTT is not IPv6"
    # the gateway answers too
    assert any(p.src in gw and p.sport == 123 and len(p.payload) == 48 for p in packets)
    assert any(p.src in gw and p.sport == 53 for p in packets)


def _attack_packets(packets: list[Pkt], attack: dict) -> list[Pkt]:
    lo, hi = attack["start_us"] / 1e6 - SLACK_S, attack["stop_us"] / 1e6 + SLACK_S
    addrs = set(attack["attacker_addresses"])
    return [p for p in packets if lo <= p.ts <= hi and not p.arp and (p.src in addrs or p.dst in addrs)]


SYN, ACK, RST = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_RST


def test_every_attack_is_in_the_capture_inside_its_label_window(ci_run):
    _result, packets, labels, _ = ci_run
    hosts = labels["hosts"]
    attacker = hosts["attacker"]
    by_name = {a["name"]: a for a in labels["attacks"]}

    def out_of(name: str) -> list[Pkt]:
        a = by_name[name]
        return [p for p in _attack_packets(packets, a) if p.src == attacker["ipv4"] and p.dst in a["victim_addresses"]]

    def syn_ports(name: str, victim: str) -> set[int]:
        ip = hosts[victim]["ipv4"]
        return {p.dport for p in out_of(name) if p.dst == ip and p.proto == "tcp" and p.flags & (SYN | ACK) == SYN}

    assert len(syn_ports("scan_syn", "thermo")) >= 500 and len(syn_ports("scan_syn", "cam")) >= 500
    assert len(syn_ports("scan_connect", "plug")) >= 250
    connect = out_of("scan_connect")
    assert any(p.dport == 23 and p.flags & (SYN | ACK) == ACK for p in connect), "connect scan never completed"
    version = by_name["scan_version"]
    banner = [p for p in _attack_packets(packets, version) if p.sport == 23 and p.payload]
    assert banner, "the version scan never read the telnet banner"
    for name, _victim, port, flags in (("syn_flood", "cam", 8554, SYN), ("ack_flood", "thermo", 80, ACK)):
        hits = [p for p in out_of(name) if p.proto == "tcp" and p.dport == port and p.flags & (SYN | ACK) == flags]
        assert len(hits) >= 300, f"{name}: {len(hits)} packets"
        assert len({p.sport for p in hits}) >= 100, f"{name}: hping3 should vary its source port"
    udp = [p for p in out_of("udp_flood") if p.proto == "udp" and p.dport == 5683 and len(p.payload) == 64]
    assert len(udp) >= 300
    assert len([p for p in out_of("icmp_flood") if p.proto == "icmp"]) >= 300
    gets = [p for p in out_of("http_flood") if p.dport == 8080 and p.payload.startswith(b"GET / ")]
    assert len(gets) >= 250  # 300 requests
    guesses = [p for p in out_of("telnet_guess") if p.dport == 23 and p.payload]
    assert len({p.sport for p in guesses}) >= 4 and len(guesses) >= 40
    # ARP spoofing: the attacker's MAC claims the gateway's address, inside the window, and the victim's traffic
    # to the gateway then crosses the attacker (forwarded frames: attacker MAC, victim IP)
    spoof = by_name["arp_spoof"]
    lo, hi = spoof["start_us"] / 1e6 - SLACK_S, spoof["stop_us"] / 1e6 + SLACK_S
    claims = [p for p in packets if p.arp and p.arp[1] == hosts["gateway"]["ipv4"] and p.arp[2] == attacker["mac"]]
    assert len(claims) >= 2 and all(lo <= p.ts <= hi for p in claims)
    diverted = [p for p in packets if not p.arp and p.src_mac == attacker["mac"] and p.src == hosts["thermo"]["ipv4"]]
    assert diverted and all(lo <= p.ts <= hi for p in diverted)
    # the attacker's address appears only inside attack windows: the labels' clock is the capture's clock
    windows = [(a["start_us"] / 1e6 - SLACK_S, a["stop_us"] / 1e6 + SLACK_S) for a in labels["attacks"]]
    stray = [
        p for p in packets if attacker["ipv4"] in (p.src, p.dst) and not any(lo <= p.ts <= hi for lo, hi in windows)
    ]
    assert not stray, f"{len(stray)} attacker packets outside every label window, first at {stray[0].ts}"


def test_the_labels_file_matches_the_scenario(ci_run):
    _result, _, labels, _ = ci_run
    sc = load_scenario("ci")
    assert labels["format"] == "iotids-lab-labels/1" and labels["scenario"] == "ci" and labels["seed"] == sc.seed
    assert [a["name"] for a in labels["attacks"]] == [a.name for a in sorted(sc.attacks, key=lambda a: a.start_s)]
    cats = {a["name"]: (a["category"], a["sub_category"]) for a in labels["attacks"]}
    assert cats["scan_syn"] == ("Scan", "Scan Hostport") and cats["scan_version"] == ("Scan", "Scan Port OS")
    assert cats["syn_flood"] == ("DoS", "DoS-Synflooding") and cats["udp_flood"] == ("Mirai", "Mirai-UDP Flooding")
    assert cats["telnet_guess"] == ("Mirai", "Mirai-Hostbruteforceg")
    assert cats["arp_spoof"] == ("MITM ARP Spoofing", "MITM ARP Spoofing")
    hosts = labels["hosts"]
    for a, spec in zip(labels["attacks"], sorted(sc.attacks, key=lambda a: a.start_s), strict=True):
        assert a["attacker_addresses"] == [hosts["attacker"]["ipv4"], hosts["attacker"]["ipv6"]]
        assert a["victim_addresses"] == [hosts[t]["ipv4"] for t in spec.targets]
        assert 0 <= a["start_us"] - a["scheduled_start_us"] < 1_500_000, "attack started late"
        assert a["start_us"] < a["stop_us"] <= a["scheduled_stop_us"] + 16_000_000
        window_us = a["scheduled_stop_us"] - a["scheduled_start_us"]
        assert window_us == pytest.approx((spec.stop_s - spec.start_s) * 1e6, abs=2)
    assert labels["start_us"] <= labels["attacks"][0]["start_us"]
    assert labels["attacks"][-1]["stop_us"] <= labels["stop_us"]


def test_label_flows_labels_the_capture(ci_run):
    """Flows made from the capture (first packet of each 5-tuple, IoTID20 Timestamp text) get their attack."""
    from trafficlab.labels import label_flows

    _, packets, labels, _ = ci_run
    first: dict[tuple, Pkt] = {}
    for p in packets:
        if p.arp or p.proto not in ("tcp", "udp"):
            continue
        first.setdefault((p.src, p.dst, p.sport, p.dport, p.proto), p)
    rows = [{"Src_IP": p.src, "Dst_IP": p.dst, "Timestamp": _iotid20_time(p.ts)} for p in first.values()]
    got = label_flows(rows, labels)
    attacker = labels["hosts"]["attacker"]["ipv4"]
    by_cat = Counter(
        label.sub_cat for label, row in zip(got, rows, strict=True) if attacker in (row["Src_IP"], row["Dst_IP"])
    )
    assert not by_cat["Normal"], "an attacker flow was labelled Normal"
    assert by_cat["DoS-Synflooding"] >= 100 and by_cat["Scan Hostport"] >= 500 and by_cat["Mirai-Hostbruteforceg"] >= 4
    plug6 = labels["hosts"]["plug"]["ipv6"]
    assert {label.label for label, row in zip(got, rows, strict=True) if row["Src_IP"] == plug6} == {"Normal"}
    thermo = labels["hosts"]["thermo"]["ipv4"]
    mitm = [label for label, row in zip(got, rows, strict=True) if label.cat == "MITM ARP Spoofing"]
    assert mitm and all(lbl.attack == "arp_spoof" for lbl in mitm)
    assert any(label.label == "Normal" for label, row in zip(got, rows, strict=True) if row["Src_IP"] == thermo)


def _iotid20_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%d/%m/%Y %I:%M:%S %p")


def test_an_error_mid_run_still_removes_every_namespace_and_process(tmp_path: Path):
    from trafficlab.lab import run_scenario

    sc = parse_scenario(
        "name: abort\nduration_s: 30\ndevices: [{name: cam, kind: camera}]\n"
        "attacks: [{name: f, type: udp_flood, targets: [cam], start_s: 1, stop_s: 20, params: {rate_pps: 200}}]\n"
    )
    seen: dict[str, int] = {}

    def progress(elapsed: float, running: list[str]) -> None:
        if elapsed >= 3:
            for ns in list_namespaces():
                if ns.startswith("labab"):
                    seen[ns] = os.stat(f"/run/netns/{ns}").st_ino
            raise RuntimeError("operator pulled the plug")

    with pytest.raises(RuntimeError, match="pulled the plug"):
        run_scenario(sc, tmp_path / "out", progress=progress, prefix="labab")
    assert len(seen) == 3, seen  # gateway, cam, attacker existed while it ran
    assert not [n for n in list_namespaces() if n.startswith("labab")]
    assert not set(seen.values()) & _net_inodes_in_use(), "a process still lives in a deleted lab namespace"
    assert not (tmp_path / "out" / "labels.json").exists()
