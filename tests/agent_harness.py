"""Helpers for the agent's integration tests: the real daemon as a subprocess, a collecting subscriber,
the replay tool in a thread, and offline scoring with the agent's own parser and scorer.

Test modules load it with ``pytest_plugins = ["agent_harness"]``, which provides the ``agents`` fixture
(start daemons; every one is killed in teardown, their logs attached to a failure) and the ``collector``
fixture (a subscriber to ``<prefix>/<gateway>/#`` with a persistent session, so it survives broker
restarts). A module may set ``COLLECTOR_QOS = 0`` for a collector without a broker session.
"""

from __future__ import annotations

import collections
import functools
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from flowmeter.replay import read_flows, records, replay
from ids_core import waiting
from ids_core.eve import AlertReading, documents_in, read_alert

REPO = Path(__file__).resolve().parents[1]
PREFIX = "edge-ids-test"
GATEWAY = "gw1"
CONNECTED = "connected (session present"  # the agent's log line once subscribed and online


def topic(leaf: str, gateway: str = GATEWAY) -> str:
    return f"{PREFIX}/{gateway}/{leaf}"


def wait_until(pred: Callable[[], Any], timeout: float, what: str, context: Callable[[], str] = lambda: "") -> Any:
    """Poll ``pred`` until it returns something truthy; fail the test naming ``what`` after ``timeout``."""
    return waiting.wait_until(pred, timeout, what, context, error=AssertionError)


# --------------------------------------------------------------------------- config


def _merge(base: dict[str, Any], dotted: dict[str, Any]) -> dict[str, Any]:
    for key, value in dotted.items():
        node = base
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return base


def agent_config(
    directory: Path, *, port: int, model_dir: str | Path, name: str = "agent", **settings: Any
) -> dict[str, Any]:
    """The test agents' settings: own client id and state dir per ``name``, fast reconnects and stats,
    verdicts on, rate limit off. ``settings`` override them, ``section__key=value`` for ``section.key``."""
    base = {
        "gateway_id": GATEWAY,
        "state_dir": str(directory / name / "state"),
        "model": {"dir": str(model_dir)},
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "client_id": f"edge-ids-test-{name}",
            "topic_prefix": PREFIX,
            "keepalive": 5,
            "reconnect_min_delay": 1.0,
            "reconnect_max_delay": 2.0,
        },
        "alerts": {"publish_verdicts": True, "rate_limit": {"max_alerts": 0}},
        "bundle": {"enabled": False},
        "stats_interval": 0.5,
        "log_level": "INFO",
    }
    return _merge(base, {k.replace("__", "."): v for k, v in settings.items()})


def write_config(path: Path, cfg: dict[str, Any] | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False))
    return path


# --------------------------------------------------------------------------- the daemon


def agent_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without systemd or EDGE_IDS__ variables, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EDGE_IDS__") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return {**env, **(extra or {})}


def run_agent_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m agent.daemon *args`` to completion (for ``--validate-config`` and config errors)."""
    return subprocess.run(
        [sys.executable, "-m", "agent.daemon", *args],
        cwd=REPO,
        env=agent_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class AgentProcess:
    """One ``python -m agent.daemon --config …`` child; its stdout and stderr go to ``log_path``."""

    config_path: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    exec_with_own_pid: tuple[str, ...] = ()  # env vars set to the child's own pid (``sh -c 'X=$$ exec …'``)
    state_dir: Path | None = None
    proc: subprocess.Popen | None = None
    starts: int = 0

    def start(self) -> AgentProcess:
        """Start (or restart) the daemon; the log file is appended to."""
        assert self.proc is None or self.proc.poll() is not None, "agent already running"
        cmd = [sys.executable, "-m", "agent.daemon", "--config", str(self.config_path)]
        if self.exec_with_own_pid:
            exports = " ".join(f"{name}=$$" for name in self.exec_with_own_pid)
            cmd = ["/bin/sh", "-c", f'export {exports}; exec "$@"', "sh", *cmd]
        with open(self.log_path, "ab") as log:
            log.write(f"===== start {self.starts + 1} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=agent_env(self.env), stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, tail: int = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else "<no log>"
        return f"--- agent log {self.log_path} (last {tail} chars) ---\n{text[-tail:]}"

    def log_count(self, needle: str) -> int:
        return self.log_path.read_text(errors="replace").count(needle) if self.log_path.exists() else 0

    def wait_log(self, needle: str, timeout: float = 30, count: int = 1) -> None:
        """Wait until ``needle`` appears ``count`` times in the log (fails early if the agent died)."""

        def seen() -> bool:
            if self.log_count(needle) >= count:
                return True
            if not self.alive:
                raise AssertionError(f"agent exited ({self.proc.returncode}) before logging {needle!r}\n{self.log()}")
            return False

        wait_until(seen, timeout, f"{needle!r} ×{count} in the agent log", self.log)

    def wait_connected(self, timeout: float = 30) -> None:
        """Wait for the ``connected`` line of the current start (subscribed, birth message sent)."""
        text = self.log_path.read_text(errors="replace")
        before = text.rsplit(f"===== start {self.starts} =====", 1)[0].count(CONNECTED)
        self.wait_log(CONNECTED, timeout, count=before + 1)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"agent did not exit within {timeout} s\n{self.log()}") from None

    def kill(self) -> None:
        """SIGKILL (idempotent)."""
        if self.alive:
            self.proc.kill()
            self.proc.wait(10)


class Agents:
    """Starts daemons from a test's tmp_path and kills every one of them at teardown."""

    def __init__(self, tmp_path: Path, port: int, model_dir: Path) -> None:
        self.tmp_path, self.port, self.model_dir = tmp_path, port, model_dir
        self.started: list[AgentProcess] = []

    def config(self, name: str = "agent", **settings: Any) -> dict[str, Any]:
        return agent_config(self.tmp_path, port=self.port, model_dir=self.model_dir, name=name, **settings)

    def spawn(
        self,
        name: str = "agent",
        *,
        cfg: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        exec_with_own_pid: tuple[str, ...] = (),
        **settings: Any,
    ) -> AgentProcess:
        """Write ``<tmp>/<name>/agent.yaml`` (``cfg``, or the defaults changed by ``settings``), start the
        daemon and wait until it is connected."""
        cfg = cfg or self.config(name, **settings)
        path = write_config(self.tmp_path / name / "agent.yaml", cfg)
        agent = AgentProcess(path, self.tmp_path / name / "agent.log", env or {}, exec_with_own_pid)
        agent.state_dir = Path(cfg["state_dir"])
        self.started.append(agent)
        agent.start()
        agent.wait_connected()
        return agent

    def logs(self) -> str:
        return "\n".join(a.log() for a in self.started)

    def kill_all(self) -> None:
        for agent in self.started:
            agent.kill()


@pytest.fixture
def agents(request: pytest.FixtureRequest, tmp_path: Path, broker: Any, quick_run: Any) -> Iterator[Agents]:
    """Agent daemons against the test's broker and the session's trained model (all killed at teardown;
    their logs are attached to the report of a failed test)."""
    fleet = Agents(tmp_path, broker.port, quick_run.out_dir)
    request.node.agent_fleet = fleet
    try:
        yield fleet
    finally:
        fleet.kill_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    fleet = getattr(item, "agent_fleet", None)
    if fleet is not None and report.failed:
        report.sections.append((f"agent logs ({report.when})", fleet.logs()))


class NotifySocket:
    """A bound AF_UNIX datagram socket standing in for systemd's ``$NOTIFY_SOCKET``; a thread keeps every
    datagram received."""

    def __init__(self, path: Path) -> None:
        self.path = path
        assert len(str(path)) < 100, f"sun_path too long: {path}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.datagrams: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams.append((time.monotonic(), data.decode()))

    def count(self, line: str, since: float = 0.0) -> int:
        """Datagrams received after ``since`` (monotonic) that contain ``line`` as one of their lines."""
        return sum(1 for t, d in list(self.datagrams) if t >= since and line in d.split("\n"))

    def wait(self, line: str, timeout: float = 15, count: int = 1, since: float = 0.0, context=lambda: "") -> None:
        wait_until(lambda: self.count(line, since) >= count, timeout, f"{line!r} ×{count} on NOTIFY_SOCKET",
                   lambda: f"received: {[d for _, d in self.datagrams][-20:]}\n{context()}")  # fmt: skip

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


# --------------------------------------------------------------------------- the subscriber


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def doc(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """Subscribes (MQTT 5, persistent session, QoS 1 by default) to ``<prefix>/<gateway>/#`` and keeps every
    message per topic leaf, thread-safe; after a broker restart it reconnects and gets what was queued."""

    def __init__(
        self, port: int, client_id: str = "edge-ids-test-collector", gateway: str = GATEWAY, qos: int = 1
    ) -> None:
        self.port, self.gateway, self.qos = port, gateway, qos
        self._lock = threading.Lock()
        self._by_leaf: dict[str, list[Received]] = collections.defaultdict(list)
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = self._on_message

    def start(self) -> Collector:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        # never clean: a reconnect (after a broker restart) resumes the session and gets what the broker queued
        # meanwhile. Mosquitto 2.0 restores after its restart only sessions that never began clean: with a clean
        # first connect the session was gone, and an alert published before the re-SUBSCRIBE was lost (each test
        # has its own broker, so there is no earlier session to resume)
        self.client.connect("127.0.0.1", self.port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()
        self._started = time.monotonic()
        wait_until(self._subscribed.is_set, 10, "the collector's subscription")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(f"{PREFIX}/{self.gateway}/#", qos=self.qos)

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        # the topic below <prefix>/<gateway>/; per-agent topics (stats/<client_id>) count under their first level
        leaf = msg.topic.split("/", 2)[-1]
        if leaf.split("/", 1)[0] in ("stats", "status"):
            leaf = leaf.split("/", 1)[0]
        with self._lock:
            self._by_leaf[leaf].append(Received(msg.topic, msg.payload, bool(msg.retain), time.monotonic()))

    def messages(self, leaf: str) -> list[Received]:
        with self._lock:
            return list(self._by_leaf[leaf])

    def docs(self, leaf: str) -> list[Any]:
        """The documents of ``leaf``; on ``alerts``, every alert of every message (one, or one per line)."""
        if leaf == "alerts":
            return [doc for m in self.messages(leaf) for doc in documents_in(m.payload)]
        return [m.doc() for m in self.messages(leaf)]

    def count(self, leaf: str) -> int:
        with self._lock:
            return len(self._by_leaf[leaf])

    def quiet_for(self, *leaves: str) -> float:
        """Seconds since the last message arrived on one of ``leaves`` (default: any topic; periodic ones such as
        stats never fall quiet), or since the start when none has."""
        with self._lock:
            chosen = [self._by_leaf[leaf] for leaf in leaves] if leaves else list(self._by_leaf.values())
            last = max((msgs[-1].at for msgs in chosen if msgs), default=self._started)
        return time.monotonic() - last

    # ---------------------------------------------------------------- views

    def verdicts(self) -> list[dict[str, Any]]:
        """Every verdict of every verdicts message, in arrival order."""
        return [v for doc in self.docs("verdicts") for v in doc["verdicts"]]

    def verdict_counts(self, sensor: str | None = None) -> collections.Counter[int]:
        return collections.Counter(
            v["seq"] for v in self.verdicts() if "seq" in v and (sensor is None or v.get("sensor") == sensor)
        )

    def alerts(self) -> list[dict[str, Any]]:
        return [d for d in self.docs("alerts") if d.get("event_type") == "alert"]

    def alert_readings(self, sensor: str | None = None) -> list[AlertReading]:
        """Every alert read back (score, seq, sensor, … from ``alert.metadata``), in arrival order."""
        return [r for r in map(read_alert, self.alerts()) if sensor is None or r.sensor == sensor]

    def alert_counts(self, sensor: str | None = None) -> collections.Counter[int]:
        return collections.Counter(r.seq for r in self.alert_readings(sensor) if r.seq is not None)

    def events(self, event_type: str) -> list[dict[str, Any]]:
        """The agent's own events (``alert_summary``, ``gap``) from the events topic."""
        return [d for d in self.docs("events") if d.get("event_type") == event_type]

    def deadletters(self) -> list[dict[str, Any]]:
        return self.docs("deadletter")

    def last_stats(self) -> dict[str, Any] | None:
        msgs = self.messages("stats")
        return msgs[-1].doc() if msgs else None

    def wait_stats(self, pred: Callable[[dict[str, Any]], bool], timeout: float, what: str, context=lambda: ""):
        """Wait for a stats message received from now on that satisfies ``pred``; returns it."""
        start = self.count("stats")

        def found() -> dict[str, Any] | None:
            for m in self.messages("stats")[start:]:
                doc = m.doc()
                if pred(doc):
                    return doc
            return None

        return wait_until(found, timeout, what, lambda: f"last stats: {self.last_stats()}\n{context()}")

    def wait_seqs(
        self, seqs: Sequence[int], timeout: float, context=lambda: "", sensor: str | None = None, gaps: bool = False
    ) -> None:
        """Wait until every seq of ``seqs`` has a verdict or a dead letter (or, with ``gaps``, a gap event)."""
        wanted = set(seqs)

        def missing() -> set[int]:
            lost = self.gap_seqs(sensor) if gaps else set()
            return wanted - set(self.verdict_counts(sensor)) - self.deadletter_seqs(sensor) - lost

        wait_until(
            lambda: not missing(),
            timeout,
            f"a verdict or dead letter{' or gap event' if gaps else ''} for each of {len(wanted)} flows",
            lambda: f"{len(missing())} missing, e.g. {sorted(missing())[:20]}\n{context()}",
        )

    def gap_seqs(self, sensor: str | None = None) -> set[int]:
        """The seqs named by ``gap`` events (flows the agent reports as never arrived)."""
        return {
            s
            for g in self.events("gap")
            if sensor is None or g["sensor"] == sensor
            for s in range(g["first_seq"], g["last_seq"] + 1)
        }

    def deadletter_seqs(self, sensor: str | None = None) -> set[int]:
        return {
            d["ident"]["seq"]
            for d in self.deadletters()
            if "seq" in d.get("ident", {}) and (sensor is None or d["ident"].get("sensor") == sensor)
        }


@pytest.fixture
def collector(request: pytest.FixtureRequest, broker: Any) -> Iterator[Collector]:
    """A started :class:`Collector`; QoS 1 unless the test module sets ``COLLECTOR_QOS = 0``."""
    c = Collector(broker.port, qos=getattr(request.module, "COLLECTOR_QOS", 1)).start()
    try:
        yield c
    finally:
        c.stop()


# --------------------------------------------------------------------------- the publisher


@pytest.fixture
def publisher(broker: Any) -> Iterator[mqtt.Client]:
    """A connected MQTT 5 client for publishing raw payloads."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    yield c
    c.disconnect()
    c.loop_stop()


@dataclass
class Stream:
    """Rows of the real sample published by :func:`flowmeter.replay.replay` (in a thread when started)."""

    rows: list[dict[str, Any]]
    port: int
    sensor: str = "replay"
    rate: float = 0.0
    per_message: int = 1
    thread: threading.Thread | None = None
    result: Any = None
    error: BaseException | None = None

    @property
    def seqs(self) -> range:
        return range(len(self.rows))

    def run(self, timeout: float = 120) -> Any:
        """Publish every row and wait for the broker's acknowledgements (raises on failure)."""
        return replay(
            self.rows,
            port=self.port,
            topic=topic("flows"),
            rate=self.rate,
            per_message=self.per_message,
            sensor=self.sensor,
            wait_timeout=timeout,
        )

    def start(self, timeout: float = 120) -> Stream:
        def target() -> None:
            try:
                self.result = self.run(timeout)
            except BaseException as e:  # reported by join()
                self.error = e

        self.thread = threading.Thread(target=target, name=f"replay-{self.sensor}", daemon=True)
        self.thread.start()
        return self

    def join(self, timeout: float = 120) -> Any:
        assert self.thread is not None
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"replay of {len(self.rows)} flows did not finish within {timeout} s")
        if self.error is not None:
            raise AssertionError(f"replay failed: {self.error!r}") from self.error
        return self.result

    def payloads(self) -> list[tuple[int, bytes]]:
        """(seq, JSON) of each record as replay sends it (one record per message)."""
        return [
            (rec["seq"], json.dumps(rec, separators=(",", ":")).encode())
            for rec, _truth in records(self.rows, self.sensor)
        ]

    def truth(self) -> dict[int, bool]:
        """seq → malicious (ground truth)."""
        return {t["seq"]: t["malicious"] for _rec, t in records(self.rows, self.sensor)}


@functools.lru_cache(maxsize=4)
def _shuffled_sample(path: Path, seed: int) -> tuple[tuple[dict[str, Any], ...], tuple[bool, ...]]:
    rows = read_flows(path, shuffle_seed=seed)
    finite = tuple(all(math.isfinite(v) for v in r.values() if isinstance(v, float)) for r in rows)
    return tuple(rows), finite


def sample_rows(sample_csv: Path, n: int, seed: int = 7, include_inf: bool = True) -> list[dict[str, Any]]:
    """``n`` shuffled rows of the real sample; with ``include_inf`` its non-finite row(s) sit mid-stream."""
    rows, finite = _shuffled_sample(Path(sample_csv), seed)
    good = [dict(r) for r, ok in zip(rows, finite, strict=True) if ok]
    bad = [dict(r) for r, ok in zip(rows, finite, strict=True) if not ok] if include_inf else []
    picked = good[: n - len(bad)]
    for r in bad:
        picked.insert(len(picked) // 2, r)
    return picked


# --------------------------------------------------------------------------- offline scoring


@dataclass
class Offline:
    """What the agent must say about a stream: scores of accepted flows and reasons of rejected ones."""

    scores: dict[int, float]
    rejected: dict[int, str]
    threshold: float

    def alerts(self) -> set[int]:
        return {seq for seq, s in self.scores.items() if s > self.threshold}


def score_offline(model_dir: Path, payloads: Sequence[tuple[int, bytes]]) -> Offline:
    """Score ``(seq, message)`` pairs in order with the agent's parser and scorer (int8 LiteRT), as one stream."""
    from agent.records import RecordLimits, parse_flows
    from agent.scorer import Scorer

    scorer = Scorer.load(model_dir)
    spec = scorer.spec
    accepted, rejected = [], {}
    for _seq, payload in payloads:
        recs, rej = parse_flows(
            payload, spec.features, categorical=scorer.categorical, key_columns=spec.window_key, limits=RecordLimits()
        )
        accepted += recs
        rejected.update({r.ident["seq"]: str(r.reason) for r in rej})
    scores = scorer.score(accepted).tolist()
    return Offline({r.ident["seq"]: s for r, s in zip(accepted, scores, strict=True)}, rejected, spec.threshold)


def duplicates(counts: collections.Counter[int]) -> dict[int, int]:
    return {seq: n for seq, n in counts.items() if n > 1}


def epoch(stamp: str) -> float:
    """A document's ``timestamp`` (EVE's form, ``…+0000``) as epoch seconds."""
    return datetime.fromisoformat(stamp).timestamp()


def retained(port: int, topic_name: str, timeout: float = 10) -> Received:
    """The retained message a fresh subscriber gets on ``topic_name``."""
    got: list[Received] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_message = lambda _c, _u, m: got.append(Received(m.topic, m.payload, bool(m.retain), time.monotonic()))
    c.connect("127.0.0.1", port)
    c.subscribe(topic_name, qos=1)
    c.loop_start()
    try:
        wait_until(lambda: got, timeout, f"a retained message on {topic_name}")
    finally:
        c.disconnect()
        c.loop_stop()
    return got[0]


def report(record_property: Callable[[str, Any], None], **counts: Any) -> None:
    """Duplicates and the like: allowed, but shown (``-rP``, junit properties)."""
    for name, value in counts.items():
        record_property(name, value)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))


def outbox_rows(state_dir: Path) -> list[tuple[int, str, bytes]]:
    """``(id, topic, payload)`` of the agent's on-disk outbox, oldest first (read-only, beside the live agent)."""
    import sqlite3

    path = state_dir / "outbox.sqlite"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return [(i, t, bytes(p)) for i, t, p in conn.execute("SELECT id, topic, payload FROM outbox ORDER BY id")]
    except sqlite3.OperationalError:  # created but not yet initialised
        return []
    finally:
        conn.close()
