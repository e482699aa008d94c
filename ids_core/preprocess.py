"""The feature transform and flow windowing, shared by the trainer and the gateway agent.

Numpy only: the agent imports this without TensorFlow, scikit-learn or pandas, and the trainer
builds its model inputs with the very same functions, so both sides produce identical arrays.

Definitions (also in the README):

* **Feature transform.** Each flow becomes a float32 vector of the spec's ``features`` in order.
  Categorical columns (identifiers, only when configured) are label-encoded with the classes seen
  in training (unseen → -1). Then Min-Max: ``(x - data_min) * scale``, ``scale = 1 / (max - min)``
  (1 for a constant column), fitted on the training split only, clipped to ``[0, 1]`` so a value
  beyond the training range saturates instead of extrapolating (the int8 input would saturate too).
  With ``log-minmax`` a signed ``log1p`` comes first and the fit is on the logged values.
* **Value codes** (optional, per column). A numeric column whose values are categories (a port, the
  protocol) is not a magnitude: port 49784 is not "near" 52717. Such a column's raw value is replaced by
  a code learned per value on the training split — the smoothed share of malicious flows with that
  value (:class:`ValueCodes`); a value seen too rarely, or never, gets the overall share. The code
  replaces the (logged) value before Min-Max. A spec with value codes has format ``…/2``, so a gateway
  that cannot apply them refuses the spec instead of feeding the model raw port numbers.
* **Non-finite values** (one rule, trainer and agent alike). CICFlowMeter writes ``Infinity`` for
  ``Flow_Byts/s`` and ``Flow_Pkts/s`` when a flow lasted 0 µs, and ``NaN`` for ``Flow_Byts/s`` when it
  also carried no payload (0/0). Such flows are scored, not dropped: ``+inf`` becomes the feature's
  training maximum, ``-inf`` its training minimum, ``NaN`` becomes ``0`` (raw, before the log); then
  the normal transform. The training minimum/maximum are fitted on finite values only (the spec's
  ``data_min``/``data_max``). :func:`replace_nonfinite` is the rule, :func:`finite_range` the fit.
* **Window.** The model input for a flow is the ``T`` most recent flows (oldest first, ending with
  the flow itself) that share its window key (e.g. ``Src_IP``; no key = one stream), in stream order.
  A stream's first ``T-1`` windows are zero-padded at the start. A window is labelled by its newest
  flow. ``T = 1`` is per-flow classification.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPEC_FORMAT = "edge-ids/preprocess-spec/1"
SPEC_FORMAT_VALUE_CODES = "edge-ids/preprocess-spec/2"  # written only when the transform has value codes
SPEC_FORMATS = (SPEC_FORMAT, SPEC_FORMAT_VALUE_CODES)
# The non-finite rule as the spec states it (see the module docstring); a spec naming another rule is refused.
NONFINITE_RULE: dict[str, str] = {"+inf": "data_max", "-inf": "data_min", "nan": "0"}


class SpecError(ValueError):
    """A preprocessing spec that cannot be used (wrong format, inconsistent fields)."""


def read_spec_json(path: str | Path) -> Any:
    """The JSON of a spec file; SpecError naming the file when it is not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise SpecError(f"{path}: not JSON: {e}") from e


# --------------------------------------------------------------------------- feature transform


@dataclass(frozen=True)
class CategoryEncoder:
    """Label encoding with a fixed vocabulary: class → its index in sorted order, unseen → -1."""

    classes: tuple[str, ...]

    @classmethod
    def fit(cls, values: Iterable[Any]) -> CategoryEncoder:
        return cls(tuple(sorted({str(v) for v in values})))

    def transform(self, values: Sequence[Any]) -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.classes)}
        return np.array([lookup.get(str(v), -1) for v in values], dtype=np.float64)


def smoothed_shares(
    x: np.ndarray, targets: np.ndarray, prior: np.ndarray, *, min_count: int, smoothing: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per finite value of column ``x`` seen in at least ``min_count`` rows (ascending), the mean of its rows'
    ``targets`` ``(n, k)`` smoothed toward ``prior`` ``(k,)``: ``(sum + smoothing * prior) / (count + smoothing)``.
    What :class:`ValueCodes` (k = 1: malicious) and ``ids_core.category.ClassCodes`` (one column per class) fit."""
    x, targets = np.asarray(x, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    finite = np.isfinite(x)
    values, inverse, counts = np.unique(x[finite], return_inverse=True, return_counts=True)
    sums = np.zeros((len(values), targets.shape[1]))
    np.add.at(sums, inverse, targets[finite])
    keep = counts >= min_count
    return values[keep], (sums[keep] + smoothing * prior) / (counts[keep, None] + smoothing)


def code_lookup(values: np.ndarray, codes: np.ndarray, default: Any, x: np.ndarray) -> np.ndarray:
    """The code of each of ``x`` from a table (``values`` ascending, ``codes`` one row each, shape ``(v, …)``);
    ``default`` for the values not in it (NaN and ±inf never are)."""
    x = np.asarray(x, dtype=np.float64)
    default = np.asarray(default, dtype=np.float64)
    out = np.broadcast_to(default, (*x.shape, *default.shape)).copy()
    if len(values):
        i = np.clip(np.searchsorted(values, x), 0, len(values) - 1)
        hit = values[i] == x
        out[hit] = codes[i[hit]]
    return out


@dataclass(frozen=True)
class ValueCodes:
    """A numeric column whose values are categories (a port, the protocol) → one learned number per value.

    Fitted on the training split: a value seen in at least ``min_count`` training flows gets the share of
    malicious flows among them, smoothed toward the overall share ``default``:
    ``(malicious + smoothing * default) / (count + smoothing)``. Rarer values, unseen values and non-finite
    values get ``default``.
    """

    values: tuple[float, ...]  # ascending
    codes: tuple[float, ...]
    default: float

    def __post_init__(self) -> None:
        v, c = np.asarray(self.values, dtype=np.float64), np.asarray(self.codes, dtype=np.float64)
        if v.shape != c.shape or v.ndim != 1:
            raise SpecError(f"value codes: {v.shape} values for {c.shape} codes")
        if not (np.isfinite(v).all() and np.isfinite(c).all() and np.isfinite(self.default)):
            raise SpecError("value codes: values, codes and default must be finite")
        if (np.diff(v) <= 0).any():
            raise SpecError("value codes: values must be strictly ascending")

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, *, min_count: int, smoothing: float) -> ValueCodes:
        """Codes for the values of ``x`` (one column) from the binary labels ``y`` of the same rows."""
        y = np.asarray(y, dtype=np.float64)
        prior = float(y.mean()) if len(y) else 0.0
        values, codes = smoothed_shares(x, y[:, None], np.array([prior]), min_count=min_count, smoothing=smoothing)
        return cls(tuple(values.tolist()), tuple(codes[:, 0].tolist()), prior)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return code_lookup(np.asarray(self.values), np.asarray(self.codes), self.default, x)

    def to_dict(self) -> dict[str, Any]:
        return {"values": list(self.values), "codes": list(self.codes), "default": self.default}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValueCodes:
        return cls(tuple(float(v) for v in d["values"]), tuple(float(c) for c in d["codes"]), float(d["default"]))


def finite_range(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column minimum and maximum of the finite values of ``x`` (rows × columns; 0 where none is finite)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d matrix, got shape {x.shape}")
    finite = np.isfinite(x)
    if finite.all():
        return (x.min(axis=0), x.max(axis=0)) if len(x) else (np.zeros(x.shape[1]), np.zeros(x.shape[1]))
    lo = np.where(finite, x, np.inf).min(axis=0, initial=np.inf)
    hi = np.where(finite, x, -np.inf).max(axis=0, initial=-np.inf)
    none = ~finite.any(axis=0)
    return np.where(none, 0.0, lo), np.where(none, 0.0, hi)


def replace_nonfinite(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The non-finite rule: ``+inf`` → ``hi``, ``-inf`` → ``lo``, ``NaN`` → 0, per column (``x`` itself if finite)."""
    x = np.asarray(x, dtype=np.float64)
    if np.isfinite(x).all():
        return x
    x = np.where(np.isnan(x), 0.0, x)
    x = np.where(x == np.inf, hi, x)
    return np.where(x == -np.inf, lo, x)


def nonfinite_counts(x: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, int]]:
    """How many values of each column are ``+inf``, ``-inf`` and ``NaN`` (only columns that have any)."""
    x = np.asarray(x, dtype=np.float64)
    out: dict[str, dict[str, int]] = {}
    bad = ~np.isfinite(x)
    if not bad.any():
        return out
    for j in np.flatnonzero(bad.any(axis=0)):
        col = x[:, j]
        out[names[j]] = {
            "+inf": int((col == np.inf).sum()),
            "-inf": int((col == -np.inf).sum()),
            "nan": int(np.isnan(col).sum()),
        }
    return out


@dataclass(frozen=True)
class FeatureTransform:
    """Raw flow columns → Min-Max scaled float32 vectors, as the spec defines them."""

    features: tuple[str, ...]
    data_min: np.ndarray
    scale: np.ndarray
    encoders: dict[str, CategoryEncoder] = field(default_factory=dict)
    log_scale: bool = False  # signed log1p before Min-Max (keeps heavy-tailed rates apart after int8)
    data_max: np.ndarray | None = None  # training maximum (logged with log_scale); None: the top of the clip range
    value_codes: dict[str, ValueCodes] = field(default_factory=dict)  # categorical numeric columns (ports, protocol)

    def __post_init__(self) -> None:
        n = len(self.features)
        if self.data_min.shape != (n,) or self.scale.shape != (n,):
            raise SpecError(f"scaler has {self.data_min.shape}/{self.scale.shape} values for {n} features")
        if self.data_max is None:  # a spec from before data_max: +inf saturates at 1 like any value above the range
            object.__setattr__(self, "data_max", self.data_min + 1.0 / self.scale)
        elif self.data_max.shape != (n,):
            raise SpecError(f"scaler has {self.data_max.shape} data_max values for {n} features")
        values = np.concatenate([self.data_min, self.scale, self.data_max])
        if not np.isfinite(values).all() or (self.scale <= 0).any():
            raise SpecError("scaler data_min, data_max and scale must be finite, scale > 0")
        unknown = set(self.encoders) - set(self.features)
        if unknown:
            raise SpecError(f"encoders for columns that are not features: {sorted(unknown)}")
        unknown = set(self.value_codes) - set(self.features)
        if unknown or set(self.value_codes) & set(self.encoders):
            raise SpecError(f"value codes for columns that are not numeric features: {sorted(self.value_codes)}")

    @classmethod
    def fit(
        cls,
        features: Sequence[str],
        raw: np.ndarray,
        encoders: dict[str, CategoryEncoder] | None = None,
        *,
        log_scale: bool = False,
        value_codes: dict[str, ValueCodes] | None = None,
    ) -> FeatureTransform:
        """Fit Min-Max on ``raw`` (rows × features, categorical columns already encoded), finite values only.

        ``value_codes`` replace their columns' values before the fit (see :class:`ValueCodes`)."""
        codes = dict(value_codes or {})
        x = _coded(features, raw, log_scale, codes)
        lo, hi = finite_range(x)
        span = hi - lo
        scale = np.where(span > 0, 1.0 / np.where(span > 0, span, 1.0), 1.0)
        return cls(tuple(features), lo, scale, dict(encoders or {}), log_scale, hi, codes)

    def encode_columns(self, columns: dict[str, Sequence[Any]]) -> np.ndarray:
        """Columns by name (numbers, or strings for encoded columns) → raw float64 matrix."""
        out = np.empty((len(next(iter(columns.values()))), len(self.features)), dtype=np.float64)
        for j, name in enumerate(self.features):
            enc = self.encoders.get(name)
            out[:, j] = enc.transform(columns[name]) if enc else np.asarray(columns[name], dtype=np.float64)
        return out

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Raw float64 matrix (rows × features) → scaled float32 in [0, 1]; non-finite values by the rule."""
        raw = np.asarray(raw, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] != len(self.features):
            raise ValueError(f"expected (n, {len(self.features)}) raw features, got {raw.shape}")
        x = _coded(self.features, raw, self.log_scale, self.value_codes)  # ±inf stay ±inf, NaN stays NaN
        x = replace_nonfinite(x, self.data_min, self.data_max)  # log1p(0) = 0: NaN → 0 before or after the log
        return np.clip((x - self.data_min) * self.scale, 0.0, 1.0).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "scaler": {
                "kind": "log-minmax" if self.log_scale else "minmax",
                "data_min": self.data_min.tolist(),
                "data_max": self.data_max.tolist(),
                "scale": self.scale.tolist(),
                "clip": [0.0, 1.0],
                "nonfinite": dict(NONFINITE_RULE),
                **({"value_codes": {k: v.to_dict() for k, v in self.value_codes.items()}} if self.value_codes else {}),
            },
            "encoders": {k: {"classes": list(v.classes), "unknown": -1} for k, v in self.encoders.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureTransform:
        enc = {k: CategoryEncoder(tuple(v["classes"])) for k, v in d.get("encoders", {}).items()}
        sc = d["scaler"]
        rule = sc.get("nonfinite", NONFINITE_RULE)
        if rule != NONFINITE_RULE:
            raise SpecError(f"scaler.nonfinite: expected {NONFINITE_RULE}, got {rule!r}")
        return cls(
            tuple(d["features"]),
            np.asarray(sc["data_min"], dtype=np.float64),
            np.asarray(sc["scale"], dtype=np.float64),
            enc,
            {"minmax": False, "log-minmax": True}[sc.get("kind", "minmax")],
            np.asarray(sc["data_max"], dtype=np.float64) if "data_max" in sc else None,
            {k: ValueCodes.from_dict(v) for k, v in sc.get("value_codes", {}).items()},
        )


def _coded(features: Sequence[str], raw: np.ndarray, log_scale: bool, value_codes: dict[str, ValueCodes]) -> np.ndarray:
    """Raw values before Min-Max: signed log1p (with ``log_scale``), value-coded columns replaced by their codes."""
    raw = np.asarray(raw, dtype=np.float64)
    x = _signed_log1p(raw) if log_scale else raw
    if value_codes:
        x = x.copy() if x is raw else x
        for name, codes in value_codes.items():
            j = features.index(name)
            x[:, j] = codes.transform(raw[:, j])
    return x


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log1p(np.abs(x))


# --------------------------------------------------------------------------- windows


def window_indices(keys: Sequence[Any] | np.ndarray, length: int) -> np.ndarray:
    """Row indices of every flow's window, oldest first; ``-1`` marks zero padding.

    ``keys`` holds each flow's window key in stream order (any hashable values; all equal for one
    stream). Returns an ``(n, length)`` int32 array: row ``i`` lists the rows of the ``length`` most
    recent flows with ``keys[i]``'s key, ending with ``i`` itself.
    """
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    n = len(keys)
    if n == 0:
        return np.empty((0, length), dtype=np.int32)
    keys = np.asarray(keys)
    if keys.dtype.kind not in "iu":  # integer stream codes are used as they are; anything else by its text
        keys = np.asarray(keys, dtype=object).astype(str)
    _, codes = np.unique(keys, return_inverse=True)
    order = np.argsort(codes, kind="stable")  # grouped by key, stream order kept inside a group
    sorted_codes = codes[order]
    first = np.r_[0, np.flatnonzero(np.diff(sorted_codes)) + 1]
    group_start = np.repeat(first, np.diff(np.r_[first, n]))
    rank = np.arange(n) - group_start  # position of each (sorted) flow inside its stream
    offsets = np.arange(-(length - 1), 1)
    pos = np.arange(n)[:, None] + offsets[None, :]
    valid = offsets[None, :] >= -rank[:, None]
    idx_sorted = np.where(valid, order[np.clip(pos, 0, None)], -1)
    out = np.empty((n, length), dtype=np.int32)
    out[order] = idx_sorted
    return out


def gather_windows(vectors: np.ndarray, idx: np.ndarray, pad: float | int = 0) -> np.ndarray:
    """Windows ``(n, T, F)`` from feature rows and :func:`window_indices` (``-1`` → a row of ``pad``)."""
    padded = np.concatenate([np.full((1, vectors.shape[1]), pad, dtype=vectors.dtype), vectors])
    return padded[idx + 1]


class StreamWindows:
    """Windows over an unbounded stream, fed in batches; the agent's view of :func:`window_indices`.

    Keeps the last ``T-1`` vectors of at most ``max_keys`` keys (least recently seen evicted; an
    evicted key starts again with padding). Feeding a whole split at once, or in any chunking,
    gives the same windows as :func:`window_indices` over it, as long as no key was evicted.
    ``dtype``/``pad`` let the agent keep already-quantized int8 vectors (padding = the quantized 0.0):
    quantization is elementwise, so windows of quantized vectors equal quantized windows, at 1/T the cost.
    """

    def __init__(
        self, length: int, n_features: int, max_keys: int | None = None, *, dtype: Any = np.float32, pad: float = 0
    ) -> None:
        if length < 1:
            raise ValueError(f"window length must be >= 1, got {length}")
        self.length, self.n_features, self.max_keys = length, n_features, max_keys
        self.dtype, self.pad = np.dtype(dtype), pad
        self._history: OrderedDict[str, np.ndarray] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._history)

    def reset(self) -> None:
        self._history.clear()

    def push(self, keys: Sequence[Any], vectors: np.ndarray) -> np.ndarray:
        """Append a batch (stream order) and return its windows ``(len(keys), T, F)``."""
        vectors = np.asarray(vectors, dtype=self.dtype)
        if vectors.shape != (len(keys), self.n_features):
            raise ValueError(f"expected ({len(keys)}, {self.n_features}) vectors, got {vectors.shape}")
        if self.length == 1:
            return vectors[:, None, :]
        codes: dict[str, int] = {}
        batch_codes = np.fromiter((codes.setdefault(str(k), len(codes)) for k in keys), dtype=np.int64, count=len(keys))
        hist_rows, hist_codes = [], []
        for k, c in codes.items():
            h = self._history.get(k)
            if h is not None:
                hist_rows.append(h)
                hist_codes.append(np.full(len(h), c, dtype=np.int64))
        table = np.concatenate([*hist_rows, vectors]) if hist_rows else vectors
        all_codes = np.concatenate([*hist_codes, batch_codes]) if hist_codes else batch_codes
        idx = window_indices(all_codes, self.length)
        n_hist = len(all_codes) - len(keys)
        windows = gather_windows(table, idx[n_hist:], self.pad)
        self._remember(list(codes), batch_codes, n_hist, table, idx)
        return windows

    def _remember(self, names: list[str], batch_codes: np.ndarray, n_hist: int, table: np.ndarray, idx: np.ndarray):
        last = np.full(len(names), -1, dtype=np.int64)
        np.maximum.at(last, batch_codes, np.arange(len(batch_codes)) + n_hist)  # newest row of each key
        for c in np.argsort(last, kind="stable"):  # least recently seen first, so LRU order follows the stream
            rows = idx[last[c], 1:]  # the newest T-1 rows of this stream
            self._history[names[c]] = table[rows[rows >= 0]].copy()
            self._history.move_to_end(names[c])
        while self.max_keys is not None and len(self._history) > self.max_keys:
            self._history.popitem(last=False)
            self.evicted += 1


def key_part(value: Any) -> str:
    """One column's contribution to a window key (None → '', integral floats as integers)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 80.0 from a table and 80 from JSON are the same port
    return str(value)


def window_key(record: dict[str, Any], key_columns: Sequence[str]) -> str:
    """A flow's window key: its values of ``key_columns`` joined by '|' ('' when there is no key)."""
    return "|".join(key_part(record.get(c)) for c in key_columns)


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class Quantization:
    """An int8 tensor's affine quantization: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(x / self.scale + self.zero_point), -128, 127).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self.zero_point) * np.float32(self.scale)


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything the gateway needs besides the model file to turn flow records into model input."""

    transform: FeatureTransform
    window_length: int
    window_key: tuple[str, ...] = ()
    threshold: float = 0.5
    model_name: str = "uni-hybrid"
    model_version: str = "0"
    input_quantization: Quantization | None = None
    output_quantization: Quantization | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> tuple[str, ...]:
        return self.transform.features

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.window_length, len(self.features))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SPEC_FORMAT_VALUE_CODES if self.transform.value_codes else SPEC_FORMAT,
            "model": {"name": self.model_name, "version": self.model_version},
            **self.transform.to_dict(),
            "window": {"length": self.window_length, "key": list(self.window_key), "order": "stream"},
            "input": {
                "shape": [self.window_length, len(self.features)],
                "quantization": asdict(self.input_quantization) if self.input_quantization else None,
            },
            "output": {
                "shape": [1],
                "quantization": asdict(self.output_quantization) if self.output_quantization else None,
            },
            "threshold": self.threshold,
            "labels": {"0": "Normal", "1": "Anomaly"},
            **({"extra": self.extra} if self.extra else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        if not isinstance(d, dict) or d.get("format") not in SPEC_FORMATS:
            raise SpecError(f"not a preprocessing spec (format must be one of {list(SPEC_FORMATS)})")
        try:
            q_in, q_out = d["input"].get("quantization"), d["output"].get("quantization")
            spec = cls(
                transform=FeatureTransform.from_dict(d),
                window_length=int(d["window"]["length"]),
                window_key=tuple(d["window"].get("key") or ()),
                threshold=float(d["threshold"]),
                model_name=str(d["model"]["name"]),
                model_version=str(d["model"]["version"]),
                input_quantization=Quantization(**q_in) if q_in else None,
                output_quantization=Quantization(**q_out) if q_out else None,
                extra=dict(d.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise SpecError(f"malformed preprocessing spec: {e!r}") from e
        if spec.transform.value_codes and d["format"] != SPEC_FORMAT_VALUE_CODES:
            raise SpecError(f"value codes need format {SPEC_FORMAT_VALUE_CODES!r}, got {d['format']!r}")
        if spec.window_length < 1 or not 0.0 < spec.threshold < 1.0:
            raise SpecError("window.length must be >= 1 and threshold in (0, 1)")
        if list(d["input"]["shape"]) != list(spec.input_shape):
            raise SpecError(f"input.shape {d['input']['shape']} != (window.length, #features) {spec.input_shape}")
        return spec

    @classmethod
    def load(cls, path: str | Path) -> PreprocessSpec:
        return cls.from_dict(read_spec_json(path))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())
