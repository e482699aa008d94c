"""Live capture cost: the meter's AF_PACKET source (``flowmeter.capture``) vs libpcap through pcapy-ng.

A namespace pair joined by a veth (``trafficlab.netns``); a raw packet socket in one namespace sends a burst of
identical UDP frames as fast as Python can; a capture process in the other namespace takes them through a BPF filter
and stops once the burst is over. Reported per consumer (median of the rounds): packets delivered, kernel drops,
the consumer's CPU time per packet (packets per CPU-second: what one core could take), and the sender's rate.
On a shared 2-core VM the sender and the capture compete for the cores, so read the CPU cost, not the drops.

    python bench/capture.py                                  # AF_PACKET, AF_PACKET + meter, pcapy-ng if found
    python bench/capture.py --pcapy-python /tmp/venv-pcapy/bin/python   # pcapy-ng installed in its own venv

pcapy-ng is not a dependency of the product: install it in a throw-away venv for this comparison
(``python3 -m venv /tmp/venv-pcapy && /tmp/venv-pcapy/bin/pip install pcapy-ng``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trafficlab.netns import Netns, Topology, require_netns  # noqa: E402

FILTER = "udp dst port 6000"
IDLE_STOP_S = 0.5

_AFPACKET = """
import json, sys, time
from flowmeter.capture import LiveCapture
with_meter = sys.argv[1] == "meter"
if with_meter:
    from flowmeter.meter import FlowMeter
    from flowmeter.settings import MeterSettings
    out = []
    meter = FlowMeter(MeterSettings(), out.append)
n, last, cpu0 = 0, [0.0], [None]
def tick(now_us):
    if n and time.monotonic() - last[0] > IDLE:
        cap.stop()
cap = LiveCapture("eth0", bpf=FILTER, snaplen=2048, tick_s=0.1, on_tick=tick)
print("ready", flush=True)
for ts, frame, linktype in cap:
    if n == 0:
        cpu0[0] = time.process_time()
    n += 1
    last[0] = time.monotonic()
    if with_meter:
        meter.packet(ts, frame, linktype)
cpu = time.process_time() - cpu0[0]
st = cap.stats()
print(json.dumps({"packets": n, "kernel_drops": st["kernel_drops"], "cpu_s": cpu}), flush=True)
"""

# libpcap's read timeout does not fire while no packet arrives (TPACKET_V3; pcap(3PCAP) says so), so a loop that must
# wake up for expiry uses non-blocking mode and its own select() on the handle's descriptor.
_PCAPY = """
import json, select, sys, time
import pcapy
p = pcapy.create("eth0")
p.set_snaplen(2048)
p.set_timeout(100)
p.set_buffer_size(4 << 20)
p.activate()
p.setfilter(FILTER)
p.setnonblock(1)
fd = p.getfd()
print("ready", flush=True)
n, last, cpu0 = 0, 0.0, None
while not (n and time.monotonic() - last > IDLE):
    select.select([fd], [], [], 0.1)
    while True:
        hdr, data = p.next()
        if hdr is None:
            break
        if n == 0:
            cpu0 = time.process_time()
        n += 1
        hdr.getts()
        last = time.monotonic()
cpu = time.process_time() - cpu0
recv, drop, ifdrop = p.stats()
print(json.dumps({"packets": n, "kernel_drops": drop, "cpu_s": cpu}), flush=True)
"""

_SENDER = """
import socket, struct, sys, time
src_mac, dst_mac, n = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), int(sys.argv[3])
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + 64, 1, 0x4000, 64, 17, 0,
                 socket.inet_aton("10.98.0.1"), socket.inet_aton("10.98.0.2"))
frame = dst_mac + src_mac + b"\\x08\\x00" + ip + struct.pack("!HHHH", 40000, 6000, 8 + 64, 0) + b"x" * 64
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
send = s.send
t0 = time.monotonic()
for _ in range(n):
    send(frame)
print(n / (time.monotonic() - t0), flush=True)
"""


def mac(ns: Netns) -> str:
    return json.loads(ns.run(["ip", "-j", "link", "show", "eth0"]).stdout)[0]["address"].replace(":", "")


def one_run(a: Netns, b: Netns, python: str, code: str, arg: str, packets: int) -> dict:
    code = code.replace("FILTER", repr(FILTER)).replace("IDLE", repr(IDLE_STOP_S))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    consumer = b.popen([python, "-c", code, arg], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = consumer.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"consumer did not start: {line!r} {consumer.stderr.read()}")
    rate = float(a.run([sys.executable, "-c", _SENDER, mac(a), mac(b), str(packets)], timeout=300).stdout)
    try:
        out, err = consumer.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        consumer.kill()
        consumer.communicate()
        raise RuntimeError("consumer did not finish within 60 s") from None
    if consumer.returncode != 0:
        raise RuntimeError(f"consumer failed: {err}")
    res = json.loads(out.strip().splitlines()[-1])
    res["sender_pps"] = rate
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=200_000, help="frames per burst")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pcapy-python", default="/tmp/venv-pcapy/bin/python", help="a python with pcapy-ng installed")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "capture.md")
    args = ap.parse_args(argv)
    reason = require_netns()
    if reason:
        sys.exit(f"cannot run: {reason}")
    consumers = [
        ("flowmeter.capture (AF_PACKET, TPACKET_V3 ring)", sys.executable, _AFPACKET, "-"),
        ("flowmeter.capture + FlowMeter", sys.executable, _AFPACKET, "meter"),
    ]
    pcapy_version = None
    if Path(args.pcapy_python).exists():
        probe = subprocess.run(
            [args.pcapy_python, "-c", "import importlib.metadata as m; print(m.version('pcapy-ng'))"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if probe.returncode == 0:
            pcapy_version = probe.stdout.strip()
            consumers.append((f"pcapy-ng {pcapy_version} (libpcap, next())", args.pcapy_python, _PCAPY, "-"))
    results: dict[str, list[dict]] = {name: [] for name, *_ in consumers}
    started = time.monotonic()
    load0 = os.getloadavg()
    with Topology("bench") as topo:
        a, b = topo.namespace("a"), topo.namespace("b")
        topo.link(a, "eth0", b, "eth0")
        topo.address(a, "eth0", "10.98.0.1/24")
        topo.address(b, "eth0", "10.98.0.2/24")
        for _ in range(args.rounds):  # interleaved, so load changes hit every consumer alike
            for name, python, code, arg in consumers:
                results[name].append(one_run(a, b, python, code, arg, args.packets))
    rows = []
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        rows.append(
            f"| {name} | {med['packets']:,.0f} | {med['kernel_drops']:,.0f} | {med['cpu_s'] / med['packets'] * 1e6:.2f}"
            f" | {med['packets'] / med['cpu_s']:,.0f} | {med['sender_pps']:,.0f} |"
        )
    text = "\n".join(
        [
            "# Live capture cost: AF_PACKET (flowmeter.capture) vs libpcap (pcapy-ng)",
            "",
            f"- Command: `python bench/capture.py --packets {args.packets} --rounds {args.rounds}` — "
            f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}, {time.monotonic() - started:.0f} s",
            f"- Machine: {platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}, Python "
            f"{platform.python_version()}; load average at start {load0[0]:.2f}, at end {os.getloadavg()[0]:.2f}"
            " (a VM shared with other work)",
            f"- Traffic: {args.packets:,} identical 106-byte UDP frames per burst, sent by a raw packet socket across a"
            f" veth into another namespace; filter `{FILTER}`; snaplen 2048; 4 MiB ring for both;"
            f" medians of {args.rounds} interleaved rounds",
            "",
            "| consumer | packets delivered | kernel drops | µs CPU per packet | packets per CPU-second | sender pps |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    body = text
    if args.out.exists() and "<!-- notes -->" in args.out.read_text():  # hand-written notes survive a re-run
        body += "\n<!-- notes -->" + args.out.read_text().split("<!-- notes -->", 1)[1]
    args.out.write_text(body)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
