"""Verify an OTA bundle from its bytes: no I/O, no extraction, checks in a fixed order.

:func:`verify_bundle` runs, in this order, raising the first failure's own exception:

1. size ≤ ``limits.max_bundle_bytes`` (before anything is parsed) — BundleTooLargeError;
2. the tar is read in memory (uncompressed only; ≤ ``max_members`` headers, nothing but zero padding
   after the last one) and manifest.sig verifies over the exact manifest.json bytes under one of the
   pinned keys — MalformedBundleError / UnsignedBundleError / SignatureError / UnknownKeyError;
3. manifest schema — ManifestError;
4. ``now`` < ``expires``, and ``created`` ≤ ``now`` + ``limits.max_clock_skew`` — ExpiredBundleError /
   NotYetValidError. A gateway whose clock lags (no RTC, no NTP yet) therefore refuses new bundles
   until its clock is set; that failure is safe (the working model stays) and retried later;
5. ``bundle_version`` > ``highest_installed`` — RollbackError (older) / ReplayError (equal);
6. ``min_agent_version`` ≤ ``agent_version`` — AgentTooOldError;
7. every listed file is present with its size and sha256 — FileMismatchError;
8. every member is a unique regular file with a plain name listed in the manifest — UnsafeMemberError;
9. spec.json is a valid :class:`PreprocessSpec` for the manifest's model — BadSpecError; the model's
   input/output shapes (``inspect_model``, batch dimension dropped) equal the spec's — ModelShapeError.

The signer's key id may be named, unauthenticated, in the PAX header ``EDGEIDS.key_id`` of
manifest.sig. It only orders the keys tried and chooses between UnknownKeyError and SignatureError;
acceptance never depends on it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_bundle import keys
from firmware_bundle.errors import (
    AgentTooOldError,
    BadModelError,
    BadSpecError,
    BundleTooLargeError,
    ExpiredBundleError,
    FileMismatchError,
    MalformedBundleError,
    ModelShapeError,
    NotYetValidError,
    ReplayError,
    RollbackError,
    SignatureError,
    UnknownKeyError,
    UnsafeMemberError,
    UnsignedBundleError,
)
from firmware_bundle.limits import Limits
from firmware_bundle.manifest import (
    MANIFEST_NAME,
    MODEL_FILE,
    SIGNATURE_NAME,
    SPEC_FILE,
    Manifest,
    format_time,
    parse_agent_version,
    parse_version,
)
from ids_core import artifacts
from ids_core.category import CategorySpec
from ids_core.preprocess import PreprocessSpec, SpecError

log = logging.getLogger(__name__)

KEY_ID_PAX = "EDGEIDS.key_id"
InspectModel = Callable[[bytes], tuple[tuple[int, ...], tuple[int, ...]]]

_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_KINDS = {
    tarfile.REGTYPE: "regular file",
    tarfile.AREGTYPE: "regular file",
    tarfile.DIRTYPE: "directory",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "fifo",
    tarfile.CONTTYPE: "contiguous file",
    tarfile.GNUTYPE_SPARSE: "sparse file",
}
_TAR_ERRORS = (tarfile.TarError, EOFError, OSError, ValueError, UnicodeError, OverflowError)


@dataclass(frozen=True)
class Member:
    """One tar member as read from the bundle (``data`` is empty unless it is a regular file)."""

    name: str
    kind: str
    size: int
    linkname: str = ""
    data: bytes = b""
    pax_headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_regular(self) -> bool:
        return self.kind == "regular file"


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle that passed every check: what the installer may write to a slot."""

    manifest: Manifest
    manifest_bytes: bytes
    files: dict[str, bytes]
    key_id: str
    spec: PreprocessSpec


def verify_bundle(
    data: bytes,
    *,
    trusted_keys: Sequence[Ed25519PublicKey],
    now: datetime,
    highest_installed: int,
    agent_version: str,
    limits: Limits = Limits(),  # noqa: B008 - frozen, immutable default
    inspect_model: InspectModel | None = None,
) -> VerifiedBundle:
    """Run checks 1-9 (module docstring) on ``data``; return the verified contents or raise BundleError.

    ``now`` (timezone-aware) is the single reference time. ``highest_installed`` is the highest
    ``bundle_version`` ever installed (0 = none). ``inspect_model`` returns a model's input and
    output shapes without the batch dimension (:func:`firmware_bundle.model_check.inspect_model`);
    ``None`` skips the shape comparison, not the spec check. Caller errors (no trusted keys, naive
    ``now``, malformed ``agent_version``) raise ValueError.
    """
    if not trusted_keys:
        raise ValueError("expected at least one trusted public key, got none")
    if now.tzinfo is None:
        raise ValueError(f"expected a timezone-aware reference time, got naive {now.isoformat()}")
    if isinstance(highest_installed, bool) or not isinstance(highest_installed, int) or highest_installed < 0:
        raise ValueError(f"expected highest_installed to be an integer >= 0, got {highest_installed!r}")
    agent = parse_agent_version(agent_version)

    # (1) size, before parsing
    if len(data) > limits.max_bundle_bytes:
        raise BundleTooLargeError(f"bundle: expected at most {limits.max_bundle_bytes} bytes, got {len(data)}")
    # (2) signature over the exact manifest bytes
    members = read_members(data, limits)
    manifest_bytes, signer = check_signature(members, trusted_keys, limits)
    # (3) schema
    manifest = Manifest.from_bytes(manifest_bytes, limits)
    # (4) validity window
    if now >= manifest.expires:
        raise ExpiredBundleError(
            f"expires: expected after now ({format_time(now)}), got {format_time(manifest.expires)}"
        )
    if manifest.created - now > limits.max_clock_skew:
        raise NotYetValidError(
            f"created: expected at most {limits.max_clock_skew} after now ({format_time(now)}), "
            f"got {format_time(manifest.created)} (is the gateway clock set?)"
        )
    # (5) version
    if manifest.bundle_version < highest_installed:
        raise RollbackError(
            f"bundle_version: expected above {highest_installed} (installed), got older {manifest.bundle_version}"
        )
    if manifest.bundle_version == highest_installed:
        raise ReplayError(f"bundle_version: expected above {highest_installed} (installed), got the same version again")
    # (6) agent
    if parse_version(manifest.min_agent_version) > agent:
        raise AgentTooOldError(
            f"min_agent_version: expected at most {agent_version} (this agent), got {manifest.min_agent_version}"
        )
    # (7) files, (8) members, (9) spec and model
    files = check_files(manifest, members)
    check_members(manifest, members, limits)
    spec = check_model(manifest, files, inspect_model)
    log.info(
        "bundle %d (model %s %s) verified, signed by %s",
        manifest.bundle_version,
        manifest.model_name,
        manifest.model_version,
        signer[:16],
    )
    return VerifiedBundle(manifest, manifest_bytes, files, signer, spec)


# --------------------------------------------------------------------------- (2) tar and signature


def read_members(data: bytes, limits: Limits = Limits()) -> list[Member]:  # noqa: B008
    """Tar headers → members, in archive order, in memory (uncompressed tar only; never extracts)."""
    members: list[Member] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            while (ti := tf.next()) is not None:
                if len(members) >= limits.max_members:
                    raise BundleTooLargeError(f"bundle: expected at most {limits.max_members} members, got more")
                members.append(_member(ti, data))
            end = tf.offset
    except _TAR_ERRORS as e:
        raise MalformedBundleError(f"bundle: expected an uncompressed tar, got unreadable data ({e})") from None
    trailing = data[end:]
    if trailing.strip(b"\0"):
        raise MalformedBundleError(
            f"bundle: expected only zero padding after the last member, got {len(trailing)} bytes of data"
        )
    return members


def _member(ti: tarfile.TarInfo, data: bytes) -> Member:
    kind = _KINDS.get(ti.type, f"member of type {ti.type!r}")
    if kind == "regular file" and ti.sparse is not None:
        kind = "sparse file"
    content = b""
    if kind == "regular file":
        end = ti.offset_data + ti.size
        if end > len(data):
            raise MalformedBundleError(
                f"{ti.name!r}: expected {ti.size} bytes of data, got {max(len(data) - ti.offset_data, 0)} "
                "(truncated bundle)"
            )
        content = data[ti.offset_data : end]
    return Member(ti.name, kind, ti.size, ti.linkname, content, dict(ti.pax_headers))


def check_signature(
    members: Sequence[Member],
    trusted_keys: Sequence[Ed25519PublicKey],
    limits: Limits = Limits(),  # noqa: B008
) -> tuple[bytes, str]:
    """Return (manifest.json bytes, signer key id) when manifest.sig verifies under a trusted key."""
    manifest = read_manifest_bytes(members, limits)
    sig = _single(members, SIGNATURE_NAME)
    if sig is None:
        raise UnsignedBundleError(f"bundle: expected a {SIGNATURE_NAME} member, got an unsigned bundle")
    if len(sig.data) != keys.SIGNATURE_LENGTH:
        raise SignatureError(
            f"{SIGNATURE_NAME}: expected a {keys.SIGNATURE_LENGTH}-byte Ed25519 signature, got {len(sig.data)} bytes"
        )
    trusted = {keys.key_id(k): k for k in trusted_keys}
    claimed = sig.pax_headers.get(KEY_ID_PAX)
    order = sorted(trusted, key=lambda kid: kid != claimed)  # the claimed key first, if pinned
    for kid in order:
        if keys.verify_signature(trusted[kid], sig.data, manifest):
            return manifest, kid
    pinned = ", ".join(k[:16] for k in trusted)
    if claimed is not None and claimed not in trusted:
        raise UnknownKeyError(
            f"{SIGNATURE_NAME}: expected a signature by a pinned key ({pinned}), got one by key {claimed[:64]!r}"
        )
    raise SignatureError(
        f"{SIGNATURE_NAME}: expected a valid signature over {MANIFEST_NAME} by a pinned key ({pinned}), "
        "got one that does not verify (manifest or signature altered)"
    )


def read_manifest_bytes(members: Sequence[Member], limits: Limits = Limits()) -> bytes:  # noqa: B008
    """The one manifest.json member's bytes (not yet authenticated)."""
    manifest = _single(members, MANIFEST_NAME)
    if manifest is None:
        raise MalformedBundleError(f"bundle: expected a {MANIFEST_NAME} member, got none")
    if manifest.size > limits.max_manifest_bytes:
        raise BundleTooLargeError(
            f"{MANIFEST_NAME}: expected at most {limits.max_manifest_bytes} bytes, got {manifest.size}"
        )
    return manifest.data


def _single(members: Sequence[Member], name: str) -> Member | None:
    found = [m for m in members if m.name == name]
    if len(found) > 1:
        raise MalformedBundleError(f"bundle: expected one {name} member, got {len(found)}")
    if found and not found[0].is_regular:
        raise MalformedBundleError(f"{name}: expected a regular file, got a {found[0].kind}")
    return found[0] if found else None


# --------------------------------------------------------------------------- (7) files, (8) members


def check_files(manifest: Manifest, members: Sequence[Member]) -> dict[str, bytes]:
    """Every listed file with its exact size and sha256 → {name: bytes}. Links carry no data."""
    first: dict[str, Member] = {}
    for m in members:
        first.setdefault(m.name, m)
    files: dict[str, bytes] = {}
    for name, entry in sorted(manifest.files.items()):
        m = first.get(name)
        if m is None:
            raise FileMismatchError(f"{name}: expected a member of {entry.size} bytes, got none")
        if len(m.data) != entry.size:
            raise FileMismatchError(f"{name}: expected {entry.size} bytes, got {len(m.data)}")
        digest = hashlib.sha256(m.data).hexdigest()
        if digest != entry.sha256:
            raise FileMismatchError(f"{name}: expected sha256 {entry.sha256}, got {digest}")
        files[name] = m.data
    return files


def check_members(manifest: Manifest, members: Sequence[Member], limits: Limits = Limits()) -> None:  # noqa: B008
    """Every member is a regular file with a plain, unique name that the manifest lists."""
    allowed = {*manifest.files, MANIFEST_NAME, SIGNATURE_NAME}
    seen: set[str] = set()
    for m in members:
        name = m.name
        if not m.is_regular:
            target = f" -> {m.linkname!r}" if m.linkname else ""
            raise UnsafeMemberError(f"{name!r}: expected a regular file, got a {m.kind}{target}")
        problem = unsafe_name(name, limits)
        if problem:
            raise UnsafeMemberError(f"{name!r}: expected a plain file name, got {problem}")
        if name in seen:
            raise UnsafeMemberError(f"{name!r}: expected each member once, got a duplicate")
        if name not in allowed:
            raise UnsafeMemberError(f"{name!r}: expected only members listed in the manifest, got an unlisted one")
        seen.add(name)


def unsafe_name(name: str, limits: Limits = Limits()) -> str | None:  # noqa: B008
    """Why ``name`` is not a plain file name, or None. Plain: ``[A-Za-z0-9][A-Za-z0-9._-]*``."""
    if len(name) > limits.max_name_length:
        return f"a name of {len(name)} characters (limit {limits.max_name_length})"
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "a path traversal ('..')"
    if "/" in name or "\\" in name:
        return "a path with directories"
    if not _PLAIN_NAME.fullmatch(name):
        return "characters outside [A-Za-z0-9._-]"
    return None


# --------------------------------------------------------------------------- (9) spec and model


def check_model(manifest: Manifest, files: dict[str, bytes], inspect_model: InspectModel | None) -> PreprocessSpec:
    """spec.json parses and names the manifest's model; the model's shapes equal the spec's."""
    try:
        raw = json.loads(files[SPEC_FILE].decode("utf-8"), parse_constant=_no_constant)
        spec = PreprocessSpec.from_dict(raw)
        want_in, want_out = _shape(raw["input"]["shape"]), _shape(raw["output"]["shape"])
    except (UnicodeDecodeError, ValueError, RecursionError, SpecError, KeyError, TypeError) as e:
        raise BadSpecError(f"{SPEC_FILE}: expected a preprocessing spec, got {e}") from None
    if (spec.model_name, spec.model_version) != (manifest.model_name, manifest.model_version):
        raise BadSpecError(
            f"{SPEC_FILE}: expected model {manifest.model_name} {manifest.model_version} (manifest), "
            f"got {spec.model_name} {spec.model_version}"
        )
    category = check_category_spec(files, spec)
    if inspect_model is None:
        log.debug("model shape check skipped (no inspect_model)")
        return spec
    try:
        got_in, got_out = inspect_model(files[MODEL_FILE])
    except Exception as e:  # the interpreter raises various types on a bad flatbuffer
        raise BadModelError(f"{MODEL_FILE}: expected a model the interpreter loads, got {type(e).__name__}: {e}") from e
    for what, want, got in (("input", want_in, got_in), ("output", want_out, got_out)):
        if tuple(got) != want:
            raise ModelShapeError(
                f"{MODEL_FILE}: expected {what} shape {list(want)} ({SPEC_FILE} {what}.shape), got {list(got)}"
            )
    if category is not None:
        name = artifacts.CATEGORY_MODEL
        try:
            got_in, got_out = inspect_model(files[name])
        except Exception as e:
            raise BadModelError(f"{name}: expected a model the interpreter loads, got {type(e).__name__}: {e}") from e
        if (tuple(got_in), tuple(got_out)) != (category.input_shape, category.output_shape):
            raise ModelShapeError(
                f"{name}: expected shapes {list(category.input_shape)} → {list(category.output_shape)} "
                f"({artifacts.CATEGORY_SPEC}), got {list(got_in)} → {list(got_out)}"
            )
    return spec


def check_category_spec(files: dict[str, bytes], spec: PreprocessSpec) -> CategorySpec | None:
    """The optional category model's spec parses and takes the main spec's input vector (None: no category)."""
    if artifacts.CATEGORY_SPEC not in files:
        return None
    try:
        category = CategorySpec.from_bytes(files[artifacts.CATEGORY_SPEC])
        category.check_against(spec)
    except SpecError as e:
        raise BadSpecError(f"{artifacts.CATEGORY_SPEC}: {e}") from None
    return category


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"shape must be a list of integers, got {value!r}")
    return tuple(value)
