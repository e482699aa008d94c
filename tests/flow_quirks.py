"""Flows as CICFlowMeter writes them in its corner cases (``../shared/tools/cicflowmeter/README.md``), for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ids_core.columns import NUMERIC_COLUMNS

# Columns that are 0 for a flow of duration 0: inter-arrival times and active/idle periods.
ZERO_DURATION_ZEROS = [
    "Fwd_Pkts/s",
    "Bwd_Pkts/s",
    *(c for c in NUMERIC_COLUMNS if "IAT" in c or c.startswith(("Active", "Idle"))),
]


def zero_duration(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s flows as CICFlowMeter writes them when they last 0 µs (quirk 10): ``Flow Byts/s`` Infinity
    (NaN with no payload: 0/0), ``Flow Pkts/s`` Infinity, per-direction rates, IATs and active/idle 0."""
    out = frame.copy()
    payload = out["TotLen_Fwd_Pkts"].astype(float) + out["TotLen_Bwd_Pkts"].astype(float)
    out["Flow_Duration"] = 0
    out["Flow_Byts/s"] = np.where(payload > 0, np.inf, np.nan)
    out["Flow_Pkts/s"] = np.inf
    out[ZERO_DURATION_ZEROS] = 0.0
    return out


def write_cicflowmeter_csv(frame: pd.DataFrame, path: Path) -> Path:
    """``frame`` as a CSV with Java's spellings of non-finite doubles (``Infinity``, ``-Infinity``, ``NaN``)."""
    out = frame.astype(object).where(frame.notna(), "NaN")
    out = out.replace({np.inf: "Infinity", -np.inf: "-Infinity"})
    out.to_csv(path, index=False)
    return path
