"""The load: the SYNTHETIC records as ``flowmeter.replay`` publishes them (one record, an array or a columnar batch
per message) and a raw-socket MQTT QoS 1 publisher that sends them at a fixed rate."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from agent_plan import ARRAY, COLUMNAR, PREFIX, RECORD
from agent_processes import BenchError, now

from ids_core.flowmessage import columns_header, encode, to_json


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
    """The SYNTHETIC records, pre-encoded: each record's JSON text (object form) and its columnar row, both without
    ``seq`` and ``sensor``, which are appended per trial (the last keys, as ``flowmeter.replay`` writes them)."""

    def __init__(self, path: Path) -> None:
        lines = path.read_text().splitlines()
        self.heads = [line[:-1] for line in lines]  # the object without its closing brace
        docs = [json.loads(line) for line in lines]
        columns = [*docs[0], "seq", "sensor"]
        if any(list(d) != columns[:-2] for d in docs):
            raise BenchError("the SYNTHETIC records do not all have the same keys in the same order")
        self.columns_header = columns_header(columns)
        self.rows = [to_json(list(d.values()))[:-1].decode() for d in docs]  # the row without its closing bracket
        sample = [{**d, "seq": i, "sensor": "s"} for i, d in enumerate(docs[:3])]
        for fmt in (RECORD, ARRAY, COLUMNAR):  # byte for byte what ids_core.flowmessage.encode makes
            n = 1 if fmt == RECORD else 3
            if self.message(0, n, "s", fmt) != encode(sample[:n], columnar=fmt == COLUMNAR):
                raise BenchError(f"the {fmt} message differs from ids_core.flowmessage.encode's")

    def record(self, seq: int, sensor: str) -> str:
        """Byte for byte what ``flowmeter.replay`` publishes: the record, then ``seq`` and ``sensor``."""
        return f'{self.heads[seq % len(self.heads)]},"seq":{seq},"sensor":"{sensor}"}}'

    def row(self, seq: int, sensor: str) -> str:
        return f'{self.rows[seq % len(self.rows)]},{seq},"{sensor}"]'

    def message(self, k: int, per_message: int, sensor: str, fmt: str) -> bytes:
        """Message ``k``: one record (an object), ``per_message`` records as an array, or a columnar batch."""
        first = k * per_message
        if fmt == RECORD:
            if per_message != 1:
                raise BenchError(f"the {RECORD} format holds one flow per message, not {per_message}")
            return self.record(k, sensor).encode()
        if fmt == ARRAY:
            return ("[" + ",".join(self.record(first + j, sensor) for j in range(per_message)) + "]").encode()
        rows = ",".join(self.row(first + j, sensor) for j in range(per_message))
        return self.columns_header + rows.encode() + b"]}"
