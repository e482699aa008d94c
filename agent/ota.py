"""Which model serves, and over-the-air model updates.

The factory model is ``model.dir``. When ``bundle.enabled``, signed bundles arriving on the fleet topic
are verified and installed by :mod:`agent.install` in this module's thread; an installed
slot takes precedence over the factory model, and a model that fails its probation (inference errors,
non-finite or constant scores) is rolled back to the previous slot (or the factory model).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from agent import __version__
from agent.config import AgentConfig
from agent.install import Installer
from agent.interpreter import ModelLoadError
from agent.probation import Probation
from agent.scorer import ModelMismatchError, Scorer
from agent.slots import SlotStore
from firmware_bundle.errors import BadConfigError
from firmware_bundle.keys import load_public_key
from firmware_bundle.limits import Limits
from ids_core import artifacts
from ids_core.preprocess import SpecError
from ids_core.typedconfig import ConfigError, build

if TYPE_CHECKING:
    from agent.pipeline import Pipeline

log = logging.getLogger(__name__)

MODEL_ERRORS = (ModelLoadError, SpecError, ModelMismatchError, OSError)
FRAGMENT = artifacts.AGENT_CONFIG_FRAGMENT
FRAGMENT_SECTIONS = ("batch", "alerts")  # what a bundle's agent-config.yaml may change


class ModelManager:
    """Chooses the serving model at start, installs bundles, watches probation, rolls back."""

    def __init__(self, cfg: AgentConfig, *, status: Callable[[dict[str, Any]], None]) -> None:
        self.base_cfg = cfg  # the YAML file (+ environment, flags)
        self.cfg = cfg  # what runs: base_cfg with the live slot's agent-config fragment applied
        self._status = status
        self.pipeline: Pipeline | None = None
        self.on_config: Callable[[AgentConfig], None] = lambda c: None
        self.installer: Installer | None = None
        self.probation: Probation | None = None
        self._probation_scorer: Scorer | None = None
        self._work: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="ota", daemon=True)
        if cfg.bundle.enabled:
            self.installer = self._make_installer(cfg)

    def _make_installer(self, cfg: AgentConfig) -> Installer:
        return Installer(
            SlotStore(cfg.state_path / "models"),
            trusted_keys=[load_public_key(p) for p in cfg.bundle.public_keys],
            agent_version=__version__,
            limits=Limits(max_bundle_bytes=cfg.bundle.max_bytes),
            probation_seconds=cfg.bundle.probation_seconds,
            probation_min_windows=cfg.bundle.probation_min_windows,
            load_slot=self.load,
            status=self._status,
            check_config=self.merged_config,
            selftest_tolerance=cfg.bundle.selftest_tolerance,
        )

    # ------------------------------------------------------------------ loading

    def load(self, directory: Path) -> Scorer:
        c = self.cfg
        return Scorer.load(directory, runtime=c.model.runtime, threads=c.model.threads, max_keys=c.windows.max_keys,
                           max_batch=c.model.max_batch)  # fmt: skip

    def initial_scorer(self) -> Scorer:
        """The installed slot if there is one (falling back slot by slot if it does not load), else model.dir.

        Sets ``cfg`` to ``base_cfg`` plus the chosen slot's agent-config fragment (at start and on SIGHUP).
        """
        inst = self.installer
        while inst is not None and inst.live_slot() is not None:
            version, slot = inst.state.active, inst.live_slot()
            try:
                self.cfg = self.effective_config(slot)
                scorer = self.load(slot)
            except (*MODEL_ERRORS, ValueError) as e:
                inst.rollback(version, f"installed model does not load: {e}")
                continue
            self.probation = inst.probation()
            self._probation_scorer = scorer if self.probation else None
            return scorer
        self.cfg = self.base_cfg
        return self.load(self.factory_dir())

    def effective_config(self, slot: Path | None) -> AgentConfig:
        """``base_cfg`` with the agent-config fragment of ``slot`` (None: the factory model, no fragment)."""
        fragment = slot / FRAGMENT if slot is not None else None
        return self.merged_config(fragment.read_bytes()) if fragment and fragment.exists() else self.base_cfg

    def factory_dir(self) -> Path:
        if not self.cfg.model.dir:
            raise ModelLoadError("model.dir is empty and no model bundle is installed")
        return Path(self.cfg.model.dir)

    def merged_config(self, fragment: bytes) -> AgentConfig:
        """``base_cfg`` with a bundle's agent-config fragment applied (raises BadConfigError)."""
        try:
            doc = yaml.safe_load(fragment) or {}
            if not isinstance(doc, dict) or set(doc) - set(FRAGMENT_SECTIONS):
                raise ConfigError(f"a bundle may only set {FRAGMENT_SECTIONS}, got {doc!r:.200}")
            return build(AgentConfig, _deep_merge(dataclasses.asdict(self.base_cfg), doc))
        except (yaml.YAMLError, ConfigError) as e:
            raise BadConfigError(f"agent-config.yaml: {e}") from e

    # ------------------------------------------------------------------ threads and callbacks

    def start(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._thread.start()

    def stop(self) -> None:
        self._work.put(("stop", None))

    def submit_bundle(self, payload: bytes) -> None:
        """A bundle arrived (paho's thread). The size bound is enforced before anything is parsed."""
        if len(payload) > self.cfg.bundle.max_bytes:
            limit = self.cfg.bundle.max_bytes
            self._status({"event": "rejected", "reason": "too_large",
                          "detail": f"bundle of {len(payload)} bytes exceeds bundle.max_bytes={limit}"})  # fmt: skip
            return
        self._work.put(("bundle", payload))

    def on_batch(self, scorer: Scorer, scores: np.ndarray, error: Exception | None) -> None:
        """Every scored batch (pipeline thread): feed the probation of a freshly activated model."""
        p = self.probation
        if p is None or scorer is not self._probation_scorer:
            return
        reason = p.observe(scores, error, scorer.last_inputs)
        if reason:
            self.probation = None
            self._work.put(("rollback", (p.version, reason)))

    def tick(self) -> None:
        """Periodically (main thread): end a probation that passed."""
        p = self.probation
        if p is not None and p.passed(time.time()):
            self.probation = None
            self._work.put(("commit", p.version))

    def _run(self) -> None:
        while True:
            kind, arg = self._work.get()
            try:
                if kind == "stop":
                    return
                if kind == "bundle" and self.installer:
                    self.installer.install(arg, self._activate)
                elif kind == "rollback" and self.installer:
                    self._rollback(*arg)
                elif kind == "commit" and self.installer:
                    self.installer.commit(arg)
            except Exception as e:  # the serving model is untouched; say what happened
                log.exception("OTA %s failed", kind)
                self._status({"event": "error", "during": kind, "detail": str(e)})

    def _activate(self, scorer: Scorer, bundle: Any, probation: Probation) -> None:
        self._use_config(self.merged_config(bundle.files[FRAGMENT]) if FRAGMENT in bundle.files else self.base_cfg)
        if probation.until > time.time():
            self._probation_scorer, self.probation = scorer, probation
        self._swap(scorer)

    def _rollback(self, version: int, reason: str) -> None:
        assert self.installer is not None
        slot = self.installer.rollback(version, reason)
        self._use_config(self.effective_config(slot))  # the rolled-back bundle's agent-config goes with it
        try:
            self._swap(self.load(slot) if slot else self.load(self.factory_dir()))
        except MODEL_ERRORS as e:
            log.error("rollback: the previous model does not load either (%s); keeping the current one", e)

    def _use_config(self, cfg: AgentConfig) -> None:
        if cfg is not self.cfg:
            self.cfg = cfg
            self.on_config(cfg)

    def _swap(self, scorer: Scorer, timeout: float = 60.0) -> None:
        """Hand ``scorer`` to the pipeline and wait until it switched (between two batches)."""
        assert self.pipeline is not None
        done = threading.Event()
        self.pipeline.request_swap(scorer, lambda _old: done.set())
        if not done.wait(timeout):
            log.warning("model switch not confirmed within %.0f s (pipeline busy?)", timeout)


def _deep_merge(base: dict[str, Any], extra: Any) -> dict[str, Any]:
    if not isinstance(extra, dict):
        raise ConfigError(f"expected a mapping, got {extra!r:.100}")
    out = dict(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
