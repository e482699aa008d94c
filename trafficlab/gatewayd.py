"""The gateway's small services for the lab: an HTTP API (device polls, camera uploads) and an NTP-like responder.

Run inside the gateway namespace: ``python -m trafficlab.gatewayd --http-port 8080 --ntp-port 123 --seconds N``.
Both listen on IPv4 and IPv6, stop on SIGTERM or after ``--seconds``, and bound what they read.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)

MAX_UPLOAD = 64 * 1024 * 1024
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900 to 1970


class _Api(BaseHTTPRequestHandler):
    server_version = "iot-gw/1.0"
    timeout = 15

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http %s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        body = json.dumps({"ok": True, "path": self.path[:128], "time": round(time.time(), 3)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        try:
            left = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            left = -1
        if not 0 <= left <= MAX_UPLOAD:
            self.send_error(413 if left > MAX_UPLOAD else 411)
            return
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                return
            left -= len(chunk)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT


class _DualStackHTTP(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def ntp_reply(request: bytes, now: float) -> bytes | None:
    """A 48-byte NTP server reply (mode 4, stratum 2) to a client request (mode 3), else None."""
    if len(request) < 48 or request[0] & 0x07 != 3:
        return None
    sec = int(now) + NTP_EPOCH_OFFSET
    frac = int((now % 1) * 2**32)
    version = (request[0] >> 3) & 0x07
    head = struct.pack("!BBbb", (version << 3) | 4, 2, request[2], -20)
    root = struct.pack("!II4s", 0, 0, b"LAB\0")
    stamps = struct.pack("!II", sec, frac) + request[40:48] + struct.pack("!IIII", sec, frac, sec, frac)
    return head + root + stamps


def _serve_ntp(sock: socket.socket, stop: threading.Event) -> None:
    sock.settimeout(0.5)
    while not stop.is_set():
        try:
            data, peer = sock.recvfrom(512)
        except TimeoutError:
            continue
        except OSError:
            return
        reply = ntp_reply(data, time.time())
        if reply is not None:
            sock.sendto(reply, peer)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--http-port", type=int, default=8080)
    ap.add_argument("--ntp-port", type=int, default=123)
    ap.add_argument("--seconds", type=float, required=True, help="stop after this long")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s gatewayd %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    http = _DualStackHTTP(("::", args.http_port), _Api)
    ntp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    ntp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ntp.bind(("::", args.ntp_port))
    threads = [
        threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True),
        threading.Thread(target=_serve_ntp, args=(ntp, stop), daemon=True),
    ]
    for t in threads:
        t.start()
    log.info("serving http :%d, ntp :%d for %.0f s", args.http_port, args.ntp_port, args.seconds)
    stop.wait(args.seconds)
    stop.set()
    http.shutdown()
    ntp.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
