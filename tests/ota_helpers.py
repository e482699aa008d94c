"""Pieces for the OTA tests: signing keys on disk, trainer-like artifact directories (the quick model and
models converted from its trained weights exactly as ``trainer/export.py`` does), signed bundles built from
them, an MQTT publisher for the fleet topic and views of what the agent reported."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_bundle import keys
from firmware_bundle.builder import build_bundle
from firmware_bundle.manifest import AGENT_CONFIG_FILE, FIRST_AGENT_VERSION
from ids_core import artifacts
from ids_core.interpreter import TFLiteModel
from ids_core.preprocess import PreprocessSpec

ARTIFACT_FILES = artifacts.RUN_TO_BUNDLE


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 signing key and its public PEM file (what ``bundle.public_keys`` lists)."""

    private: Ed25519PrivateKey
    pub_path: Path

    @property
    def public(self):
        return self.private.public_key()


def make_keypair(directory: Path, name: str = "fleet") -> KeyPair:
    priv_path, pub_path, _kid = keys.write_keypair(directory, name)
    return KeyPair(keys.load_private_key(priv_path), pub_path)


# --------------------------------------------------------------------------- artifacts


@dataclass(frozen=True)
class Artifacts:
    """A trainer-like output directory: model_int8.tflite, spec.json, self-test vectors."""

    dir: Path

    def spec(self) -> PreprocessSpec:
        return PreprocessSpec.load(self.dir / "spec.json")

    @property
    def model_bytes(self) -> bytes:
        return (self.dir / "model_int8.tflite").read_bytes()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model_bytes).hexdigest()  # as ids_core.interpreter.TFLiteModel.sha256

    @property
    def version(self) -> str:
        return self.spec().model_version

    @property
    def identity(self) -> tuple[str, str]:
        """(model version, model sha256): what every verdict carries."""
        return self.version, self.sha256

    def files(self) -> dict[str, bytes]:
        """Bundle members (name → bytes)."""
        return {member: (self.dir / name).read_bytes() for name, member in ARTIFACT_FILES.items()}


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def write_artifacts(out: Path, model: bytes, spec: PreprocessSpec, windows: np.ndarray) -> Artifacts:
    """Lay out ``model`` like a training run: the spec with the model's own quantization, and self-test
    vectors made the way export does (``windows`` quantized by the model, the model's int8 outputs)."""
    out.mkdir(parents=True, exist_ok=True)
    m = TFLiteModel(model)
    spec = dataclasses.replace(spec, input_quantization=m.input_quantization, output_quantization=m.output_quantization)
    (out / "model_int8.tflite").write_bytes(model)
    spec.save(out / "spec.json")
    x = m.quantize(windows)
    np.save(out / "selftest_inputs.npy", x)
    np.save(out / "selftest_outputs.npy", m.invoke_raw(x))
    return Artifacts(out)


def variant_request(quick_out: Path, work: Path, edit: Callable[[Any], None]) -> dict[str, Any]:
    """A ``trainer.convert`` request for the quick run's trained Uni-Hybrid with ``edit(keras_model)`` applied to
    its weights: int8 per-tensor from the unrolled twin, calibrated on the run's representative windows, exactly
    as ``trainer/export.py`` asks for it. The model lands in ``work/model_int8.tflite``."""
    from trainer.models import build_model

    work.mkdir(parents=True, exist_ok=True)
    request = json.loads((quick_out / "keras" / "convert_request.json").read_text())
    trained = np.load(request["weights"])
    model = build_model(request["model"], tuple(request["input_shape"]), **request.get("build_params", {}))
    model.set_weights([trained[f"w{i}"] for i in range(len(trained.files))])
    edit(model)
    np.savez(work / "weights.npz", **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    return request | {
        "weights": str(work / "weights.npz"),
        "targets": [{"kind": "int8", "per_channel": False, "path": str(work / "model_int8.tflite")}],
    }


def convert(request: dict[str, Any]) -> bytes:
    """Run a request from :func:`variant_request` in the trainer's conversion child process."""
    from trainer.convert import run_conversion

    target = Path(request["targets"][0]["path"])
    run_conversion(request, target.parent)
    return target.read_bytes()


def set_score_layer(bias: float | None = None, *, zero_kernel: bool = False, bias_shift: float = 0.0):
    """An ``edit`` for :func:`variant_request`: change the last Dense layer (``score``)."""

    def edit(model: Any) -> None:
        layer = model.get_layer("score")
        kernel, b = layer.get_weights()
        if zero_kernel:
            kernel = np.zeros_like(kernel)
        b = np.full_like(b, bias) if bias is not None else b + bias_shift
        layer.set_weights([kernel, b])

    return edit


# --------------------------------------------------------------------------- bundles


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def bundle(
    art: Artifacts,
    key: KeyPair | Ed25519PrivateKey,
    version: int,
    *,
    files: dict[str, bytes] | None = None,
    agent_config: dict[str, Any] | str | None = None,
    created: datetime | None = None,
    expires: datetime | None = None,
    min_agent_version: str = FIRST_AGENT_VERSION,
) -> bytes:
    """A bundle of ``art`` (members replaced by ``files``), signed by ``key``; valid from a minute ago for 30
    days unless told otherwise. ``agent_config`` is shipped as agent-config.yaml."""
    members = art.files() | (files or {})
    if agent_config is not None:
        text = agent_config if isinstance(agent_config, str) else yaml.safe_dump(agent_config)
        members[AGENT_CONFIG_FILE] = text.encode()
    spec = json.loads(members["spec.json"])
    created = created or utcnow() - timedelta(minutes=1)
    return build_bundle(
        members,
        bundle_version=version,
        model_name=spec["model"]["name"],
        model_version=spec["model"]["version"],
        created=created,
        expires=expires or created + timedelta(days=30),
        min_agent_version=min_agent_version,
        sign_key=key.private if isinstance(key, KeyPair) else key,
    )


def flip_expected_output(art: Artifacts, row: int = 0) -> dict[str, bytes]:
    """selftest_outputs.npy with one expected int8 output changed by one step."""
    y = np.load(art.dir / "selftest_outputs.npy")
    y[row, 0] = y[row, 0] - 1 if y[row, 0] > -128 else y[row, 0] + 1
    return {"selftest_outputs.npy": npy(y)}


# --------------------------------------------------------------------------- MQTT


def publish(port: int, topic: str, payload: bytes, *, retain: bool = True, timeout: float = 10) -> None:
    """Publish one QoS 1 message and wait for the broker's PUBACK."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        info = c.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout)
        assert info.is_published(), f"broker did not acknowledge {len(payload)} bytes on {topic}"
    finally:
        c.disconnect()
        c.loop_stop()


def statuses(collector: Any) -> list[dict[str, Any]]:
    """Every ``<prefix>/<gw>/bundle/status`` event received, in order."""
    return collector.docs("bundle/status")


def verdict_models(collector: Any, sensor: str | None = None) -> dict[int, list[tuple[str, str]]]:
    """seq → the (model version, sha256) of each verdict given for it (normally one)."""
    out: dict[int, list[tuple[str, str]]] = {}
    for doc in collector.docs("verdicts"):
        model = (doc["model"]["version"], doc["model"]["sha256"])
        for v in doc["verdicts"]:
            if sensor is None or v.get("sensor") == sensor:
                out.setdefault(v["seq"], []).append(model)
    return out


def read_state(state_dir: Path) -> dict[str, Any]:
    return json.loads((state_dir / "models" / "state.json").read_text())


def wait_file(path: Path, timeout: float, context: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {path}\n{context()}")
        time.sleep(0.05)
