"""Typed configuration from plain mappings (YAML): dataclasses with defaults, help, choices and limits.

Used by the agent's config and the trainer's profiles. Unknown keys are errors; every error names
the key (``mqtt.port``) and says what is allowed. Fields declare their rules with :func:`setting`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
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
) -> Any:
    """A dataclass field with documentation and the values it allows."""
    meta = {"help": help, "choices": choices, "min": min, "max": max}
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
        values[name] = _check(fields[name], _coerce(hints[name], value, key), key)
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
        if meta.get("choices") is not None and v not in meta["choices"]:
            allowed = ", ".join(str(c) for c in meta["choices"])
            raise ConfigError(f"{key}: {v!r} is not allowed; allowed: {allowed}")
        lo, hi = meta.get("min"), meta.get("max")
        if isinstance(v, int | float) and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            raise ConfigError(f"{key}: {v!r} is out of range; allowed: {_range(lo, hi)}")
    return value


def _range(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo} to {hi}"
    return f">= {lo}" if lo is not None else f"<= {hi}"


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is Any:
        return value
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        name = getattr(tp, "__name__", str(tp))
        raise ConfigError(f"{key}: expected {name}, got {type(value).__name__} {value!r}")
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str], where: str = "override") -> dict[str, Any]:
    """Apply ``a.b.c=value`` items (values parsed as YAML) to a nested mapping, in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where} {item!r}: expected key.path=value")
        node = data
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where} {item!r}: {p} is not a section")
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"{where} {item!r}: value is not valid YAML: {e}") from e
    return data


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
