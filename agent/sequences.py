"""Which flows of each sensor were answered: crash-consistent de-duplication and gap detection by ``seq``.

A flow record that carries ``sensor`` and ``seq`` is answered once: its verdict (or dead letter) and the
record that its ``seq`` was answered are committed in the same outbox transaction (the state is handed
to :meth:`ids_core.outbox.Outbox.put_many`), so a re-delivery after any crash of the agent or the broker
is recognised and acknowledged without being scored again. Records without ``sensor`` or ``seq`` are not
tracked (only re-deliveries within one connection's life are recognised, by MQTT packet id).

State per sensor, kept compactly and persisted as one small JSON value:

* ``low``: every seq ≤ ``low`` is settled: answered, or declared lost in a gap;
* ``ranges``: the answered seqs above ``low`` as sorted ``[first, last]`` pairs (at most ``max_ranges``);
  the seqs between them are *holes*, still expected within the reordering window;
* ``lost``: the most recent declared gaps (at most ``max_lost``), so a late arrival is still scored;
* ``quiet``: the first seq ever seen of this sensor; holes below it are not reported (they predate us).

The gap rule: a hole is declared lost when it is still missing after ``reorder_seqs`` later seqs were
answered, or ``reorder_seconds`` after it opened (checked at every batch and once a second when idle), or
when the sensor has more than ``max_ranges`` ranges (its oldest hole first). A declared gap is reported
once (a ``gap`` event, committed with the state change). A seq of a declared gap that arrives later is
scored and counted as ``seq_late``, and taken out of the gap; it is not reported again.

A publisher that restarts counts from 0 again: seq 0 of a sensor whose 0 is already settled, in a message
that is not an MQTT re-delivery (DUP flag clear), starts a new epoch (its still-open holes are reported
with reason ``publisher_restarted``). Memory is bounded: at most ``max_sensors`` sensors are tracked, the
least recently seen is forgotten (counted) — a re-delivery for a forgotten sensor is scored again.
"""

from __future__ import annotations

import bisect
import collections
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

NEW, LATE, REPEAT = "new", "late", "repeat"

REORDER_SEQS = 10_000
REORDER_SECONDS = 5.0
MAX_RANGES = 64
MAX_LOST = 32
MAX_SENSORS = 1024
KEY_PREFIX = "seq/"  # state keys in the outbox: seq/<sensor>


@dataclass(frozen=True, slots=True)
class Gap:
    """Seqs ``first``…``last`` of ``sensor`` declared lost."""

    sensor: str
    first: int
    last: int
    reason: str  # "missing" or "publisher_restarted"


@dataclass(slots=True)
class _Sensor:
    low: int
    quiet: int
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    opened: list[float] = field(default_factory=list)  # per range: when the hole below it opened (monotonic)
    lost: list[list[int]] = field(default_factory=list)

    def missing(self) -> int:
        """Seqs in the holes (missing, still expected)."""
        if not self.starts:
            return 0
        return self.starts[0] - self.low - 1 + sum(a - b - 1 for a, b in zip(self.starts[1:], self.ends, strict=False))

    def copy(self) -> _Sensor:
        return _Sensor(self.low, self.quiet, self.starts[:], self.ends[:], self.opened[:], [g[:] for g in self.lost])

    def to_bytes(self) -> bytes:
        ranges = [[a, b] for a, b in zip(self.starts, self.ends, strict=True)]
        doc = {"low": self.low, "quiet": self.quiet, "ranges": ranges, "lost": self.lost}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, now: float) -> _Sensor:
        doc = json.loads(data)
        ranges = doc["ranges"]
        return cls(int(doc["low"]), int(doc["quiet"]), [int(a) for a, _ in ranges], [int(b) for _, b in ranges],
                   [now] * len(ranges), [[int(a), int(b)] for a, b in doc["lost"]])  # fmt: skip


class SequenceTracker:
    """Per-sensor record of answered seqs. Changes of a batch are pending until :meth:`settle`.

    Use: :meth:`classify` each record, :meth:`expire` the holes, store :meth:`changes` in the outbox with
    the batch's documents, then ``settle(True)`` (or ``settle(False)`` if that commit failed).
    """

    def __init__(
        self,
        stored: Mapping[str, bytes],
        *,
        reorder_seqs: int = REORDER_SEQS,
        reorder_seconds: float = REORDER_SECONDS,
        max_ranges: int = MAX_RANGES,
        max_lost: int = MAX_LOST,
        max_sensors: int = MAX_SENSORS,
        report_gaps: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reorder_seqs, self.reorder_seconds = reorder_seqs, reorder_seconds
        self.max_ranges, self.max_lost, self.max_sensors = max_ranges, max_lost, max_sensors
        self.report_gaps = report_gaps
        self._clock = clock
        now = clock()
        # committed state, least recently changed first
        self._sensors: collections.OrderedDict[str, _Sensor] = collections.OrderedDict(
            (key[len(KEY_PREFIX) :], _Sensor.from_bytes(value, now))
            for key, value in stored.items()
            if key.startswith(KEY_PREFIX)
        )
        self._pending: dict[str, _Sensor] = {}
        self._evicted: list[str] = []
        self.counts: collections.Counter[str] = collections.Counter()  # of the pending batch
        self._gaps: list[Gap] = []
        self._missing = {name: st.missing() for name, st in self._sensors.items()}
        self.missing = sum(self._missing.values())  # seqs missing but still expected, over all sensors

    def __len__(self) -> int:
        return len(self._sensors)

    # ------------------------------------------------------------------ a batch

    def classify(self, sensor: str, seq: int, dup: bool = False) -> str:
        """``NEW`` (score it), ``LATE`` (score it; its gap was already reported) or ``REPEAT`` (answered before:
        acknowledge, do not score). ``dup``: the message carrying it is an MQTT re-delivery."""
        st = self._touch(sensor, seq)
        if seq <= st.low:
            if _take(st.lost, seq):
                self.counts["seq_late"] += 1
                return LATE
            if seq != 0 or dup:
                return REPEAT
            self._declare(sensor, st, len(st.starts), "publisher_restarted")
            st.low, st.quiet, st.lost = -1, 0, []
            self.counts["seq_restarts"] += 1
        i = bisect.bisect_right(st.starts, seq)
        if i and st.ends[i - 1] >= seq:
            return REPEAT
        self._insert(st, seq, i)
        return NEW

    def expire(self, *, all_sensors: bool = False) -> list[Gap]:
        """Declare the holes that are past the reordering window: those of the sensors touched in this batch,
        or of every sensor. Returns the gaps to report (once: they are part of the pending changes)."""
        now = self._clock()
        names = list(self._sensors) + [s for s in self._pending if s not in self._sensors] if all_sensors else \
            list(self._pending)  # fmt: skip
        for name in names:
            st = self._pending.get(name) or self._sensors[name]
            n = 0
            while n < len(st.starts) and (
                len(st.starts) - n > self.max_ranges
                or now - st.opened[n] >= self.reorder_seconds
                or st.ends[-1] - st.starts[n] + 1 >= self.reorder_seqs
            ):
                n += 1
            if n:
                self._declare(name, self._touch(name, st.low + 1), n, "missing")
        gaps, self._gaps = self._gaps, []
        return gaps

    def changes(self) -> dict[str, bytes | None]:
        """The pending state rows (``None`` for a forgotten sensor), for ``Outbox.put_many(state=…)``."""
        rows: dict[str, bytes | None] = {KEY_PREFIX + name: st.to_bytes() for name, st in self._pending.items()}
        excess = len(self._sensors) + sum(name not in self._sensors for name in self._pending) - self.max_sensors
        self._evicted = []
        for name in self._sensors:
            if excess <= 0:
                break
            if name not in self._pending:
                self._evicted.append(name)
                rows[KEY_PREFIX + name] = None
                excess -= 1
        return rows

    def settle(self, committed: bool) -> collections.Counter[str]:
        """The batch's changes were committed (keep them) or not (forget them); returns its counters."""
        counts, self.counts = self.counts, collections.Counter()
        if committed:
            for name in self._evicted:
                self._sensors.pop(name, None)
                self.missing -= self._missing.pop(name, 0)
            counts["seq_sensors_forgotten"] += len(self._evicted)
            for name, st in self._pending.items():
                self._sensors[name] = st
                self._sensors.move_to_end(name)
                n = st.missing()
                self.missing += n - self._missing.get(name, 0)
                self._missing[name] = n
        else:
            counts.clear()
        self._pending, self._evicted = {}, []
        return +counts

    # ------------------------------------------------------------------ internals

    def _touch(self, sensor: str, seq: int) -> _Sensor:
        st = self._pending.get(sensor)
        if st is None:
            known = self._sensors.get(sensor)
            st = self._pending[sensor] = known.copy() if known is not None else _Sensor(low=-1, quiet=seq)
        return st

    def _insert(self, st: _Sensor, seq: int, i: int) -> None:
        """Record ``seq`` (not yet answered, above ``low``); ``i`` = number of ranges starting at or below it."""
        if seq == st.low + 1:
            st.low = seq
            while st.starts and st.starts[0] == st.low + 1:
                st.low = st.ends[0]
                del st.starts[0], st.ends[0], st.opened[0]
            return
        joins_prev = i > 0 and st.ends[i - 1] == seq - 1
        joins_next = i < len(st.starts) and st.starts[i] == seq + 1
        if joins_prev and joins_next:
            st.ends[i - 1] = st.ends[i]
            del st.starts[i], st.ends[i], st.opened[i]
        elif joins_prev:
            st.ends[i - 1] = seq
        elif joins_next:
            st.starts[i] = seq
        else:  # a new range; the hole below it is new only if it is the highest range
            opened = st.opened[i] if i < len(st.starts) else self._clock()
            st.starts.insert(i, seq)
            st.ends.insert(i, seq)
            st.opened.insert(i, opened)

    def _declare(self, sensor: str, st: _Sensor, n: int, reason: str) -> None:
        """Declare the holes below the lowest ``n`` ranges lost; ``low`` moves past those ranges."""
        for _ in range(n):
            first, last = st.low + 1, st.starts[0] - 1
            st.low = st.ends[0]
            del st.starts[0], st.ends[0], st.opened[0]
            st.lost.append([first, last])
            if self.report_gaps:  # the part below the first seq ever seen is not ours to report
                shown = max(first, st.quiet)
                if shown <= last:
                    self._gaps.append(Gap(sensor, shown, last, reason))
                    self.counts["seq_gaps"] += 1
                    self.counts["seq_gap_flows"] += last - shown + 1
                self.counts["seq_missing_unreported"] += max(0, min(last, st.quiet - 1) - first + 1)
            else:
                self.counts["seq_missing_unreported"] += last - first + 1
        del st.lost[: max(0, len(st.lost) - self.max_lost)]


def _take(ranges: list[list[int]], seq: int) -> bool:
    """Remove ``seq`` from the ``[first, last]`` ranges if it is in one (splitting it); True if it was."""
    for k, (a, b) in enumerate(ranges):
        if a <= seq <= b:
            parts = [[a, seq - 1]] * (a < seq) + [[seq + 1, b]] * (seq < b)
            ranges[k : k + 1] = parts
            return True
    return False
