"""The payloads of ``<prefix>/<gateway>/flows``, written by the flow meter and ``iotids-replay``, read by the agent.

A message is UTF-8 JSON in one of three shapes (``agent.records.parse_flows`` reads all of them):

* one flow record: an object whose keys are IoTID20 column names;
* an array of flow records;
* a **columnar batch**: ``{"columns": [names…], "rows": [[values…], …]}`` — the column names once, then one array of
  values per flow in that order. The names are most of the bytes of a record (~1.7 kB for 83 keys), so a batch is
  about a third of the size of the array form and decodes several times faster. ``null`` in a row is an absent
  value (identifiers are optional; an absent model feature is ``non_numeric``, since the column is there).

Non-finite numbers (a zero-duration flow's rates) are written as the literals ``NaN``/``Infinity``/``-Infinity``,
as CICFlowMeter writes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS_KEY = "columns"
ROWS_KEY = "rows"


def to_json(value: Any) -> bytes:
    """Compact JSON; NaN and ±Infinity as the literals ``NaN`` / ``Infinity`` / ``-Infinity``."""
    return json.dumps(value, separators=(",", ":"), allow_nan=True).encode()


def columns_header(columns: Sequence[str]) -> bytes:
    """The start of a columnar batch, up to the first row."""
    return b'{"' + COLUMNS_KEY.encode() + b'":' + to_json(list(columns)) + b',"' + ROWS_KEY.encode() + b'":['


def join_rows(header: bytes, rows: Sequence[bytes]) -> bytes:
    """A columnar batch from its header and rows encoded with :func:`to_json`."""
    return header + b",".join(rows) + b"]}"


def join_records(records: Sequence[bytes]) -> bytes:
    """An array message from records encoded with :func:`to_json`."""
    return b"[" + b",".join(records) + b"]"


def encode(records: Sequence[Mapping[str, Any]], *, columnar: bool = False) -> bytes:
    """One message holding ``records``: a bare object (one record), an array, or a columnar batch whose columns
    are the keys of all records in first-seen order (a record without one of them has ``null`` there)."""
    if not columnar:
        return to_json(dict(records[0]) if len(records) == 1 else [dict(r) for r in records])
    columns = list(dict.fromkeys(k for r in records for k in r))
    rows = [to_json([r.get(c) for c in columns]) for r in records]
    return join_rows(columns_header(columns), rows)


def decode(payload: bytes) -> list[dict[str, Any]]:
    """The records of a well-formed message of any of the three shapes (for tools and tests; the agent validates
    with ``agent.records.parse_flows``)."""
    doc = json.loads(payload)
    if isinstance(doc, dict) and COLUMNS_KEY in doc:
        return [dict(zip(doc[COLUMNS_KEY], row, strict=True)) for row in doc[ROWS_KEY]]
    return doc if isinstance(doc, list) else [doc]
