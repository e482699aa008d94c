"""Parsing and validation of the flow records the gateway receives over MQTT (the agent's hot path).

A message is UTF-8 JSON: one flow record (an object), an array of them, or a columnar batch (``{"columns": [...],
"rows": [[...], ...]}``, :mod:`ids_core.flowmessage`; each row means the record ``dict(zip(columns, row))`` and is
checked exactly as a record is; a batch whose values are all of the common kind, as a flow meter sends them, is
checked column by column instead, with the same result and no dict per row). Keys are IoTID20 column names
(``Flow_Byts/s``); CICFlowMeter's spellings with spaces (``Flow Byts/s``) are accepted and normalised by replacing
spaces with underscores. JSON is decoded with ``orjson`` where it is installed and the message is plain JSON, else
with the standard library (the ``NaN``/``Infinity`` literals, integers beyond 64 bits, a byte order mark or a lone
surrogate): the results and reasons are the same. :func:`parse_flows` never raises and never drops input silently:
every record comes back either as a :class:`FlowRecord` or as a :class:`Rejected` with a stable reason code
(:class:`Reason`), a human detail ("expected … got …") and an excerpt that is safe to republish on a dead-letter
topic.

Decisions (documented contract):

* Model features must be JSON numbers. Numeric strings (``"12.5"``) are rejected as ``non_numeric``
  (the schema says number; coercing would hide publisher bugs). Booleans and ``null`` are
  ``non_numeric``.
* Non-finite numbers are **accepted and scored** (issue 8: CICFlowMeter writes ``Infinity`` rates for a
  zero-duration flow and ``NaN`` for 0/0; rejecting them let an attacker who keeps flows to one instant
  go unscored). They arrive as the ``NaN``/``Infinity``/``-Infinity`` literals (a JSON extension: the
  spelling of CICFlowMeter's CSV, written by Python's ``json`` and so by ``flowmeter``'s replay) or as
  numbers overflowing float64 (``1e400``, huge integers → ±inf). ``FlowRecord.values`` keeps them as
  they are; the scorer's transform applies the one non-finite rule of ``ids_core.preprocess`` (+inf →
  training maximum, -inf → minimum, NaN → 0), as the trainer did. ``FlowRecord.nonfinite`` counts them
  per record, for the stats.
* Strings spelling them (``"inf"``, ``"Infinity"``, ``"NaN"``) stay **rejected** as ``non_numeric``, with a
  hint to send the literal: they are strings like ``"12.5"``, the schema says number, and a publisher that
  quotes numbers has a bug that should be loud. It is: zero-duration flows are common (all packets in
  one microsecond, e.g. a flow of one packet), so such a publisher (e.g. Java's Jackson with its default
  ``WRITE_NAN_AS_STRINGS``) shows up in the dead letters at once. An attacker cannot choose the
  encoding; the publisher does. ``non_finite`` is therefore no longer a reason code.
* Categorical features (the spec's label-encoded columns) may be a string or an integer; the raw
  value goes to ``FlowRecord.categories`` as a string and ``values`` holds NaN at that position.
  Anything else is ``bad_identifier`` (they are identifier columns).
* Identifiers are optional; ``null`` counts as absent. ``Flow_ID``/``Src_IP``/``Dst_IP``: string or
  integer (kept as a string); ``Src_Port``/``Dst_Port``: integer 0–65535, ``Protocol``: 0–255,
  ``seq``: integer 0–2**63-1 (integral floats such as ``443.0`` accepted, as JSON Schema's
  ``integer`` does); ``Timestamp``: string or finite number, kept as given; ``sensor``: non-empty
  string. Strings are at most ``RecordLimits.max_ident_chars`` long and must be encodable as UTF-8
  (no lone surrogates from ``\\ud800`` escapes).
* A column we read that appears under both spellings (``Src IP`` and ``Src_IP``) is
  ``duplicate_field``, and so is any key given twice in one record (``{"seq": 1, "seq": 2}``: JSON
  leaves the meaning open, I-JSON forbids it; ``json`` would silently keep the last). A message under
  4 kB (about one record) is parsed with a pairs hook that marks records holding a key twice; a longer
  one with the plain decoder, then its key ends are counted in the bytes (:func:`_may_repeat_keys`) and
  only when they outnumber the parsed keys (a repeat, nested objects, escapes, a space before a colon)
  is it parsed again with the hook.
* A columnar batch must be an object with exactly ``columns`` (distinct strings, at most ``max_keys``) and
  ``rows`` (an array); otherwise the message is ``bad_batch`` (``duplicate_field`` for a repeated column,
  ``too_many_keys``/``empty``/``too_many_records`` as for arrays). A row that is not an array of one value
  per column is ``bad_row``; ``null`` is an absent value, as in a record.
* A record gets the first failing reason, checked in this order: ``not_an_object`` (``bad_row``),
  ``too_many_keys``, ``duplicate_field``, ``missing_field``, ``bad_identifier``, ``non_numeric``.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from itertools import chain
from operator import itemgetter, methodcaller
from typing import Any

import numpy as np

from ids_core.columns import NUMERIC_COLUMNS
from ids_core.flowmessage import COLUMNS_KEY, ROWS_KEY
from ids_core.preprocess import key_part

try:
    import orjson as _orjson
except ImportError:  # the standard library decodes the same, 3-4x slower
    _orjson = None

log = logging.getLogger(__name__)

EXCERPT_CHARS = 512
SCHEMA_ID = "urn:edge-ids:schema:flow-record:1"


# Identifier fields: (column name in the record, name in FlowRecord.ident, kind).
_STR, _PORT, _PROTO, _TS, _SEQ, _SENSOR = range(6)
IDENTIFIER_FIELDS: tuple[tuple[str, str, int], ...] = (
    ("Flow_ID", "flow_id", _STR),
    ("Src_IP", "src_ip", _STR),
    ("Dst_IP", "dst_ip", _STR),
    ("Src_Port", "src_port", _PORT),
    ("Dst_Port", "dst_port", _PORT),
    ("Protocol", "protocol", _PROTO),
    ("Timestamp", "timestamp", _TS),
    ("seq", "seq", _SEQ),
    ("sensor", "sensor", _SENSOR),
)
_INT_RANGE = {_PORT: (0, 65535), _PROTO: (0, 255), _SEQ: (0, 2**63 - 1)}
_NUM_TYPES = frozenset({int, float})
_NONFINITE_STRINGS = frozenset({"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
_NONFINITE_HINT = " (a string; send the JSON literal NaN, Infinity or -Infinity)"


class Reason(StrEnum):
    """Stable reason codes of rejected messages and records (they are ``str``: compare with text)."""

    TOO_LARGE = "too_large"  # message longer than RecordLimits.max_message_bytes (checked first)
    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    EMPTY = "empty"  # blank payload or []
    NOT_AN_OBJECT = "not_an_object"  # top level neither object nor array, or an array element
    BAD_BATCH = "bad_batch"  # a columnar batch without exactly "columns" (distinct strings) and "rows" (an array)
    BAD_ROW = "bad_row"  # a row of a columnar batch that is not an array of one value per column
    TOO_MANY_RECORDS = "too_many_records"
    TOO_MANY_KEYS = "too_many_keys"
    DUPLICATE_FIELD = "duplicate_field"  # a key given twice, or a column we read with and without spaces
    MISSING_FIELD = "missing_field"  # a model feature is absent
    BAD_IDENTIFIER = "bad_identifier"  # identifier / categorical feature of wrong type, range or length
    NON_NUMERIC = "non_numeric"  # a model feature that is not a JSON number (non-finite literals are numbers)
    INTERNAL_ERROR = "internal_error"  # a parser bug; the message is rejected instead of raising


@dataclass(frozen=True)
class RecordLimits:
    """Bounds on what one message may hold."""

    max_message_bytes: int = 1 << 20
    max_records: int = 5000
    max_ident_chars: int = 256
    max_keys: int = 512

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_records", "max_ident_chars", "max_keys"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RecordLimits.{name}: expected a positive int, got {value!r}")


DEFAULT_LIMITS = RecordLimits()


@dataclass(slots=True)
class FlowRecord:
    """One accepted flow.

    ``values`` are the model's features in order (float64; NaN at categorical positions, whose raw
    values are in ``categories``; ±inf/NaN as sent, see the module docstring). Rows of one message are
    views of one array: do not mutate them.
    """

    values: np.ndarray
    ident: dict[str, Any]
    key: str
    categories: dict[str, str] = field(default_factory=dict)
    index: int = 0  # position in the message
    nonfinite: int = 0  # how many of its numeric features were NaN/±inf (scored by the non-finite rule)


@dataclass(slots=True)
class Rejected:
    """A rejected message (``index is None``) or record, ready for the dead-letter topic."""

    reason: Reason
    detail: str
    index: int | None
    excerpt: str
    ident: dict[str, Any] = field(default_factory=dict)  # the valid identifiers found (e.g. seq)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": str(self.reason),
            "detail": self.detail,
            "index": self.index,
            "excerpt": self.excerpt,
            "ident": self.ident,
        }


# --------------------------------------------------------------------------- helpers


def normalise_name(name: str) -> str:
    """CICFlowMeter spelling → IoTID20 spelling (spaces → underscores)."""
    return name.replace(" ", "_")


def _excerpt_bytes(payload: bytes) -> str:
    return payload[:EXCERPT_CHARS].decode("utf-8", "backslashreplace")[:EXCERPT_CHARS]


def _excerpt_obj(obj: Any) -> str:
    """ASCII JSON of ``obj`` cut to EXCERPT_CHARS (escapes lone surrogates and control characters)."""
    try:
        text = json.dumps(obj, ensure_ascii=True, allow_nan=True)
    except (ValueError, TypeError, RecursionError):
        text = "<unprintable>"
    return text[:EXCERPT_CHARS]


def _describe(v: Any) -> str:
    """A short, safe description of a JSON value for error details."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean {'true' if v else 'false'}"
    if isinstance(v, str):
        shown = v[:40].encode("ascii", "backslashreplace").decode("ascii")
        return f"string {shown!r}" + ("…" if len(v) > 40 else "")
    if isinstance(v, int):
        digits = len(str(v))
        return f"integer {v}" if digits <= 24 else f"an integer of {digits} digits"
    if isinstance(v, float):
        return f"number {v!r}"
    if isinstance(v, list):
        return f"an array of {len(v)} items"
    if isinstance(v, dict):
        return f"an object of {len(v)} keys"
    return type(v).__name__


def _utf8_ok(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_int(v: Any) -> int | None:
    t = type(v)
    if t is int:
        return v
    if t is float and v.is_integer():  # finite and integral
        return int(v)
    return None


def _check_ident(v: Any, kind: int, max_chars: int) -> tuple[Any, str | None]:
    """Validated, normalised identifier value, or ``(None, 'expected … got …')``."""
    t = type(v)
    if kind in (_STR, _SENSOR, _TS):
        if t is str:
            if kind == _SENSOR and not v:
                return None, "expected a non-empty string, got an empty string"
            if len(v) > max_chars:
                return None, f"expected at most {max_chars} characters, got {len(v)}"
            if not _utf8_ok(v):
                return None, "expected a UTF-8 encodable string, got a lone surrogate"
            return v, None
        if kind == _STR and t is int:
            s = str(v)
            if len(s) <= max_chars:
                return s, None
            return None, f"expected at most {max_chars} characters, got an integer of {len(s)} digits"
        if kind == _TS and (t is int or (t is float and math.isfinite(v))):
            return v, None
        expected = {_STR: "a string or integer", _SENSOR: "a string", _TS: "a string or finite number"}[kind]
        return None, f"expected {expected}, got {_describe(v)}"
    lo, hi = _INT_RANGE[kind]
    i = _as_int(v)
    if i is None:
        return None, f"expected an integer in [{lo}, {hi}], got {_describe(v)}"
    if not lo <= i <= hi:
        return None, f"expected an integer in [{lo}, {hi}], got {_describe(v)}"
    return i, None


# Integer identifiers first, then the text ones (the first problem is reported in this order); text has no range.
_IDENTS = tuple((col, name, *_INT_RANGE[kind]) for col, name, kind in IDENTIFIER_FIELDS if kind in _INT_RANGE) + tuple(
    (col, name, None, None) for col, name, kind in IDENTIFIER_FIELDS if kind not in _INT_RANGE
)
_IDENT_KIND = {col: kind for col, _, kind in IDENTIFIER_FIELDS}


def _identifiers(rec: dict[str, Any], max_chars: int) -> tuple[dict[str, Any], str | None]:
    """The valid identifiers of ``rec`` and the first problem found (``identifier 'X': expected … got …``)."""
    ident: dict[str, Any] = {}
    problem = None
    get = rec.get
    for col, name, lo, hi in _IDENTS:
        v = get(col)
        if v is None:
            continue
        if hi is None:  # the common cases, inline: a short ASCII string, an integer in range
            common = type(v) is str and 0 < len(v) <= max_chars and v.isascii()
        else:
            common = type(v) is int and lo <= v <= hi
        if common:
            ident[name] = v
            continue
        value, err = _check_ident(v, _IDENT_KIND[col], max_chars)
        if err is None:
            ident[name] = value
        elif problem is None:
            problem = f"identifier {col!r}: {err}"
    return ident, problem


def _category(v: Any, max_chars: int) -> tuple[str | None, str | None]:
    t = type(v)
    if t is str:
        if len(v) > max_chars:
            return None, f"expected at most {max_chars} characters, got {len(v)}"
        if not _utf8_ok(v):
            return None, "expected a UTF-8 encodable string, got a lone surrogate"
        return v, None
    if t is int and len(s := str(v)) <= max_chars:
        return s, None
    return None, f"expected a string or integer, got {_describe(v)}"


def _as_float(v: int) -> float:
    """An integer as float64; beyond float64's range it overflows to ±inf, as ``1e400`` does in ``json``."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _float_row(names: Sequence[str], row: Sequence[Any]) -> tuple[tuple[float, ...] | None, str | None]:
    """A row of feature values as floats, or ``(None, why not)`` for the first value that is not a number."""
    for name, v in zip(names, row, strict=True):
        t = type(v)
        if t is float or t is int:
            continue
        if t is str:
            spelled = v.strip().lower() in _NONFINITE_STRINGS
            hint = _NONFINITE_HINT if spelled else " (numeric strings are not accepted; send a JSON number)"
        else:
            hint = ""
        return None, f"field {name!r}: expected a number, got {_describe(v)}{hint}"
    return tuple(v if type(v) is float else _as_float(v) for v in row), None


def _getter(names: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """``d -> tuple(d[n] for n in names)`` at C speed (raises KeyError when one is absent)."""
    if not names:
        return lambda d: ()
    if len(names) == 1:
        (only,) = names
        return lambda d: (d[only],)
    return itemgetter(*names)


@dataclass(frozen=True, eq=False)  # hashed by identity (plans come from the cache of _plan)
class _Plan:
    """Everything about a (features, categorical, key_columns) triple that does not depend on data."""

    features: tuple[str, ...]
    numeric: tuple[str, ...]
    num_pos: np.ndarray
    categorical: tuple[str, ...]
    get_numeric: Callable[[dict[str, Any]], tuple[Any, ...]]
    key_columns: tuple[str, ...]
    key_ident: tuple[str | None, ...]  # FlowRecord.ident name of each key column that is an identifier
    wanted: frozenset[str]  # every column we read


@lru_cache(maxsize=32)
def _plan(features: tuple[str, ...], categorical: frozenset[str], key_columns: tuple[str, ...]) -> _Plan:
    feats = tuple(normalise_name(f) for f in features)
    cats = {normalise_name(c) for c in categorical}
    numeric = tuple(f for f in feats if f not in cats)
    keys = tuple(normalise_name(k) for k in key_columns)
    ident_of = {col: name for col, name, _ in IDENTIFIER_FIELDS}
    return _Plan(
        features=feats,
        numeric=numeric,
        num_pos=np.array([i for i, f in enumerate(feats) if f not in cats], dtype=np.intp),
        categorical=tuple(f for f in feats if f in cats),
        get_numeric=_getter(numeric),
        key_columns=keys,
        key_ident=tuple(ident_of.get(k) for k in keys),
        wanted=frozenset(feats) | frozenset(ident_of) | frozenset(keys),
    )


_SPACES_TO_UNDERSCORES = methodcaller("replace", " ", "_")


def _normalised_layout(keys: tuple[str, ...], wanted: frozenset[str]) -> tuple[tuple[str, ...], str | None]:
    """Keys with spaces → underscores, and a column we read that was given in both spellings (or None)."""
    normal = tuple(map(_SPACES_TO_UNDERSCORES, keys))
    if len(set(normal)) == len(normal):
        return normal, None
    seen: set[str] = set()
    for k in normal:
        if k in seen and k in wanted:
            return normal, k
        seen.add(k)
    return normal, None


def _window_key(plan: _Plan, rec: dict[str, Any], ident: dict[str, Any], max_chars: int) -> tuple[str, str | None]:
    """``ids_core.preprocess.window_key`` semantics (values joined by '|', absent or null → '')."""
    parts = []
    for col, name in zip(plan.key_columns, plan.key_ident, strict=True):
        if name is not None:  # an identifier: already validated and normalised
            v = ident.get(name)
            parts.append("" if v is None else str(v))
            continue
        v = rec.get(col)
        if v is None:
            parts.append("")
        elif type(v) is str and len(v) <= max_chars and _utf8_ok(v):
            parts.append(v)
        elif type(v) is int and len(s := str(v)) <= max_chars:
            parts.append(s)
        elif type(v) is float and math.isfinite(v):
            parts.append(key_part(v))  # 80.0 and 80 are the same key, as in the trainer
        else:
            return "", f"key column {col!r}: expected a string or number, got {_describe(v)}"
    return "|".join(parts), None


# --------------------------------------------------------------------------- the parser


def parse_flows(
    payload: bytes,
    features: Sequence[str],
    *,
    categorical: Collection[str] = (),
    key_columns: Sequence[str] = (),
    limits: RecordLimits = DEFAULT_LIMITS,
) -> tuple[list[FlowRecord], list[Rejected]]:
    """Parse one MQTT message into accepted records and rejections; never raises.

    ``features``: the model's feature columns in order; ``categorical``: those kept as strings;
    ``key_columns``: the window key. A message-level problem gives one :class:`Rejected` with
    ``index=None``; otherwise every record ends up exactly once in one of the two lists.
    """
    try:
        plan = _plan(tuple(features), frozenset(categorical), tuple(key_columns))
        return _parse(payload, plan, limits)
    except Exception as e:  # the contract is "never raise": a bug becomes a dead-lettered message
        log.exception("flow parser failed on a %d-byte message", len(payload) if hasattr(payload, "__len__") else -1)
        excerpt = _excerpt_bytes(bytes(payload)) if isinstance(payload, bytes | bytearray) else ""
        return [], [Rejected(Reason.INTERNAL_ERROR, f"message: parser error {e!r}"[:EXCERPT_CHARS], None, excerpt)]


def _parse(payload: bytes, plan: _Plan, limits: RecordLimits) -> tuple[list[FlowRecord], list[Rejected]]:
    def whole(reason: Reason, detail: str) -> tuple[list[FlowRecord], list[Rejected]]:
        return [], [Rejected(reason, f"message: {detail}", None, _excerpt_bytes(payload))]

    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    elif not isinstance(payload, bytes):
        payload = bytes(payload)
    if len(payload) > limits.max_message_bytes:
        return whole(Reason.TOO_LARGE, f"expected at most {limits.max_message_bytes} bytes, got {len(payload)}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        return whole(Reason.NOT_UTF8, f"expected UTF-8, got byte 0x{payload[e.start]:02x} at offset {e.start}")
    if text.startswith("\ufeff"):  # tolerate a UTF-8 byte order mark
        text = text[1:]
    if not text.strip():
        return whole(Reason.EMPTY, "expected a flow record or an array of them, got an empty payload")
    try:
        doc, quoted = _decode(payload, text)
        if quoted:  # orjson read the non-finite literals as strings: only the column checks may take that document
            if _COLUMNAR_FAST and (accepted := _quoted_columnar(doc, plan, limits)) is not None:
                return accepted, []
            doc = _decode_json(payload, text)
    except RecursionError:
        return whole(Reason.INVALID_JSON, f"expected JSON, got nesting deeper than {sys.getrecursionlimit()}")
    except ValueError as e:  # JSONDecodeError, or an integer beyond Python's digit limit
        return whole(Reason.INVALID_JSON, f"expected JSON, got {e}")

    if (type(doc) is dict or type(doc) is _RepeatedKeys) and COLUMNS_KEY in doc:
        problem = _columnar_problem(doc, limits)
        if problem is not None:
            return whole(*problem)
        columns, rows = doc[COLUMNS_KEY], doc[ROWS_KEY]
        if _COLUMNAR_FAST and (accepted := _clean_columnar(columns, rows, plan, limits.max_ident_chars)) is not None:
            return accepted, []
        return _parse_records(_as_records(columns, rows), plan, limits)
    if type(doc) is dict or type(doc) is _RepeatedKeys:
        items: list[Any] = [doc]
    elif type(doc) is list:
        items = doc
        if not items:
            return whole(Reason.EMPTY, "expected a flow record or an array of them, got an empty array")
        if len(items) > limits.max_records:
            return whole(Reason.TOO_MANY_RECORDS, f"expected at most {limits.max_records} records, got {len(items)}")
    else:
        return whole(Reason.NOT_AN_OBJECT, f"expected a JSON object or array of objects, got {_describe(doc)}")
    return _parse_records(items, plan, limits)


# 20 digits in a row, or a minus and 19: possibly an integer beyond orjson's 64 bits (unsigned up to 2**64 - 1,
# signed down to -2**63), which it reads as a float (json keeps it exact). Found with translate + substring
# search (~1 µs per 2 kB record; a regex costs ~16 µs).
_DIGITS_ONLY = bytes(48 if 48 <= i <= 57 else 45 if i == 45 else 32 for i in range(256))
_LONG_RUN, _LONG_NEGATIVE = b"0" * 20, b"-" + b"0" * 19


def _decode(payload: bytes, text: str) -> tuple[Any, bool]:
    """The JSON document and whether its non-finite literals came back quoted; a record holding a key twice comes
    back as a :class:`_RepeatedKeys`.

    NaN / Infinity / -Infinity literals become floats (json's default). orjson refuses them: it reads the message
    with them quoted (:func:`_quote_nonfinite`), and then (``True``) the words stand where the numbers stood —
    only :func:`_quoted_columnar` may take such a document; anything else is decided on :func:`_decode_json`'s.
    """
    if (
        _orjson is not None
        and _LONG_RUN not in (digits := payload.translate(_DIGITS_ONLY))
        and _LONG_NEGATIVE not in digits
    ):
        literals = b"NaN" in payload or b"Infinity" in payload  # zero-duration flows
        # quoted only for a columnar batch (which the column checks may take); a record goes to json as it is
        source = (_quote_nonfinite(payload) if _COLUMNS_FIRST in payload[:16] else None) if literals else payload
        if source is not None:
            try:
                doc = _orjson.loads(source)
            except _orjson.JSONDecodeError:
                pass  # a byte order mark, lone surrogates, invalid JSON, a word in a string: json decides
            else:
                return (_DUP_MARKING.decode(text), False) if _may_repeat_keys(source, doc) else (doc, literals)
    return _decode_json(payload, text), False


def _decode_json(payload: bytes, text: str) -> Any:
    """The document as the standard library reads it (a record holding a key twice: a :class:`_RepeatedKeys`)."""
    if len(payload) < _HOOK_BELOW_BYTES:  # about one record: the pairs hook costs less than counting
        return _DUP_MARKING.decode(text)  # the default decoder is reused (parse_constant would build one per call)
    doc = json.loads(text)
    return _DUP_MARKING.decode(text) if _may_repeat_keys(payload, doc) else doc


_NONFINITE_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})  # json's literals, as strings once quoted
_COLUMNS_FIRST = f'{{"{COLUMNS_KEY}"'.encode()  # how ids_core.flowmessage starts a columnar batch


def _quote_nonfinite(payload: bytes) -> bytes | None:
    """``payload`` with its NaN / Infinity / -Infinity literals as JSON strings, or None when that would be
    ambiguous: a backslash (an escape could spell a word the bytes do not show; the repeated-key check sends such
    a message to json as well) or a NUL (used below).

    A word inside a string (even a string that is just the word) becomes invalid JSON once quoted: the inserted
    quote ends the string and the word follows it bare. orjson refuses such a message and json decides; outside
    strings, every word was a literal.
    """
    if b"\\" in payload or b"\x00" in payload:
        return None
    return (
        payload.replace(b"-Infinity", b"\x00")
        .replace(b"Infinity", b'"Infinity"')
        .replace(b"\x00", b'"-Infinity"')
        .replace(b"NaN", b'"NaN"')
    )


class _BadRow(list):
    """A row of a columnar batch that is not an array of one value per column (rejected as ``bad_row``)."""


def _columnar_problem(doc: dict[str, Any], limits: RecordLimits) -> tuple[Reason, str] | None:
    """Why a columnar batch is rejected as a whole (reason, detail), or None."""
    if type(doc) is _RepeatedKeys:
        return Reason.DUPLICATE_FIELD, f"key {doc.repeated!r}: expected each key once, got it more than once"
    columns, rows = doc[COLUMNS_KEY], doc.get(ROWS_KEY)
    if len(doc) != 2 or type(columns) is not list or type(rows) is not list:
        shape = ", ".join(f"{k!r}: {_describe(v)}" for k, v in list(doc.items())[:4])
        return Reason.BAD_BATCH, f'expected {{"{COLUMNS_KEY}": [names], "{ROWS_KEY}": [rows]}}, got {{{shape}}}'
    if not all(type(c) is str for c in columns):
        bad = next(c for c in columns if type(c) is not str)
        return Reason.BAD_BATCH, f"{COLUMNS_KEY}: expected strings, got {_describe(bad)}"
    if len(columns) > limits.max_keys:
        return Reason.TOO_MANY_KEYS, f"{COLUMNS_KEY}: expected at most {limits.max_keys}, got {len(columns)}"
    if len(set(columns)) != len(columns):
        seen: set[str] = set()
        repeated = next(c for c in columns if c in seen or seen.add(c))  # type: ignore[func-returns-value]
        return Reason.DUPLICATE_FIELD, f"column {repeated!r}: expected each column once, got it more than once"
    if not rows:
        return Reason.EMPTY, "expected a flow record or an array of them, got a batch of no rows"
    if len(rows) > limits.max_records:
        return Reason.TOO_MANY_RECORDS, f"expected at most {limits.max_records} records, got {len(rows)}"
    return None


def _as_records(columns: list[str], rows: list[Any]) -> list[Any]:
    """The rows of a columnar batch as records (``dict(zip(columns, row))``), a malformed row as a :class:`_BadRow`."""
    n = len(columns)
    return [dict(zip(columns, row, strict=True)) if type(row) is list and len(row) == n else _BadRow([row])
            for row in rows]  # fmt: skip


_COLUMNAR_FAST = True  # tests turn it off to compare with the record-by-record path
_COLUMNAR_FAST_MIN_ROWS = 6  # below, the record path costs less (measured: `bench/results/records_parse.md`)


@dataclass(frozen=True)
class _Layout:
    """Where a columnar batch's columns hold what a plan reads (indexes into the row)."""

    numeric: tuple[int, ...]
    categorical: tuple[int, ...]
    idents: tuple[tuple[int, str, int | None, int | None], ...]  # (index, ident name, lo, hi) of those present
    keys: tuple[tuple[int | None, bool], ...]  # per key column: its index (None: absent), whether an identifier


def _layout(columns: tuple[str, ...], plan: _Plan) -> _Layout | None:
    """The batch's layout for ``plan``, or None when a column we read is absent or given in both spellings."""
    names = tuple(map(_SPACES_TO_UNDERSCORES, columns)) if " " in "".join(columns) else columns
    at = {name: j for j, name in enumerate(names)}
    if len(at) != len(names):
        return None  # a column in both spellings: the record path tells whether it matters
    try:
        numeric = tuple(at[f] for f in plan.numeric)
        categorical = tuple(at[c] for c in plan.categorical)
    except KeyError:
        return None
    idents = tuple((at[col], name, lo, hi) for col, name, lo, hi in _IDENTS if col in at)
    keys = tuple((at.get(col), name is not None) for col, name in zip(plan.key_columns, plan.key_ident, strict=True))
    return _Layout(numeric, categorical, idents, keys)


_layout_cached = lru_cache(maxsize=16)(_layout)  # a publisher sends one layout; at most 16 × 8 kB of names kept
_CACHED_NAMES_CHARS = 8192


def _quoted_columnar(doc: Any, plan: _Plan, limits: RecordLimits) -> list[FlowRecord] | None:
    """A columnar batch read with its non-finite literals quoted, when the column checks take it; else None."""
    if type(doc) is not dict or COLUMNS_KEY not in doc or _columnar_problem(doc, limits) is not None:
        return None
    return _clean_columnar(doc[COLUMNS_KEY], doc[ROWS_KEY], plan, limits.max_ident_chars, quoted=True)


def _clean_columnar(
    columns: list[str], rows: list[Any], plan: _Plan, max_chars: int, *, quoted: bool = False
) -> list[FlowRecord] | None:
    """A columnar batch checked column by column, when every value is of the common kind; else None.

    The common kind: every row an array of one value per column, every model feature a JSON number, each
    identifier, categorical and key column present in all rows as a non-empty ASCII string of at most
    ``max_chars`` (or, for ports, protocol and seq, an integer in range), no column given in both spellings.
    Such a batch gets exactly the records :func:`_parse_records` would make of it (property-tested), without a
    dict per row; anything else (including every message with a rejection) returns None and takes that path.
    ``quoted``: the batch was read with its non-finite literals as the strings ``NaN``, ``Infinity``,
    ``-Infinity`` (:func:`_decode`): they count as those numbers in feature columns and nowhere else.
    """
    n, m = len(columns), len(rows)
    if m < _COLUMNAR_FAST_MIN_ROWS or set(map(type, rows)) != {list} or set(map(len, rows)) != {n}:
        return None
    names = tuple(columns)
    small = sum(map(len, names)) <= _CACHED_NAMES_CHARS
    layout = _layout_cached(names, plan) if small else _layout(names, plan)
    if layout is None:
        return None
    cols = list(zip(*rows, strict=True))
    numeric = [cols[j] for j in layout.numeric]
    if quoted:  # a word in a column read as text, or naming a column, was a number: json's reading decides
        read = [*(j for j, *_ in layout.idents), *layout.categorical, *(j for j, _ in layout.keys if j is not None)]
        if not (_NONFINITE_WORDS.isdisjoint(columns) and all(_NONFINITE_WORDS.isdisjoint(cols[j]) for j in read)):
            return None
        per_column = [set(map(type, c)) for c in numeric]  # as costly as one set over all, and finds the words
        kinds = set().union(*per_column)
        if {v for c, k in zip(numeric, per_column, strict=True) if str in k for v in c if type(v) is str} <= (
            _NONFINITE_WORDS
        ):
            kinds.discard(str)  # np.array reads the three words as the numbers
    else:
        kinds = set(map(type, chain.from_iterable(numeric)))
    if not kinds <= _NUM_TYPES:
        return None
    try:
        arr = np.array(numeric, dtype=np.float64).reshape(len(numeric), m).T.copy()
    except OverflowError:
        return None
    ident_names: list[str] = []
    ident_cols: list[tuple[Any, ...]] = []
    for j, name, lo, hi in layout.idents:
        c = cols[j]
        if not (_ints_within(c, lo, hi) if hi is not None else _plain_strings(c, max_chars)):
            return None
        ident_names.append(name)
        ident_cols.append(c)
    cat_cols = [_as_text(cols[j], max_chars) for j in layout.categorical]
    if None in cat_cols:
        return None
    keys = [""] * m
    if layout.keys:
        parts = []
        for j, is_ident in layout.keys:
            if j is None:
                parts.append(("",) * m)
            elif is_ident:  # an identifier, checked above: a string, or an integer shown as text
                parts.append(cols[j] if type(cols[j][0]) is str else tuple(map(str, cols[j])))
            elif (text := _as_text(cols[j], max_chars)) is not None:
                parts.append(text)
            else:
                return None
        keys = list(map("|".join, zip(*parts, strict=True)))
    idents = _row_dicts(ident_names, ident_cols, m)
    cats = _row_dicts(plan.categorical, cat_cols, m)  # type: ignore[arg-type]
    values, nonfinite = _feature_rows(arr, plan)
    return [FlowRecord(values[i], idents[i], keys[i], cats[i], i, nonfinite[i]) for i in range(m)]


def _feature_rows(arr: np.ndarray, plan: _Plan) -> tuple[np.ndarray, list[int]]:
    """The numeric features ``arr`` ``(n, numeric)`` as model rows ``(n, features)`` (NaN at the categorical
    positions) and each row's count of non-finite values (scored by the non-finite rule, counted for the stats)."""
    if plan.categorical:
        values = np.full((len(arr), len(plan.features)), np.nan)
        values[:, plan.num_pos] = arr
    else:
        values = arr
    finite = np.isfinite(arr)
    return values, [0] * len(arr) if finite.all() else (~finite).sum(axis=1).tolist()


def _row_dicts(names: Sequence[str], cols: Sequence[Sequence[Any]], m: int) -> list[dict[str, Any]]:
    """One ``{name: value}`` per row of the columns ``cols`` (``m`` empty dicts when there are none)."""
    if not cols:
        return [{} for _ in range(m)]
    return [dict(zip(names, v, strict=True)) for v in zip(*cols, strict=True)]


def _ints_within(col: tuple[Any, ...], lo: int, hi: int) -> bool:
    return set(map(type, col)) == {int} and lo <= min(col) and max(col) <= hi


def _plain_strings(col: tuple[Any, ...], max_chars: int) -> bool:
    """Non-empty ASCII strings of at most ``max_chars``: valid as any text identifier, category or key part."""
    if set(map(type, col)) != {str}:
        return False
    lengths = tuple(map(len, col))
    return min(lengths) > 0 and max(lengths) <= max_chars and "".join(col).isascii()


def _as_text(col: tuple[Any, ...], max_chars: int) -> tuple[str, ...] | None:
    """A category or key column as text: plain strings as they are, integers as decimals (or None)."""
    if set(map(type, col)) == {int}:
        text = tuple(map(str, col))
        return text if max(map(len, text)) <= max_chars else None
    return col if _plain_strings(col, max_chars) else None


class _RepeatedKeys(dict):
    """A JSON object that held a key more than once (``repeated``: the first such key); the last value kept."""

    repeated: str = ""


def _mark_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) == len(pairs):
        return d
    out = _RepeatedKeys(d)
    seen: set[str] = set()
    out.repeated = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
    return out


_DUP_MARKING = json.JSONDecoder(object_pairs_hook=_mark_repeats)
_HOOK_BELOW_BYTES = 4096


def _may_repeat_keys(payload: bytes, doc: Any) -> bool:
    """False when no record of ``doc`` can have held a key twice (cheap); True means: check with the pairs hook.

    Without backslashes every ``"`` of the UTF-8 text delimits a string. If none is directly followed by
    whitespace, every key's closing quote is directly followed by ``:``, so the ``":`` byte pairs number
    at least the key/value pairs of the text (strings opening with ``:`` add to them). When they equal the
    keys of the parsed records, no pair was lost to a repeated key; otherwise (a repeat, nested objects, a
    string opening with ``:``) the hook decides. numpy does this in ~0.5 µs per 1.9 kB record at 32 records
    per message (``bench/results/records_parse.md``).
    """
    if type(doc) is dict:
        n_keys = len(doc)
    elif type(doc) is list and doc and all(type(r) is dict for r in doc):
        n_keys = sum(map(len, doc))
    else:
        return type(doc) is list and any(type(r) is dict for r in doc)  # mixed arrays: let the hook decide
    if b"\\" in payload:
        return True
    b = np.frombuffer(payload, dtype=np.uint8)
    quote, after = b[:-1] == 34, b[1:]
    if (quote & (after <= 32)).any():  # whitespace right after a quote: a key may be followed by " :"
        return True
    return int(np.count_nonzero(quote & (after == 58))) != n_keys


def _parse_records(items: list[Any], plan: _Plan, limits: RecordLimits) -> tuple[list[FlowRecord], list[Rejected]]:
    rejected: list[Rejected] = []
    max_chars, max_keys, wanted = limits.max_ident_chars, limits.max_keys, plan.wanted
    get_numeric, categorical = plan.get_numeric, plan.categorical

    def reject(i: int, reason: Reason, detail: str, rec: Any, ident: dict[str, Any] | None = None) -> None:
        if ident is None and type(rec) is dict:
            ident = _identifiers(rec, max_chars)[0]
        rejected.append(Rejected(reason, detail, i, _excerpt_obj(rec), ident or {}))

    # Stage 1, per record: structure, presence, identifiers, categories, key.
    pending: list[tuple[int, dict[str, Any], dict[str, Any], dict[str, str], str]] = []
    rows: list[tuple[Any, ...]] = []
    last_layout: tuple[str, ...] = ()
    last_normal: tuple[str, ...] = ()
    last_dup: str | None = None
    for i, rec in enumerate(items):
        if type(rec) is not dict and type(rec) is not _RepeatedKeys:
            if type(rec) is _BadRow:
                row = rec[0]
                detail = f"record {i}: expected an array of one value per column, got {_describe(row)}"
                reject(i, Reason.BAD_ROW, detail, row)
            else:
                reject(i, Reason.NOT_AN_OBJECT, f"record {i}: expected a JSON object, got {_describe(rec)}", rec)
            continue
        if len(rec) > max_keys:
            reject(i, Reason.TOO_MANY_KEYS, f"record {i}: expected at most {max_keys} keys, got {len(rec)}", rec)
            continue
        if type(rec) is _RepeatedKeys:
            detail = f"field {rec.repeated!r}: expected each key once, got it more than once in one record"
            reject(i, Reason.DUPLICATE_FIELD, detail, rec, _identifiers(rec, max_chars)[0])
            continue
        if " " in "".join(rec):  # CICFlowMeter spellings: normalise
            layout = tuple(rec)
            if layout != last_layout:  # records of one message usually share their keys and order
                last_layout = layout
                last_normal, last_dup = _normalised_layout(layout, wanted)
            normal, dup = dict(zip(last_normal, rec.values(), strict=True)), last_dup
            if dup is not None:
                detail = f"field {dup!r}: expected one spelling, got it both with spaces and with underscores"
                reject(i, Reason.DUPLICATE_FIELD, detail, rec, _identifiers(normal, max_chars)[0])
                continue
            rec = normal
        try:
            row = get_numeric(rec)
            cat_raw = [rec[c] for c in categorical] if categorical else ()
        except KeyError:
            missing = [f for f in plan.features if f not in rec]
            shown = ", ".join(repr(m) for m in missing[:5]) + (", …" if len(missing) > 5 else "")
            n = len(plan.features)
            detail = f"field {missing[0]!r}: expected all {n} model features, got {len(missing)} absent: {shown}"
            reject(i, Reason.MISSING_FIELD, detail, rec)
            continue
        ident, problem = _identifiers(rec, max_chars)
        if problem is not None:
            reject(i, Reason.BAD_IDENTIFIER, problem, rec, ident)
            continue
        cats: dict[str, str] = {}
        for name, v in zip(categorical, cat_raw, strict=True):
            value, err = _category(v, max_chars)
            if err is not None:
                problem = f"categorical field {name!r}: {err}"
                break
            cats[name] = value  # type: ignore[assignment]
        if problem is None and plan.key_columns:
            key, problem = _window_key(plan, rec, ident, max_chars)
        else:
            key = ""
        if problem is not None:
            reject(i, Reason.BAD_IDENTIFIER, problem, rec, ident)
            continue
        pending.append((i, rec, ident, cats, key))
        rows.append(row)
    if not pending:
        return [], rejected

    # Stage 2, per message: one type check and one conversion for all numeric values.
    arr = None
    if set(map(type, chain.from_iterable(rows))) <= _NUM_TYPES:
        try:
            arr = np.array(rows, dtype=np.float64).reshape(len(rows), len(plan.numeric))
        except OverflowError:  # an integer beyond float64: find it row by row
            arr = None
    if arr is None:
        keep, floats = [], []
        for entry, row in zip(pending, rows, strict=True):
            as_floats, problem = _float_row(plan.numeric, row)
            if as_floats is None:
                i, rec, ident = entry[0], entry[1], entry[2]
                reject(i, Reason.NON_NUMERIC, problem, rec, ident)  # type: ignore[arg-type]
            else:
                keep.append(entry)
                floats.append(as_floats)
        pending = keep
        arr = np.array(floats, dtype=np.float64).reshape(len(keep), len(plan.numeric))

    values, nonfinite = _feature_rows(arr, plan)
    accepted = [FlowRecord(values[j], ident, key, cats, i, nonfinite[j])
                for j, (i, _, ident, cats, key) in enumerate(pending)]  # fmt: skip
    if rejected:
        rejected.sort(key=lambda r: r.index if r.index is not None else -1)
    return accepted, rejected


# --------------------------------------------------------------------------- the published schema


def flow_record_schema(limits: RecordLimits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a flow message, generated from this module's constants."""
    feature = {
        "type": "number",
        "description": (
            "a JSON number. Zero-duration flows carry non-finite rates: the agent also accepts the literals NaN, "
            "Infinity and -Infinity (a JSON extension: CICFlowMeter's CSV spelling, written by Python's json) and "
            "numbers beyond float64 (as +/-Infinity), and scores them by the trainer's rule (+Infinity -> the "
            'feature\'s training maximum, -Infinity -> its minimum, NaN -> 0). Strings such as "inf" are rejected '
            "(non_numeric)."
        ),
    }
    props: dict[str, Any] = {c: {"$ref": "#/$defs/featureNumber"} for c in NUMERIC_COLUMNS}
    ident_text = {"type": ["string", "integer"], "maxLength": limits.max_ident_chars}
    for col, _, kind in IDENTIFIER_FIELDS:
        if kind == _STR:
            props[col] = {**ident_text, "description": "identifier, carried into alerts"}
        elif kind in _INT_RANGE:
            lo, hi = _INT_RANGE[kind]
            props[col] = {"type": "integer", "minimum": lo, "maximum": hi}
        elif kind == _TS:
            props[col] = {
                "type": ["string", "number"],
                "maxLength": limits.max_ident_chars,
                "description": "IoTID20: 'dd/mm/YYYY hh:MM:SS AM|PM'; epoch seconds also accepted",
            }
        else:
            props[col] = {"type": "string", "minLength": 1, "maxLength": limits.max_ident_chars}
    props["seq"]["description"] = "per-publisher sequence number (loss detection)"
    props["sensor"]["description"] = "the publisher's id (loss detection)"
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "edge-ids flow message",
        "description": (
            "One flow record, an array of them, or a columnar batch, published to <prefix>/<gateway>/flows. "
            "Keys are IoTID20 column names; CICFlowMeter spellings with spaces instead of underscores are "
            "accepted by the agent too. Which numeric columns are required depends on the deployed model's spec.json "
            "(its 'features'); the identifiers are optional. A record may not hold a key twice "
            "(duplicate_field). Generated by agent.records.flow_record_schema."
        ),
        "oneOf": [
            {"$ref": "#/$defs/flowRecord"},
            {
                "type": "array",
                "items": {"$ref": "#/$defs/flowRecord"},
                "minItems": 1,
                "maxItems": limits.max_records,
            },
            {"$ref": "#/$defs/columnarBatch"},
        ],
        "$defs": {
            "featureNumber": feature,
            "columnarBatch": {
                "description": (
                    "The column names once, then one array of values per flow in that order (ids_core/flowmessage.py; "
                    "what the flow meter publishes). Row i is the record dict(zip(columns, rows[i])) and is checked as "
                    "a record is; null is an absent value. Malformed: bad_batch; a row of the wrong length: bad_row."
                ),
                "type": "object",
                "properties": {
                    COLUMNS_KEY: {
                        "type": "array",
                        "items": {"type": "string"},
                        "uniqueItems": True,
                        "maxItems": limits.max_keys,
                    },
                    ROWS_KEY: {
                        "type": "array",
                        "items": {"type": "array"},
                        "minItems": 1,
                        "maxItems": limits.max_records,
                    },
                },
                "required": [COLUMNS_KEY, ROWS_KEY],
                "additionalProperties": False,
            },
            "flowRecord": {
                "type": "object",
                "maxProperties": limits.max_keys,
                "not": {"required": [COLUMNS_KEY]},  # an object with "columns" is a columnar batch
                "properties": props,
                "additionalProperties": True,
            },
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agent.records > agent/schema/flow_record.schema.json`` regenerates the schema."""
    del argv
    sys.stdout.write(json.dumps(flow_record_schema(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
