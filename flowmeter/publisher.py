"""Finished flows → messages in the outbox (columnar batches, or JSON arrays of records), each record numbered with
``sensor`` + ``seq``. The formats are :mod:`ids_core.flowmessage`'s.

Records are collected until ``max_records`` are waiting or the oldest has waited ``max_wait_s``; then they get
consecutive ``seq`` values and are split into messages of at most ``max_records`` records and
``max_message_bytes`` bytes (a record alone larger than that still goes out alone, and the agent dead-letters it).
The messages and the next ``seq`` are written to the outbox in ONE transaction
(:meth:`ids_core.outbox.Outbox.put_many` with ``state``), so after any crash or restart the numbering continues
where the last stored message ended: never a ``seq`` used twice, never a hole the meter made itself. A hole the
agent reports is then a loss on the way (outbox bound, broker), not a numbering slip.

Zero-duration flows carry non-finite rates; they are written as the JSON literals ``Infinity`` / ``NaN`` (what
CICFlowMeter writes; the agent reads them and applies the shared rule).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ids_core.flowmessage import columns_header, join_records, join_rows, to_json
from ids_core.outbox import Outbox

log = logging.getLogger(__name__)

STATE_KEY = "next_seq/"  # + sensor; the value is the next seq as ASCII digits


class RecordBatcher:
    """Collects finished flows and stores them as numbered messages; not thread-safe (the capture loop owns it)."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        topic: str,
        sensor: str,
        qos: int = 1,
        max_records: int = 256,
        max_wait_s: float = 0.5,
        max_message_bytes: int = 1 << 20,
        columnar: bool = True,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.outbox, self.topic, self.sensor, self.qos, self.columnar = outbox, topic, sensor, qos, columnar
        self.max_records, self.max_wait_s, self.max_message_bytes = max_records, max_wait_s, max_message_bytes
        self._wake = wake
        self._key = STATE_KEY + sensor
        stored = outbox.load_state().get(self._key)
        self.next_seq = int(stored) if stored else 0
        self._pending: list[dict[str, object]] = []
        self._since = 0.0
        self.records_out = 0  # records stored in the outbox by this process
        self.messages_out = 0
        if self.next_seq:
            log.info("sensor %s: numbering continues at seq %d", sensor, self.next_seq)

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def add(self, record: dict[str, object]) -> None:
        """A finished flow (the meter's ``emit``)."""
        if not self._pending:
            self._since = time.monotonic()
        self._pending.append(record)
        if len(self._pending) >= self.max_records:
            self.flush()

    def due(self) -> bool:
        """True when the oldest waiting record has waited ``max_wait_s``."""
        return bool(self._pending) and time.monotonic() - self._since >= self.max_wait_s

    def flush(self) -> int:
        """Number, encode and store every waiting record (one transaction); returns how many."""
        records, self._pending = self._pending, []
        if not records:
            return 0
        seq, sensor = self.next_seq, self.sensor
        messages: list[tuple[str, bytes, int, bool]] = []
        parts: list[bytes] = []
        header = b""  # columnar: the column names of the message being built
        layout: tuple[str, ...] = ()
        size = 0
        for record in records:
            record["sensor"] = sensor
            record["seq"] = seq
            seq += 1
            if self.columnar:
                keys = tuple(record)
                if keys != layout:  # a record with other keys (e.g. labelled) starts a new message
                    if parts:
                        messages.append(self._message(header, parts))
                        parts = []
                    layout, header = keys, columns_header(keys)
                encoded = to_json(list(record.values()))
            else:
                encoded = to_json(record)
            if parts and (len(parts) >= self.max_records or size + len(encoded) + 1 > self.max_message_bytes):
                messages.append(self._message(header, parts))
                parts = []
            if not parts:
                size = len(header) + 2
            parts.append(encoded)
            size += len(encoded) + 1
        messages.append(self._message(header, parts))
        self.outbox.put_many(messages, state={self._key: str(seq).encode()})
        self.next_seq = seq
        self.records_out += len(records)
        self.messages_out += len(messages)
        self._wake()
        return len(records)

    def _message(self, header: bytes, parts: list[bytes]) -> tuple[str, bytes, int, bool]:
        payload = join_rows(header, parts) if self.columnar else join_records(parts)
        return self.topic, payload, self.qos, False
