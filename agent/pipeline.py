"""The agent's hot path: parse → window → micro-batch → int8 inference → verdicts, alerts, dead letters.

One thread runs it. A batch closes at ``batch.max_records`` flows or ``batch.max_wait_ms`` after its
first message arrived. Everything a batch produces goes into the outbox in one transaction, together with
the record of which ``seq`` of each sensor it answered (:mod:`agent.sequences`); only then are its MQTT
messages acknowledged, so a crash at any point loses no flow (the broker re-delivers what was not
acknowledged), no alert (the outbox keeps what was not yet published) and scores no flow twice (a
re-delivered ``sensor``/``seq`` already answered is acknowledged without being scored).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import numpy as np

from agent import documents
from agent.alerts import RateLimiter
from agent.config import AgentConfig
from agent.mqtt import Inbound
from agent.records import FlowRecord, RecordLimits, Rejected, parse_flows
from agent.scorer import Scorer
from agent.sequences import REPEAT, SequenceTracker
from agent.stats import Stats
from ids_core.outbox import Outbox

VERDICTS_SEQ_KEY = "out/verdicts"  # outbox state: the next verdicts message number

log = logging.getLogger(__name__)

Message = tuple[str, bytes, int, bool]  # topic, payload, qos, retain


@dataclass
class Batch:
    """Messages collected for one interpreter call, already parsed."""

    messages: list[Inbound] = field(default_factory=list)
    records: list[FlowRecord] = field(default_factory=list)
    arrival: list[float] = field(default_factory=list)  # per record: its message's arrival time
    rejected: list[tuple[Inbound, Rejected]] = field(default_factory=list)  # dead-lettered in full
    summarised: list[tuple[Inbound, collections.Counter[str]]] = field(default_factory=list)  # counted by reason


class Pipeline:
    """Consumes flow messages from a queue and scores them in micro-batches."""

    def __init__(
        self,
        cfg: AgentConfig,
        scorer: Scorer,
        outbox: Outbox,
        stats: Stats,
        *,
        ack: Callable[[Inbound], None] = lambda m: None,
        wake_forwarder: Callable[[], None] = lambda: None,
        on_batch: Callable[[Scorer, np.ndarray | None, np.ndarray, Exception | None], None] | None = None,
        skip: Callable[[Inbound], bool] = lambda m: False,
    ) -> None:
        self.scorer = scorer
        self.outbox, self.stats = outbox, stats
        self._ack, self._wake_forwarder, self._on_batch = ack, wake_forwarder, on_batch
        self._skip = skip
        # Bounded in bytes: when inference falls behind, paho's thread waits in submit() and the broker holds
        # the rest (QoS 1 flow control, TCP back-pressure), so memory stays within batch.queue_bytes.
        self.queue: queue.Queue[Inbound] = queue.Queue()
        self._queued_bytes = 0
        self._room = threading.Condition()
        self._stopped = False  # once the loop ended nobody drains the queue: submit() must not wait for room
        self._swap: tuple[Scorer, Callable[[Scorer], None] | None] | None = None
        self._swap_lock = threading.Lock()
        # what was answered per sensor, committed with each batch; holes are checked once a second when idle
        stored = outbox.load_state()
        self.sequences = SequenceTracker(stored, report_gaps=not cfg.mqtt.shared_group)
        # the next verdicts message's number, committed with the batch that uses it (documents.verdicts)
        self._verdicts_next = self._verdicts_committed = int(stored.get(VERDICTS_SEQ_KEY, b"0"))
        self._next_sweep = 0.0
        self.apply_config(cfg)

    def apply_config(self, cfg: AgentConfig) -> None:
        """Take the batch, alert and limit settings of ``cfg`` (at start and on SIGHUP)."""
        self.cfg = cfg
        self.limits = RecordLimits(
            max_message_bytes=cfg.limits.max_message_bytes, max_records=cfg.limits.max_records_per_message
        )
        rl = cfg.alerts.rate_limit
        self.rate_limiter = RateLimiter(rl.max_alerts, rl.per_seconds)
        self.topics = {leaf: cfg.topic(leaf) for leaf in ("alerts", "events", "deadletter", "verdicts")}
        self._log_threshold()

    @property
    def threshold(self) -> float:
        """The alert threshold in force: ``alerts.threshold`` when the site sets it, else the serving model's."""
        return self.cfg.alerts.threshold_for(self.scorer.spec.threshold)

    def _log_threshold(self) -> None:
        own = self.scorer.spec.threshold
        origin = "the model's" if self.cfg.alerts.threshold is None else f"alerts.threshold; the model's is {own}"
        log.info("alert threshold %s (%s)", self.threshold, origin)

    # ------------------------------------------------------------------ feeding and swapping

    def submit(self, msg: Inbound) -> None:
        """Called by the MQTT network thread for each flow message; waits while the queue is over budget."""
        size = len(msg.payload)
        with self._room:
            while not self._stopped and self._queued_bytes and self._queued_bytes + size > self.cfg.batch.queue_bytes:
                self._room.wait(0.5)
            self._queued_bytes += size
        self.queue.put(msg)

    def _take(self, timeout: float) -> Inbound:
        msg = self.queue.get(timeout=timeout)
        with self._room:
            self._queued_bytes -= len(msg.payload)
            self._room.notify_all()
        return msg

    def request_swap(self, scorer: Scorer, done: Callable[[Scorer], None] | None = None) -> None:
        """Switch to ``scorer`` between two batches (no flow dropped or scored twice)."""
        with self._swap_lock:
            self._swap = (scorer, done)

    def _maybe_swap(self) -> None:
        with self._swap_lock:
            pending, self._swap = self._swap, None
        if pending is None:
            return
        new, done = pending
        new.adopt_windows(self.scorer)
        old, self.scorer = self.scorer, new
        log.info("model switched: %s → %s", old.identity["version"], new.identity["version"])
        self._log_threshold()
        if done:
            done(old)

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event, heartbeat: Callable[[], None] = lambda: None) -> None:
        """Process batches until ``stop`` is set; the batch in hand is always finished."""
        while not stop.is_set():
            heartbeat()
            self._maybe_swap()
            batch = self.collect(timeout=0.25)
            if batch is None and time.monotonic() >= self._next_sweep:
                batch = Batch()  # nothing arrived: declare the holes past the reordering window (gap events)
            if batch is not None:
                self.process(batch)
        with self._room:  # what is still queued stays unacknowledged: the broker delivers it again after restart
            self._stopped = True
            self._room.notify_all()

    def collect(self, timeout: float) -> Batch | None:
        """Wait up to ``timeout`` for a message, then fill a batch until it is full or its wait is over."""
        try:
            first = self._take(timeout)
        except queue.Empty:
            return None
        batch = Batch()
        self._add(batch, first)
        deadline = first.received + self.cfg.batch.max_wait_ms / 1000
        while len(batch.records) < self.cfg.batch.max_records:
            try:
                self._add(batch, self._take(max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _add(self, batch: Batch, msg: Inbound) -> None:
        batch.messages.append(msg)  # every message is acknowledged once its batch is committed
        if self._skip(msg):
            self.stats.add(redelivered_messages_skipped=1)
            return
        spec = self.scorer.spec
        records, rejected = parse_flows(
            msg.payload,
            spec.features,
            categorical=self.scorer.categorical,
            key_columns=spec.window_key,
            limits=self.limits,
        )
        if any("seq" in r.ident and "sensor" in r.ident for r in chain(records, rejected)):
            records, rejected = self._unanswered(records, rejected, msg.dup)
        batch.records += records
        batch.arrival += [msg.received] * len(records)
        shown = [r for r in rejected if r.index is not None][: documents.DEADLETTERS_PER_MESSAGE]
        batch.rejected += [(msg, r) for r in rejected if r.index is None] + [(msg, r) for r in shown]
        if len(shown) < len(rejected) - sum(r.index is None for r in rejected):
            rest = collections.Counter(str(r.reason) for r in rejected if r.index is not None)
            rest.subtract(str(r.reason) for r in shown)
            batch.summarised.append((msg, +rest))

    def _unanswered(
        self, records: list[FlowRecord], rejected: list[Rejected], dup: bool
    ) -> tuple[list[FlowRecord], list[Rejected]]:
        """Drop the records whose ``sensor``/``seq`` was answered before (re-deliveries), in message order."""
        repeats: set[int] = set()
        for r in sorted(chain(records, rejected), key=lambda r: r.index or 0):
            sensor, seq = r.ident.get("sensor"), r.ident.get("seq")
            if sensor is not None and seq is not None and self.sequences.classify(sensor, seq, dup) == REPEAT:
                repeats.add(id(r))
        if repeats:
            self.stats.add(redeliveries_skipped=len(repeats))
            records = [r for r in records if id(r) not in repeats]
            rejected = [r for r in rejected if id(r) not in repeats]
        return records, rejected

    def process(self, batch: Batch) -> None:
        """Score a batch, store everything it produced in the outbox, then acknowledge its messages."""
        out: list[Message] = []
        now = datetime.now(UTC)
        summarised = sum(n for _, counts in batch.summarised for n in counts.values())
        self.stats.add(messages_in=len(batch.messages), flows_in=len(batch.records) + len(batch.rejected) + summarised)
        for msg, rej in batch.rejected:
            out.append(self._deadletter(msg.topic, rej.to_dict(), now))
            self.stats.deadletter(str(rej.reason))
        for msg, counts in batch.summarised:  # the record errors of one message past the first N, counted
            doc = documents.deadletter_summary(gateway=self.cfg.gateway_id, source_topic=msg.topic, counts=counts,
                                               shown=documents.DEADLETTERS_PER_MESSAGE, now=now)  # fmt: skip
            out.append((self.topics["deadletter"], documents.dumps(doc), 1, False))
            for reason, n in counts.items():
                self.stats.deadletter(reason, n)
        if summarised:
            self.stats.add(deadletters_summarised=summarised)
        if batch.records:
            out += self._score(batch, now)
        out += self._gaps(now)
        state = self.sequences.changes()
        if self._verdicts_next != self._verdicts_committed:
            state[VERDICTS_SEQ_KEY] = str(self._verdicts_next).encode()
        try:
            if out or state:
                self.outbox.put_many(out, state=state)
        except BaseException:
            self.sequences.settle(False)  # nothing of this batch was stored: its seqs are still unanswered
            self._verdicts_next = self._verdicts_committed
            raise
        self._verdicts_committed = self._verdicts_next
        self.stats.add(**self.sequences.settle(True))
        if out:
            self._wake_forwarder()
        for msg in batch.messages:
            self._ack(msg)

    def _score(self, batch: Batch, now: datetime) -> list[Message]:
        scorer, records = self.scorer, batch.records
        t0 = time.perf_counter()
        inputs: np.ndarray | None = None
        try:
            inputs, scores = scorer.infer(records)
            error: Exception | None = None
            if not np.all(np.isfinite(scores)):
                raise FloatingPointError("model produced non-finite scores")
        except Exception as e:  # a broken model must not lose flows: they are dead-lettered with the reason
            log.error("inference failed for %d flows: %s", len(records), e)
            scores, error = np.full(len(records), np.nan, dtype=np.float32), e
        t1 = time.perf_counter()
        if self._on_batch:
            self._on_batch(scorer, inputs, scores, error)  # (model inputs, scores): what probation watches
        if error is not None:
            self.stats.deadletter("inference_error", len(records))
            failed = [{"reason": "inference_error", "detail": str(error), "index": r.index, "excerpt": "",
                       "ident": r.ident} for r in records]  # fmt: skip
            return [self._deadletter("", rej, now, model=scorer.identity) for rej in failed]
        self.stats.inference.add(t1 - t0)
        self.stats.batch_sizes.append(len(records))
        threshold = self.cfg.alerts.threshold_for(scorer.spec.threshold)  # read once: one threshold per batch
        model = scorer.identity
        out: list[Message] = []
        wall = time.time()
        alert_topic, qos, values = self.topics["alerts"], self.cfg.mqtt.qos, scores.tolist()
        # the rate limiter decides first: a suppressed alert costs a counter, no category, document or row
        over = [i for i, score in enumerate(values) if score > threshold]
        allowed = [i for i in over if self.rate_limiter.allow(str(records[i].ident.get("src_ip", "unknown")), wall)]
        alerts, suppressed = len(allowed), len(over) - len(allowed)
        if allowed:
            attacks = self._attacks(scorer, records, allowed)
            maker = documents.AlertMaker(  # what the batch's alerts share, made once
                gateway=self.cfg.gateway_id, threshold=threshold, model=model, now=now, features=scorer.spec.features
            )
            lines = [
                documents.dumps_finite(maker.document(records[i].ident, values[i], records[i].values, attacks.get(i)))
                for i in allowed
            ]
            group = self.cfg.alerts.max_per_message  # 1: one EVE document per message; more: EVE lines
            out += [(alert_topic, b"\n".join(lines[k : k + group]), qos, False) for k in range(0, len(lines), group)]
        for summary in self.rate_limiter.summaries(wall):
            doc = {**summary, "gateway": self.cfg.gateway_id}
            out.append((self.topics["events"], documents.dumps(doc), qos, False))
        if self.cfg.alerts.publish_verdicts:
            doc = documents.verdicts(gateway=self.cfg.gateway_id, model=model, threshold=threshold,
                                     idents=[r.ident for r in records], scores=values,
                                     message_seq=self._verdicts_next, now=now)  # fmt: skip
            self._verdicts_next += 1
            out.append((self.topics["verdicts"], documents.dumps_finite(doc), 1, False))
        done = time.monotonic()
        self.stats.flow_latency.extend([done - a for a in batch.arrival])
        nonfinite = sum(r.nonfinite for r in records)  # zero-duration flows' Infinity/NaN values, scored by the rule
        self.stats.add(
            flows_scored=len(records), alerts_out=alerts, alerts_suppressed=suppressed, nonfinite_values=nonfinite
        )
        return out

    @staticmethod
    def _attacks(scorer: Scorer, records: list[FlowRecord], over: list[int]) -> dict[int, tuple[str, float]]:
        """(category, probability) of the flows ``over`` (indexes of the alerts going out): one category model call."""
        if scorer.category is None or not over:
            return {}
        try:
            found = scorer.categorize([records[i] for i in over]) or []
        except Exception as e:  # the alert matters more than its category: it goes out without one
            log.error("category model failed for %d flows: %s", len(over), e)
            return {}
        return {i: c.alert_attack for i, c in zip(over, found, strict=True)}

    def _deadletter(self, topic: str, rejected: dict[str, Any], now: datetime, **extra: Any) -> Message:
        doc = documents.deadletter(gateway=self.cfg.gateway_id, source_topic=topic, rejected=rejected, now=now, **extra)
        return (self.topics["deadletter"], documents.dumps(doc), 1, False)

    def _gaps(self, now: datetime) -> list[Message]:
        """``gap`` events (on the events topic) for the holes past the reordering window: those of this batch's
        sensors, and once a second those of every sensor."""
        sweep = time.monotonic() >= self._next_sweep
        if sweep:
            self._next_sweep = time.monotonic() + 1.0
        out = []
        for gap in self.sequences.expire(all_sensors=sweep):
            log.warning("flows %d…%d of sensor %r never arrived (%s)", gap.first, gap.last, gap.sensor, gap.reason)
            doc = documents.gap(gateway=self.cfg.gateway_id, sensor=gap.sensor, first=gap.first, last=gap.last,
                                reason=gap.reason, now=now)  # fmt: skip
            out.append((self.topics["events"], documents.dumps(doc), self.cfg.mqtt.qos, False))
        return out
