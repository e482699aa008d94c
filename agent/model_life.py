"""The model's life on the gateway: which model serves, SIGHUP reloads, bundle installs, probation, rollback.

:class:`ModelLife` is the one owner. The factory model is ``model.dir``; when ``bundle.enabled``, signed
bundles arriving on the fleet topic are installed by :class:`agent.install.Installer` in this module's
thread, an installed slot takes precedence over the factory model, and a model that fails its probation
(inference errors, non-finite or constant scores) is rolled back to the previous slot (or the factory
model). Every switch goes to the pipeline between two batches (:class:`Target`).

The daemon's interface: construct (loads the serving model), :meth:`ModelLife.start` with the pipeline,
:meth:`~ModelLife.submit_bundle` (MQTT thread), :meth:`~ModelLife.on_batch` (pipeline thread, every
batch), :meth:`~ModelLife.tick` (main loop), :meth:`~ModelLife.reload` (SIGHUP), :meth:`~ModelLife.join`.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import yaml

from agent import __version__
from agent.category import CategoryMismatchError
from agent.config import AgentConfig
from agent.probation import Probation
from agent.scorer import ModelMismatchError, Scorer
from agent.slots import SlotStore
from firmware_bundle.errors import BadConfigError
from firmware_bundle.limits import Limits
from ids_core import artifacts
from ids_core.interpreter import ModelLoadError
from ids_core.preprocess import SpecError
from ids_core.typedconfig import ConfigError, build

if TYPE_CHECKING:
    from agent.install import Installer

log = logging.getLogger(__name__)

MODEL_ERRORS = (ModelLoadError, SpecError, ModelMismatchError, CategoryMismatchError, OSError)
FRAGMENT = artifacts.AGENT_CONFIG_FRAGMENT
FRAGMENT_SECTIONS = ("batch", "alerts")  # what a bundle's agent-config.yaml may change
SWITCH_TIMEOUT = 60.0  # seconds an install or rollback waits for the pipeline to take the new model

Status = Callable[[dict[str, Any]], None]


class Target(Protocol):
    """What serves the model (the pipeline): switches between two batches, takes batch and alert settings."""

    def request_swap(self, scorer: Scorer, done: Callable[[Scorer], None] | None = None) -> None: ...

    def apply_config(self, cfg: AgentConfig) -> None: ...


class ModelLife:
    """Owns the serving model, its effective config, the installed slots, probation and rollback.

    Everything that changes the model (install, rollback, commit, reload) runs under one lock; the
    pipeline's per-batch report (:meth:`on_batch`) takes no lock.
    """

    def __init__(self, cfg: AgentConfig, *, status: Status, stop: threading.Event) -> None:
        """Load the serving model: the installed slot if there is one (falling back slot by slot), else ``model.dir``.

        Raises one of :data:`MODEL_ERRORS` when no model loads. ``status`` receives bundle status events;
        ``stop`` is the daemon's stop event, which ends this object's thread.
        """
        self.base_cfg = cfg  # the YAML file (+ environment, flags)
        self._status, self._stop = status, stop
        self._lock = threading.Lock()
        self._work: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._target: Target | None = None
        self._thread = threading.Thread(target=self._run, name="ota", daemon=True)
        self.installer = self._make_installer(cfg) if cfg.bundle.enabled else None
        self.scorer: Scorer  # the model last handed to the pipeline
        self.cfg: AgentConfig  # what runs: base_cfg with the live slot's agent-config fragment applied
        self.scorer, self.cfg, probation = self._choose(cfg)
        self._watch: tuple[Scorer, Probation] | None = (self.scorer, probation) if probation else None

    def _make_installer(self, cfg: AgentConfig) -> Installer:
        # imported here: the bundle machinery (cryptography, tarfile) costs ~8 MB of RSS, paid only when enabled
        from agent.install import Installer
        from firmware_bundle.keys import load_public_key

        return Installer(
            SlotStore(cfg.state_path / "models"),
            trusted_keys=[load_public_key(p) for p in cfg.bundle.public_keys],
            agent_version=__version__,
            limits=Limits(max_bundle_bytes=cfg.bundle.max_bytes),
            probation_seconds=cfg.bundle.probation_seconds,
            probation_min_windows=cfg.bundle.probation_min_windows,
            status=self._status,
            selftest_tolerance=cfg.bundle.selftest_tolerance,
        )

    # ------------------------------------------------------------------ the daemon's interface

    def start(self, target: Target) -> None:
        """Serve through ``target`` (the pipeline, built with :attr:`scorer` and :attr:`cfg`); start the thread."""
        self._target = target
        self._thread.start()

    def join(self, timeout: float) -> None:
        """After the stop event: wait up to ``timeout`` for the thread (an install in hand) to end."""
        if self._thread.is_alive():
            self._thread.join(timeout)

    def submit_bundle(self, payload: bytes) -> None:
        """A bundle arrived (paho's thread). The size bound is enforced before anything is parsed."""
        if len(payload) > self.base_cfg.bundle.max_bytes:
            limit = self.base_cfg.bundle.max_bytes
            self._status({"event": "rejected", "reason": "too_large",
                          "detail": f"bundle of {len(payload)} bytes exceeds bundle.max_bytes={limit}"})  # fmt: skip
            return
        self._work.put(("bundle", payload))

    def on_batch(self, scorer: Scorer, inputs: np.ndarray | None, scores: np.ndarray, error: Exception | None) -> None:
        """Every scored batch (pipeline thread): its model inputs and scores feed a running probation."""
        watch = self._watch
        if watch is None or scorer is not watch[0]:
            return
        probation = watch[1]
        reason = probation.observe(scores, error, inputs)
        if reason:
            self._watch = None
            self._work.put(("rollback", (probation.version, reason)))

    def tick(self) -> None:
        """Periodically (main thread): end a probation that passed."""
        watch = self._watch
        if watch is not None and watch[1].passed(time.time()):
            self._watch = None
            self._work.put(("commit", watch[1].version))

    def reload(self, cfg: AgentConfig) -> bool:
        """SIGHUP: serve the model ``cfg`` chooses, with ``cfg``; False (nothing changed) if no model loads."""
        with self._lock:
            try:
                scorer, effective, probation = self._choose(cfg)
            except MODEL_ERRORS as e:
                log.error("reload: model not loaded; keeping the running model and config: %s", e)
                return False
            self.base_cfg = cfg
            self._serve(scorer, effective, probation, wait=False)
            return True

    # ------------------------------------------------------------------ choosing and loading

    def _choose(self, base: AgentConfig) -> tuple[Scorer, AgentConfig, Probation | None]:
        """The installed slot if it loads (a slot that does not is rolled back), else ``model.dir``."""
        inst = self.installer
        while inst is not None and (slot := inst.live_slot()) is not None:
            version = inst.state.active
            assert version is not None
            try:
                cfg = self._config_of(slot, base)
                return _load(slot, cfg), cfg, inst.probation()
            except (*MODEL_ERRORS, ValueError, BadConfigError) as e:
                inst.rollback(version, f"installed model does not load: {e}")
        return _load(_factory_dir(base), base), base, None

    def _config_of(self, slot: Path | None, base: AgentConfig) -> AgentConfig:
        """``base`` with the agent-config fragment of ``slot`` (None: the factory model, no fragment)."""
        fragment = slot / FRAGMENT if slot is not None else None
        return merged_config(base, fragment.read_bytes()) if fragment and fragment.exists() else base

    # ------------------------------------------------------------------ the thread: install, rollback, commit

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                kind, arg = self._work.get(timeout=0.5)
            except queue.Empty:
                continue
            if self.installer is None:
                continue
            try:
                with self._lock:
                    if kind == "bundle":
                        self._install(self.installer, arg)
                    elif kind == "rollback":
                        self._rollback(self.installer, *arg)
                    elif kind == "commit":
                        self.installer.commit(arg)
            except Exception as e:  # the serving model is untouched; say what happened
                log.exception("OTA %s failed", kind)
                self._status({"event": "error", "during": kind, "detail": str(e)})

    def _install(self, installer: Installer, data: bytes) -> None:
        base = self.base_cfg
        installed = installer.install(
            data, load=lambda slot: _load(slot, base), check_config=lambda fragment: merged_config(base, fragment)
        )
        if installed is None:
            return
        self._serve(installed.scorer, self._config_of(installed.slot, base), installed.probation, wait=True)
        installer.activated(installed)

    def _rollback(self, installer: Installer, version: int, reason: str) -> None:
        if installer.state.active != version:
            return
        slot = installer.rollback(version, reason)
        cfg = self._config_of(slot, self.base_cfg)  # the rolled-back bundle's agent-config goes with it
        try:
            scorer = _load(slot or _factory_dir(cfg), cfg)
        except MODEL_ERRORS as e:
            log.error("rollback: the previous model does not load either (%s); keeping the current one", e)
            return
        self._serve(scorer, cfg, None, wait=True)

    def _serve(self, scorer: Scorer, cfg: AgentConfig, probation: Probation | None, *, wait: bool) -> None:
        """Hand ``scorer`` and ``cfg`` to the pipeline; with ``wait``, return once it switched (or stop is set)."""
        assert self._target is not None, "start() first"
        self._watch = (scorer, probation) if probation is not None else None
        if cfg is not self.cfg:
            self.cfg = cfg
            self._target.apply_config(cfg)
        self.scorer = scorer
        done = threading.Event()
        self._target.request_swap(scorer, lambda _old: done.set())
        deadline = time.monotonic() + SWITCH_TIMEOUT
        while wait and not done.wait(0.1) and not self._stop.is_set():
            if time.monotonic() > deadline:
                log.warning("model switch not confirmed within %.0f s (pipeline busy?)", SWITCH_TIMEOUT)
                return


def merged_config(base: AgentConfig, fragment: bytes) -> AgentConfig:
    """``base`` with a bundle's agent-config fragment applied (raises BadConfigError).

    A site's own ``alerts.threshold`` (set in ``base``) outlives every model: a fragment's does not replace it; nor
    does a fragment change ``alerts.max_per_message`` (the layout the site's alert consumers read).
    """
    try:
        doc = yaml.safe_load(fragment) or {}
        if not isinstance(doc, dict) or set(doc) - set(FRAGMENT_SECTIONS):
            raise ConfigError(f"a bundle may only set {FRAGMENT_SECTIONS}, got {doc!r:.200}")
        merged = build(AgentConfig, _deep_merge(dataclasses.asdict(base), doc))
        if base.alerts.threshold is not None:
            merged.alerts.threshold = base.alerts.threshold
        merged.alerts.max_per_message = base.alerts.max_per_message
        return merged
    except (yaml.YAMLError, ConfigError) as e:
        raise BadConfigError(f"{FRAGMENT}: {e}") from e


def _load(directory: Path, cfg: AgentConfig) -> Scorer:
    return Scorer.load(directory, runtime=cfg.model.runtime, threads=cfg.model.threads, max_keys=cfg.windows.max_keys,
                       max_batch=cfg.model.max_batch)  # fmt: skip


def _factory_dir(cfg: AgentConfig) -> Path:
    if not cfg.model.dir:
        raise ModelLoadError("model.dir is empty and no model bundle is installed")
    return Path(cfg.model.dir)


def _deep_merge(base: dict[str, Any], extra: Any) -> dict[str, Any]:
    if not isinstance(extra, dict):
        raise ConfigError(f"expected a mapping, got {extra!r:.100}")
    out = dict(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
