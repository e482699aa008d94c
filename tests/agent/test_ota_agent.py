"""Over-the-air model bundles at the real agent over a real Mosquitto: attacks are rejected with their own
reason while the model keeps serving, a good bundle swaps models at one point of a loaded stream, an install
killed at any step restarts on the old or the new model, and a broken model is refused or rolled back."""

from __future__ import annotations

import dataclasses
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.register_assert_rewrite("agent_harness", "ota_helpers")

from agent_harness import PREFIX, Stream, epoch, sample_rows, score_offline, wait_until  # noqa: E402
from bundle_helpers import Entry, flip_byte, pack, read_entries  # noqa: E402
from ota_helpers import (  # noqa: E402
    Artifacts,
    KeyPair,
    bundle,
    convert,
    flip_expected_output,
    make_keypair,
    publish,
    read_state,
    set_score_layer,
    statuses,
    utcnow,
    variant_request,
    verdict_models,
    wait_file,
    write_artifacts,
)

from agent import __version__ as AGENT_VERSION  # noqa: E402
from agent.install import PAUSE_ENV, STEPS, Installer  # noqa: E402
from agent.scorer import Scorer  # noqa: E402
from agent.slots import SlotStore  # noqa: E402
from firmware_bundle.limits import MIB, Limits  # noqa: E402
from firmware_bundle.manifest import MANIFEST_NAME  # noqa: E402

pytest_plugins = ["agent_harness"]

FLEET = f"{PREFIX}/fleet/bundle"  # the agent's bundle.topic default: <prefix>/fleet/bundle
MAX_BYTES = 4 * MIB
FINAL = ("rejected", "current", "activated", "error")  # the last status event of one delivered bundle


# --------------------------------------------------------------------------- models and keys


@dataclasses.dataclass(frozen=True)
class OtaModels:
    """Four int8 models for the quick spec's input, each with its own bytes (sha256) and version."""

    factory: Artifacts  # the quick run's shipped model: model.dir
    per_channel: Artifacts  # the same training, exported with per-channel int8 weights
    retrained: Artifacts  # the score layer's bias shifted: other scores
    broken: Artifacts  # score layer kernel 0, bias +20: passes its own self-test, constant score 1.0


@pytest.fixture(scope="session")
def ota_models(quick_run, tmp_path_factory: pytest.TempPathFactory) -> OtaModels:
    """Converted once per session (two trainer conversions in parallel, ~20 s)."""
    out, root = quick_run.out_dir, tmp_path_factory.mktemp("ota_models")
    spec = quick_run.spec()
    windows = np.load(out / "keras" / "representative.npy")[:32]
    requests = {
        "broken": variant_request(out, root / "work-broken", set_score_layer(20.0, zero_kernel=True)),
        "retrained": variant_request(out, root / "work-retrained", set_score_layer(bias_shift=0.5)),
    }
    with ThreadPoolExecutor(2) as pool:
        models = dict(zip(requests, pool.map(convert, requests.values()), strict=True))
    models["per_channel"] = (out / "model_int8_per_channel.tflite").read_bytes()
    arts = {
        name: write_artifacts(root / name, model, dataclasses.replace(spec, model_version=f"ota-{name}"), windows)
        for name, model in models.items()
    }
    result = OtaModels(factory=Artifacts(out), **arts)
    identities = [a.identity for a in (result.factory, *arts.values())]
    assert len({sha for _v, sha in identities}) == 4, identities
    return result


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_keypair(tmp_path_factory.mktemp("ota_keys"))


def ota_settings(keypair: KeyPair, **extra: Any) -> dict[str, Any]:
    return {
        "bundle__enabled": True,
        "bundle__public_keys": [str(keypair.pub_path)],
        "bundle__max_bytes": MAX_BYTES,
        "bundle__probation_seconds": 0.0,
        **extra,
    }


def preinstall(state_dir: Path, art: Artifacts, keypair: KeyPair, version: int) -> None:
    """Install ``art`` as bundle ``version`` into an agent's state dir before it starts, with the real Installer."""
    installer = Installer(
        SlotStore(state_dir / "models"),
        trusted_keys=[keypair.public],
        agent_version=AGENT_VERSION,
        limits=Limits(max_bundle_bytes=MAX_BYTES),
        probation_seconds=0.0,
        probation_min_windows=1,
        status=lambda _e: None,
    )
    assert installer.install(bundle(art, keypair, version), load=Scorer.load) is not None


# --------------------------------------------------------------------------- observing the agent


class Gateway:
    """Drives one agent: deliver bundles on the fleet topic, probe which model scores flows."""

    def __init__(self, agent, collector, broker, sample_csv: Path) -> None:
        self.agent, self.collector, self.broker = agent, collector, broker
        self.rows = sample_rows(sample_csv, 100, include_inf=False)
        self.probes = 0

    def deliver(self, data: bytes, *, retain: bool = True, timeout: float = 30) -> dict[str, Any]:
        """Publish a bundle and return the final status event it produced."""
        seen = len(statuses(self.collector))
        publish(self.broker.port, FLEET, data, retain=retain)
        return self.wait_status(FINAL, seen, timeout)

    def wait_status(self, events: tuple[str, ...], after: int = 0, timeout: float = 30) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((d for d in statuses(self.collector)[after:] if d["event"] in events), None)

        return wait_until(found, timeout, f"bundle status {events}", self.context)

    def probe(self, n: int = 3) -> set[tuple[str, str]]:
        """Publish ``n`` flows and return the (version, sha256) of the models that scored them."""
        self.probes += 1
        sensor = f"probe{self.probes}"
        stream = Stream(self.rows[:n], self.broker.port, sensor=sensor)
        stream.run()
        self.collector.wait_seqs(stream.seqs, 20, self.context, sensor=sensor)
        models = verdict_models(self.collector, sensor)
        assert sorted(models) == list(stream.seqs) and all(len(m) == 1 for m in models.values()), models
        return {m for ms in models.values() for m in ms}

    def context(self) -> str:
        return f"bundle status: {statuses(self.collector)}\n{self.agent.log()}"


@pytest.fixture
def gateway_for(collector, broker, sample_csv) -> Callable[[Any], Gateway]:
    return lambda agent: Gateway(agent, collector, broker, sample_csv)


# --------------------------------------------------------------------------- 1. attacks


@pytest.mark.timeout(120, func_only=True)
def test_attacks_are_rejected_with_their_own_reason_and_the_serving_model_is_untouched(
    agents, gateway_for, keypair, ota_models, tmp_path
):
    m = ota_models
    agent = agents.spawn(**ota_settings(keypair))
    gw = gateway_for(agent)
    state_dir = agent.state_dir
    assert gw.probe() == {m.factory.identity}

    good5 = bundle(m.per_channel, keypair, 5)
    good6 = bundle(m.retrained, keypair, 6)
    other_key = make_keypair(tmp_path / "other-key", "attacker")

    def attack(name: str, data: bytes, reason: str, serving: tuple[str, str]) -> None:
        doc = gw.deliver(data)
        assert (doc["event"], doc.get("reason")) == ("rejected", reason), (name, doc)
        assert doc["detail"], (name, doc)
        assert gw.probe() == {serving}, f"{name}: the serving model changed"

    factory = m.factory.identity
    attack("wrong key", bundle(m.per_channel, other_key, 5), "unknown_key", factory)
    attack("flipped byte in the model", flip_byte(good5, "model.tflite", 5000), "file_mismatch", factory)
    attack("flipped byte in the manifest", flip_byte(good5, MANIFEST_NAME, 40), "bad_signature", factory)

    doc = gw.deliver(good5)
    assert doc["event"] == "activated" and doc["bundle_version"] == 5, doc
    v5 = m.per_channel.identity
    assert gw.probe() == {v5}

    doc = gw.deliver(good5)  # the retained bundle again (a reconnect): nothing to do
    assert doc["event"] == "current" and doc["bundle_version"] == 5, doc
    attack("replayed older version", bundle(m.retrained, keypair, 3), "rollback", v5)
    attack("same version, another build", bundle(m.retrained, keypair, 5), "replay", v5)
    past = utcnow() - timedelta(days=2)
    attack("expired", bundle(m.retrained, keypair, 6, created=past, expires=past + timedelta(days=1)), "expired", v5)
    attack("truncated file", good6[: len(good6) // 2], "malformed", v5)
    huge = bundle(m.retrained, keypair, 6, agent_config="# padding\n" + "#" * MAX_BYTES + "\n")
    attack("oversized payload", huge, "too_large", v5)
    traversal = Entry("../../etc/cron.d/evil", b"* * * * * root sh\n")
    attack("path traversal member", pack([*read_entries(good6), traversal]), "unsafe_member", v5)
    symlink = Entry("evil", type=tarfile.SYMTYPE, linkname="/etc/shadow")
    attack("symlink member", pack([*read_entries(good6), symlink]), "unsafe_member", v5)
    other_t = dataclasses.replace(m.retrained.spec(), window_length=m.retrained.spec().window_length + 1)
    wrong_shape = bundle(m.retrained, keypair, 6, files={"spec.json": other_t.to_json().encode()})
    attack("model for another window length", wrong_shape, "model_shape", v5)
    attack("too-new agent required", bundle(m.retrained, keypair, 6, min_agent_version="9.0.0"), "agent_too_old", v5)

    slots = state_dir / "models" / "slots"
    assert sorted(p.name for p in slots.iterdir()) == ["5"], "a rejected bundle left files behind"
    assert read_state(state_dir)["highest_installed"] == 5, "a rejected bundle consumed its version"
    stats = gw.collector.wait_stats(lambda s: s["flows_scored"] >= 3 * gw.probes, 10, "stats", gw.context)
    assert (stats["model"]["version"], stats["model"]["sha256"]) == v5

    doc = gw.deliver(good6)  # none of the refused v6 attempts blocks the real v6
    assert doc["event"] == "activated" and doc["bundle_version"] == 6, doc
    assert gw.probe() == {m.retrained.identity}


# --------------------------------------------------------------------------- 2. hot swap under load


@pytest.mark.timeout(120, func_only=True)
def test_hot_swap_under_load_switches_model_at_one_point_and_scores_every_flow_once(
    agents, gateway_for, broker, sample_csv, keypair, ota_models
):
    m = ota_models
    agent = agents.spawn(**ota_settings(keypair, bundle__probation_seconds=2.0))
    gw = gateway_for(agent)
    rows = sample_rows(sample_csv, 1800, include_inf=False)
    stream = Stream(rows, broker.port, rate=300, per_message=1).start()
    wait_until(lambda: len(gw.collector.verdicts()) >= 400, 20, "verdicts before the swap", gw.context)
    publish(broker.port, FLEET, bundle(m.retrained, keypair, 7))
    stream.join(60)
    gw.collector.wait_seqs(stream.seqs, 60, gw.context, sensor="replay")

    models = verdict_models(gw.collector, "replay")
    assert sorted(models) == list(stream.seqs)
    assert all(len(v) == 1 for v in models.values()), {s: v for s, v in models.items() if len(v) != 1}
    in_order = [models[seq][0] for seq in stream.seqs]
    runs = [ident for i, ident in enumerate(in_order) if i == 0 or ident != in_order[i - 1]]
    assert runs == [m.factory.identity, m.retrained.identity], f"model changes in seq order: {runs}"
    switch = in_order.index(m.retrained.identity)
    assert 300 <= switch <= 1500, f"switched at flow {switch}, not mid-stream"

    # each flow's score is its model's own offline int8 score (so no flow was scored by a mix of both)
    payloads = stream.payloads()
    offline = {ident: score_offline(art.dir, payloads).scores for ident, art in
               ((m.factory.identity, m.factory), (m.retrained.identity, m.retrained))}  # fmt: skip
    verdicts = {v["seq"]: v["score"] for v in gw.collector.verdicts() if v.get("sensor") == "replay"}
    wrong = [seq for seq in stream.seqs if verdicts[seq] != round(offline[in_order[seq]][seq], 6)]
    assert not wrong, f"{len(wrong)} scores differ from their model's offline score, e.g. seq {wrong[:5]}"
    assert any(offline[m.factory.identity][s] != offline[m.retrained.identity][s] for s in stream.seqs)

    gw.wait_status(("committed",), timeout=15)
    events = [d["event"] for d in statuses(gw.collector)]
    assert events == ["received", "verified", "activated", "committed"], events
    activated, committed = statuses(gw.collector)[2:]
    assert activated["bundle_version"] == 7 and activated["model"]["version"] == m.retrained.version
    assert activated["previous"] is None and committed["bundle_version"] == 7
    assert epoch(committed["timestamp"]) - epoch(activated["timestamp"]) >= 1.5, "committed before its probation"
    state = read_state(agent.state_dir)
    assert (state["active"], state["probation_until"]) == (7, None), state


# --------------------------------------------------------------------------- 3. crash consistency


@pytest.mark.timeout(120, func_only=True)
@pytest.mark.parametrize("step", STEPS)
def test_install_killed_at_each_step_restarts_on_the_old_or_the_new_model(
    agents, gateway_for, keypair, ota_models, step
):
    """The bundle is published non-retained: the agent acknowledged it on arrival, so nothing re-delivers it
    after the restart and the model that is live then is what the crash left (a retained bundle would be
    installed again right away, hiding an old-model restart)."""
    m = ota_models
    old, new = m.per_channel, m.retrained
    cfg = agents.config(**ota_settings(keypair, bundle__probation_seconds=60.0))
    state_dir = Path(cfg["state_dir"])
    preinstall(state_dir, old, keypair, 5)
    agent = agents.spawn(cfg=cfg, env={PAUSE_ENV: step})
    gw = gateway_for(agent)
    assert gw.probe() == {old.identity}

    publish(gw.broker.port, FLEET, bundle(new, keypair, 7), retain=False)
    wait_file(state_dir / "models" / f"paused-at-{step}", 30, gw.context)
    agent.kill()
    new_is_live = STEPS.index(step) >= STEPS.index("state_written")
    assert (state_dir / "models" / "slots" / "7").exists() == (step != "verified"), "slot 7 after the kill"

    agent.env = {}
    agent.start().wait_connected()
    expected, version = (new, 7) if new_is_live else (old, 5)
    assert gw.probe() == {expected.identity}, f"killed at {step}: restarted on the wrong model"
    state = read_state(state_dir)
    assert state["active"] == version and state["highest_installed"] == version, state
    slots = state_dir / "models" / "slots"
    assert sorted(p.name for p in slots.iterdir()) == sorted({"5", str(version)}), "unreferenced or .tmp slots"
    assert Scorer.load(slots / str(version)).model.sha256 == expected.sha256
    assert gw.probe(20) == {expected.identity}

    if not new_is_live:  # the interrupted install did not consume version 7: delivering it again installs it
        doc = gw.deliver(bundle(new, keypair, 7), retain=False)
        assert doc["event"] == "activated" and doc["bundle_version"] == 7, doc
        assert gw.probe() == {new.identity}


# --------------------------------------------------------------------------- 4. self-test failure


@pytest.mark.timeout(90, func_only=True)
def test_bundle_whose_model_fails_its_selftest_is_rejected_and_never_live(agents, gateway_for, keypair, ota_models):
    m = ota_models
    agent = agents.spawn(**ota_settings(keypair))
    gw = gateway_for(agent)
    doc = gw.deliver(bundle(m.retrained, keypair, 4, files=flip_expected_output(m.retrained)))
    assert (doc["event"], doc["reason"]) == ("rejected", "selftest_failed"), doc
    assert "1 of 32 outputs differ" in doc["detail"], doc
    assert [d["event"] for d in statuses(gw.collector)] == ["received", "verified", "rejected"]
    assert gw.probe() == {m.factory.identity}
    assert list((agent.state_dir / "models" / "slots").iterdir()) == [], "the failed slot was not removed"
    assert not (agent.state_dir / "models" / "state.json").exists(), "a failed install wrote state"

    doc = gw.deliver(bundle(m.retrained, keypair, 4))  # the same version, correct vectors: installs
    assert doc["event"] == "activated", doc
    assert gw.probe() == {m.retrained.identity}


# --------------------------------------------------------------------------- 5. probation failure


@pytest.mark.timeout(120, func_only=True)
def test_constant_score_model_is_rolled_back_during_probation(
    agents, gateway_for, broker, sample_csv, keypair, ota_models
):
    m = ota_models
    cfg = agents.config(**ota_settings(keypair, bundle__probation_seconds=30.0, bundle__probation_min_windows=32))
    state_dir = Path(cfg["state_dir"])
    preinstall(state_dir, m.per_channel, keypair, 5)
    agent = agents.spawn(cfg=cfg)
    gw = gateway_for(agent)
    assert gw.probe() == {m.per_channel.identity}

    doc = gw.deliver(bundle(m.broken, keypair, 6))
    assert doc["event"] == "activated" and doc["previous"] == 5, doc
    stream = Stream(sample_rows(sample_csv, 600, include_inf=False), broker.port, rate=200).start()
    rolled = gw.wait_status(("rolled_back",), timeout=30)
    assert "health check" in rolled["reason"] and (rolled["bundle_version"], rolled["to"]) == (6, 5), rolled
    stream.join(60)
    gw.collector.wait_seqs(stream.seqs, 30, gw.context, sensor="replay")

    models = verdict_models(gw.collector, "replay")
    assert all(len(v) == 1 for v in models.values())
    in_order = [models[seq][0] for seq in stream.seqs]
    runs = [ident for i, ident in enumerate(in_order) if i == 0 or ident != in_order[i - 1]]
    assert runs == [m.broken.identity, m.per_channel.identity], runs
    broken_scores = {v["score"] for v in gw.collector.verdicts() if v.get("sensor") == "replay" and
                     models[v["seq"]][0] == m.broken.identity}  # fmt: skip
    assert len(broken_scores) == 1 and in_order.count(m.broken.identity) >= 32, broken_scores

    state = read_state(state_dir)
    assert (state["active"], state["previous"], state["highest_installed"]) == (5, None, 6), state
    assert not (state_dir / "models" / "slots" / "6").exists()
    assert gw.probe() == {m.per_channel.identity}
    events = [d["event"] for d in statuses(gw.collector)]
    assert events == ["received", "verified", "activated", "rolled_back"], events
