"""Shared pieces for the bundle tests: a real tiny int8 LiteRT model, its spec and self-test vectors,
key pairs, and a tar crafter for malicious bundles (re-signed so that the check under test fires)."""

from __future__ import annotations

import functools
import io
import json
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_bundle import keys
from firmware_bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME, canonical_json
from firmware_bundle.verifier import KEY_ID_PAX
from ids_core.preprocess import FeatureTransform, PreprocessSpec, Quantization

WINDOW, N_FEATURES = 4, 6
CREATED = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)
EXPIRES = CREATED + timedelta(days=90)
NOW = CREATED + timedelta(days=1)
AGENT_VERSION = "0.1.0"


@dataclass(frozen=True)
class TinyModel:
    """A trainer-like output: int8 model bytes, spec JSON, self-test .npy bytes."""

    model: bytes
    spec: PreprocessSpec
    selftest_inputs: bytes
    selftest_outputs: bytes

    @property
    def spec_json(self) -> bytes:
        return self.spec.to_json().encode()

    def files(self) -> dict[str, bytes]:
        """Bundle members (member name → bytes)."""
        return {
            "model.tflite": self.model,
            "spec.json": self.spec_json,
            "selftest_inputs.npy": self.selftest_inputs,
            "selftest_outputs.npy": self.selftest_outputs,
        }

    def write_artifacts(self, out: Path) -> Path:
        """Lay the files out like a training run's output directory."""
        out.mkdir(parents=True, exist_ok=True)
        (out / "model_int8.tflite").write_bytes(self.model)
        (out / "spec.json").write_bytes(self.spec_json)
        (out / "selftest_inputs.npy").write_bytes(self.selftest_inputs)
        (out / "selftest_outputs.npy").write_bytes(self.selftest_outputs)
        (out / "report.md").write_text("not shipped\n")
        return out


def make_spec(window: int = WINDOW, model_version: str = "1", **quant: Quantization | None) -> PreprocessSpec:
    features = tuple(f"f{i}" for i in range(N_FEATURES))
    transform = FeatureTransform(features, np.zeros(N_FEATURES), np.ones(N_FEATURES))
    return PreprocessSpec(transform, window, ("Src_IP",), 0.5, "tiny", model_version, **quant)


@functools.cache
def tiny_model() -> TinyModel:
    """Train nothing, convert a tiny Keras model to full-integer int8 TFLite (once per process)."""
    import tensorflow as tf  # slow import: only when a test needs the model

    from firmware_bundle.model_check import _interpreter_class

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential(
        [
            tf.keras.Input((WINDOW, N_FEATURES)),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(8, activation="relu"),
            tf.keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    rng = np.random.default_rng(0)
    calib = rng.random((64, WINDOW, N_FEATURES), dtype=np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    model_bytes = conv.convert()

    interp = _interpreter_class()(model_content=model_bytes)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    q_in, q_out = Quantization(*inp["quantization"]), Quantization(*out["quantization"])
    x = q_in.quantize(calib[:8])
    ys = []
    for row in x:
        interp.set_tensor(inp["index"], row[None])
        interp.invoke()
        ys.append(interp.get_tensor(out["index"])[0].copy())
    spec = make_spec(input_quantization=q_in, output_quantization=q_out)
    return TinyModel(model_bytes, spec, _npy(x), _npy(np.stack(ys)))


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def new_key() -> Ed25519PrivateKey:
    return keys.generate_private_key()


# --------------------------------------------------------------------------- crafting tars


@dataclass
class Entry:
    """A tar member to craft: any type, name, link target and content."""

    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    linkname: str = ""
    pax: dict[str, str] | None = None


def read_entries(bundle: bytes) -> list[Entry]:
    """A (well-formed) bundle → editable entries, in archive order."""
    out = []
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:") as tf:
        for ti in tf.getmembers():
            data = tf.extractfile(ti).read() if ti.isreg() else b""
            out.append(Entry(ti.name, data, ti.type, ti.linkname, dict(ti.pax_headers) or None))
    return out


def pack(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e.name)
            ti.type, ti.linkname, ti.mode = e.type, e.linkname, 0o644
            ti.size = len(e.data) if e.type == tarfile.REGTYPE else 0
            ti.pax_headers = dict(e.pax or {})
            tf.addfile(ti, io.BytesIO(e.data) if e.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def get(entries: list[Entry], name: str) -> Entry:
    return next(e for e in entries if e.name == name)


def manifest_of(entries: list[Entry]) -> dict:
    return json.loads(get(entries, MANIFEST_NAME).data)


def resign(entries: list[Entry], key: Ed25519PrivateKey, manifest: dict | None = None) -> list[Entry]:
    """Replace manifest.json (when given) and sign it again, so the signature check passes."""
    body = canonical_json(manifest) if manifest is not None else get(entries, MANIFEST_NAME).data
    out = [e for e in entries if e.name not in (MANIFEST_NAME, SIGNATURE_NAME)]
    sig = Entry(SIGNATURE_NAME, keys.sign(key, body), pax={KEY_ID_PAX: keys.key_id(key)})
    return [Entry(MANIFEST_NAME, body), sig, *out]


def flip_byte(bundle: bytes, member: str, offset: int = 10) -> bytes:
    """Flip one byte inside a member's data (the tar stays readable: headers do not cover data)."""
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:") as tf:
        ti = tf.getmember(member)
    pos = ti.offset_data + min(offset, ti.size - 1)
    return bundle[:pos] + bytes([bundle[pos] ^ 0x01]) + bundle[pos + 1 :]


# Module-scoped fixtures shared by the bundle test modules (imported there by name).
@pytest.fixture(scope="module")
def model() -> TinyModel:
    """A tiny full-int8 TFLite model (built once per module)."""
    return tiny_model()


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    """A fresh Ed25519 signing key."""
    return new_key()
