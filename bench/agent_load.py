"""The load: the SYNTHETIC records as ``flowmeter.replay`` publishes them and a raw-socket MQTT QoS 1
publisher that sends them at a fixed rate."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from agent_plan import PREFIX
from agent_processes import BenchError, now


def _varint(n: int) -> bytes:
    """MQTT's variable-length integer (remaining length)."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Publisher:
    """The load generator: a minimal MQTT 3.1.1 QoS 1 publisher on a raw socket (PUBACKs counted by a reader
    thread), so that it is not the bottleneck at one flow per message. The agent and the broker are the real ones."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = f"{PREFIX}-pub".encode()
        body = b"\x00\x04MQTT\x04\x02\x00\x00" + len(cid).to_bytes(2, "big") + cid  # clean session, no keepalive
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        connack = b""
        while len(connack) < 4:
            chunk = self.sock.recv(4 - len(connack))
            if not chunk:
                raise BenchError("broker closed the publisher's connection")
            connack += chunk
        if connack[0] != 0x20 or connack[3] != 0:
            raise BenchError(f"broker refused the publisher: CONNACK {connack.hex()}")
        self.acked = 0
        self._mid = 0
        self._reader = threading.Thread(target=self._read, name="puback-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            buf += data
            while len(buf) >= 2:
                length, shift, i = 0, 0, 1
                while i < len(buf):
                    length |= (buf[i] & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not buf[i - 1] & 0x80:
                        break
                else:
                    break  # incomplete length
                if len(buf) < i + length:
                    break
                if buf[0] >> 4 == 4:  # PUBACK
                    self.acked += 1
                buf = buf[i + length :]

    def run(self, topic: str, payload: Callable[[int], bytes], n_messages: int, offsets: np.ndarray) -> np.ndarray:
        """Publish ``payload(k)`` at ``start + offsets[k]`` (QoS 1) and wait for the broker's PUBACKs; returns the
        send time of each message (``time.monotonic``). Message ``k + 1`` is built while waiting for its slot."""
        name = topic.encode()
        head = len(name).to_bytes(2, "big") + name
        sent = np.empty(n_messages)
        send, acked0 = self.sock.sendall, self.acked
        start = now() + 0.02
        for k in range(n_messages):
            body = payload(k)
            self._mid = self._mid % 65535 + 1
            packet = b"\x32" + _varint(len(head) + 2 + len(body)) + head + self._mid.to_bytes(2, "big") + body
            ahead = start + offsets[k] - now()
            if ahead > 0:
                time.sleep(ahead)
            sent[k] = now()
            send(packet)
        deadline = now() + 60
        while self.acked - acked0 < n_messages:
            if now() > deadline:
                raise BenchError(f"broker acknowledged {self.acked - acked0} of {n_messages} messages")
            time.sleep(0.005)
        return sent

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()


class Flows:
    """The SYNTHETIC records as JSON text without their closing brace; ``seq`` and ``sensor`` appended per trial."""

    def __init__(self, path: Path) -> None:
        self.heads = [line[:-1] for line in path.read_text().splitlines()]

    def record(self, seq: int, sensor: str) -> str:
        """Byte for byte what ``flowmeter.replay`` publishes: the record, then ``seq`` and ``sensor``."""
        return f'{self.heads[seq % len(self.heads)]},"seq":{seq},"sensor":"{sensor}"}}'

    def message(self, k: int, per_message: int, sensor: str) -> bytes:
        """Message ``k``: one record (an object) or ``per_message`` records (an array), as ``flowmeter.replay``."""
        if per_message == 1:
            return self.record(k, sensor).encode()
        return ("[" + ",".join(self.record(k * per_message + j, sensor) for j in range(per_message)) + "]").encode()
