"""``iotids-agent``: the gateway daemon (systemd ``Type=notify``).

Threads: paho's network thread receives flows and PUBACKs; the pipeline thread scores micro-batches;
the forwarder drains the outbox to the broker; the OTA thread installs model bundles; the main thread
handles signals, reloads and stats; with ``metrics.listen`` an HTTP thread answers Prometheus scrapes
(:mod:`agent.metrics`). One stop event (``Agent.stop_event``) ends every one of their loops.
SIGTERM: finish the batch in hand, publish ``offline``, exit. SIGHUP: reload the config and the model,
switching models between two batches.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from agent import __version__, documents
from agent.config import AgentConfig, ConfigError, load_config
from agent.model_life import MODEL_ERRORS, ModelLife
from agent.mqtt import Inbound, MqttLink
from agent.pipeline import Pipeline
from agent.scorer import Scorer
from agent.stats import Stats
from firmware_bundle.errors import KeyFileError  # no cryptography needed to catch it
from ids_core import metrics_server, systemd
from ids_core.forwarder import Forwarder
from ids_core.metrics_server import MetricsServer
from ids_core.outbox import Outbox
from ids_core.typedconfig import describe

log = logging.getLogger("agent")

RESTART_ONLY = ("mqtt", "gateway_id", "state_dir", "outbox", "bundle", "metrics")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(cfg: AgentConfig) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if cfg.log_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.log_level)
    logging.getLogger("paho").setLevel(logging.WARNING)


class Agent:
    """Wires config, model, outbox, MQTT link, pipeline and forwarder together and runs them.

    Built in dependency order: outbox → MQTT link → forwarder → the model's life (which may already report a
    bundle status, e.g. a slot that no longer loads) → pipeline. The link's callbacks reach the pipeline and
    the forwarder only once ``run()`` starts it.
    """

    def __init__(self, cfg: AgentConfig, config_path: Path | None = None, overrides: list[str] | None = None) -> None:
        self.cfg, self.config_path, self.overrides = cfg, config_path, overrides or []
        self.stop_event = threading.Event()  # the one stop event: pipeline, forwarder, OTA thread, main loop
        self.reload_event = threading.Event()
        self.stats = Stats()
        self.state = cfg.make_state_dir()  # 0700, whatever the umask
        self.outbox = Outbox(self.state / "outbox.sqlite", cfg.outbox.max_messages)
        self.link = MqttLink(
            cfg,
            on_flows=lambda m: self.pipeline.submit(m),
            on_bundle=self.on_bundle if cfg.bundle.enabled else None,
            on_published=lambda mid: self.forwarder.on_published(mid),
            on_connected=lambda _sp: self.forwarder.wake(),
            receive_maximum=max(1024, 4 * cfg.batch.max_records),
        )
        self.forwarder = Forwarder(self.outbox, self.link, self.stop_event, in_flight=cfg.mqtt.max_inflight)
        self.models = ModelLife(cfg, status=self.bundle_status, stop=self.stop_event)
        self.pipeline = Pipeline(
            self.models.cfg, self.models.scorer, self.outbox, self.stats,  # the file + the live bundle's agent-config
            ack=self.link.ack, skip=self.link.skip, wake_forwarder=self.forwarder.wake, on_batch=self.models.on_batch,
        )  # fmt: skip
        self._watchdog = systemd.watchdog_interval()
        self._last_ping = 0.0
        self.metrics: MetricsServer | None = None

    def start_metrics(self) -> None:
        """The Prometheus endpoint, when ``metrics.listen`` is set (``ConfigError``/``OSError`` if it cannot be)."""
        if self.cfg.metrics.listen:
            from agent.metrics import AgentCollector  # prometheus_client only when asked for

            self.metrics = metrics_server.serve(self.cfg.metrics.listen, AgentCollector(self))

    # ------------------------------------------------------------------ model bundles

    def on_bundle(self, msg: Inbound) -> None:
        """A bundle on the fleet topic (paho's thread): acknowledged at once (it is retained), then installed."""
        self.link.ack(msg)
        self.models.submit_bundle(msg.payload)

    def bundle_status(self, event: dict[str, Any]) -> None:
        """Install progress on ``<prefix>/<gateway>/bundle/status`` (through the outbox: never lost)."""
        doc = documents.bundle_status(gateway=self.cfg.gateway_id, event=event)
        self.stats.bundle(str(event.get("event", "")), str(event.get("reason", "")))
        log.info("bundle status: %s", {k: v for k, v in doc.items() if k != "timestamp"})
        self.outbox.put_many([(self.cfg.topic("bundle/status"), documents.dumps(doc), 1, False)])
        self.forwarder.wake()

    @property
    def scorer(self) -> Scorer:
        """The model serving now."""
        return self.pipeline.scorer

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        for sig, handler in (
            (signal.SIGTERM, self._on_stop),
            (signal.SIGINT, self._on_stop),
            (signal.SIGHUP, self._on_hup),
        ):
            signal.signal(sig, handler)
        pipeline_thread = threading.Thread(
            target=self.pipeline.run, args=(self.stop_event, self.heartbeat), name="pipeline", daemon=True
        )
        self.forwarder.start()
        self.models.start(self.pipeline)
        self.link.start()
        gc.freeze()  # what start-up built lives for the whole run: keep it out of the collector's full passes
        pipeline_thread.start()
        systemd.ready()
        systemd.status(f"serving model {self.scorer.identity['version']}")
        log.info("agent %s ready: gateway %s, model %s", __version__, self.cfg.gateway_id, self.scorer.identity)
        next_stats = time.monotonic() + self.cfg.stats_interval
        while not self.stop_event.is_set():
            self.stop_event.wait(min(0.5, max(0.0, next_stats - time.monotonic())))
            if self.reload_event.is_set():
                self.reload_event.clear()
                self.reload()
            self.models.tick()
            if time.monotonic() >= next_stats:
                self.publish_stats()
                next_stats = time.monotonic() + self.cfg.stats_interval
        systemd.stopping()
        log.info("stopping: finishing the batch in hand")
        pipeline_thread.join(timeout=30)
        self.models.join(timeout=5.0)
        self.forwarder.finish(timeout=5.0)
        self.publish_stats()
        self.link.stop()
        if self.metrics is not None:
            self.metrics.stop()
        left = self.outbox.depth
        self.outbox.close()
        log.info("stopped; %d messages left in the outbox for the next start", left)
        return 0

    def heartbeat(self) -> None:
        """Called by the pipeline loop: the watchdog is fed only while batches are being processed."""
        if self._watchdog and time.monotonic() - self._last_ping >= self._watchdog:
            systemd.watchdog_ping()
            self._last_ping = time.monotonic()

    def _on_stop(self, signum: int, _frame: Any) -> None:
        log.info("signal %s: shutting down", signal.Signals(signum).name)
        self.stop_event.set()

    def _on_hup(self, _signum: int, _frame: Any) -> None:
        self.reload_event.set()

    def reload(self) -> None:
        """SIGHUP: re-read the config (settings that need a restart are reported) and reload the model."""
        systemd.reloading()
        try:
            cfg = load_config(self.config_path, self.overrides)
        except ConfigError as e:
            log.error("reload: config rejected, keeping the running one: %s", e)
            systemd.ready()
            return
        changed = [k for k in RESTART_ONLY if getattr(cfg, k) != getattr(self.cfg, k)]
        if changed:
            log.warning("reload: %s changed; these take effect after a restart", ", ".join(changed))
        if self.models.reload(cfg):  # the model and the file + the live bundle's agent-config, or nothing
            logging.getLogger().setLevel(cfg.log_level)
            self.cfg = cfg
        systemd.ready()

    def publish_stats(self) -> None:
        doc = documents.stats(self.stats_snapshot())
        self.link.publish(self.cfg.instance_topic("stats"), documents.dumps(doc), qos=0)

    def stats_snapshot(self) -> dict[str, Any]:
        """What the stats topic carries, and what the Prometheus endpoint shows (:mod:`agent.metrics`)."""
        return self.stats.snapshot(
            gateway=self.cfg.gateway_id,
            client_id=self.cfg.client_id,
            agent_version=__version__,
            model=self.pipeline.scorer.identity,
            outbox_depth=self.outbox.depth,
            outbox_dropped=self.outbox.dropped,
            published=self.forwarder.published,
            queue_depth=self.pipeline.queue.qsize(),
            streams=len(self.pipeline.scorer.windows),
            windows_evicted=self.pipeline.scorer.windows.evicted,
            connected=self.link.connected.is_set(),
            disconnects=self.link.disconnects,
            sequences={"sensors": len(self.pipeline.sequences), "missing": self.pipeline.sequences.missing},
        )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="iotids-agent",
        description="Edge IDS gateway agent: scores IoT flow records from MQTT with the int8 model and publishes "
        "alerts. Settings come from the YAML file, then EDGE_IDS__SECTION__KEY environment variables, then --set.",
    )
    p.add_argument("--config", type=Path, help="agent YAML (default: config/agent.yaml in the source tree)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set mqtt.host=broker.lan --set batch.max_records=512")  # fmt: skip
    p.add_argument("--validate-config", action="store_true", help="check the configuration and the model, then exit")
    p.add_argument("--help-config", action="store_true", help="list every setting with its default and exit")
    p.add_argument("--version", action="version", version=f"iotids-agent {__version__}")
    return p


EXIT_STARTUP = 2  # a config, model, spec, key, TLS or state problem: one line on stderr, nothing started


def startup_error(e: BaseException, cfg: AgentConfig) -> str:
    """One line naming the setting (and file) that stopped start-up, and what is wrong with it."""
    text = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename and e.strerror else str(e)
    if isinstance(e, KeyFileError):
        text = f"bundle.public_keys: {text}"
    elif isinstance(e, sqlite3.Error):
        text = f"state_dir: {cfg.state_path / 'outbox.sqlite'}: not a usable outbox database ({text})"
    elif isinstance(e, OSError) and Path(str(e.filename or "/")).resolve().is_relative_to(cfg.state_path.resolve()):
        text = f"state_dir: {text}"  # the outbox or the model slots
    elif isinstance(e, MODEL_ERRORS) and "model.dir" not in text:
        text = f"model.dir: {text}" if cfg.model.dir and cfg.model.dir in text else f"model.dir {cfg.model.dir}: {text}"
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.help_config:
        print("\n".join(describe(AgentConfig)))
        return 0
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"iotids-agent: configuration error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_STARTUP
    setup_logging(cfg)
    try:
        agent = Agent(cfg, args.config, args.overrides)
    except (ConfigError, KeyFileError, sqlite3.Error, *MODEL_ERRORS) as e:
        print(f"iotids-agent: cannot start: {startup_error(e, cfg)}", file=sys.stderr)
        return EXIT_STARTUP
    if args.validate_config:
        print(f"configuration OK; model {agent.scorer.identity}")
        agent.outbox.close()
        return 0
    try:
        agent.start_metrics()
    except (ConfigError, OSError) as e:
        text = str(e) if isinstance(e, ConfigError) else f"metrics.listen: {cfg.metrics.listen}: {e.strerror or e}"
        print(f"iotids-agent: cannot start: {text}", file=sys.stderr)
        agent.outbox.close()
        return EXIT_STARTUP
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
