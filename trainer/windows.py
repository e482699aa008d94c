"""Model inputs for a split: flows put in stream order, then windowed with the agent's own code.

Windows never cross splits (flows are split first, then windowed inside each split), so a test
window's context holds only test flows. Without a Timestamp there is no real order: flows are
shuffled with the seed, because file order (the sample is sorted by class) would hand the model its
label through the context.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from ids_core.preprocess import FeatureTransform, gather_windows, window_indices, window_key

log = logging.getLogger(__name__)


def stream_order(frame: pd.DataFrame, order: str, seed: int) -> np.ndarray:
    """Positions of ``frame``'s rows in stream order (``auto``: by Timestamp if present, else shuffled)."""
    if order == "auto":
        order = "timestamp" if "timestamp" in frame.columns else "shuffle"
    if order == "timestamp":
        if "timestamp" not in frame.columns:
            raise ValueError("window.order=timestamp but the data has no Timestamp column")
        return np.lexsort((np.arange(len(frame)), frame["timestamp"].to_numpy()))
    if order == "shuffle":
        return np.random.default_rng(seed).permutation(len(frame))
    if order == "file":
        log.warning("window.order=file: windows follow file order, which may leak labels (sorted files)")
        return np.arange(len(frame))
    raise ValueError(f"unknown window order {order!r}")


def raw_features(frame: pd.DataFrame, transform: FeatureTransform) -> np.ndarray:
    """The raw (unscaled) feature matrix of ``frame`` in the transform's column order."""
    return transform.encode_columns({c: frame[c].to_numpy() for c in transform.features})


@dataclass
class SplitWindows:
    """One split's flows in stream order, their scaled vectors and window indices."""

    vectors: np.ndarray  # (n, F) float32, stream order
    idx: np.ndarray  # (n, T) int32 rows of `vectors`, -1 = padding
    y: np.ndarray  # (n,) label of each window's newest flow
    category: np.ndarray  # (n,) IoTID20 Cat of the newest flow
    rows: np.ndarray  # (n,) index of the newest flow in the split's frame
    keys: np.ndarray  # (n,) window key of each flow
    weight: np.ndarray | None = None  # (n,) training weight of each window (None = all 1)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.idx.shape[1], self.vectors.shape[1])

    def windows(self, select: np.ndarray | slice | None = None) -> np.ndarray:
        """Materialise windows ``(n, T, F)`` (all, or a selection of them)."""
        idx = self.idx if select is None else self.idx[select]
        return gather_windows(self.vectors, idx)

    def subset(self, select: np.ndarray | slice) -> SplitWindows:
        return SplitWindows(
            self.vectors,
            self.idx[select],
            self.y[select],
            self.category[select],
            self.rows[select],
            self.keys[select],
            None if self.weight is None else self.weight[select],
        )

    @classmethod
    def concat(cls, parts: list[SplitWindows], row_maps: list[np.ndarray]) -> SplitWindows:
        """Windows of several separately built streams side by side (no window crosses parts).

        ``row_maps[i]`` maps part ``i``'s ``rows`` (positions in its own frame) to positions in the joint frame.
        """
        offsets = np.cumsum([0, *(len(p.vectors) for p in parts[:-1])])
        return cls(
            vectors=np.concatenate([p.vectors for p in parts]),
            idx=np.concatenate(
                [np.where(p.idx >= 0, p.idx + o, -1).astype(np.int32) for p, o in zip(parts, offsets, strict=True)]
            ),
            y=np.concatenate([p.y for p in parts]),
            category=np.concatenate([p.category for p in parts]),
            rows=np.concatenate([m[p.rows] for p, m in zip(parts, row_maps, strict=True)]),
            keys=np.concatenate([p.keys for p in parts]),
        )


def build_split(
    frame: pd.DataFrame, transform: FeatureTransform, *, length: int, key: list[str], order: str, seed: int
) -> SplitWindows:
    """Order ``frame``'s flows into streams and index their windows (one implementation: the agent's)."""
    missing = [c for c in key if c not in frame.columns]
    if missing:
        raise ValueError(
            f"window key column(s) {missing} are not in the data (columns: identifiers present "
            f"= {[c for c in ('Src_IP', 'Dst_IP', 'Flow_ID') if c in frame.columns]})"
        )
    pos = stream_order(frame, order, seed)
    ordered = frame.iloc[pos]
    key_frame = ordered[key].astype(object)
    records = key_frame.where(key_frame.notna(), None).to_dict("records") if key else [{}] * len(ordered)
    keys = np.array([window_key(r, key) for r in records], dtype=object)
    vectors = transform.transform(raw_features(ordered, transform))
    return SplitWindows(
        vectors=vectors,
        idx=window_indices(keys, length),
        y=ordered["y"].to_numpy(dtype=np.float32),
        category=ordered["category"].astype(str).to_numpy(),
        rows=pos,
        keys=keys,
    )


class WindowBatches(keras.utils.PyDataset):
    """Batches of windows gathered on the fly, for splits too big to materialise (the paper profile)."""

    def __init__(self, split: SplitWindows, batch_size: int, *, shuffle: bool, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.split, self.batch_size, self.shuffle = split, batch_size, shuffle
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(split))
        self.on_epoch_end()

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, ...]:
        sel = np.sort(self._order[i * self.batch_size : (i + 1) * self.batch_size])
        if self.split.weight is not None:
            return self.split.windows(sel), self.split.y[sel], self.split.weight[sel]
        return self.split.windows(sel), self.split.y[sel]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._rng.shuffle(self._order)
