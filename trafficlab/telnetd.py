"""A telnet-like login service, as on a BusyBox IoT device: the target of the lab's Mirai-like password guessing.

It negotiates like telnetd (IAC WILL ECHO / SGA), prompts ``login:`` and ``Password:``, answers the guess with
``Login incorrect`` and closes (one guess per connection, the way Mirai's scanner makes them). It never runs a
shell: no credential opens anything. Connections, bytes and lifetime are bounded.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading

log = logging.getLogger(__name__)

NEGOTIATION = b"\xff\xfb\x01\xff\xfb\x03"  # IAC WILL ECHO, IAC WILL SGA (what BusyBox telnetd sends first)
PROMPT = b"\r\n(none) login: "
MAX_LINE = 256
MAX_LINES = 24  # per connection (empty lines re-prompt, as login does)
MAX_TRIES = 1  # one guess per connection, as Mirai's scanner makes them (BusyBox login allows 3)
IDLE_S = 10.0
NEGOTIATION_WAIT_S = 0.3
MAX_CONNECTIONS = 32


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: TelnetServer = self.server  # type: ignore[assignment]
        if not server.slots.acquire(blocking=False):
            return
        self.pending = bytearray()
        try:
            self.request.sendall(NEGOTIATION)
            self.request.settimeout(NEGOTIATION_WAIT_S)  # the client's option replies come first
            with contextlib.suppress(TimeoutError):
                self.pending += self.request.recv(256)
            self.request.settimeout(IDLE_S)
            self.request.sendall(PROMPT)
            tries = 0
            for _ in range(MAX_LINES):
                user = self._line()
                if user is None:
                    return
                if not user:
                    self.request.sendall(b"(none) login: ")
                    continue
                self.request.sendall(b"Password: ")
                if self._line() is None:
                    return
                tries += 1
                with server.lock:
                    server.attempts += 1
                self.request.sendall(b"\r\nLogin incorrect")
                if tries >= MAX_TRIES:
                    return
                self.request.sendall(PROMPT)
        except OSError:
            return
        finally:
            server.slots.release()

    def _line(self) -> bytes | None:
        """The next input line without telnet option bytes (b"" for an empty one), None when the peer left."""
        while True:
            self._strip_options()
            for i, b in enumerate(self.pending):
                if b in (10, 13):
                    line = bytes(self.pending[:i])
                    end = i + 1
                    while end < len(self.pending) and self.pending[end] in (0, 10):
                        end += 1
                    del self.pending[:end]
                    return line
            if len(self.pending) > MAX_LINE:
                return None
            chunk = self.request.recv(256)
            if not chunk:
                return None
            self.pending += chunk

    def _strip_options(self) -> None:
        """Drop IAC sequences (3-byte option commands, 2-byte others) from the pending input."""
        out, i, p = bytearray(), 0, self.pending
        while i < len(p):
            if p[i] == 0xFF and i + 1 < len(p):
                i += 3 if p[i + 1] in (0xFB, 0xFC, 0xFD, 0xFE) else 2
                continue
            if p[i] != 0:
                out.append(p[i])
            i += 1
        self.pending = out


class TelnetServer(socketserver.ThreadingTCPServer):
    """Listens on every address of the namespace, IPv4 and IPv6, on ``port``."""

    address_family = socket.AF_INET6
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 23) -> None:
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.lock = threading.Lock()
        self.attempts = 0
        super().__init__(("::", port), _Handler, bind_and_activate=False)
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.server_bind()
        self.server_activate()
