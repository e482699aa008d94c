"""Flow records → a CSV in the IoTID20 column layout, numbers written as the reference's Java writes them."""

from __future__ import annotations

import math
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from flowmeter.flow import RECORD_COLUMNS
from ids_core.columns import LABEL_ANOMALY, LABEL_NORMAL, SUB_CAT_TO_CAT

NO_LABEL = "No Label"  # the reference's Label value


def java_double(x: float) -> str:
    """``Double.toString``: ``52.0``, ``359523.8095238095``; E-notation below 10^-3 and from 10^7 (``1.5E7``)."""
    if x != x:
        return "NaN"
    if x == math.inf:
        return "Infinity"
    if x == -math.inf:
        return "-Infinity"
    if x == 0.0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    r = repr(x)  # the shortest digits that round-trip
    a = abs(x)
    if 1e-3 <= a < 1e7:
        return r  # plain decimal in this range, with ".0" for whole numbers
    sign = "-" if r[0] == "-" else ""
    if sign:
        r = r[1:]
    if "e" in r:
        mantissa, exp = r.split("e")
        return f"{sign}{mantissa if '.' in mantissa else mantissa + '.0'}E{int(exp)}"
    whole, _, frac = r.partition(".")
    if a >= 1.0:  # 10^7 <= a < 10^16
        digits = (whole + frac).rstrip("0")
        exp10 = len(whole) - 1
    else:  # 10^-5 <= a < 10^-3
        significant = frac.lstrip("0")
        exp10 = -(len(frac) - len(significant) + 1)
        digits = significant.rstrip("0")
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{exp10}"


def java_value(v: Any) -> str:
    """A record value as the reference writes it (floats as Java doubles, ints and text as they are)."""
    if v.__class__ is float:
        if 1e-3 <= v < 1e7 or -1e7 < v <= -1e-3:
            return repr(v)
        return java_double(v)
    return str(v)


def label_columns(cat: str | None, sub_cat: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Label columns and values: the reference's ``Label`` = ``No Label``, or IoTID20's Label/Cat/Sub_Cat."""
    if cat is None and sub_cat is None:
        return ("Label",), (NO_LABEL,)
    if sub_cat is not None:
        if sub_cat not in SUB_CAT_TO_CAT:
            raise ValueError(f"unknown Sub_Cat {sub_cat!r}; known: {', '.join(SUB_CAT_TO_CAT)}")
        if cat is not None and cat != SUB_CAT_TO_CAT[sub_cat]:
            raise ValueError(f"Sub_Cat {sub_cat!r} belongs to Cat {SUB_CAT_TO_CAT[sub_cat]!r}, not {cat!r}")
        cat = SUB_CAT_TO_CAT[sub_cat]
    label = LABEL_NORMAL if cat == LABEL_NORMAL else LABEL_ANOMALY
    return ("Label", "Cat", "Sub_Cat"), (label, cat, sub_cat or cat)


class CsvWriter:
    """Writes records to ``path`` (header first); use as a context manager or call ``close``."""

    def __init__(self, path: str | Path, *, cat: str | None = None, sub_cat: str | None = None) -> None:
        names, values = label_columns(cat, sub_cat)
        self._tail = "," + ",".join(values) + "\n"
        self._fh: IO[str] = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed by close()
        self._fh.write(",".join((*RECORD_COLUMNS, *names)) + "\n")
        self._values = itemgetter(*RECORD_COLUMNS)
        self.rows = 0

    def write(self, record: dict[str, object]) -> None:
        self._fh.write(",".join(map(java_value, self._values(record))) + self._tail)
        self.rows += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> CsvWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
