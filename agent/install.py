"""Install a verified bundle on the gateway: slot → fresh interpreter → self-test → atomic switch → probation.

The :class:`Installer` does the I/O around :func:`firmware_bundle.verifier.verify_bundle` (bytes in, no
I/O). It never touches the serving model until the new one passed every check and its self-test in a
fresh interpreter; the switch itself (a swap between two batches) is :class:`agent.model_life.ModelLife`'s.

Status events (published by the agent on ``<prefix>/<gateway>/bundle/status``): ``received``,
``rejected`` {reason}, ``verified``, ``activated``, ``committed`` (probation passed), ``rolled_back``
{reason}, ``current`` (the retained bundle that is already live, re-delivered on reconnect).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.probation import Probation
from agent.scorer import Scorer
from agent.slots import SlotState, SlotStore
from firmware_bundle.errors import BundleError, SelfTestError
from firmware_bundle.limits import Limits
from firmware_bundle.model_check import inspect_model
from firmware_bundle.verifier import VerifiedBundle, verify_bundle
from ids_core import artifacts
from ids_core.interpreter import TFLiteModel

log = logging.getLogger(__name__)

PAUSE_ENV = "EDGE_IDS_TEST_PAUSE_AT"  # tests: block at this install step so the process can be killed there
STEPS = ("verified", "unpacked", "selftested", "state_written", "activated")

Status = Callable[[dict[str, Any]], None]


def selftest(model: TFLiteModel, inputs: bytes, outputs: bytes, tolerance: int = 0) -> None:
    """Run the bundle's int8 input vectors; the outputs must equal the shipped ones exactly.

    ``tolerance`` (int8 steps, default 0) is for gateways whose runtime computes with other kernels than the
    builder's (tflite-runtime 2.14 does not use XNNPACK for this graph); LiteRT is bit-exact, also on aarch64.
    """
    x = np.load(io.BytesIO(inputs), allow_pickle=False)
    want = np.load(io.BytesIO(outputs), allow_pickle=False)
    if x.dtype != model.input_dtype or x.shape[1:] != model.input_shape:
        raise SelfTestError(
            f"self-test inputs: expected {model.input_dtype} {model.input_shape}, got {x.dtype} {x.shape}"
        )
    got = model.invoke_raw(x)
    if got.shape != want.shape:
        raise SelfTestError(f"self-test outputs: expected shape {want.shape}, got {got.shape}")
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    if diff.max(initial=0) > tolerance:
        raise SelfTestError(
            f"self-test: {int(np.sum(diff > tolerance))} of {len(want)} outputs differ from the bundle's expected "
            f"outputs by more than {tolerance} int8 steps (max {int(diff.max())})"
        )


def selftest_category(scorer: Scorer, files: dict[str, bytes], tolerance: int = 0) -> None:
    """The bundle's category model (when it has one) passes its own self-test vectors, like the main model."""
    if artifacts.CATEGORY_SELFTEST_INPUTS not in files:
        return
    if scorer.category is None:
        raise SelfTestError("the bundle's category model did not load")
    inputs, outputs = files[artifacts.CATEGORY_SELFTEST_INPUTS], files[artifacts.CATEGORY_SELFTEST_OUTPUTS]
    try:
        selftest(scorer.category.model, inputs, outputs, tolerance)
    except SelfTestError as e:
        raise SelfTestError(f"category model {e}") from None


@dataclass(frozen=True)
class Installed:
    """A bundle that passed every check and its self-test and is now the active slot in the state file."""

    bundle: VerifiedBundle
    slot: Path
    scorer: Scorer  # loaded from ``slot`` in a fresh interpreter; what the pipeline switches to
    probation: Probation | None  # None: ``bundle.probation_seconds`` is 0
    previous: int | None  # the slot it replaced (None: the factory model)


class Installer:
    """Verifies and installs bundles one at a time; keeps the slots and the state file consistent.

    It reports progress through ``status`` and never touches the serving model: :meth:`install` returns the
    new model, the caller switches to it and then calls :meth:`activated`.
    """

    def __init__(
        self,
        store: SlotStore,
        *,
        trusted_keys: Sequence[Ed25519PublicKey],
        agent_version: str,
        limits: Limits,
        probation_seconds: float,
        probation_min_windows: int,
        status: Status,
        selftest_tolerance: int = 0,
    ) -> None:
        self.store, self.trusted_keys, self.agent_version = store, list(trusted_keys), agent_version
        self.limits, self.probation_seconds, self.probation_min_windows = (
            limits,
            probation_seconds,
            probation_min_windows,
        )
        self._status = status
        self.selftest_tolerance = selftest_tolerance
        self._pause_at = os.environ.get(PAUSE_ENV, "")
        self.lock = threading.Lock()
        self.state = store.load()
        store.cleanup(self.state)

    # ------------------------------------------------------------------ start-up

    def live_slot(self) -> Path | None:
        """The active slot directory, or None for the factory model."""
        return self.store.slot(self.state.active) if self.state.active is not None else None

    def probation(self) -> Probation | None:
        """The running probation after a restart (a crash during probation keeps watching the model)."""
        s = self.state
        if s.active is None or s.probation_until is None:
            return None
        return Probation(s.active, s.probation_until, self.probation_min_windows)

    # ------------------------------------------------------------------ install

    def install(
        self,
        data: bytes,
        *,
        load: Callable[[Path], Scorer],
        check_config: Callable[[bytes], object] = lambda _fragment: None,
    ) -> Installed | None:
        """Verify, unpack and self-test ``data``, then record it as the active slot in the state file.

        ``load`` loads a slot directory into a fresh :class:`Scorer`; ``check_config`` raises
        :class:`BadConfigError` for an agent-config fragment this gateway refuses. Returns None (after a
        ``rejected`` or ``current`` status) when the bundle is refused; the serving model is untouched then.
        """
        with self.lock:
            bundle: VerifiedBundle | None = None
            sha = hashlib.sha256(data).hexdigest()
            self._status({"event": "received", "bytes": len(data), "sha256": sha})
            if sha == self.state.active_sha256:
                self._status({"event": "current", "bundle_version": self.state.active, "sha256": sha})
                return None
            try:
                bundle = verify_bundle(
                    data,
                    trusted_keys=self.trusted_keys,
                    now=datetime.now(UTC),
                    highest_installed=self.state.highest_installed,
                    agent_version=self.agent_version,
                    limits=self.limits,
                    inspect_model=inspect_model,
                )
                version = bundle.manifest.bundle_version
                if artifacts.AGENT_CONFIG_FRAGMENT in bundle.files:
                    check_config(bundle.files[artifacts.AGENT_CONFIG_FRAGMENT])
                self._status({"event": "verified", **_describe(bundle)})
                self._pause("verified")
                slot = self.store.write_slot(version, bundle.files)
                self._pause("unpacked")
                try:
                    scorer = load(slot)
                    selftest(
                        scorer.model,
                        bundle.files[artifacts.SELFTEST_INPUTS],
                        bundle.files[artifacts.SELFTEST_OUTPUTS],
                        self.selftest_tolerance,
                    )
                    selftest_category(scorer, bundle.files, self.selftest_tolerance)
                except SelfTestError:
                    raise
                except Exception as e:
                    raise SelfTestError(f"the model does not load or run: {e}") from e
                self._pause("selftested")
            except BundleError as e:
                self._reject(e, bundle)
                return None
            previous = self.state.active
            until = time.time() + self.probation_seconds if self.probation_seconds > 0 else None
            self._commit_state(
                SlotState(
                    active=version, previous=previous, highest_installed=version, probation_until=until,
                    active_sha256=sha,
                )
            )  # fmt: skip
            self._pause("state_written")
            probation = Probation(version, until, self.probation_min_windows) if until is not None else None
            return Installed(bundle, slot, scorer, probation, previous)

    def activated(self, installed: Installed) -> None:
        """The pipeline switched to ``installed``'s model: say so."""
        self._status({"event": "activated", **_describe(installed.bundle), "previous": installed.previous})
        self._pause("activated")

    def _reject(self, error: BundleError, bundle: VerifiedBundle | None) -> None:
        version = bundle.manifest.bundle_version if bundle else None
        if version is not None and version != self.state.active and version != self.state.previous:
            self.store.remove_slot(version)
        log.warning("bundle rejected (%s): %s", error.reason, error)
        self._status({"event": "rejected", "reason": error.reason, "detail": str(error),
                      **(_describe(bundle) if bundle else {})})  # fmt: skip

    # ------------------------------------------------------------------ after activation

    def commit(self, version: int) -> None:
        """Probation passed: the slot is kept as the good one."""
        with self.lock:
            if self.state.active != version or self.state.probation_until is None:
                return
            self._commit_state(SlotState(**{**self.state.__dict__, "probation_until": None}))
            self._status({"event": "committed", "bundle_version": version})

    def rollback(self, version: int, reason: str) -> Path | None:
        """Make the previous slot live again (None = the factory model); the failed slot is deleted.

        ``highest_installed`` stays at the failed version, so the same bundle is not installed again.
        """
        with self.lock:
            if self.state.active != version:
                return self.live_slot()
            previous = self.state.previous
            self._commit_state(
                SlotState(
                    active=previous, previous=None, highest_installed=self.state.highest_installed,
                    probation_until=None, active_sha256=None,
                )
            )  # fmt: skip
            self.store.remove_slot(version)
            log.error("model bundle %s rolled back to %s: %s", version, previous or "the factory model", reason)
            self._status({"event": "rolled_back", "reason": reason, "bundle_version": version, "to": previous})
            return self.live_slot()

    def _commit_state(self, state: SlotState) -> None:
        self.store.save(state)
        self.state = state
        self.store.cleanup(state)

    def _pause(self, step: str) -> None:
        """Test hook: block forever at ``step`` (after announcing it in a marker file)."""
        if self._pause_at == step:
            marker = self.store.root / f"paused-at-{step}"
            marker.write_text(str(os.getpid()))
            log.warning("test hook %s=%s: pausing the install here", PAUSE_ENV, step)
            threading.Event().wait()


def _describe(bundle: VerifiedBundle) -> dict[str, Any]:
    m = bundle.manifest
    return {"bundle_version": m.bundle_version, "model": {"name": m.model_name, "version": m.model_version}}
