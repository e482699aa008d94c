"""Why a bundle was refused: one exception class per failed check, each with a stable ``reason`` code.

``reason`` is the short snake_case code the agent puts in its MQTT status messages; the message
says "expected … got …". Every class derives from :class:`BundleError`, so a caller that only
needs "refuse and keep the working model" catches that one.
"""

from __future__ import annotations


class KeyFileError(ValueError):
    """A key file that is missing, unreadable or not an Ed25519 key of the expected kind (not a bundle check)."""


class BundleError(Exception):
    """A bundle that must not replace the working model."""

    reason: str = "invalid"


class BundleTooLargeError(BundleError):
    """The bundle, a member, the manifest or the member count exceeds its :class:`Limits` bound."""

    reason = "too_large"


class MalformedBundleError(BundleError):
    """Not a readable uncompressed tar, or manifest.json / manifest.sig missing, doubled or not files."""

    reason = "malformed"


class UnsignedBundleError(MalformedBundleError):
    """A bundle without manifest.sig (built but never signed)."""

    reason = "unsigned"


class SignatureError(BundleError):
    """manifest.sig does not verify over manifest.json under any pinned key."""

    reason = "bad_signature"


class UnknownKeyError(SignatureError):
    """The bundle names a signing key that is not pinned on this gateway, and no pinned key verifies."""

    reason = "unknown_key"


class ManifestError(BundleError):
    """A signed manifest that breaks the schema (fields, types, formats, file list)."""

    reason = "bad_manifest"


class BadSpecError(ManifestError):
    """spec.json is not a usable preprocessing spec, or names another model than the manifest."""

    reason = "bad_spec"


class ExpiredBundleError(BundleError):
    """The manifest's ``expires`` is at or before the reference time."""

    reason = "expired"


class NotYetValidError(ExpiredBundleError):
    """The manifest's ``created`` is further in the future than the allowed clock skew."""

    reason = "not_yet_valid"


class BadVersionError(BundleError):
    """``bundle_version`` is not strictly above the highest version ever installed."""

    reason = "bad_version"


class RollbackError(BadVersionError):
    """An older bundle than the one installed (downgrade attack)."""

    reason = "rollback"


class ReplayError(BadVersionError):
    """The version that is already installed, delivered again."""

    reason = "replay"


class AgentTooOldError(BundleError):
    """The bundle needs a newer agent (``min_agent_version``)."""

    reason = "agent_too_old"


class FileMismatchError(BundleError):
    """A file listed in the manifest is missing or differs in length or sha256."""

    reason = "file_mismatch"


class UnsafeMemberError(BundleError):
    """A tar member that is not a plain, listed, unique regular file (links, paths, devices, extras)."""

    reason = "unsafe_member"


class BadModelError(BundleError):
    """model.tflite cannot be loaded by the interpreter."""

    reason = "bad_model"


class ModelShapeError(BadModelError):
    """The model's input/output shapes differ from the spec's."""

    reason = "model_shape"


class SelfTestError(BundleError):
    """The installed model does not reproduce the bundle's self-test outputs (raised by the installer)."""

    reason = "selftest_failed"


class BadConfigError(BundleError):
    """The bundle's agent-config fragment is not a valid agent configuration."""

    reason = "bad_config"
