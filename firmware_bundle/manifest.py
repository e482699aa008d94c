"""The bundle manifest: dataclass, canonical JSON and a hand-written schema check.

``manifest.json`` is the only thing the signature covers; it pins every other member by size and
sha256. Canonical form: ``json.dumps(sort_keys=True, separators=(",", ":"))``, UTF-8, no newline.
Example::

    {"bundle_version":7,"created":"2026-11-25T09:00:00Z","expires":"2027-02-23T09:00:00Z",
     "files":{"model.tflite":{"sha256":"…","size":18432},…},"format":"edge-ids/bundle/1",
     "min_agent_version":"0.1.0","model":{"name":"uni-hybrid","version":"3"}}

The schema is closed: unknown fields, unknown file names, missing required files, wrong types
(``true`` is not an integer, ``7.0`` is not an integer), duplicate JSON keys and non-UTC or
fractional timestamps are all :class:`ManifestError`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from firmware_bundle.errors import ManifestError
from firmware_bundle.limits import Limits
from ids_core import artifacts

log = logging.getLogger(__name__)

FORMAT = "edge-ids/bundle/1"
MANIFEST_NAME = artifacts.MANIFEST
SIGNATURE_NAME = artifacts.SIGNATURE
MODEL_FILE = artifacts.BUNDLE_MODEL
SPEC_FILE = artifacts.SPEC
AGENT_CONFIG_FILE = artifacts.AGENT_CONFIG_FRAGMENT
REQUIRED_FILES = (MODEL_FILE, SPEC_FILE, artifacts.SELFTEST_INPUTS, artifacts.SELFTEST_OUTPUTS)
OPTIONAL_FILES = (AGENT_CONFIG_FILE, *artifacts.CATEGORY_FILES)  # the category model: all four or none
KNOWN_FILES = frozenset(REQUIRED_FILES + OPTIONAL_FILES)
FIRST_AGENT_VERSION = "0.1.0"  # the first agent that understands edge-ids/bundle/1
MAX_BUNDLE_VERSION = 2**63 - 1

_FIELDS = ("bundle_version", "created", "expires", "files", "format", "min_agent_version", "model")
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_TIME_FMT = "%Y-%m-%dT%H:%M:%SZ"
_VERSION_RE = re.compile(r"(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})")
_AGENT_VERSION_RE = re.compile(r"v?(\d{1,9})\.(\d{1,9})(?:\.(\d{1,9}))?([.+\-_a-zA-Z0-9]*)")
_LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------- times and versions


def format_time(dt: datetime) -> str:
    """An aware datetime → ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds, sub-seconds dropped)."""
    if dt.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {dt.isoformat()}")
    return dt.astimezone(UTC).strftime(_TIME_FMT)


def parse_time(text: str) -> datetime:
    """``YYYY-MM-DDTHH:MM:SSZ`` → aware UTC datetime (ValueError for anything else)."""
    if not isinstance(text, str) or not _TIME_RE.fullmatch(text):
        raise ValueError(f"expected an RFC 3339 UTC time like '2026-11-25T09:00:00Z', got {text!r}")
    return datetime.strptime(text, _TIME_FMT).replace(tzinfo=UTC)


def parse_version(text: str) -> tuple[int, int, int]:
    """A manifest's ``X.Y.Z`` (digits only, no leading zeros) → int tuple (ValueError otherwise)."""
    m = _VERSION_RE.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"expected a version 'X.Y.Z', got {text!r}")
    return int(m[1]), int(m[2]), int(m[3])


def parse_agent_version(text: str) -> tuple[int, int, int]:
    """An agent's PEP 440-ish version → its release as ``(X, Y, Z)``.

    ``X.Y`` means ``X.Y.0``; a suffix (``rc1``, ``.dev0``, ``.post1``, ``+local``) is ignored, so a
    pre-release of 0.2.0 counts as 0.2.0.
    """
    m = _AGENT_VERSION_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"expected an agent version like '0.1.0', got {text!r}")
    return int(m[1]), int(m[2]), int(m[3] or 0)


# --------------------------------------------------------------------------- the manifest


@dataclass(frozen=True)
class FileEntry:
    """A member pinned by the manifest."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """A validated manifest. Build one with :meth:`from_dict` / :meth:`from_bytes` (they validate)."""

    bundle_version: int
    model_name: str
    model_version: str
    created: datetime
    expires: datetime
    min_agent_version: str
    files: dict[str, FileEntry] = field(default_factory=dict)
    format: str = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "bundle_version": self.bundle_version,
            "model": {"name": self.model_name, "version": self.model_version},
            "created": format_time(self.created),
            "expires": format_time(self.expires),
            "min_agent_version": self.min_agent_version,
            "files": {n: {"sha256": e.sha256, "size": e.size} for n, e in sorted(self.files.items())},
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON: sorted keys, no whitespace, UTF-8."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits | None = None) -> Manifest:
        """Decode and validate manifest.json bytes (ManifestError with the offending field)."""
        try:
            raw = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys, parse_constant=_no_nan)
        except UnicodeDecodeError as e:
            raise ManifestError(f"manifest.json: expected UTF-8, got invalid byte at {e.start}") from None
        except (ValueError, RecursionError) as e:
            raise ManifestError(f"manifest.json: expected a JSON object, got {e}") from None
        return cls.from_dict(raw, limits)

    @classmethod
    def from_dict(cls, raw: Any, limits: Limits | None = None) -> Manifest:
        """Validate a decoded manifest (the single schema check, used by builder and verifier)."""
        limits = limits or Limits()
        _expect(isinstance(raw, dict), "manifest", "a JSON object", type(raw).__name__)
        missing, unknown = sorted(set(_FIELDS) - set(raw)), sorted(set(raw) - set(_FIELDS))
        _expect(not missing, "manifest", f"fields {list(_FIELDS)}", f"missing {missing}")
        _expect(not unknown, "manifest", f"only fields {list(_FIELDS)}", f"unknown {unknown}")
        _expect(raw["format"] == FORMAT, "format", repr(FORMAT), repr(raw["format"]))
        version = raw["bundle_version"]
        _expect(
            _is_int(version) and 1 <= version <= MAX_BUNDLE_VERSION,
            "bundle_version",
            f"an integer in [1, {MAX_BUNDLE_VERSION}]",
            repr(version),
        )
        model = raw["model"]
        _expect(
            isinstance(model, dict) and sorted(model) == ["name", "version"],
            "model",
            "an object with exactly 'name' and 'version'",
            repr(model),
        )
        for key in ("name", "version"):
            ok = isinstance(model[key], str) and _LABEL_RE.fullmatch(model[key])
            _expect(bool(ok), f"model.{key}", "1-64 characters of [A-Za-z0-9._+-]", repr(model[key]))
        created, expires = _time(raw, "created"), _time(raw, "expires")
        _expect(expires > created, "expires", f"after created {raw['created']}", raw["expires"])
        try:
            parse_version(raw["min_agent_version"])
        except ValueError as e:
            raise ManifestError(f"min_agent_version: {e}") from None
        return cls(
            bundle_version=version,
            model_name=model["name"],
            model_version=model["version"],
            created=created,
            expires=expires,
            min_agent_version=raw["min_agent_version"],
            files=_files(raw["files"], limits),
            format=raw["format"],
        )


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------- helpers


def _expect(ok: bool, where: str, expected: str, got: Any) -> None:
    if not ok:
        raise ManifestError(f"{where}: expected {expected}, got {got}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _time(raw: dict[str, Any], key: str) -> datetime:
    try:
        return parse_time(raw[key])
    except ValueError as e:
        raise ManifestError(f"{key}: {e}") from None


def _files(files: Any, limits: Limits) -> dict[str, FileEntry]:
    _expect(isinstance(files, dict), "files", "an object", type(files).__name__)
    missing, unknown = sorted(set(REQUIRED_FILES) - set(files)), sorted(set(files) - KNOWN_FILES)
    _expect(not missing, "files", f"all of {list(REQUIRED_FILES)}", f"missing {missing}")
    _expect(not unknown, "files", f"only {sorted(KNOWN_FILES)}", f"unknown {unknown}")
    category = sorted(set(artifacts.CATEGORY_FILES) & set(files))
    _expect(
        not category or len(category) == len(artifacts.CATEGORY_FILES),
        "files",
        f"all of {list(artifacts.CATEGORY_FILES)} or none",
        f"only {category}",
    )
    out: dict[str, FileEntry] = {}
    for name, entry in sorted(files.items()):
        where = f"files.{name}"
        _expect(
            isinstance(entry, dict) and sorted(entry) == ["sha256", "size"],
            where,
            "an object with exactly 'sha256' and 'size'",
            repr(entry),
        )
        digest, size = entry["sha256"], entry["size"]
        _expect(
            isinstance(digest, str) and bool(_SHA256_RE.fullmatch(digest)),
            f"{where}.sha256",
            "64 lowercase hex digits",
            repr(digest),
        )
        _expect(
            _is_int(size) and 0 <= size <= limits.max_file_bytes,
            f"{where}.size",
            f"an integer in [0, {limits.max_file_bytes}]",
            repr(size),
        )
        out[name] = FileEntry(digest, size)
    return out


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_nan(name: str) -> Any:
    raise ValueError(f"non-standard constant {name}")
