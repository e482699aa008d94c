"""The programs the benchmark runs in fresh interpreters (``python -c``): the meter over a pcap, the RSS of N
active flows, the cost of the orientations ``expire()`` keeps."""

from __future__ import annotations

METER_PROGRAM = r"""
import json, re, sys, time
from flowmeter.meter import FlowMeter
from flowmeter.pcapfile import read_capture
from flowmeter.settings import MeterSettings
pcap, mode, out, flow, activity = sys.argv[1:6]
emit = lambda record: None
if mode == "csv":
    from flowmeter.csvout import CsvWriter
    writer = CsvWriter(out)
    emit = writer.write
t0 = time.process_time()
rules = {"single_packet_flows": False, "ipv6": False} if mode == "refrules" else {}
meter = FlowMeter(MeterSettings(flow_timeout_us=int(flow), activity_timeout_us=int(activity), **rules), emit)
packet = meter.packet
for ts, frame, linktype in read_capture(pcap):
    packet(ts, frame, linktype)
active = meter.stats.active_flows
status = open("/proc/self/status").read()
anon, file = (int(re.search(k + r":\s+(\d+)", status).group(1)) / 1024 for k in ("RssAnon", "RssFile"))
meter.flush()
if mode == "csv":
    writer.close()
cpu = time.process_time() - t0
status = open("/proc/self/status").read()
hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
s = meter.stats
print(json.dumps({"packets": s.packets, "flows": s.flows_out, "active_at_end": active, "loop_cpu_s": cpu,
                  "evictions": s.evictions, "hwm_mb": hwm, "rss_anon_mb": anon, "rss_file_mb": file}))
"""

# N flows of 3 packets (A→B, B→A, A→B; TCP with 100-byte payloads, some UDP) all active at once (the reference's
# 120 s timeout), then: peak RSS. "flood": N distinct single-packet flows into a table of max_flows, so the table is
# full and max_flows orientations of evicted flows are kept too. "kept+active": N such flows closed by expire()
# (N orientations kept), then N more held open (the worst case of memory).
RSS_PROGRAM = r"""
import json, re, struct, sys, time
from flowmeter.meter import FlowMeter
from flowmeter.settings import MeterSettings
n, kind, max_flows = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def vm():
    s = open("/proc/self/status").read()
    return {k: int(re.search(k + r":\s+(\d+)", s).group(1)) / 1024 for k in ("VmHWM", "VmRSS")}
eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
ip = struct.Struct("!BBHHHBBHII")
tcp = struct.Struct("!HHIIBBHHH")
udp = struct.Struct("!HHHH")
payload = b"x" * 100
def frame(i, back, net=0x0A000000):
    a, b = net + i, 0xC0A80000 + (i & 0xFFFF)
    sp, dp = 1024 + i % 60000, 443
    if back:
        a, b, sp, dp = b, a, dp, sp
    if i % 8 == 0:
        l4, proto = udp.pack(sp, dp, 8 + 100, 0) + payload, 17
    else:
        l4, proto = tcp.pack(sp, dp, 1, 1, 0x50, 0x18, 64240, 0, 0) + payload, 6
    return eth + ip.pack(0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0, a, b) + l4
base = vm()
meter = FlowMeter(MeterSettings(flow_timeout_us=120_000_000, activity_timeout_us=5_000_000, max_flows=max_flows),
                  lambda r: None)
t0 = 1_700_000_000_000_000
rounds = (False,) if kind == "flood" else (False, True, False)
if kind == "kept+active":
    for k, back in enumerate(rounds):
        for i in range(n):
            meter.packet(t0 + k * 1000 + i, frame(i, back, 0x0B000000), 1)
    meter.expire(t0 + 200_000_000)
    t0 += 300_000_000
for k, back in enumerate(rounds):
    for i in range(n):
        meter.packet(t0 + k * 1000 + i, frame(i, back), 1)
s = meter.stats
after = vm()
print(json.dumps({"flows": n, "kind": kind, "max_flows": max_flows, "active_flows": s.active_flows,
                  "orientations_kept": s.orientations_kept, "evictions": s.evictions,
                  "base_rss_mb": base["VmRSS"], "hwm_mb": after["VmHWM"], "rss_mb": after["VmRSS"]}))
"""

# What the orientations kept by expire() cost: bytes still allocated (tracemalloc) once N expired flows are gone.
ORIENT_PROGRAM = r"""
import gc, json, struct, sys, tracemalloc
from flowmeter.meter import FlowMeter
from flowmeter.settings import MeterSettings
n = int(sys.argv[1])
eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
ip, udp = struct.Struct("!BBHHHBBHII"), struct.Struct("!HHHH")
tracemalloc.start()
meter = FlowMeter(MeterSettings(max_flows=max(n, 1)), lambda r: None)
for i in range(n):
    meter.packet(1_700_000_000_000_000 + i, eth + ip.pack(0x45, 0, 36, 1, 0, 64, 17, 0, 0x0A000000 + i,
                 0xC0A80001) + udp.pack(1024 + i % 60000, 53, 16, 0) + b"12345678", 1)
gc.collect()
before = tracemalloc.get_traced_memory()[0]
meter.expire(1_800_000_000_000_000)
gc.collect()
kept = tracemalloc.get_traced_memory()[0]
meter.flush()
gc.collect()
empty = tracemalloc.get_traced_memory()[0]
print(json.dumps({"flows": n, "table_bytes": before - empty, "orientation_bytes": kept - empty,
                  "orientations_kept_before_flush": n}))
"""
