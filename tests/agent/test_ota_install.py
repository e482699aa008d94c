"""The installer without MQTT: real SlotStore, Installer, ModelLife and pipeline, real LiteRT interpreters
(the tiny int8 model of bundle_helpers). Crashes are simulated by an exception nothing catches."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.register_assert_rewrite("agent_harness", "ota_helpers")

from agent_harness import wait_until  # noqa: E402
from bundle_helpers import tiny_model  # noqa: E402
from ota_helpers import Artifacts, KeyPair, bundle, flip_expected_output, make_keypair, read_state  # noqa: E402

from agent import __version__ as AGENT_VERSION  # noqa: E402
from agent import slots  # noqa: E402
from agent.config import AgentConfig  # noqa: E402
from agent.install import STEPS, Installer, selftest  # noqa: E402
from agent.model_life import ModelLife  # noqa: E402
from agent.pipeline import Pipeline  # noqa: E402
from agent.probation import Probation  # noqa: E402
from agent.scorer import Scorer  # noqa: E402
from agent.slots import SlotStore  # noqa: E402
from agent.stats import Stats  # noqa: E402
from firmware_bundle import fsutil  # noqa: E402
from firmware_bundle.errors import SelfTestError  # noqa: E402
from firmware_bundle.limits import Limits  # noqa: E402
from ids_core.outbox import Outbox  # noqa: E402
from ids_core.typedconfig import build  # noqa: E402


class Crash(BaseException):
    """Raised at an install step: the process 'dies' there, leaving whatever is on disk."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    return Artifacts(tiny_model().write_artifacts(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_keypair(tmp_path_factory.mktemp("keys"))


class Gateway:
    """An Installer on ``root`` that records its status events and activations."""

    def __init__(self, root: Path, keypair: KeyPair, **kw: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.activated: list[int] = []
        self.installer = Installer(
            SlotStore(root),
            trusted_keys=[keypair.public],
            agent_version=AGENT_VERSION,
            limits=Limits(),
            probation_seconds=kw.pop("probation_seconds", 0.0),
            probation_min_windows=8,
            status=self.events.append,
            **kw,
        )

    def install(self, data: bytes) -> bool:
        """What ModelLife does around the installer, without a pipeline to switch."""
        installed = self.installer.install(data, load=Scorer.load)
        if installed is None:
            return False
        self.activated.append(installed.bundle.manifest.bundle_version)
        self.installer.activated(installed)
        return True

    @property
    def last(self) -> dict[str, Any]:
        return self.events[-1]


def slot_names(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "slots").iterdir())


# --------------------------------------------------------------------------- crash consistency


@pytest.mark.timeout(60, func_only=True)
@pytest.mark.parametrize("step", STEPS)
def test_crash_at_each_install_step_leaves_the_old_or_the_new_state(tmp_path, tiny, keypair, monkeypatch, step) -> None:
    root = tmp_path / "models"
    gw = Gateway(root, keypair)
    assert gw.install(bundle(tiny, keypair, 1))
    before = (root / "state.json").read_bytes()

    def die(self: Installer, at: str) -> None:
        if at == step:
            raise Crash(at)

    monkeypatch.setattr(Installer, "_pause", die)
    with pytest.raises(Crash):
        Gateway(root, keypair).install(bundle(tiny, keypair, 2))
    monkeypatch.undo()

    after = Gateway(root, keypair).installer  # the restart
    new_is_live = STEPS.index(step) >= STEPS.index("state_written")
    assert after.state.active == after.state.highest_installed == (2 if new_is_live else 1)
    if not new_is_live:
        assert (root / "state.json").read_bytes() == before, "the state file changed before its step"
    assert slot_names(root) == (["1", "2"] if new_is_live else ["1"]), "unreferenced slot kept"
    assert Scorer.load(after.live_slot()).spec.input_shape == tiny.spec().input_shape


@pytest.mark.timeout(60, func_only=True)
def test_crash_while_writing_the_slot_or_the_state_file_keeps_the_old_state(tmp_path, tiny, keypair, monkeypatch):
    """A power cut before the slot's or the state's rename: the old state; the restart removes the debris."""
    root = tmp_path / "models"
    assert Gateway(root, keypair).install(bundle(tiny, keypair, 1))
    before = (root / "state.json").read_bytes()

    def cut(*_a: Any) -> None:
        raise Crash("power cut before the rename")

    monkeypatch.setattr(slots.os, "rename", cut)
    with pytest.raises(Crash):
        Gateway(root, keypair).install(bundle(tiny, keypair, 2))
    monkeypatch.undo()
    assert slot_names(root) == [".tmp-2", "1"]

    gw = Gateway(root, keypair)  # the restart cleans up
    assert slot_names(root) == ["1"] and gw.installer.state.highest_installed == 1
    monkeypatch.setattr(fsutil.os, "replace", cut)
    with pytest.raises(Crash):
        gw.install(bundle(tiny, keypair, 3))
    monkeypatch.undo()
    assert (root / "state.json").read_bytes() == before, "state.json was modified in place"
    assert slot_names(root) == ["1", "3"]

    (root / "slots" / ".tmp-9").mkdir()
    (root / "slots" / "stray-file").write_text("not a slot")
    store = SlotStore(root)
    state = store.load()
    assert (state.active, state.highest_installed) == (1, 1)
    assert sorted(store.cleanup(state)) == [".tmp-9", "3", "stray-file"]
    assert slot_names(root) == ["1"] and store.cleanup(state) == []


# --------------------------------------------------------------------------- versions and rollback


@pytest.mark.timeout(60, func_only=True)
def test_highest_installed_survives_a_restart_so_older_and_equal_versions_stay_refused(tmp_path, tiny, keypair):
    root = tmp_path / "models"
    assert Gateway(root, keypair).install(bundle(tiny, keypair, 3))

    gw = Gateway(root, keypair)  # a restart: a new Installer on the same state
    assert gw.installer.state.highest_installed == 3
    assert not gw.install(bundle(tiny, keypair, 2))
    assert (gw.last["event"], gw.last["reason"]) == ("rejected", "rollback")
    assert not gw.install(bundle(tiny, keypair, 3, agent_config={"batch": {"max_records": 8}}))  # another v3 build
    assert (gw.last["event"], gw.last["reason"]) == ("rejected", "replay")
    assert gw.install(bundle(tiny, keypair, 4)) and gw.activated == [4]
    assert read_state(tmp_path)["highest_installed"] == 4


@pytest.mark.timeout(60, func_only=True)
def test_rolling_back_the_first_bundle_returns_to_the_factory_model(tmp_path, tiny, keypair):
    root = tmp_path / "models"
    gw = Gateway(root, keypair, probation_seconds=60.0)
    assert gw.install(bundle(tiny, keypair, 1))
    assert gw.installer.state.previous is None and gw.installer.state.probation_until is not None

    assert gw.installer.rollback(1, "health check: constant score") is None  # None: the factory model
    assert gw.last == {"event": "rolled_back", "reason": "health check: constant score", "bundle_version": 1,
                       "to": None}  # fmt: skip
    state = Gateway(root, keypair).installer.state  # as the next start sees it
    assert (state.active, state.previous, state.highest_installed, state.probation_until) == (None, None, 1, None)
    assert slot_names(root) == []

    cfg = agent_config(tmp_path, keypair, tiny)
    assert ModelLife(cfg, status=lambda _e: None, stop=threading.Event()).scorer.source == str(tiny.dir)
    assert not gw.install(bundle(tiny, keypair, 1)), "the rolled-back version was accepted again"
    assert gw.last["reason"] == "replay"


@pytest.mark.timeout(10)
def test_probation_fails_only_on_errors_non_finite_or_constant_scores() -> None:
    def run(*batches: np.ndarray, error: Exception | None = None) -> str | None:
        p = Probation(version=1, until=0.0, min_windows=8)
        reasons = [p.observe(b, error) for b in batches]
        return next((r for r in reasons if r), None)

    assert run(np.full(4, 0.5), np.linspace(0, 1, 8)) is None
    assert run(np.full(4, 0.99), np.full(3, 0.99)) is None, "failed before min_windows"
    assert run(np.full(4, 0.99), np.full(4, 0.99)).startswith("health check: constant score 0.99")
    assert "non-finite" in run(np.array([0.2, np.nan]))
    assert "inference error" in run(np.empty(0), error=RuntimeError("boom"))


# --------------------------------------------------------------------------- self-test


@pytest.mark.timeout(60, func_only=True)
def test_selftest_demands_every_output_exactly(tmp_path, tiny, keypair):
    model = Scorer.load(tiny.dir).model
    files = tiny.files()
    selftest(model, files["selftest_inputs.npy"], files["selftest_outputs.npy"])
    off_by_one = flip_expected_output(tiny, row=3)["selftest_outputs.npy"]
    with pytest.raises(SelfTestError, match="1 of 8 outputs differ"):
        selftest(model, files["selftest_inputs.npy"], off_by_one)

    root = tmp_path / "models"
    gw = Gateway(root, keypair)
    assert gw.install(bundle(tiny, keypair, 1))
    assert not gw.install(bundle(tiny, keypair, 2, files={"selftest_outputs.npy": off_by_one}))
    assert (gw.last["event"], gw.last["reason"]) == ("rejected", "selftest_failed")
    assert [e["event"] for e in gw.events[-3:]] == ["received", "verified", "rejected"]
    assert gw.activated == [1] and slot_names(root) == ["1"]
    assert read_state(tmp_path)["highest_installed"] == 1


# --------------------------------------------------------------------------- agent-config fragments


def agent_config(tmp_path: Path, keypair: KeyPair, factory: Artifacts, **bundle_settings: Any) -> AgentConfig:
    return build(AgentConfig, {
        "state_dir": str(tmp_path), "model": {"dir": str(factory.dir)},
        "bundle": {"enabled": True, "public_keys": [str(keypair.pub_path)], "probation_seconds": 0.0,
                   **bundle_settings},
    })  # fmt: skip


@pytest.mark.timeout(60, func_only=True)
@pytest.mark.parametrize(
    "fragment",
    ["mqtt: {host: evil.example}", "batch: {max_records: 0}", "batch: {max_recordz: 64}", "alerts: [1, 2]",
     "batch: {max_records: [", "- batch"],
    ids=["section-not-allowed", "below-minimum", "unknown-key", "not-a-mapping", "not-yaml", "a-list"],
)  # fmt: skip
def test_invalid_agent_config_fragment_is_rejected_as_bad_config(running, tmp_path, tiny, keypair, fragment):
    life, pipeline, events = running
    life.submit_bundle(bundle(tiny, keypair, 1, agent_config=fragment))
    rejected = wait_event(events, "rejected")
    assert rejected["reason"] == "bad_config", rejected
    assert [e["event"] for e in events] == ["received", "rejected"]
    assert slot_names(tmp_path / "models") == [] and life.installer.state.highest_installed == 0
    assert pipeline.scorer.source == str(tiny.dir) and pipeline.cfg is life.cfg is life.base_cfg


@pytest.fixture
def running(tmp_path, tiny, keypair) -> Iterator[tuple[ModelLife, Pipeline, list[dict[str, Any]]]]:
    """A ModelLife wired to a running pipeline (no MQTT), with one stop event: what the daemon does."""
    events: list[dict[str, Any]] = []
    cfg = agent_config(tmp_path, keypair, tiny, probation_seconds=60.0, probation_min_windows=8)
    stop = threading.Event()
    life = ModelLife(cfg, status=events.append, stop=stop)
    outbox = Outbox(tmp_path / "outbox.sqlite", 100)
    pipeline = Pipeline(life.cfg, life.scorer, outbox, Stats(), on_batch=life.on_batch)
    thread = threading.Thread(target=pipeline.run, args=(stop,), daemon=True)
    thread.start()
    life.start(pipeline)
    try:
        yield life, pipeline, events
    finally:
        stop.set()
        thread.join(5)
        life.join(5)
        outbox.close()


def wait_event(events: list[dict[str, Any]], name: str, timeout: float = 20) -> dict[str, Any]:
    return wait_until(lambda: next((e for e in events if e["event"] == name), None), timeout, name, lambda: str(events))


@pytest.mark.timeout(60, func_only=True)
def test_valid_agent_config_fragment_is_applied_on_activation(running, tiny, keypair):
    life, pipeline, events = running
    assert pipeline.cfg.batch.max_records == 256
    life.submit_bundle(bundle(tiny, keypair, 1, agent_config={"batch": {"max_records": 64}}))
    wait_event(events, "activated")
    assert pipeline.cfg.batch.max_records == 64 and life.cfg.batch.max_records == 64
    assert pipeline.scorer.source.endswith("/slots/1")


@pytest.mark.timeout(60, func_only=True)
def test_rolled_back_bundle_takes_its_agent_config_with_it(running, tiny, keypair):
    life, pipeline, events = running
    life.submit_bundle(bundle(tiny, keypair, 1, agent_config={"batch": {"max_records": 64}}))
    wait_event(events, "activated")
    assert pipeline.cfg.batch.max_records == 64
    scores = np.full(8, 0.25, dtype=np.float32)
    life.on_batch(pipeline.scorer, None, scores, None)  # the pipeline's report: a constant score
    assert "health check" in wait_event(events, "rolled_back")["reason"]
    wait_until(lambda: pipeline.scorer.source == str(tiny.dir), 20, "the factory model back")
    assert pipeline.cfg.batch.max_records == 256 and life.cfg.batch.max_records == 256


@pytest.mark.timeout(60, func_only=True)
def test_restart_keeps_the_live_bundles_agent_config(running, tmp_path, tiny, keypair):
    life, _pipeline, events = running
    life.submit_bundle(bundle(tiny, keypair, 1, agent_config={"batch": {"max_records": 64}}))
    wait_event(events, "activated")
    restarted = ModelLife(life.base_cfg, status=lambda _e: None, stop=threading.Event())  # a new process
    assert restarted.scorer.source.endswith("/slots/1")
    assert restarted.cfg.batch.max_records == 64 and restarted.base_cfg.batch.max_records == 256


@pytest.mark.timeout(60, func_only=True)
def test_reload_switches_model_and_config_together_or_changes_nothing(running, tmp_path, tiny, keypair):
    """SIGHUP: a config whose model does not load leaves model and config as they were; a good one swaps both
    and keeps the live bundle's agent-config fragment on top of the new file."""
    life, pipeline, events = running
    serving, cfg = pipeline.scorer, life.cfg
    (tmp_path / "empty").mkdir()
    broken = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dir=str(tmp_path / "empty")))
    assert not life.reload(broken)
    assert life.cfg is life.base_cfg is cfg and pipeline.cfg is cfg and pipeline.scorer is serving

    life.submit_bundle(bundle(tiny, keypair, 1, agent_config={"batch": {"max_records": 64}}))
    wait_event(events, "activated")
    installed = pipeline.scorer
    quiet = dataclasses.replace(cfg, alerts=dataclasses.replace(cfg.alerts, publish_verdicts=False))
    assert life.reload(quiet)
    wait_until(lambda: pipeline.scorer is not installed, 20, "the reloaded model")
    assert pipeline.scorer.source.endswith("/slots/1") and pipeline.cfg is life.cfg and life.base_cfg is quiet
    assert life.cfg.batch.max_records == 64 and life.cfg.alerts.publish_verdicts is False


@pytest.mark.timeout(10)
def test_constant_score_on_identical_windows_is_not_a_failure_but_on_different_ones_it_is() -> None:
    same = np.zeros((8, 2, 3), dtype=np.int8)  # a flood of one flow: one score is right
    p = Probation(version=1, until=0.0, min_windows=8)
    assert p.observe(np.full(8, 0.99), None, same) is None
    assert p.observe(np.full(8, 0.99), None, same) is None
    different = np.arange(8 * 2 * 3, dtype=np.int8).reshape(8, 2, 3)
    assert p.observe(np.full(8, 0.99), None, different).startswith("health check: constant score")


@pytest.mark.timeout(60, func_only=True)
def test_selftest_tolerance_allows_the_configured_int8_steps_only(tiny):
    model = Scorer.load(tiny.dir).model
    files = tiny.files()
    off_by_one = flip_expected_output(tiny, row=3)["selftest_outputs.npy"]
    selftest(model, files["selftest_inputs.npy"], off_by_one, tolerance=1)
    with pytest.raises(SelfTestError, match="by more than 0 int8 steps"):
        selftest(model, files["selftest_inputs.npy"], off_by_one, tolerance=0)
