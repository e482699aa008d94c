"""Build and sign OTA bundles: one deterministic, uncompressed tar.

Layout, in this order: ``manifest.json`` (canonical JSON), ``manifest.sig`` (64-byte raw Ed25519
signature over the exact manifest.json bytes, with the signer's key id in the PAX header
``EDGEIDS.key_id``; absent when unsigned), then the files sorted by name. Every member: regular file,
mode 0644, uid/gid 0, empty uname/gname, mtime = the manifest's ``created`` (epoch seconds). Same
inputs → same bytes (Ed25519 signatures are deterministic too).
"""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_bundle import keys
from firmware_bundle.errors import BundleTooLargeError
from firmware_bundle.limits import Limits
from firmware_bundle.manifest import (
    AGENT_CONFIG_FILE,
    FIRST_AGENT_VERSION,
    FORMAT,
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Manifest,
    format_time,
    parse_time,
)
from firmware_bundle.verifier import (
    KEY_ID_PAX,
    InspectModel,
    check_files,
    check_members,
    check_model,
    read_manifest_bytes,
    read_members,
)
from ids_core import artifacts
from ids_core.category import CategorySpec
from ids_core.preprocess import PreprocessSpec

log = logging.getLogger(__name__)

# trainer output file → bundle member
ARTIFACTS = artifacts.RUN_TO_BUNDLE


def build_bundle(
    files: Mapping[str, bytes],
    *,
    bundle_version: int,
    model_name: str,
    model_version: str,
    created: datetime | str,
    expires: datetime | str,
    min_agent_version: str = FIRST_AGENT_VERSION,
    sign_key: Ed25519PrivateKey | None = None,
    inspect_model: InspectModel | None = None,
    limits: Limits = Limits(),  # noqa: B008 - frozen, immutable default
) -> bytes:
    """Bundle ``files`` (member name → bytes) under a new manifest; signed when ``sign_key`` is given.

    The manifest goes through the verifier's schema check and the bundle through its file, member
    and spec checks (and the shape check when ``inspect_model`` is given), so a bundle this returns
    fails on the gateway only for time, version, agent or key reasons.
    """
    raw = {
        "format": FORMAT,
        "bundle_version": bundle_version,
        "model": {"name": model_name, "version": model_version},
        "created": _time_text(created),
        "expires": _time_text(expires),
        "min_agent_version": min_agent_version,
        "files": {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in files.items()},
    }
    manifest = Manifest.from_dict(raw, limits)
    manifest_bytes = manifest.to_bytes()
    check_model(manifest, dict(files), inspect_model)
    bundle = _pack(manifest, manifest_bytes, dict(files), sign_key, limits)
    log.info("built bundle %d (%d bytes, %s)", bundle_version, len(bundle), "signed" if sign_key else "unsigned")
    return bundle


def sign_bundle(bundle: bytes, private_key: Ed25519PrivateKey, limits: Limits = Limits()) -> bytes:  # noqa: B008
    """(Re-)sign a bundle: same manifest bytes and files, a new manifest.sig by ``private_key``.

    Refuses (BundleError) a bundle that the verifier's schema, file, member or spec checks reject,
    so nothing unsafe gets a signature.
    """
    members = read_members(bundle, limits)
    manifest_bytes = read_manifest_bytes(members, limits)
    manifest = Manifest.from_bytes(manifest_bytes, limits)
    files = check_files(manifest, members)
    check_members(manifest, members, limits)
    check_model(manifest, files, None)
    signed = _pack(manifest, manifest_bytes, files, private_key, limits)
    log.info("signed bundle %d with key %s", manifest.bundle_version, keys.key_id(private_key)[:16])
    return signed


def build_from_artifacts(
    artifact_dir: str | Path,
    *,
    bundle_version: int,
    created: datetime | str,
    expires: datetime | str,
    min_agent_version: str = FIRST_AGENT_VERSION,
    agent_config: str | Path | None = None,
    sign_key: Ed25519PrivateKey | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    inspect_model: InspectModel | None = None,
    limits: Limits = Limits(),  # noqa: B008
) -> bytes:
    """Bundle a trainer output directory (model_int8.tflite → model.tflite, spec.json, self-test vectors).

    Model name and version default to the spec's. ``agent_config`` (a YAML mapping) is shipped as
    agent-config.yaml. The self-test vectors must be int8 arrays whose shapes match the spec.
    """
    src = Path(artifact_dir)
    files: dict[str, bytes] = {}
    for name, member in ARTIFACTS.items():
        path = src / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: expected the trainer's {name}, got no such file")
        files[member] = path.read_bytes()
    optional = {m: src / n for n, m in artifacts.OPTIONAL_RUN_TO_BUNDLE.items() if (src / n).is_file()}
    if optional and len(optional) < len(artifacts.OPTIONAL_RUN_TO_BUNDLE):
        missing = sorted(set(artifacts.OPTIONAL_RUN_TO_BUNDLE) - {p.name for p in optional.values()})
        raise FileNotFoundError(f"{src}: expected the whole category model, got no {', '.join(missing)}")
    files |= {m: p.read_bytes() for m, p in optional.items()}
    spec = PreprocessSpec.load(src / artifacts.SPEC)
    _check_selftest(files, spec)
    if optional:
        category = CategorySpec.from_bytes(files[artifacts.CATEGORY_SPEC])
        pair = (artifacts.CATEGORY_SELFTEST_INPUTS, artifacts.CATEGORY_SELFTEST_OUTPUTS)
        _check_selftest(files, spec, pair, category.input_shape)
    if agent_config is not None:
        text = Path(agent_config).read_bytes()
        parsed = yaml.safe_load(text)
        if not isinstance(parsed, dict):
            raise ValueError(f"{agent_config}: expected a YAML mapping, got {type(parsed).__name__}")
        files[AGENT_CONFIG_FILE] = text
    return build_bundle(
        files,
        bundle_version=bundle_version,
        model_name=model_name or spec.model_name,
        model_version=model_version or spec.model_version,
        created=created,
        expires=expires,
        min_agent_version=min_agent_version,
        sign_key=sign_key,
        inspect_model=inspect_model,
        limits=limits,
    )


# --------------------------------------------------------------------------- helpers


def _pack(
    manifest: Manifest,
    manifest_bytes: bytes,
    files: dict[str, bytes],
    sign_key: Ed25519PrivateKey | None,
    limits: Limits,
) -> bytes:
    mtime = int(manifest.created.timestamp())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        _add(tf, MANIFEST_NAME, manifest_bytes, mtime)
        if sign_key is not None:
            signature = keys.sign(sign_key, manifest_bytes)
            _add(tf, SIGNATURE_NAME, signature, mtime, {KEY_ID_PAX: keys.key_id(sign_key)})
        for name in sorted(files):
            _add(tf, name, files[name], mtime)
    data = buf.getvalue()
    if len(data) > limits.max_bundle_bytes:
        raise BundleTooLargeError(f"bundle: expected at most {limits.max_bundle_bytes} bytes, got {len(data)}")
    return data


def _add(tf: tarfile.TarFile, name: str, data: bytes, mtime: int, pax: dict[str, str] | None = None) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.type = len(data), mtime, 0o644, tarfile.REGTYPE
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.pax_headers = dict(pax or {})
    tf.addfile(ti, io.BytesIO(data))


def _time_text(value: datetime | str) -> str:
    return format_time(value) if isinstance(value, datetime) else format_time(parse_time(value))


def _check_selftest(
    files: dict[str, bytes],
    spec: PreprocessSpec,
    names: tuple[str, str] = (artifacts.SELFTEST_INPUTS, artifacts.SELFTEST_OUTPUTS),
    input_shape: tuple[int, ...] | None = None,
) -> None:
    """The trainer's self-test vectors: int8, (n, T, F) inputs (``input_shape`` for another model, e.g. the
    category model's) and outputs for the same n."""
    arrays = {}
    for name in names:
        try:
            arrays[name] = np.load(io.BytesIO(files[name]), allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ValueError(f"{name}: expected a .npy array, got {e}") from None
        if arrays[name].dtype != np.int8:
            raise ValueError(f"{name}: expected int8, got {arrays[name].dtype}")
    x, y = arrays[names[0]], arrays[names[1]]
    want = spec.input_shape if input_shape is None else input_shape
    if x.shape[1:] != want or len(x) == 0:
        raise ValueError(f"{names[0]}: expected shape (n>0, *{want}), got {x.shape}")
    if y.shape[:1] != x.shape[:1]:
        raise ValueError(f"{names[1]}: expected {len(x)} rows like the inputs, got shape {y.shape}")
