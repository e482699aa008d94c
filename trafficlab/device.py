"""One IoT device's benign traffic, run inside its namespace: ``python -m trafficlab.device SPEC.json``.

Real clients talk to the gateway's services: ``mosquitto_pub -l`` (one persistent MQTT connection, one telemetry
message per interval), ``curl`` (HTTP polls, and back-to-back camera segment uploads at a bitrate),
``dig`` (DNS), ``openssl s_client`` (TLS sessions); NTP-like queries are sent from here (48-byte mode-3 UDP).
Intervals are jittered ±20 % from the seed. Every client has a deadline; nothing new starts after ``seconds``;
the process exits by itself. Optionally a telnet-like login service listens on port 23 (the brute-force target).
At exit it writes ``<workdir>/<name>.stats.json``: per traffic kind, clients started / succeeded / failed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import random
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from trafficlab.telnetd import TelnetServer

log = logging.getLogger(__name__)

MAX_CHILDREN = 8
SEGMENT_S = 10.0  # camera upload segment length
DNS_NAMES = ("broker.iot.lab", "api.iot.lab", "time.iot.lab", "fw.iot.lab", "cdn.iot.lab")
KINDS = ("mqtt", "http", "stream", "dns", "ntp", "tls")


@dataclasses.dataclass
class DeviceSpec:
    name: str
    family: int
    gateway_ip: str
    rates: dict[str, float]
    seconds: float
    seed: int
    workdir: str
    telnet: bool = True
    telnet_port: int = 23
    mqtt_port: int = 1883
    http_port: int = 8080
    dns_port: int = 53
    ntp_port: int = 123
    tls_port: int = 8443

    @property
    def host(self) -> str:
        """The gateway address as it appears in a URL or host:port."""
        return f"[{self.gateway_ip}]" if ":" in self.gateway_ip else self.gateway_ip


@dataclasses.dataclass
class _Child:
    proc: subprocess.Popen
    kind: str
    deadline: float


class Device:
    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.stop = threading.Event()
        self.children: list[_Child] = []
        self.stats = {k: {"started": 0, "ok": 0, "failed": 0, "skipped": 0} for k in KINDS}
        self.mqtt: subprocess.Popen | None = None
        self.mqtt_seq = 0
        self.workdir = Path(spec.workdir)
        self.segment = self.workdir / f"{spec.name}.segment"

    # ---- the schedule
    def run(self) -> dict:
        spec = self.spec
        end = time.monotonic() + spec.seconds
        telnet = None
        if spec.telnet:
            telnet = TelnetServer(spec.telnet_port)
            threading.Thread(target=telnet.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        periodic = {kind: spec.rates.get(f"{kind}_interval_s", 0) for kind in ("mqtt", "http", "dns", "ntp", "tls")}
        due = {k: time.monotonic() + self.rng.uniform(0, min(iv, 3.0)) for k, iv in periodic.items() if iv > 0}
        kbps = spec.rates.get("stream_kbps", 0)
        if kbps > 0:
            self.segment.write_bytes(self.rng.randbytes(int(kbps * 125 * SEGMENT_S)))
            due["stream"] = time.monotonic() + self.rng.uniform(0, 1.0)
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if now >= end:
                    break
                for kind, at in list(due.items()):
                    if now < at:
                        continue
                    if kind == "stream":  # segments back to back; none that would outlast the run
                        if end - now < SEGMENT_S + 2:
                            del due[kind]
                            continue
                        if not any(c.kind == "stream" for c in self.children):
                            self._stream(kbps)
                        due[kind] = now + 0.2
                        continue
                    getattr(self, f"_{kind}")()
                    due[kind] = now + periodic[kind] * self.rng.uniform(0.8, 1.2)
                self._reap(time.monotonic())
                self.stop.wait(max(0.02, min([*due.values(), end]) - time.monotonic()) if due else 0.2)
        finally:
            self._shutdown()
            if telnet is not None:
                telnet.shutdown()
                telnet.server_close()
                self.stats["telnet_attempts"] = telnet.attempts  # type: ignore[assignment]
            with contextlib.suppress(OSError):
                self.segment.unlink()
        return self.stats

    # ---- children
    def _spawn(self, kind: str, argv: list[str], timeout: float, stdin: bytes | None = None) -> None:
        if len(self.children) >= MAX_CHILDREN:
            self.stats[kind]["skipped"] += 1
            return
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if stdin is not None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.write(stdin)
                proc.stdin.close()
        self.stats[kind]["started"] += 1
        self.children.append(_Child(proc, kind, time.monotonic() + timeout))

    def _reap(self, now: float) -> None:
        alive = []
        for c in self.children:
            rc = c.proc.poll()
            if rc is None and now > c.deadline:
                c.proc.kill()
                rc = c.proc.wait()
            if rc is None:
                alive.append(c)
            else:
                self.stats[c.kind]["ok" if rc == 0 else "failed"] += 1
        self.children = alive

    def _shutdown(self) -> None:
        deadline = time.monotonic() + 3.0
        while self.children and time.monotonic() < deadline:
            self._reap(time.monotonic())
            time.sleep(0.05)
        self._reap(float("inf"))  # past every deadline: kill what is left
        if self.mqtt is not None:
            with contextlib.suppress(OSError):
                self.mqtt.stdin.close()  # type: ignore[union-attr]
            try:
                rc = self.mqtt.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.mqtt.kill()
                rc = self.mqtt.wait()
            if rc != 0:
                self.stats["mqtt"]["failed"] += 1

    # ---- one action per traffic kind
    def _mqtt(self) -> None:
        s = self.spec
        if self.mqtt is None or self.mqtt.poll() is not None:
            if self.mqtt is not None:
                self.stats["mqtt"]["failed"] += 1
            self.mqtt = subprocess.Popen(
                ["mosquitto_pub", "-h", s.gateway_ip, "-p", str(s.mqtt_port), "-i", s.name, "-q", "1", "-k", "30",
                 "-t", f"iot/{s.name}/telemetry", "-l"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        self.mqtt_seq += 1
        msg = {"dev": s.name, "seq": self.mqtt_seq, "temp": round(self.rng.gauss(21.5, 0.8), 2),
               "hum": round(self.rng.uniform(35, 55), 1), "bat": round(self.rng.uniform(3.6, 4.1), 2)}  # fmt: skip
        try:
            self.mqtt.stdin.write((json.dumps(msg) + "\n").encode())  # type: ignore[union-attr]
            self.mqtt.stdin.flush()  # type: ignore[union-attr]
            self.stats["mqtt"]["started"] += 1
            self.stats["mqtt"]["ok"] += 1  # handed to the client; a failed connection counts at its exit
        except OSError:
            self.stats["mqtt"]["failed"] += 1

    def _http(self) -> None:
        s = self.spec
        url = f"http://{s.host}:{s.http_port}/api/v1/status?device={s.name}"
        self._spawn("http", ["curl", "-sS", "-g", "-o", "/dev/null", "--max-time", "5", url], 6)

    def _stream(self, kbps: float) -> None:
        s = self.spec
        url = f"http://{s.host}:{s.http_port}/upload/{s.name}/{self.stats['stream']['started']}.ts"
        argv = ["curl", "-sS", "-g", "-o", "/dev/null", "-H", "Expect:", "--limit-rate", str(int(kbps * 125))]
        argv += ["--max-time", str(int(SEGMENT_S * 2 + 5)), "-T", str(self.segment), url]
        self._spawn("stream", argv, SEGMENT_S * 2 + 6)

    def _dns(self) -> None:
        s = self.spec
        name = self.rng.choice(DNS_NAMES)
        rtype = "AAAA" if s.family == 6 else "A"
        argv = ["dig", f"@{s.gateway_ip}", "-p", str(s.dns_port), "+time=1", "+tries=1", "+short", name, rtype]
        self._spawn("dns", argv, 3)

    def _tls(self) -> None:
        s = self.spec
        argv = ["openssl", "s_client", "-connect", f"{s.host}:{s.tls_port}", "-servername", "api.iot.lab", "-quiet"]
        self._spawn("tls", argv, 5, stdin=b"GET /status HTTP/1.0\r\n\r\n")

    def _ntp(self) -> None:
        s = self.spec
        family = socket.AF_INET6 if s.family == 6 else socket.AF_INET
        self.stats["ntp"]["started"] += 1
        request = struct.pack("!B47x", (4 << 3) | 3)  # NTPv4, mode 3 (client)
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.settimeout(1.0)
                sock.sendto(request, (s.gateway_ip, s.ntp_port))
                reply = sock.recv(512)
            ok = len(reply) >= 48 and reply[0] & 0x07 == 4
        except OSError:
            ok = False
        self.stats["ntp"]["ok" if ok else "failed"] += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="one lab device's benign traffic")
    ap.add_argument("spec", type=Path, help="JSON device spec (written by the lab)")
    args = ap.parse_args(argv)
    spec = DeviceSpec(**json.loads(args.spec.read_text()))
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {spec.name} %(message)s")
    device = Device(spec)
    signal.signal(signal.SIGTERM, lambda *_: device.stop.set())
    stats = device.run()
    (Path(spec.workdir) / f"{spec.name}.stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    log.info("done: %s", stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
