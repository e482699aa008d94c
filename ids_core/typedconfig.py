"""Typed configuration from plain mappings (YAML): dataclasses with defaults, help, choices and limits.

Used by the agent's and the flow meter's configs and the trainer's profiles. Unknown keys are errors; every error names
the key (``mqtt.port``) and says what is allowed. Fields declare their rules with :func:`setting`.
Where a range is checked, NaN and infinities are refused. The value of a ``secret`` setting is never
put in an error message, whatever its type.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration value that is missing, unknown or not allowed; the message names the key."""


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str = "",
    choices: tuple[Any, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
    factory: Any = dataclasses.MISSING,
    secret: bool = False,
) -> Any:
    """A dataclass field with documentation and the values it allows; ``secret`` values are never echoed."""
    meta = {"help": help, "choices": choices, "min": min, "max": max, "secret": secret}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def build(cls: type, data: Any, where: str = "") -> Any:
    """Instantiate dataclass ``cls`` from ``data``, checking types, choices and limits recursively."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        secret = bool(fields[name].metadata.get("secret"))
        values[name] = _check(fields[name], _coerce(hints[name], value, key, secret), key)
    try:
        obj = cls(**values)
    except TypeError as e:  # a required field without default
        raise ConfigError(f"{where or 'config'}: {e}") from e
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def _check(f: dataclasses.Field, value: Any, key: str) -> Any:
    meta = f.metadata
    items = value if isinstance(value, list) else [value]
    for v in items:
        if v is None:
            continue
        shown = _shown(v, bool(meta.get("secret")))
        if meta.get("choices") is not None and v not in meta["choices"]:
            allowed = ", ".join(str(c) for c in meta["choices"])
            raise ConfigError(f"{key}: {shown} is not allowed; allowed: {allowed}")
        lo, hi = meta.get("min"), meta.get("max")
        if (lo is not None or hi is not None) and isinstance(v, int | float):
            if not math.isfinite(v):
                raise ConfigError(f"{key}: {shown} is not a finite number; allowed: {_range(lo, hi)}")
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                raise ConfigError(f"{key}: {shown} is out of range; allowed: {_range(lo, hi)}")
    return value


def _shown(value: Any, secret: bool) -> str:
    """How a value appears in an error: ``repr``, or only its type for a secret."""
    return f"<{type(value).__name__} value hidden>" if secret else repr(value)


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo} to {hi}"
    return f">= {lo}" if lo is not None else f"<= {hi}"


def _coerce(tp: Any, value: Any, key: str, secret: bool = False) -> Any:
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, key, secret)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_shown(value, secret)}")
        return [_coerce(args[0], v, f"{key}[{i}]", secret) for i, v in enumerate(value)]
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is Any:
        return value
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        name = getattr(tp, "__name__", str(tp))
        got = _shown(value, secret) if secret else f"{type(value).__name__} {value!r}"
        raise ConfigError(f"{key}: expected {name}, got {got}" + (" (quote it in YAML)" if secret else ""))
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str], where: str = "override") -> dict[str, Any]:
    """Apply ``a.b.c=value`` items (values parsed as YAML) to a nested mapping, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{where}: expected key.path=value, got an item without '=' or key")
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where} {key}: {p} is not a section")
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as e:  # the value is not echoed: it may be a secret
            raise ConfigError(f"{where} {key}: value is not valid YAML ({yaml_problem(e)})") from None
    return data


def yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error as one line with its position, without the offending text (it may hold a secret)."""
    problem = getattr(e, "problem", None) or type(e).__name__
    mark = getattr(e, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else str(problem)


def describe(cls: type, prefix: str = "") -> list[str]:
    """One line per setting: key, default and help (for ``--help-config``)."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            lines += describe(hints[f.name], key + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        extra = f" (one of: {', '.join(map(str, f.metadata['choices']))})" if f.metadata.get("choices") else ""
        lines.append(f"{key} = {default!r}  {f.metadata.get('help', '')}{extra}")
    return lines


def env_overrides(prefix: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """``<prefix>SECTION__KEY=value`` environment variables as ``section.key=value`` overrides."""
    env = os.environ if environ is None else environ
    found = sorted((k, v) for k, v in env.items() if k.startswith(prefix))
    return [f"{k[len(prefix) :].lower().replace('__', '.')}={v}" for k, v in found]


def load_layered(
    cls: type,
    path: str | Path,
    overrides: list[str] | None = None,
    *,
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
) -> Any:
    """A daemon's configuration: the YAML file, then ``<env_prefix>SECTION__KEY`` variables, then ``overrides``."""
    path = Path(path)
    try:
        data: Any = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from e
    except yaml.YAMLError as e:  # without the offending line: it may hold a secret
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    apply_overrides(data, env_overrides(env_prefix, environ), where="environment")
    apply_overrides(data, overrides or [], where="--set")
    return build(cls, data)
