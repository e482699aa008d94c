"""Store-and-forward for every daemon (agent, flow meter): drains the outbox to the broker, oldest first, deleting
each message on its PUBACK.

At most ``in_flight`` messages (``mqtt.max_inflight``) are handed to paho at a time, and only while connected; the rest
wait on disk. After a reconnect paho re-sends what it had in flight; after a restart everything
still in the outbox is sent again (at-least-once: consumers may see a duplicate, never a gap).
The link is anything with a ``connected`` event and ``publish(topic, payload, qos, retain) -> mid | None``
(:class:`Link`: the agent's ``MqttLink``, :class:`ids_core.mqtt.PublishLink`); the daemon routes paho's PUBACK
callback to :meth:`Forwarder.on_published`. The thread runs until the daemon's stop event;
:meth:`Forwarder.finish` then hands over what the last batch produced and waits for its acknowledgements.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Protocol

from ids_core.outbox import Outbox

log = logging.getLogger(__name__)


class Link(Protocol):
    """What the forwarder needs of a broker connection."""

    connected: threading.Event

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None: ...


class Forwarder:
    """A thread that moves outbox messages to the broker."""

    def __init__(self, outbox: Outbox, link: Link, stop: threading.Event, *, in_flight: int) -> None:
        self.outbox, self.link, self.in_flight, self._stop = outbox, link, in_flight, stop
        self._handed: dict[int, int] = {}  # paho mid → outbox id (touched by this thread only)
        self._acked_mids: collections.deque[int] = collections.deque()  # appended by paho's thread
        self._cursor = 0  # highest outbox id handed to paho in this process
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forwarder", daemon=True)
        self.published = 0

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """New messages are in the outbox (or the link came back)."""
        self._wake.set()

    def on_published(self, mid: int) -> None:
        """paho's PUBACK callback (network thread): record it, the forwarder thread does the rest."""
        self._acked_mids.append(mid)
        self._wake.set()

    def finish(self, timeout: float = 5.0) -> None:
        """After the stop event and the last batch: give outstanding messages up to ``timeout`` to be acknowledged.

        Runs in the caller's thread once the forwarder's own thread has ended.
        """
        deadline = time.monotonic() + timeout
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("forwarder thread did not end within %.0f s; %d messages stay in the outbox",
                        timeout, self.outbox.depth)  # fmt: skip
            return
        while not self.drained() and self.link.connected.is_set() and time.monotonic() < deadline:
            self._step()
            self._wake.wait(min(0.5, max(0.0, deadline - time.monotonic())))
            self._wake.clear()
        self._settle_acks()

    def drained(self) -> bool:
        return not self._handed and self.outbox.depth == 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if not self._step():
                self._stop.wait(1.0)

    def _step(self) -> bool:
        """Settle acknowledgements, hand over more; False after an error (the outbox keeps the messages)."""
        try:
            self._settle_acks()
            self._hand_over()
            return True
        except Exception:  # never let the forwarder die
            log.exception("forwarder error; retrying")
            return False

    def _settle_acks(self) -> None:
        ids = []
        while self._acked_mids:
            outbox_id = self._handed.pop(self._acked_mids.popleft(), None)
            if outbox_id is not None:
                ids.append(outbox_id)
        if ids:
            self.outbox.ack(ids)
            self.published += len(ids)

    def _hand_over(self) -> None:
        room = self.in_flight - len(self._handed)
        if room <= 0 or not self.link.connected.is_set():
            return
        for item in self.outbox.pending(room, after_id=self._cursor):
            mid = self.link.publish(item.topic, item.payload, item.qos, item.retain)
            if mid is None:  # the link dropped: stop here, resume after reconnect
                return
            if item.qos == 0:
                self.outbox.ack([item.id])
            else:
                self._handed[mid] = item.id
            self._cursor = item.id
        if self.outbox.depth > len(self._handed):
            self._wake.set()  # more waiting: come back without sleeping
