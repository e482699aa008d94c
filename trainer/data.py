"""Loading and cleaning IoTID20 flow tables (the full 86-column file and the 80-column sample).

Binary label: ``Normal`` → 0 (benign), every other category → 1 (malicious), exactly IoTID20's
``Label``. Cleaning drops (and counts) rows without a label, with an unreadable Timestamp, or with a
numeric cell that is empty or not a number. Unlike the paper, rows holding ``inf``/``-inf``/``NaN`` are
**kept** and counted per column: CICFlowMeter writes ``Infinity`` rates (and ``NaN`` for 0/0) for
zero-duration flows, and a model that never saw them would leave an attacker who keeps flows to one
instant unscored. They are transformed by the shared non-finite rule (``ids_core.preprocess``) in
training, evaluation and serving alike. Nothing else is removed (the full file's exact duplicates stay,
as in the paper, and the report measures their effect separately).

Identifiers (Flow_ID, Src_IP, Dst_IP, Timestamp) are kept beside the features but are not model
features unless configured: an address or a flow id names the lab's machines rather than describing
the traffic, so a model keyed on them learns "which host was the attacker in 2019" and will not carry
over to another network; Timestamp only orders flows into streams.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ids_core.columns import IDENTIFIER_COLUMNS, LABEL_NORMAL, NUMERIC_COLUMNS, TIMESTAMP_FORMAT
from ids_core.preprocess import nonfinite_counts

log = logging.getLogger(__name__)


NAN_SPELLINGS = ("NaN", "nan", "-NaN", "-nan", "NAN")
TEXT_NA = ("", "NA", "N/A", "NaN", "nan", "null", "NULL")  # pandas' usual missing-value spellings, for text


class DataError(ValueError):
    """A flow table that does not have the IoTID20 layout."""


@dataclass
class FlowTable:
    """A cleaned IoTID20 table: numeric features, identifiers when present, ``category`` and ``y``."""

    frame: pd.DataFrame
    source: str
    layout: str  # "full" (86 columns, Label/Cat/Sub_Cat) or "sample" (79 numeric + Target)
    synthetic: bool = False
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def has_timestamp(self) -> bool:
        return "Timestamp" in self.frame.columns

    @property
    def identifiers(self) -> list[str]:
        return [c for c in IDENTIFIER_COLUMNS if c in self.frame.columns]

    def describe(self) -> str:
        kind = "SYNTHETIC data (generated in the IoTID20 schema)" if self.synthetic else "real IoTID20 data"
        return f"{kind}: {self.source} ({self.layout} layout, {len(self.frame):,} rows after cleaning)"


def detect_layout(columns: list[str]) -> str:
    cols = set(columns)
    missing = [c for c in NUMERIC_COLUMNS if c not in cols]
    if missing:
        raise DataError(f"not an IoTID20 table: {len(missing)} numeric columns missing, e.g. {missing[:5]}")
    if {"Label", "Cat"} <= cols:
        return "full"
    if "Target" in cols:
        return "sample"
    raise DataError("no label column: expected Label/Cat/Sub_Cat (full file) or Target (sample)")


def load_csv(path: str | Path, *, synthetic: bool = False, nrows: int | None = None) -> FlowTable:
    """Read an IoTID20 CSV (full original or sample) and clean it."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    header = pd.read_csv(path, nrows=0).columns.str.strip().tolist()
    layout = detect_layout(header)
    text = [c for c in [*IDENTIFIER_COLUMNS, "Label", "Cat", "Sub_Cat", "Target"] if c in header]
    # Only a NaN spelled out (CICFlowMeter's 0/0) is NaN in a numeric column; an empty cell stays "" and is
    # then counted as not a number (a damaged row), not silently taken for 0/0.
    na = {c: list(NAN_SPELLINGS) for c in header if c not in text} | {c: list(TEXT_NA) for c in text}
    log.info("reading %s (%s layout)", path, layout)
    frame = pd.read_csv(
        path,
        dtype=dict.fromkeys(text, "string"),
        nrows=nrows,
        low_memory=False,
        keep_default_na=False,
        na_values=na,
    )
    frame.columns = frame.columns.str.strip()
    return clean(frame, source=str(path), layout=layout, synthetic=synthetic)


def clean(frame: pd.DataFrame, *, source: str, layout: str, synthetic: bool = False) -> FlowTable:
    """Coerce numeric columns, drop unusable rows (counted), count non-finite values, add ``category`` and ``y``."""
    raw_rows = len(frame)
    out = pd.DataFrame(index=frame.index)
    unreadable = np.zeros(len(frame), dtype=bool)
    non_numeric = 0
    for c in NUMERIC_COLUMNS:
        col = pd.to_numeric(frame[c], errors="coerce").astype("float64")
        bad = (col.isna() & frame[c].notna()).to_numpy()  # empty or not a number (NaN itself is a value)
        non_numeric += int(bad.sum())
        unreadable |= bad
        out[c] = col
    for c in IDENTIFIER_COLUMNS:
        if c in frame.columns:
            out[c] = frame[c].astype("string")
    out["category"] = (frame["Cat"] if layout == "full" else frame["Target"]).astype("string").str.strip()
    if layout == "full":
        out["sub_category"] = frame["Sub_Cat"].astype("string").str.strip()
        label_mismatch = int(((frame["Label"].str.strip() == LABEL_NORMAL) != (out["category"] == LABEL_NORMAL)).sum())
    else:
        label_mismatch = 0
    no_label = out["category"].isna().to_numpy()
    bad_time = np.zeros(len(out), dtype=bool)
    if "Timestamp" in out.columns:
        ts = pd.to_datetime(out["Timestamp"], format=TIMESTAMP_FORMAT, errors="coerce")
        bad_time = ts.isna().to_numpy()
        out["timestamp"] = ts
    drop = unreadable | no_label | bad_time
    out = out.loc[~drop].reset_index(drop=True)
    out["y"] = (out["category"] != LABEL_NORMAL).astype("int8")
    values = out[list(NUMERIC_COLUMNS)].to_numpy()
    nonfinite_rows = ~np.isfinite(values).all(axis=1)
    feature_dupes = int(out.duplicated(subset=list(NUMERIC_COLUMNS)).sum())
    counts = {
        "raw_rows": raw_rows,
        "dropped_non_numeric": int(unreadable.sum()),
        "dropped_no_label": int((no_label & ~unreadable).sum()),
        "dropped_bad_timestamp": int((bad_time & ~unreadable & ~no_label).sum()),
        "non_numeric_values": non_numeric,
        "nonfinite_rows": int(nonfinite_rows.sum()),  # kept: the non-finite rule transforms them
        "nonfinite_malicious": int(out["y"].to_numpy()[nonfinite_rows].sum()),
        "nonfinite_by_column": nonfinite_counts(values, NUMERIC_COLUMNS),
        "label_cat_mismatch": label_mismatch,
        "rows": len(out),
        "malicious": int(out["y"].sum()),
        "benign": int((out["y"] == 0).sum()),
        "categories": {str(k): int(v) for k, v in out["category"].value_counts().sort_index().items()},
        "duplicate_feature_rows": feature_dupes,
    }
    log.info(
        "cleaned %s: %d raw rows, %d dropped, %d kept (%d malicious / %d benign; %d with inf/NaN, kept)",
        source,
        raw_rows,
        raw_rows - len(out),
        len(out),
        counts["malicious"],
        counts["benign"],
        counts["nonfinite_rows"],
    )
    return FlowTable(out, source=source, layout=layout, synthetic=synthetic, counts=counts)


def default_sample_path() -> Path:
    """The real sample: ``$IOTID20_DATA_DIR/iotid20_2000.csv``, else ``../shared/data/iotid20/`` beside the repo."""
    directory = os.environ.get("IOTID20_DATA_DIR")
    base = Path(directory) if directory else Path(__file__).resolve().parents[2] / "shared" / "data" / "iotid20"
    return base / "iotid20_2000.csv"


def resolve_source(spec: str, *, synthetic_rows: int, seed: int, workdir: Path) -> FlowTable:
    """Load ``spec``: a CSV path, ``sample`` (the real 10k-row sample), ``synthetic``, or ``auto``.

    ``auto`` uses the real sample when it is present and otherwise generates synthetic flows —
    always saying which one it used.
    """
    if spec == "auto":
        spec = "sample" if default_sample_path().exists() else "synthetic"
        log.info("data=auto → %s", spec)
    if spec == "sample":
        return load_csv(default_sample_path())
    if spec == "synthetic":
        from trainer.synthetic import write_csv

        path = write_csv(workdir, synthetic_rows, seed=seed)
        log.warning("using SYNTHETIC flows (%s): numbers from it say nothing about real traffic", path)
        return load_csv(path, synthetic=True)
    return load_csv(spec, synthetic="SYNTHETIC" in Path(spec).name.upper())
