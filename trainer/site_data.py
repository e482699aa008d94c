"""A site's own flows: the flow meter's / the reference CICFlowMeter's CSV, labelled or not, split in time.

The meter (``iotids-flowmeter --csv``) and the reference tool write the IoTID20 columns (the reference
with spaces where IoTID20 has underscores) and a ``Label`` of ``No Label``. Rows are ``Normal`` unless a
``Cat`` column (or a ``Label`` other than ``No Label``/``Normal``/``Anomaly``) names their category, as the
lab's labelled captures do. Cleaning is the trainer's own (:func:`trainer.data.clean`).

Hold-out: a site's later traffic is the test. Each file's rows of each category and sub-category (attack
type) are put in time order (``Timestamp``, then file order) and the last ``holdout`` share of them is held
out — never a random split, so the model is scored on traffic from after its learning period. Splitting per
attack type keeps every type of a lab run on both sides (a type that only ran late would otherwise be tested
but never learnt).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ids_core.columns import IDENTIFIER_COLUMNS, LABEL_ANOMALY, LABEL_NORMAL
from trainer.data import NAN_SPELLINGS, TEXT_NA, DataError, FlowTable, clean

log = logging.getLogger(__name__)

UNLABELLED = ("", "No Label", LABEL_NORMAL)


def normalise_columns(columns: pd.Index) -> list[str]:
    """Reference CICFlowMeter names → IoTID20 names (strip, spaces → underscores)."""
    return [str(c).strip().replace(" ", "_") for c in columns]


def load_site_csv(path: str | Path, *, source: str | None = None) -> FlowTable:
    """Read a meter/reference/IoTID20-layout CSV; rows without a category are ``Normal``.

    The frame gets a ``source`` column (default: the file name) and ``file_row`` (order in the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    text_cols = [*IDENTIFIER_COLUMNS, "Label", "Cat", "Sub_Cat", "Target"]
    raw_names = pd.read_csv(path, nrows=0).columns
    header = normalise_columns(raw_names)
    text = [raw for raw, norm in zip(raw_names, header, strict=True) if norm in text_cols]
    # read as trainer.data.load_csv reads IoTID20: only a spelled-out NaN is NaN in a numeric column
    na = {c: list(TEXT_NA) if c in text else list(NAN_SPELLINGS) for c in raw_names}
    frame = pd.read_csv(
        path, dtype=dict.fromkeys(text, "string"), low_memory=False, keep_default_na=False, na_values=na
    )
    frame.columns = header
    frame["Cat"] = site_categories(frame)
    frame["Label"] = np.where(frame["Cat"] == LABEL_NORMAL, LABEL_NORMAL, LABEL_ANOMALY)
    if "Sub_Cat" not in frame.columns:
        frame["Sub_Cat"] = frame["Cat"]
    table = clean(frame, source=str(path), layout="full")
    table.frame["file_row"] = np.arange(len(table.frame))  # clean() keeps the file's order
    table.frame["source"] = source or path.name
    return table


def site_categories(frame: pd.DataFrame) -> pd.Series:
    """Each row's category: ``Cat`` (or the sample's ``Target``) if present, else a telling ``Label``, else Normal."""
    for col in ("Cat", "Target"):
        if col in frame.columns:
            cat = frame[col].astype("string").str.strip()
            return cat.fillna(LABEL_NORMAL).replace("", LABEL_NORMAL)
    if "Label" in frame.columns:
        label = frame["Label"].astype("string").str.strip().fillna("")
        if (label == LABEL_ANOMALY).any():
            raise DataError("rows labelled Anomaly without a Cat column: say which attack category they are")
        return label.where(~label.isin(UNLABELLED), LABEL_NORMAL)
    return pd.Series(LABEL_NORMAL, index=frame.index, dtype="string")


def load_site_files(paths: list[str | Path]) -> tuple[pd.DataFrame, list[dict]]:
    """Several site CSVs as one frame (``source`` = file name, made unique) and their cleaning counts."""
    frames, counts, seen = [], [], set()
    for p in paths:
        name = Path(p).name
        while name in seen:
            name = f"{name}'"
        seen.add(name)
        table = load_site_csv(p, source=name)
        frames.append(table.frame)
        counts.append({"file": str(p), "source": name, **table.counts})
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame, counts


def time_order(frame: pd.DataFrame) -> np.ndarray:
    """Positions of ``frame``'s rows by (Timestamp, file order) — the flows' time order."""
    row = frame["file_row"].to_numpy() if "file_row" in frame.columns else np.arange(len(frame))
    if "timestamp" in frame.columns and frame["timestamp"].notna().all():
        return np.lexsort((row, frame["timestamp"].to_numpy()))
    return np.argsort(row, kind="stable")


@dataclass
class TimeSplit:
    learn: pd.DataFrame  # the learning period: the earlier rows of each (source, category)
    held: pd.DataFrame  # the later rows, never trained on


def _groups(frame: pd.DataFrame) -> list[str]:
    return ["source", "category", *(["sub_category"] if "sub_category" in frame.columns else [])]


def split_in_time(frame: pd.DataFrame, holdout: float) -> TimeSplit:
    """Per (source, category, sub-category), in time order: the first ``1 - holdout`` rows learn, the rest held out."""
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    learn, held = [], []
    for _, group in frame.groupby(_groups(frame), sort=False, dropna=False):
        ordered = group.iloc[time_order(group)]
        cut = round(len(ordered) * (1.0 - holdout))
        learn.append(ordered.iloc[:cut])
        held.append(ordered.iloc[cut:])
    return TimeSplit(pd.concat(learn, ignore_index=True), pd.concat(held, ignore_index=True))


def learning_prefix(learn: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """The first ``fraction`` (in time) of each source's benign learning rows; attack rows are all kept."""
    parts = []
    for key, group in learn.groupby(_groups(learn), sort=False, dropna=False):
        category = key[1]
        ordered = group.iloc[time_order(group)]
        n = len(ordered) if category != LABEL_NORMAL else max(1, round(len(ordered) * fraction))
        parts.append(ordered.iloc[:n])
    return pd.concat(parts, ignore_index=True)


def span_seconds(frame: pd.DataFrame) -> float | None:
    """Sum over sources of (last − first flow start) of benign rows: the traffic time they cover."""
    if "timestamp" not in frame.columns or frame["timestamp"].isna().any():
        return None
    benign = frame[frame["category"] == LABEL_NORMAL]
    spans = benign.groupby("source")["timestamp"].agg(lambda t: (t.max() - t.min()).total_seconds())
    return float(spans.sum())


def thin_attacks(learn: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """At most ``max_rows`` learning rows per attack type and source, evenly spaced in time; benign rows all kept.

    A flood gives tens of thousands of near-identical flows; the training weights, not the row counts,
    set how much the lab's attacks count, so thinning only saves training time.
    """
    parts = []
    for key, group in learn.groupby(_groups(learn), sort=False, dropna=False):
        ordered = group.iloc[time_order(group)]
        if key[1] != LABEL_NORMAL and len(ordered) > max_rows:
            ordered = ordered.iloc[np.linspace(0, len(ordered) - 1, max_rows).round().astype(int)]
        parts.append(ordered)
    return pd.concat(parts, ignore_index=True)
