"""Live capture in a network namespace pair: the same packets and records as tcpdump's pcap of the same traffic,
a BPF filter that drops what does not match, kernel drops read, and clear errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowmeter.capture import LiveCapture, LiveCaptureError
from trafficlab.netns import Topology, require_netns

REPO = Path(__file__).resolve().parents[2]
NET = "10.99.0"
A, B = f"{NET}.1", f"{NET}.2"
ONLY_OURS = f"ip and net {NET}.0/24"  # no ARP, no IPv6 neighbour/MLD chatter: the same set in both captures

needs_netns = pytest.mark.skipif(require_netns() is not None, reason=str(require_netns()))

# Runs inside the capturing namespace: LiveCapture → FlowMeter until SIGTERM, then one JSON line on stdout.
CAPTURE_CHILD = """
import json, mmap, signal, sys
from flowmeter.capture import LiveCapture
from flowmeter.meter import FlowMeter
from flowmeter.settings import MeterSettings
iface, bpf, small, hold = sys.argv[1], sys.argv[2] or None, sys.argv[3] == "small", sys.argv[4] == "hold"
page = mmap.PAGESIZE  # 4 KiB, 16 KiB on a Raspberry Pi 5 kernel
ring = {"snaplen": 1024, "block_bytes": page, "ring_bytes": 2 * page} if small else {}  # the smallest ring: 2 pages
records, packets = [], []
meter = FlowMeter(MeterSettings(flow_timeout_us=60_000_000), records.append)
seen = [-1]

def tick(now_us):
    meter.expire(now_us)
    if hold and seen[0] == len(packets):  # held: read what the socket queued, then stop once it is drained
        cap.stop()
    seen[0] = len(packets)

cap = LiveCapture(iface, bpf=bpf, tick_s=0.1, on_tick=tick, **ring)
signal.signal(signal.SIGTERM, lambda *_: cap.stop())
print("ready", flush=True)
if hold:
    sys.stdin.readline()  # the socket queues (and drops) while we do not read
for ts, frame, linktype in cap:
    packets.append([ts, frame.hex(), linktype])
    meter.packet(ts, frame, linktype)
meter.flush()
print(json.dumps({"packets": packets, "records": records, "stats": cap.stats()}, default=str), flush=True)
cap.close()
"""

# Runs in b: echoes UDP datagrams on 5001 (b's kernel answers the rest: RST for TCP, ICMP for ping and port 5002).
UDP_ECHO = """
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((sys.argv[1], 5001)); u.settimeout(10)
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    data, peer = u.recvfrom(2048)
    u.sendto(data.upper(), peer)
"""

# Runs in a: the known sequence. TCP segments and pings are raw frames written with a packet socket (a TCP stack
# would stamp its segments with a delivery time, and then each capture on the receiving side takes its own time
# stamp, a few µs apart — libpcap's too); UDP goes through a real socket.
SENDER = r"""
import socket, struct, sys, time
src_mac, dst_mac, src, dst = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3], sys.argv[4]
udp_5001, udp_5002, echoed = int(sys.argv[5]), int(sys.argv[6]), sys.argv[7] == "echo"

def csum(data):
    data += b"\0" * (len(data) % 2)
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF

def ip(proto, payload, ident):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return dst_mac + src_mac + b"\x08\x00" + hdr + payload

def tcp(sport, dport, seq, ack, flags, data=b"", window=64240):
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, window, 0, 0) + data
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(seg))
    return seg[:16] + struct.pack("!H", csum(pseudo + seg)) + seg[18:]

def icmp_echo(ident, seq):
    msg = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"ping" * 8
    return msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]

raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
raw.bind(("eth0", 0))
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
packets = [(6, tcp(40000, 5000, 1000, 0, SYN))]
seq = 1001
for i in range(8):
    data = bytes([65 + i]) * (40 + 30 * i)
    packets.append((6, tcp(40000, 5000, seq, 1, PSH | ACK, data)))
    seq += len(data)
packets.append((6, tcp(40000, 5000, seq, 1, FIN | ACK)))
packets.append((6, tcp(40001, 5003, 7, 0, SYN, window=1024)))
packets += [(1, icmp_echo(77, n)) for n in range(5)]
for n, (proto, payload) in enumerate(packets):
    raw.send(ip(proto, payload, 100 + n))
    time.sleep(0.001)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
for i in range(udp_5001):
    u.sendto(b"u" * (20 + i % 50), (dst, 5001))
    if echoed:
        u.recv(2048)
for i in range(udp_5002):
    u.sendto(b"v" * 30, (dst, 5002))
time.sleep(0.1)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture
def pair():
    """Namespaces a and b joined by a veth (eth0 on both sides), addresses only inside them."""
    with Topology() as topo:
        a, b = topo.namespace("a"), topo.namespace("b")
        topo.link(a, "eth0", b, "eth0")
        topo.address(a, "eth0", f"{A}/24")
        topo.address(b, "eth0", f"{B}/24")
        yield a, b


def start_capture(ns, bpf: str, *, iface: str = "eth0", small: bool = False, hold: bool = False) -> subprocess.Popen:
    proc = ns.popen(
        [sys.executable, "-c", CAPTURE_CHILD, iface, bpf, "small" if small else "-", "hold" if hold else "run"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO,
    )  # fmt: skip
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"capture child did not start: {line!r} {proc.stderr.read() if not line else ''}"
    return proc


def finish_capture(proc: subprocess.Popen, *, signal_it: bool = True) -> dict:
    if signal_it:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def mac(ns) -> str:
    return json.loads(ns.run(["ip", "-j", "link", "show", "eth0"]).stdout)[0]["address"].replace(":", "")


def send(a, b, *, udp_5001: int, udp_5002: int, echoed: bool = False) -> None:
    """The known sequence from a to b (bounded: 17 raw frames, then the datagrams; each step has a timeout)."""
    argv = [sys.executable, "-c", SENDER, mac(a), mac(b), A, B, str(udp_5001), str(udp_5002), "echo" * echoed]
    a.run(argv, timeout=30)


def canonical(records: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in records)


@needs_netns
@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_live_records_equal_the_records_of_tcpdumps_pcap(pair, tmp_path: Path) -> None:
    from flowmeter.meter import FlowMeter
    from flowmeter.pcapfile import read_capture
    from flowmeter.settings import MeterSettings

    a, b = pair
    echo = b.popen([sys.executable, "-c", UDP_ECHO, B, "100"], stdout=subprocess.PIPE, text=True)
    assert echo.stdout.readline().strip() == "ready"
    pcap = tmp_path / "same-traffic.pcap"
    # a small snaplen: libpcap sizes its ring slots by it, and at 256 KiB tcpdump drops bursts (veth MTU is 1500)
    dump = b.popen(
        ["tcpdump", "-i", "eth0", "-n", "-U", "--immediate-mode", "-s", "2048", "-B", "16384", "-Z", "root",
         "-w", str(pcap), ONLY_OURS],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert "listening on" in dump.stderr.readline()
    live = start_capture(b, ONLY_OURS)

    send(a, b, udp_5001=100, udp_5002=5, echoed=True)
    assert echo.wait(timeout=10) == 0

    got = finish_capture(live)
    deadline = time.monotonic() + 10  # tcpdump (-U) writes each packet as libpcap hands it over: let it catch up
    while sum(1 for _ in read_capture(pcap)) < len(got["packets"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    dump.send_signal(signal.SIGTERM)
    dump.wait(timeout=10)

    from_pcap = [[ts, bytes(frame).hex(), lt] for ts, frame, lt in read_capture(pcap)]
    # 17 frames + b's 11 RSTs and 5 echo replies, 100 datagrams + 100 echoes, 5 + up to 5 ICMP port unreachable
    assert 238 <= len(from_pcap) <= 243
    assert got["packets"] == from_pcap  # same bytes, same kernel time stamps (µs), same link type
    assert got["stats"]["packets"] == len(from_pcap)

    records: list[dict] = []
    meter = FlowMeter(MeterSettings(flow_timeout_us=60_000_000), records.append)
    for ts, frame, linktype in read_capture(pcap):
        meter.packet(ts, frame, linktype)
    meter.flush()
    assert len(records) >= 5  # TCP 5000 (split by the FIN), TCP 5003, ping, UDP 5001, UDP 5002 (+ its ICMP)
    assert canonical(got["records"]) == canonical(records)


@needs_netns
def test_bpf_filter_drops_what_does_not_match(pair) -> None:
    a, b = pair
    live = start_capture(b, "udp dst port 5001")
    send(a, b, udp_5001=40, udp_5002=30)
    got = finish_capture(live)
    assert len(got["packets"]) == 40
    for _, hexframe, _ in got["packets"]:
        frame = bytes.fromhex(hexframe)
        assert frame[12:14] == b"\x08\x00" and frame[23] == 17  # IPv4, UDP
        ihl = (frame[14] & 0x0F) * 4
        assert int.from_bytes(frame[14 + ihl + 2 : 14 + ihl + 4], "big") == 5001


@needs_netns
def test_kernel_drops_are_read_when_the_ring_overflows(pair) -> None:
    a, b = pair
    live = start_capture(b, "udp dst port 5001", small=True, hold=True)  # the smallest ring, not read yet
    send(a, b, udp_5001=400, udp_5002=0)
    live.stdin.write("go\n")
    live.stdin.flush()
    got = finish_capture(live, signal_it=False)  # it stops by itself once drained
    stats = got["stats"]
    assert stats["kernel_drops"] > 0
    assert stats["packets"] + stats["kernel_drops"] == 400  # every datagram either delivered or counted as dropped
    assert stats["if_drops"] >= 0


# Frames written as given: by a packet socket on an interface, or into a tun device (raw IP, no link header).
WRITE_FRAMES = """
import fcntl, os, socket, struct, sys
iface, frames = sys.argv[1], [bytes.fromhex(h) for h in sys.argv[3:]]
if sys.argv[2] == "tun":
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", iface.encode(), 0x0001 | 0x1000))  # TUNSETIFF: IFF_TUN|IFF_NO_PI
    for f in frames:
        os.write(fd, f)
else:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((iface, 0))
    for f in frames:
        s.send(f)
"""


def udp_ipv4(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4/UDP packet (UDP checksum 0 = none, allowed for IPv4)."""
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 1, 0x4000, 64, 17, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))  # fmt: skip
    words = struct.unpack("!10H", hdr)
    c = sum(words)
    c = (c >> 16) + (c & 0xFFFF)
    hdr = hdr[:10] + struct.pack("!H", ~(c + (c >> 16)) & 0xFFFF) + hdr[12:]
    return hdr + struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


@needs_netns
def test_vlan_tags_the_kernel_moved_out_of_the_frame_are_put_back(pair) -> None:
    a, b = pair
    eth = bytes.fromhex(mac(b)) + bytes.fromhex(mac(a))
    sent = [
        eth + struct.pack("!HH", 0x8100, 0x2000 | 10) + b"\x08\x00" + udp_ipv4(A, B, 40000, 5001, b"vlan%d" % i)
        for i in range(5)
    ]
    live = start_capture(b, "udp dst port 5001")  # the kernel filters the untagged frame: plain filters match
    a.run([sys.executable, "-c", WRITE_FRAMES, "eth0", "eth", *(f.hex() for f in sent)], timeout=30)
    got = finish_capture(live)
    assert [bytes.fromhex(h) for _, h, _ in got["packets"]] == sent  # tag (priority 1, VLAN 10) restored in place
    assert len(got["records"]) == 1 and got["records"][0]["Dst_Port"] == 5001


@needs_netns
def test_loopback_packets_are_seen_once(pair) -> None:
    _, b = pair
    live = start_capture(b, "udp dst port 5001", iface="lo")
    b.run([sys.executable, "-c", "import socket\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
           "for i in range(7):\n    u.sendto(b'x' * i, ('127.0.0.1', 5001))"], timeout=30)  # fmt: skip
    got = finish_capture(live)
    assert len(got["packets"]) == 7  # the kernel shows each twice (out, in); one copy is handed out
    assert {lt for _, _, lt in got["packets"]} == {1}


@needs_netns
def test_a_tun_device_gives_raw_ip_packets(pair) -> None:
    _, b = pair
    b.run(["ip", "tuntap", "add", "mode", "tun", "name", "tun0"])
    b.run(["ip", "link", "set", "tun0", "up"])
    sent = [udp_ipv4("10.55.0.2", "10.55.0.1", 40000 + i, 5001, b"tun") for i in range(3)]
    live = start_capture(b, "udp dst port 5001", iface="tun0")
    b.run([sys.executable, "-c", WRITE_FRAMES, "tun0", "tun", *(f.hex() for f in sent)], timeout=30)
    got = finish_capture(live)
    assert [(bytes.fromhex(h), lt) for _, h, lt in got["packets"]] == [(f, 101) for f in sent]  # LINKTYPE_RAW
    assert len(got["records"]) == 3


def test_missing_interface_is_a_clear_error() -> None:
    with pytest.raises(LiveCaptureError, match="no interface 'nosuch0'"):
        LiveCapture("nosuch0")


def test_bad_filter_is_a_clear_error() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs CAP_NET_RAW to get as far as the filter")
    with pytest.raises(LiveCaptureError, match="bad filter"):
        LiveCapture("lo", bpf="udp port")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_without_cap_net_raw_the_error_says_so() -> None:
    code = (
        "from flowmeter.capture import LiveCapture, LiveCaptureError\n"
        "try:\n    LiveCapture('lo')\nexcept LiveCaptureError as e:\n    print(e)\n"
    )
    proc = subprocess.run(
        ["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw", sys.executable, "-c", code],
        capture_output=True, text=True, env=_env(), cwd=REPO, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "needs CAP_NET_RAW" in proc.stdout
