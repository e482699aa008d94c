"""Flow record parsing and validation (agent/records.py) and the published JSON Schema."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SHARED, SHARED_PCAPS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import records as records_module
from agent.records import (
    EXCERPT_CHARS,
    NUMERIC_COLUMNS,
    FlowRecord,
    Reason,
    RecordLimits,
    Rejected,
    flow_record_schema,
    parse_flows,
)
from flowmeter.meter import FlowMeter
from flowmeter.pcapfile import read_capture
from flowmeter.publisher import RecordBatcher
from flowmeter.settings import MeterSettings
from ids_core.flowmessage import encode
from ids_core.outbox import Outbox
from ids_core.preprocess import window_key

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "agent" / "schema" / "flow_record.schema.json"
FEATURES = ("Flow_Duration", "Flow_Byts/s", "Tot_Fwd_Pkts")
BASE: dict[str, Any] = {
    "Flow_ID": "10.0.0.1-10.0.0.2-5000-443-6",
    "Src_IP": "10.0.0.1",
    "Dst_IP": "10.0.0.2",
    "Src_Port": 5000,
    "Dst_Port": 443,
    "Protocol": 6,
    "Timestamp": "25/07/2019 03:25:53 AM",
    "Flow_Duration": 75,
    "Flow_Byts/s": 32160000.0,
    "Tot_Fwd_Pkts": 1,
    "seq": 7,
    "sensor": "cicflowmeter-1",
}


def rec(**changes: Any) -> dict[str, Any]:
    """BASE with changes applied; a value of ``...`` removes the key."""
    out = dict(BASE)
    for k, v in changes.items():
        k = k.replace("__", "/")  # Flow_Byts__s → Flow_Byts/s
        if v is ...:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


def parse(obj: Any, **kw: Any) -> tuple[list[FlowRecord], list[Rejected]]:
    payload = obj if isinstance(obj, bytes) else dumps(obj)
    return parse_flows(payload, kw.pop("features", FEATURES), **kw)


def only_rejection(obj: Any, **kw: Any) -> Rejected:
    accepted, rejected = parse(obj, **kw)
    assert accepted == [] and len(rejected) == 1, (accepted, rejected)
    return rejected[0]


def csv_rows(path: Path) -> list[dict[str, Any]]:
    """A CSV's rows as JSON-ready objects: numbers as int/float ('inf' → float inf), text kept."""
    out = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            obj: dict[str, Any] = {}
            for k, v in row.items():
                try:
                    obj[k] = int(v)
                except ValueError:
                    try:
                        obj[k] = float(v)
                    except ValueError:
                        obj[k] = v
            out.append(obj)
    return out


def sample_header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f))


# --------------------------------------------------------------------------- the happy path


def test_one_object_and_an_array_parse() -> None:
    accepted, rejected = parse(BASE)
    assert rejected == []
    (r,) = accepted
    assert r.index == 0 and r.values.dtype == np.float64
    assert r.values.tolist() == [75.0, 32160000.0, 1.0]
    accepted, rejected = parse([BASE, rec(Flow_Duration=9)])
    assert rejected == [] and [a.index for a in accepted] == [0, 1]
    assert accepted[1].values[0] == 9.0


def test_identifiers_are_carried_with_normalised_names() -> None:
    (r,), _ = parse(BASE)
    assert r.ident == {
        "flow_id": "10.0.0.1-10.0.0.2-5000-443-6",
        "src_ip": "10.0.0.1",
        "dst_ip": "10.0.0.2",
        "src_port": 5000,
        "dst_port": 443,
        "protocol": 6,
        "timestamp": "25/07/2019 03:25:53 AM",
        "seq": 7,
        "sensor": "cicflowmeter-1",
    }


def test_identifiers_are_optional_and_normalised() -> None:
    only_features = {f: BASE[f] for f in FEATURES}
    (r,), _ = parse(only_features)
    assert r.ident == {} and r.key == ""
    (r,), _ = parse(rec(Src_Port=443.0, Flow_ID=12345, Timestamp=1690000000.5, Dst_IP=None, sensor=...))
    assert r.ident["src_port"] == 443 and type(r.ident["src_port"]) is int
    assert r.ident["flow_id"] == "12345"
    assert r.ident["timestamp"] == 1690000000.5
    assert "dst_ip" not in r.ident and "sensor" not in r.ident  # null counts as absent


def test_cicflowmeter_keys_with_spaces_are_accepted() -> None:
    spaced = {k.replace("_", " "): v for k, v in BASE.items()}
    assert "Flow Byts/s" in spaced and "Src IP" in spaced and "Flow ID" in spaced
    (a,), rej = parse([spaced], key_columns=("Src_IP",))
    (b,), _ = parse([BASE], key_columns=("Src_IP",))
    assert rej == []
    assert a.values.tolist() == b.values.tolist() and a.ident == b.ident and a.key == b.key == "10.0.0.1"
    # model features and key columns may be given in either spelling too
    (c,), _ = parse(spaced, features=[f.replace("_", " ") for f in FEATURES], key_columns=("Src IP",))
    assert c.values.tolist() == b.values.tolist() and c.key == "10.0.0.1"


def test_mixed_spellings_in_one_message() -> None:
    spaced = {k.replace("_", " "): v for k, v in BASE.items()}
    accepted, rejected = parse([BASE, spaced, rec(Tot_Fwd_Pkts=3), spaced])
    assert rejected == [] and [a.index for a in accepted] == [0, 1, 2, 3]
    assert accepted[2].values[2] == 3.0


def test_window_key_matches_preprocess_window_key() -> None:
    cols = ("Src_IP", "Dst_Port", "vlan")
    r = rec(vlan="v12")
    (a,), _ = parse(r, key_columns=cols)
    assert a.key == window_key(r, cols) == "10.0.0.1|443|v12"
    (b,), _ = parse(rec(Src_IP=...), key_columns=cols)
    assert b.key == "|443|"  # missing → ""
    (c,), _ = parse(rec(vlan=3), key_columns=("vlan",))
    assert c.key == "3"


def test_categorical_features_are_kept_as_strings() -> None:
    feats = ("Flow_Duration", "Protocol", "Src_IP")
    (r,), rej = parse(BASE, features=feats, categorical=("Protocol", "Src_IP"))
    assert rej == []
    assert r.values[0] == 75.0 and np.isnan(r.values[1:]).all()
    assert r.categories == {"Protocol": "6", "Src_IP": "10.0.0.1"}


def test_rejected_record_keeps_its_valid_identifiers_for_loss_accounting() -> None:
    accepted, rejected = parse([BASE, rec(Flow_Duration="x", seq=8)])
    assert len(accepted) == 1
    bad = rejected[0]
    assert bad.index == 1 and bad.ident["seq"] == 8 and bad.ident["sensor"] == "cicflowmeter-1"


# --------------------------------------------------------------------------- every reason code

SMALL = RecordLimits(max_message_bytes=300, max_records=2)
TIGHT = RecordLimits(max_ident_chars=32, max_keys=14)  # BASE has 12 keys, identifiers <= 28 chars

MESSAGE_CASES = [
    pytest.param(b"x" * 301, SMALL, Reason.TOO_LARGE, id="too_large"),
    pytest.param(b'{"Flow_Duration": "\xff"}', None, Reason.NOT_UTF8, id="not_utf8"),
    pytest.param(b'{"Flow_Duration": ', None, Reason.INVALID_JSON, id="invalid_json"),
    pytest.param(b"[" * 50_000 + b"]" * 50_000, None, Reason.INVALID_JSON, id="invalid_json_too_deep"),
    pytest.param(b'{"Flow_Duration": 1' + b"0" * 5000 + b"}", None, Reason.INVALID_JSON, id="int_digits"),
    pytest.param(b"42", None, Reason.NOT_AN_OBJECT, id="not_an_object_number"),
    pytest.param(b'"flows"', None, Reason.NOT_AN_OBJECT, id="not_an_object_string"),
    pytest.param(b"[]", None, Reason.EMPTY, id="empty_array"),
    pytest.param(b"  \n", None, Reason.EMPTY, id="empty_payload"),
    pytest.param(b"[{}, {}, {}]", SMALL, Reason.TOO_MANY_RECORDS, id="too_many_records"),
    # columnar batches (ids_core.flowmessage)
    pytest.param(b'{"columns": "seq", "rows": [[1]]}', None, Reason.BAD_BATCH, id="columns_not_a_list"),
    pytest.param(b'{"columns": ["seq"], "rows": {"0": 1}}', None, Reason.BAD_BATCH, id="rows_not_a_list"),
    pytest.param(b'{"columns": ["seq"], "rows": [[1]], "x": 1}', None, Reason.BAD_BATCH, id="batch_extra_key"),
    pytest.param(b'{"columns": ["seq", 7], "rows": [[1, 2]]}', None, Reason.BAD_BATCH, id="column_not_a_string"),
    pytest.param(b'{"columns": ["seq", "seq"], "rows": [[1, 2]]}', None, Reason.DUPLICATE_FIELD, id="column_twice"),
    pytest.param(b'{"columns": ["a"], "columns": ["b"], "rows": []}', None, Reason.DUPLICATE_FIELD, id="key_twice"),
    pytest.param(b'{"columns": ["seq"], "rows": []}', None, Reason.EMPTY, id="batch_of_no_rows"),
    pytest.param(b'{"columns": ["a"], "rows": [[1], [2], [3]]}', SMALL, Reason.TOO_MANY_RECORDS, id="rows_limit"),
    pytest.param(
        b'{"columns": [' + b",".join(b'"c%d"' % i for i in range(15)) + b'], "rows": [[]]}',
        TIGHT,
        Reason.TOO_MANY_KEYS,
        id="columns_limit",
    ),
]


@pytest.mark.parametrize(("payload", "limits", "reason"), MESSAGE_CASES)
def test_message_level_reasons(payload: bytes, limits: RecordLimits | None, reason: Reason) -> None:
    bad = only_rejection(payload, **({"limits": limits} if limits else {}))
    assert bad.reason == reason and bad.index is None
    assert bad.detail.startswith("message: ") and "expected" in bad.detail and "got" in bad.detail
    assert bad.excerpt == payload[:EXCERPT_CHARS].decode("utf-8", "backslashreplace")[:EXCERPT_CHARS]


def test_too_large_is_checked_before_decoding() -> None:
    bad = only_rejection(b"\xff" * (1 << 20) + b"\xff")
    assert bad.reason == "too_large" and str(1 << 20) in bad.detail
    assert len(bad.excerpt) <= EXCERPT_CHARS


RECORD_CASES = [
    # (record, limits, reason, field named in the detail)
    pytest.param(3, None, Reason.NOT_AN_OBJECT, "record 1", id="not_an_object_element"),
    pytest.param([BASE], None, Reason.NOT_AN_OBJECT, "record 1", id="nested_array"),
    pytest.param(rec(a=1, b=2, c=3), TIGHT, Reason.TOO_MANY_KEYS, "record 1", id="too_many_keys"),
    pytest.param({**BASE, "Src IP": "10.9.9.9"}, None, Reason.DUPLICATE_FIELD, "Src_IP", id="duplicate"),
    pytest.param(rec(Flow_Byts__s=...), None, Reason.MISSING_FIELD, "Flow_Byts/s", id="missing"),
    pytest.param(rec(Flow_Duration=True), None, Reason.NON_NUMERIC, "Flow_Duration", id="bool"),
    pytest.param(rec(Flow_Duration="12.5"), None, Reason.NON_NUMERIC, "Flow_Duration", id="numeric_str"),
    pytest.param(rec(Flow_Duration=None), None, Reason.NON_NUMERIC, "Flow_Duration", id="null"),
    pytest.param(rec(Flow_Duration=[1]), None, Reason.NON_NUMERIC, "Flow_Duration", id="list"),
    pytest.param(rec(Flow_Duration={"v": 1}), None, Reason.NON_NUMERIC, "Flow_Duration", id="object"),
    pytest.param(rec(Flow_Byts__s="inf"), None, Reason.NON_NUMERIC, "Flow_Byts/s", id="inf_string"),
    pytest.param(rec(Flow_Byts__s="-Infinity"), None, Reason.NON_NUMERIC, "Flow_Byts/s", id="Infinity_string"),
    pytest.param(rec(Flow_Byts__s="NaN"), None, Reason.NON_NUMERIC, "Flow_Byts/s", id="NaN_string"),
    pytest.param(rec(Src_IP=["10.0.0.1"]), None, Reason.BAD_IDENTIFIER, "Src_IP", id="ident_list"),
    pytest.param(rec(Src_IP="1" * 33), TIGHT, Reason.BAD_IDENTIFIER, "Src_IP", id="ident_too_long"),
    pytest.param(rec(Src_IP=True), None, Reason.BAD_IDENTIFIER, "Src_IP", id="ident_bool"),
    pytest.param(rec(Src_IP="10.0.0.\ud800"), None, Reason.BAD_IDENTIFIER, "Src_IP", id="ident_surrogate"),
    pytest.param(rec(seq=-1), None, Reason.BAD_IDENTIFIER, "seq", id="seq_negative"),
    pytest.param(rec(seq="3"), None, Reason.BAD_IDENTIFIER, "seq", id="seq_string"),
    pytest.param(rec(seq=1.5), None, Reason.BAD_IDENTIFIER, "seq", id="seq_fraction"),
    pytest.param(rec(sensor=""), None, Reason.BAD_IDENTIFIER, "sensor", id="sensor_empty"),
    pytest.param(rec(sensor=12), None, Reason.BAD_IDENTIFIER, "sensor", id="sensor_int"),
    pytest.param(rec(Dst_Port=70000), None, Reason.BAD_IDENTIFIER, "Dst_Port", id="port_range"),
    pytest.param(rec(Protocol=256), None, Reason.BAD_IDENTIFIER, "Protocol", id="protocol_range"),
    pytest.param(rec(Timestamp={"t": 1}), None, Reason.BAD_IDENTIFIER, "Timestamp", id="timestamp_object"),
    pytest.param(rec(Timestamp=math.nan), None, Reason.BAD_IDENTIFIER, "Timestamp", id="timestamp_nan"),
]


@pytest.mark.parametrize(("record", "limits", "reason", "named"), RECORD_CASES)
def test_record_level_reasons(record: Any, limits: RecordLimits | None, reason: Reason, named: str) -> None:
    """A bad record between two good ones: only it is rejected, with its index and the field named."""
    kw: dict[str, Any] = {"limits": limits} if limits else {}
    accepted, rejected = parse([BASE, record, BASE], **kw)
    assert [a.index for a in accepted] == [0, 2]
    (bad,) = rejected
    assert bad.reason == reason and bad.index == 1
    assert named in bad.detail and "expected" in bad.detail and "got" in bad.detail, bad.detail
    assert 0 < len(bad.excerpt) <= EXCERPT_CHARS
    bad.excerpt.encode("utf-8")  # safe to republish (no lone surrogates)
    json.dumps(bad.to_dict(), allow_nan=False).encode("utf-8")


# --------------------------------------------------------------------------- non-finite values (issue 8)


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("Infinity", math.inf),
        ("-Infinity", -math.inf),
        ("NaN", math.nan),
        ("1e400", math.inf),
        ("-1e400", -math.inf),
        ("1" + "0" * 400, math.inf),  # an integer beyond float64
        ("-1" + "0" * 400, -math.inf),
    ],
)
def test_nonfinite_numbers_are_accepted_as_they_are_and_counted(literal: str, value: float) -> None:
    """Zero-duration flows (CICFlowMeter: Infinity rates, NaN for 0/0) are scored, not dead-lettered."""
    text = json.dumps([BASE, rec(Flow_Byts__s="@@"), BASE]).replace('"@@"', literal)
    accepted, rejected = parse_flows(text.encode(), FEATURES)
    assert rejected == [] and [a.index for a in accepted] == [0, 1, 2]
    got = accepted[1].values[1]
    assert (math.isnan(got) and math.isnan(value)) or got == value
    assert [a.nonfinite for a in accepted] == [0, 1, 0]
    assert accepted[1].values[[0, 2]].tolist() == [75.0, 1.0]


def test_zero_duration_record_as_cicflowmeter_writes_it() -> None:
    """Both rates non-finite in one record (NaN bytes/s: no payload), spaced names, a categorical feature."""
    text = (
        '{"Flow ID": "f", "Src IP": "10.0.0.1", "Flow Duration": 0, "Flow Byts/s": NaN, "Flow Pkts/s": Infinity, '
        '"Tot Fwd Pkts": 1, "Protocol": 6}'
    )
    feats = ("Flow_Duration", "Flow_Byts/s", "Flow_Pkts/s", "Tot_Fwd_Pkts", "Protocol")
    (a,), rejected = parse_flows(text.encode(), feats, categorical=("Protocol",))
    assert rejected == [] and a.nonfinite == 2 and a.categories == {"Protocol": "6"}
    assert a.values[0] == 0.0 and np.isnan(a.values[1]) and a.values[2] == math.inf and a.values[3] == 1.0


def test_strings_spelling_nonfinite_values_are_rejected_with_a_hint() -> None:
    for spelled in ("inf", "Infinity", " -inf", "nan", "NaN"):
        bad = only_rejection(rec(Flow_Byts__s=spelled))
        assert bad.reason == "non_numeric" and "send the JSON literal NaN, Infinity or -Infinity" in bad.detail
    bad = only_rejection(rec(Flow_Byts__s="12.5"))
    assert "numeric strings are not accepted" in bad.detail


# --------------------------------------------------------------------------- repeated keys (issue 8)


def _obj(pairs: list[tuple[str, Any]], sep: str = ": ") -> str:
    """A JSON object from ``pairs``, repeated keys kept (``json.dumps`` cannot write them)."""
    return "{" + ", ".join(f"{json.dumps(k)}{sep}{json.dumps(v)}" for k, v in pairs) + "}"


BASE_PAIRS = list(BASE.items())
PAD_RECORD = {"pad": "x" * 4100}  # makes a message long enough for the byte count instead of the pairs hook


@pytest.mark.parametrize(
    ("pairs", "sep", "named"),
    [
        ([*BASE_PAIRS, ("seq", 8)], ": ", "seq"),  # an identifier twice: which seq was it?
        ([*BASE_PAIRS, ("Flow_Duration", 0)], ": ", "Flow_Duration"),  # a feature twice
        ([*BASE_PAIRS, ("Flow_Duration", 0)], ":", "Flow_Duration"),  # compact separators
        ([*BASE_PAIRS, ("Flow_Duration", 0)], " : ", "Flow_Duration"),  # a space before the colon
        ([*BASE_PAIRS, ("vlan", 1), ("vlan", 2)], ": ", "vlan"),  # a column we do not read: still ambiguous
        ([*BASE_PAIRS, ("Flow ID", "x"), ("Flow ID", "y")], ": ", "Flow ID"),  # a spaced spelling twice
        ([*BASE_PAIRS, ("note", 'a \\ "b":'), ("seq", 9)], ": ", "seq"),  # escapes and '":' inside a string
    ],
)
def test_a_key_given_twice_is_duplicate_field(pairs: list[tuple[str, Any]], sep: str, named: str) -> None:
    good = _obj(BASE_PAIRS, sep)
    for pad in ("", ", " + _obj(list(PAD_RECORD.items()))):  # a short message (pairs hook) and a long one (count)
        accepted, rejected = parse_flows(f"[{good}, {_obj(pairs, sep)}, {good}{pad}]".encode(), FEATURES)
        assert [a.index for a in accepted] == [0, 2]
        bad = rejected[0]
        assert bad.reason == "duplicate_field" and bad.index == 1 and repr(named) in bad.detail, bad.detail
        assert bad.ident["sensor"] == "cicflowmeter-1"
        assert [r.reason for r in rejected[1:]] == (["missing_field"] if pad else [])
    # a single object too
    bad = only_rejection(_obj(pairs, sep).encode())
    assert bad.reason == "duplicate_field" and bad.index == 0


def test_escaped_key_spelling_the_same_name_is_a_repeat() -> None:
    text = _obj(BASE_PAIRS)[:-1] + ', "se\\u0071": 8}'  # "se\u0071" is "seq"
    assert json.loads(text)["seq"] == 8
    bad = only_rejection(text.encode())
    assert bad.reason == "duplicate_field" and "'seq'" in bad.detail


def test_repeats_inside_nested_values_and_unusual_layouts_are_not_record_repeats() -> None:
    """Messages the quick count cannot vouch for (nested objects, spaces before colons) still parse right."""
    nested = _obj([*BASE_PAIRS, ("extra", {"a": 1})])[:-2] + ', "a": 2}}'  # {"a": 1, "a": 2} nested
    spaced = _obj(BASE_PAIRS, " :  ")
    pad = _obj(list(PAD_RECORD.items()))
    for text in (nested, spaced, f"[{spaced}, {_obj(BASE_PAIRS)}]", f"[{_obj(BASE_PAIRS)}, 3]"):
        text = text if text.startswith("[") else f"[{text}]"
        for payload in (text, f"{text[:-1]}, {pad}]"):
            accepted, rejected = parse_flows(payload.encode(), FEATURES)
            assert all(r.reason != "duplicate_field" for r in rejected), rejected
            assert accepted and all(a.values.tolist() == [75.0, 32160000.0, 1.0] for a in accepted)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.sampled_from([*FEATURES, "seq", "Src_IP", "x", 'q"', "\\", ":", ":a", " ", "é"]),
                st.integers(0, 9) | st.sampled_from([":", '":', ": ", "a b", "", "é:"]),
            ),
            max_size=8,
        ),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from([":", ": ", " :", "\n:\t"]),
    st.booleans(),
)
def test_duplicate_field_exactly_when_a_record_repeats_a_key(
    records: list[list[tuple[str, Any]]], sep: str, long: bool
) -> None:
    pairs = [*records, list(PAD_RECORD.items())] if long else records
    text = "[" + ", ".join(_obj(r, sep) for r in pairs) + "]"
    assert (len(text.encode()) > 4096) == long
    accepted, rejected = parse_flows(text.encode(), FEATURES)
    dup = {r.index for r in rejected if r.reason == "duplicate_field"}
    assert dup == {i for i, r in enumerate(records) if len({k for k, _ in r}) < len(r)}
    assert sorted([a.index for a in accepted] + [r.index for r in rejected]) == list(range(len(pairs)))


def test_single_object_record_rejection_has_index_0() -> None:
    bad = only_rejection(rec(Flow_Duration="12.5"))
    assert bad.reason == "non_numeric" and bad.index == 0 and "numeric strings are not accepted" in bad.detail


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (["tcp"], "Protocol"),
        (True, "Protocol"),
        (None, "Protocol"),
        (1.5, "Protocol"),
        ("x" * 300, "Protocol"),
    ],
)
def test_bad_categorical_value(value: Any, named: str) -> None:
    bad = only_rejection(rec(Protocol=value), features=("Flow_Duration", "Protocol"), categorical=("Protocol",))
    assert bad.reason == "bad_identifier" and named in bad.detail


def test_bad_key_column_value() -> None:
    bad = only_rejection(rec(vlan=[1, 2]), key_columns=("vlan",))
    assert bad.reason == "bad_identifier" and "vlan" in bad.detail


def test_missing_categorical_feature_is_missing_field() -> None:
    bad = only_rejection(rec(Protocol=...), features=("Flow_Duration", "Protocol"), categorical=("Protocol",))
    assert bad.reason == "missing_field" and "Protocol" in bad.detail


def test_every_reason_code_is_exercised() -> None:
    seen = {p.values[2] for p in MESSAGE_CASES} | {p.values[2] for p in RECORD_CASES} | {Reason.BAD_ROW}  # below
    assert seen == set(Reason) - {Reason.INTERNAL_ERROR}


def test_mixed_good_and_bad_array_keeps_order_and_accounts_for_everything() -> None:
    msg = [
        BASE,
        "not a record",
        rec(Flow_Byts__s=math.inf),
        rec(Flow_Duration=12),
        rec(seq=-5),
        rec(Flow_Duration="7"),
        rec(Tot_Fwd_Pkts=...),
        rec(Flow_Byts__s=10**400),
        rec(Tot_Fwd_Pkts=2),
    ]
    accepted, rejected = parse(msg)
    assert [a.index for a in accepted] == [0, 2, 3, 7, 8]
    assert [(r.index, r.reason) for r in rejected] == [
        (1, "not_an_object"),
        (4, "bad_identifier"),
        (5, "non_numeric"),
        (6, "missing_field"),
    ]
    assert [a.values.tolist() for a in accepted] == [
        [75.0, 32160000.0, 1.0],
        [75.0, math.inf, 1.0],
        [12.0, 32160000.0, 1.0],
        [75.0, math.inf, 1.0],
        [75.0, 32160000.0, 2.0],
    ]
    assert [a.nonfinite for a in accepted] == [0, 1, 0, 1, 0]


def test_payload_types_and_bom() -> None:
    payload = dumps(BASE)
    for p in (bytearray(payload), memoryview(payload), b"\xef\xbb\xbf" + payload):
        accepted, rejected = parse_flows(p, FEATURES)  # type: ignore[arg-type]
        assert len(accepted) == 1 and rejected == []


def test_record_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_records"):
        RecordLimits(max_records=0)


# --------------------------------------------------------------------------- the real sample


def test_real_sample_rows_parse_to_the_csv_numbers(sample_csv: Path) -> None:
    rows = csv_rows(sample_csv)
    feats = list(NUMERIC_COLUMNS)
    inf_rows = [i for i, r in enumerate(rows) if any(isinstance(v, float) and math.isinf(v) for v in r.values())]
    assert len(inf_rows) == 1
    accepted: list[FlowRecord] = []
    rejected: list[tuple[int, Rejected]] = []
    for start in range(0, len(rows), 100):  # 100 records per message, as on the gateway
        a, r = parse_flows(dumps(rows[start : start + 100]), feats, key_columns=("Src_Port",))
        accepted += [dataclasses.replace(x, index=start + x.index) for x in a]
        rejected += [(start + x.index, x) for x in r]  # type: ignore[operator]
    assert len(accepted) == len(rows) and rejected == []  # the zero-duration row too (issue 8)
    assert [(a.index, a.nonfinite) for a in accepted if a.nonfinite] == [(inf_rows[0], 2)]  # both rates: +inf
    got = np.stack([a.values for a in accepted])
    want = np.array([[rows[a.index][c] for c in feats] for a in accepted], dtype=np.float64)
    np.testing.assert_array_equal(got, want)
    assert all(a.ident["src_port"] == rows[a.index]["Src_Port"] for a in accepted)
    assert all(a.key == str(rows[a.index]["Src_Port"]) for a in accepted)


def test_real_full_schema_rows_carry_identifiers(fullschema_csv: Path) -> None:
    rows = [{k: v for k, v in r.items() if k not in ("Label", "Cat", "Sub_Cat")} for r in csv_rows(fullschema_csv)]
    spaced = [{k.replace("_", " "): v for k, v in r.items()} for r in rows]
    for msg in (rows, spaced):
        accepted, rejected = parse_flows(dumps(msg), NUMERIC_COLUMNS, key_columns=("Src_IP",))
        assert rejected == [] and len(accepted) == len(rows)
        for a, r in zip(accepted, rows, strict=True):
            assert a.ident["flow_id"] == r["Flow_ID"] and a.ident["timestamp"] == r["Timestamp"]
            assert a.key == r["Src_IP"] and a.ident["protocol"] == r["Protocol"]
            assert a.values.tolist() == [float(r[c]) for c in NUMERIC_COLUMNS]


# --------------------------------------------------------------------------- the JSON Schema


def test_numeric_columns_equal_the_sample_header(sample_csv: Path) -> None:
    header = sample_header(sample_csv)
    assert header[-1] == "Target"
    assert tuple(header[:-1]) == NUMERIC_COLUMNS and len(NUMERIC_COLUMNS) == 79


def test_schema_file_is_generated_from_the_columns() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema == flow_record_schema(), "regenerate: python -m agent.records > agent/schema/flow_record.schema.json"
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    record = schema["$defs"]["flowRecord"]
    assert tuple(record["properties"])[:79] == NUMERIC_COLUMNS
    assert record["additionalProperties"] is True
    assert {"seq", "sensor", "Flow_ID", "Src_IP", "Dst_IP", "Timestamp"} <= set(record["properties"])
    assert schema["oneOf"][1]["maxItems"] == RecordLimits().max_records


def test_schema_validates_real_records(sample_csv: Path, fullschema_csv: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    rows = csv_rows(sample_csv)[:500]
    full = csv_rows(fullschema_csv)
    for msg in (rows, full, full[0], [{**r, "seq": i, "sensor": "s1"} for i, r in enumerate(full)]):
        errors = list(validator.iter_errors(msg))
        assert errors == [], errors[:1]
    for bad in (
        [],
        {**full[0], "seq": -1},
        {**full[0], "Flow_Duration": "75"},
        {**full[0], "Src_Port": 70000},
    ):
        assert not validator.is_valid(bad)
    inf_row = next(r for r in csv_rows(sample_csv) if math.isinf(r["Flow_Byts/s"]))
    assert validator.is_valid(inf_row)  # a zero-duration flow (Infinity rates) is a valid record
    assert not validator.is_valid({**inf_row, "Flow_Byts/s": "inf"})


# --------------------------------------------------------------------------- never raise, never drop

KEY_NAMES = [*FEATURES, *(k for k in BASE if k not in FEATURES), "vlan", "Src IP", "Flow Byts/s", "x"]
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@st.composite
def mutated_record(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    r = dict(BASE)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["set", "delete", "space"]))
        k = draw(st.sampled_from(KEY_NAMES) | st.text(max_size=6))
        if op == "set":
            r[k] = draw(json_values)
        elif op == "delete":
            r.pop(k, None)
        elif k in r:
            r[k.replace("_", " ")] = r.pop(k)
    return r


def check_accounting(payload: bytes, **kw: Any) -> None:
    try:
        top = json.loads(payload)
        n = len(top) if isinstance(top, list) else 1
        if isinstance(top, dict) and isinstance(top.get("columns"), list) and isinstance(top.get("rows"), list):
            n = len(top["rows"])
    except (ValueError, RecursionError):
        n = None
    features = kw.pop("features", FEATURES)
    accepted, rejected = parse_flows(payload, features, **kw)
    assert all(r.reason != Reason.INTERNAL_ERROR for r in rejected), rejected
    for r in rejected:
        assert isinstance(r.reason, Reason) and r.detail and len(r.excerpt) <= EXCERPT_CHARS
        json.dumps(r.to_dict(), allow_nan=False).encode("utf-8")
    if any(r.index is None for r in rejected):
        assert accepted == [] and len(rejected) == 1
        return
    assert n is not None
    indices = [a.index for a in accepted] + [r.index for r in rejected]
    assert sorted(indices) == list(range(n))  # each record exactly once
    for a in accepted:
        assert a.values.dtype == np.float64 and a.values.shape == (len(features),)


PLAN = {"categorical": ("Protocol",), "key_columns": ("Src_IP", "vlan")}
PLAN_FEATURES = ("Flow_Duration", "Protocol", "Flow_Byts/s")
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    check_accounting(payload)
    check_accounting(b"[" + payload + b"]")


@SETTINGS
@given(json_values)
def test_arbitrary_json_never_raises(value: Any) -> None:
    payload = json.dumps(value, allow_nan=True).encode()
    check_accounting(payload)
    check_accounting(payload, features=PLAN_FEATURES, **PLAN)


@SETTINGS
@given(st.lists(mutated_record(), min_size=1, max_size=6), st.booleans())
def test_mutated_records_are_each_accepted_or_rejected_once(records: list[Any], single: bool) -> None:
    payload = json.dumps(records[0] if single else records, allow_nan=True).encode()
    check_accounting(payload)
    check_accounting(payload, features=PLAN_FEATURES, **PLAN)
    accepted, _ = parse_flows(payload, PLAN_FEATURES, **PLAN)  # type: ignore[arg-type]
    for a in accepted:
        assert a.nonfinite == int((~np.isfinite(a.values[[0, 2]])).sum()) and np.isnan(a.values[1])
        assert set(a.categories) == {"Protocol"}


# --------------------------------------------------------------------------- columnar batches, and orjson vs json


def columnar(records: list[dict[str, Any]]) -> bytes:
    return encode(records, columnar=True)


def outcome(result: tuple[list[FlowRecord], list[Rejected]]) -> tuple[list[Any], list[Any]]:
    """Comparable form of a parse result (NaN-safe values)."""
    accepted, rejected = result
    return (
        [(a.index, a.values.tobytes(), a.ident, a.key, a.categories, a.nonfinite) for a in accepted],
        [(r.reason, r.detail, r.index, r.excerpt, r.ident) for r in rejected],
    )


def test_columnar_batch_parses_as_the_same_records() -> None:
    records = [rec(seq=i, Flow_Byts__s=float(i) if i % 2 else math.inf) for i in range(5)]
    assert outcome(parse(columnar(records))) == outcome(parse(records))
    accepted, rejected = parse(columnar(records))
    assert [a.ident["seq"] for a in accepted] == list(range(5)) and rejected == []


def test_a_bad_row_is_rejected_alone_with_its_index() -> None:  # the case of Reason.BAD_ROW
    payload = columnar([rec(seq=0), rec(seq=1), rec(seq=2)]).replace(b"],[", b",9],[", 1)  # row 0: one value too many
    accepted, rejected = parse(payload)
    assert [a.index for a in accepted] == [1, 2]
    (bad,) = rejected
    assert bad.reason == Reason.BAD_ROW and bad.index == 0 and "one value per column" in bad.detail
    for row in (b"3", b"{}", b"[]", b"null"):
        body = b'{"columns": ["seq", "Flow_Duration"], "rows": [[1, 2], ' + row + b"]}"
        accepted, rejected = parse(body, features=("Flow_Duration",))
        assert len(accepted) == 1 and [(r.reason, r.index) for r in rejected] == [(Reason.BAD_ROW, 1)]


def test_null_in_a_row_is_an_absent_value() -> None:
    records = [rec(seq=1, Src_IP=None), rec(seq=2, Flow_Duration=None)]
    accepted, rejected = parse(columnar(records))
    assert [a.ident["seq"] for a in accepted] == [1] and "src_ip" not in accepted[0].ident
    assert [(r.reason, r.ident["seq"]) for r in rejected] == [(Reason.NON_NUMERIC, 2)]


@SETTINGS
@given(st.lists(mutated_record(), min_size=1, max_size=6))
def test_columnar_batches_get_the_same_verdicts_as_arrays(records: list[Any]) -> None:
    """Records sharing one key layout: a columnar batch and an array give the same records and reasons."""
    records = [r for r in records if isinstance(r, dict)]
    if not records:
        return
    layout = list(records[0])
    same = [r for r in records if list(r) == layout]
    payload = columnar(same)
    check_accounting(payload)
    check_accounting(payload, features=PLAN_FEATURES, **PLAN)
    for kw in ({}, {"features": PLAN_FEATURES, **PLAN}):
        array = parse_flows(json.dumps(same, allow_nan=True).encode(), kw.pop("features", FEATURES), **kw)
        kw = {} if not kw else {"features": PLAN_FEATURES, **PLAN}
        batch = parse_flows(payload, kw.pop("features", FEATURES), **kw)
        a, b = outcome(array), outcome(batch)
        assert a[0] == b[0]
        assert [r[:3] for r in a[1]] == [r[:3] for r in b[1]] or any(r[0] == Reason.DUPLICATE_FIELD for r in a[1])


@SETTINGS
@given(st.one_of(st.lists(mutated_record(), min_size=1, max_size=6), mutated_record()), st.booleans())
def test_orjson_and_the_standard_library_give_the_same_results(value: Any, as_batch: bool) -> None:
    pytest.importorskip("orjson")
    if as_batch and isinstance(value, list) and all(isinstance(r, dict) for r in value):
        payload = columnar(value)
    else:
        payload = json.dumps(value, allow_nan=True).encode()
    for kw in ({}, PLAN):
        features = PLAN_FEATURES if kw else FEATURES
        fast = parse_flows(payload, features, **kw)  # type: ignore[arg-type]
        with stdlib_json():
            slow = parse_flows(payload, features, **kw)  # type: ignore[arg-type]
        assert outcome(fast) == outcome(slow)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"Flow_Duration": 1, "Flow_Byts/s": NaN, "Tot_Fwd_Pkts": Infinity, "seq": 1}',
        b'{"Flow_Duration": 1, "Flow_Byts/s": 1e400, "Tot_Fwd_Pkts": 2, "seq": 1}',
        b'{"Flow_Duration": 1, "Flow_Byts/s": 2, "Tot_Fwd_Pkts": 3, "seq": 18446744073709551616}',
        b'{"Flow_Duration": 1, "Flow_Byts/s": 2, "Tot_Fwd_Pkts": 3, "seq": -9223372036854775809}',
        b"[-9223372036854775809]",
        b'{"Flow_Duration": 12345678901234567890123, "Flow_Byts/s": 2, "Tot_Fwd_Pkts": 3}',
        b'\xef\xbb\xbf{"Flow_Duration": 1, "Flow_Byts/s": 2, "Tot_Fwd_Pkts": 3}',
        b'{"Flow_Duration": 1, "Flow_Byts/s": 2, "Tot_Fwd_Pkts": 3, "Src_IP": "\\ud800"}',
        b'[{"Flow_Duration": 1, "Flow_Byts/s": 2, "Tot_Fwd_Pkts": 3, "seq": 1, "seq": 2}]',
        b'{"Flow_Duration": 1, "Flow_Byts/s": 2, "Tot_Fwd_Pkts": 3,',
    ],
    ids=[
        "nonfinite_literals",
        "overflow",
        "seq_beyond_64_bits",
        "seq_below_int64",
        "below_int64",
        "long_integer",
        "bom",
        "surrogate",
        "repeat",
        "cut",
    ],
)
def test_what_orjson_refuses_or_reads_differently_is_decided_by_json(payload: bytes) -> None:
    pytest.importorskip("orjson")
    fast = parse_flows(payload, FEATURES)
    with stdlib_json():
        slow = parse_flows(payload, FEATURES)
    assert outcome(fast) == outcome(slow)


def batch6(columns: str, row: str, tail: str = "") -> bytes:
    """A columnar batch written by hand: ``columns`` and six copies of ``row`` (enough for the column checks)."""
    return f'{{"columns":[{columns}],"rows":[{",".join([row] * 6)}]{tail}}}'.encode()


@pytest.mark.parametrize(
    "payload, quoted",
    [
        (batch6('"a","b"', "[NaN,Infinity],[-Infinity,1]"), True),
        (batch6('"a","b"', '[NaN,"x NaN y"]'), False),  # a literal's word inside a string: json decides
        (batch6('"a","b"', '[NaN,"NaN"]'), False),  # a string that is the word: broken too, json decides
        (batch6('"a","b"', "[NaN,\x00]"), False),  # a NUL (invalid JSON) must not become a quoted word
        (batch6('"a","b"', '[NaN,"\\u004eaN"]'), False),  # an escape spells the word: the bytes do not show it
        (batch6('"a",NaN', "[NaN,1]"), True),  # a column named by a literal: the column check refuses
        (batch6('"a","b"', "[NaN,1]", ",NaN:1"), True),  # invalid JSON that quoting makes valid: json decides
        (b'{"a":NaN,"b":Infinity}', False),  # a record, not a batch: json reads it as before
    ],
    ids=[
        "literals",
        "inside_a_string",
        "the_word_as_a_string",
        "nul",
        "escape",
        "literal_column_name",
        "literal_key",
        "record",
    ],
)
def test_nonfinite_literals_are_quoted_for_orjson_only_when_unambiguous(payload: bytes, quoted: bool) -> None:
    pytest.importorskip("orjson")
    try:
        assert records_module._decode(payload, payload.decode())[1] is quoted
    except ValueError:  # json refuses the message: nothing was read quoted
        assert not quoted
    for features in (("a", "b"), ("a",)):
        fast = parse_flows(payload, features)
        with stdlib_json():
            slow = parse_flows(payload, features)
        assert outcome(fast) == outcome(slow)


@pytest.mark.parametrize("name", ["NaN", "xNaN", "Infinity", "-Infinity", "a Infinity"])
@pytest.mark.parametrize("value", [math.nan, math.inf, "NaN", 3])
def test_columns_named_like_the_literals_parse_as_json_reads_them(name: str, value: Any) -> None:
    rows = [{**BASE, "seq": i, "Flow_Byts/s": math.nan if i % 2 else math.inf, name: value} for i in range(8)]
    fast_and_slow_agree(rows, {}, None)
    fast_and_slow_agree(rows, PLAN, None)


@contextlib.contextmanager
def stdlib_json() -> Iterator[None]:
    """The agent as it runs where orjson is not installed."""
    saved = records_module._orjson
    records_module._orjson = None
    try:
        yield
    finally:
        records_module._orjson = saved


# --------------------------------------------------------------------------- the columnar fast path

# Values a column may hold: the common kind (which the fast path takes) and its near misses (which it must leave to
# the record path): empty, non-ASCII, over-long and integer text, integral floats, booleans, nulls, out of range.
# The NaN/Infinity/-Infinity literals (and strings spelling them, or holding them) in every kind of column: orjson
# reads a message with the literals once they are quoted, and only the column checks may take that document.
EDGE_VALUES = {
    "Flow_ID": st.sampled_from(["a-b-1-2-6", "", "é", "x" * 32, "x" * 33, 42, None, 1.5, math.nan, "a NaN b"]),
    "Src_IP": st.sampled_from(["10.0.0.1", "10.0.0.2", "", "\u00e9", "\ud800", 7, None, True, -math.inf, "Infinity"]),
    "Src_Port": st.sampled_from([0, 5000, 65535, 65536, -1, 80.0, "80", None, False, math.inf]),
    "Protocol": st.sampled_from([6, 17, 0, 255, 256, 6.0, "6", None, math.nan, "NaN"]),
    "Timestamp": st.sampled_from(["25/07/2019 03:25:53 AM", 1564025153, 1.5, "", None, math.inf]),
    "seq": st.sampled_from([0, 7, 2**63 - 1, 2**63, -1, 3.0, None, math.nan]),
    "sensor": st.sampled_from(["cicflowmeter-1", "m2", "", 5, None, math.nan, "NaN", "xNaN", "-Infinity"]),
    "vlan": st.sampled_from(["10", 10, 10.0, 10**40, "", None, True, math.inf, "Infinity"]),
    "Flow_Duration": st.sampled_from(
        [75, 0, -3, 1.5, 2**70, 10**400, math.inf, -math.inf, math.nan, "75", None, True, "NaN", "-Infinity"]
    ),
}


@st.composite
def near_common_batch(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Rows sharing BASE's layout (+ vlan), each column mostly of the common kind, sometimes a near miss."""
    n = draw(st.integers(records_module._COLUMNAR_FAST_MIN_ROWS, records_module._COLUMNAR_FAST_MIN_ROWS + 3))
    spaced = draw(st.booleans())
    varied = draw(st.lists(st.sampled_from(sorted(EDGE_VALUES)), max_size=2, unique=True))
    rows = []
    for i in range(n):
        r = {**BASE, "vlan": "10", "seq": i}
        for col in varied:
            r[col] = draw(EDGE_VALUES[col])
        rows.append({(k.replace("_", " ") if spaced and k == "Flow_Duration" else k): v for k, v in r.items()})
    return rows


def fast_and_slow_agree(rows: list[dict[str, Any]], plan: dict[str, Any], limits: RecordLimits | None) -> None:
    payload = dumps({"columns": list(rows[0]), "rows": [list(r.values()) for r in rows]})  # NaN/Infinity literals too
    features = PLAN_FEATURES if plan else FEATURES
    kw = {**plan, **({"limits": limits} if limits else {})}
    fast = parse_flows(payload, features, **kw)
    with record_path_only(), stdlib_json():
        slow = parse_flows(payload, features, **kw)
    assert repr(outcome(fast)) == repr(outcome(slow))  # repr: 3 and 3.0 differ in what is published


@contextlib.contextmanager
def record_path_only() -> Iterator[None]:
    """The parser without its columnar fast path: every batch checked record by record."""
    records_module._COLUMNAR_FAST = False
    try:
        yield
    finally:
        records_module._COLUMNAR_FAST = True


@pytest.mark.skipif(not SHARED_PCAPS, reason=f"no shared pcaps in {SHARED / 'pcaps'}")
def test_what_the_flow_meter_publishes_takes_the_fast_path(tmp_path: Path) -> None:
    """The real meter on the shared captures and its real publisher (messages of up to 32 records): every message
    parses as the record path with the standard library parses it, those of 6 rows or more are checked column by
    column, and those with NaN/Infinity literals (zero-duration flows) are read by orjson, quoted."""
    records: list[dict[str, Any]] = []
    for pcap in SHARED_PCAPS:
        meter = FlowMeter(MeterSettings(), records.append)
        for ts, frame, linktype in read_capture(pcap):
            meter.packet(ts, frame, linktype)
        meter.flush()
    outbox = Outbox(tmp_path / "outbox.sqlite", 100_000)
    batcher = RecordBatcher(outbox, topic="flows", sensor="meter1", max_records=32)
    for r in records:
        batcher.add(r)
    batcher.flush()
    payloads = [m.payload for m in outbox.pending(100_000)]
    outbox.close()
    features = [c for c in NUMERIC_COLUMNS if c not in ("Src_Port", "Dst_Port", "Protocol")][:59]
    taken = quoted = 0
    for categorical, keys in (((), ()), (("Src_Port", "Dst_Port", "Protocol"), ("Src_IP",))):
        plan = records_module._plan((*features, *categorical), frozenset(categorical), keys)
        kw = {"categorical": categorical, "key_columns": keys}
        for payload in payloads:
            fast = parse_flows(payload, [*features, *categorical], **kw)
            with record_path_only(), stdlib_json():
                slow = parse_flows(payload, [*features, *categorical], **kw)
            assert repr(outcome(fast)) == repr(outcome(slow)) and not fast[1], fast[1][:1]
            doc = json.loads(payload)  # NaN/Infinity literals included
            if len(doc["rows"]) >= records_module._COLUMNAR_FAST_MIN_ROWS:
                assert records_module._clean_columnar(doc["columns"], doc["rows"], plan, 256) is not None
                taken += len(doc["rows"])
                quoted += records_module._decode(payload, payload.decode())[1]
    assert len(records) > 500 and taken >= 1.5 * len(records)  # most records came in messages the fast path took
    assert quoted >= 0.5 * taken / 32, quoted  # most such messages hold a zero-duration flow


@SETTINGS
@given(near_common_batch(), st.sampled_from([{}, PLAN]), st.sampled_from([None, TIGHT]))
def test_columnar_fast_path_gives_what_the_record_path_gives(
    rows: list[dict[str, Any]], plan: dict[str, Any], limits: RecordLimits | None
) -> None:
    fast_and_slow_agree(rows, plan, limits)


@pytest.mark.parametrize("plan", [{}, PLAN], ids=["plain", "categorical+key"])
@pytest.mark.parametrize("limits", [None, TIGHT], ids=["default", "tight"])
@pytest.mark.parametrize("zero_duration", [False, True], ids=["finite", "zero_duration"])
def test_every_near_miss_alone_gives_what_the_record_path_gives(
    plan: dict[str, Any], limits: RecordLimits | None, zero_duration: bool
) -> None:
    """Each edge value of each column, in the second of otherwise common rows, and in all of them; with
    ``zero_duration`` the first row's rate is NaN, so every message holds a literal (orjson reads it quoted)."""
    n = records_module._COLUMNAR_FAST_MIN_ROWS  # the fewest the fast path takes
    first = {"Flow_Byts/s": math.nan} if zero_duration else {}
    common = [{**BASE, "vlan": "10", "seq": i, **(first if i == 0 else {})} for i in range(n)]
    features = PLAN_FEATURES if plan else FEATURES
    layout = records_module._plan(features, frozenset(plan.get("categorical", ())), plan.get("key_columns", ()))
    max_chars = (limits or RecordLimits()).max_ident_chars
    taken = records_module._clean_columnar(list(common[0]), [list(r.values()) for r in common], layout, max_chars)
    assert taken is not None and len(taken) == n  # the rows all near misses start from take the fast path
    for col, values in EDGE_VALUES.items():
        for value in values.wrapped_strategy.elements if hasattr(values, "wrapped_strategy") else values.elements:
            for where in ([1], range(n)):
                rows = [{**BASE, "vlan": "10", "seq": i, **(first if i == 0 else {})} for i in range(n)]
                for i in where:
                    rows[i][col] = value
                fast_and_slow_agree(rows, plan, limits)
    if zero_duration and records_module._orjson is not None:
        payload = dumps({"columns": list(common[0]), "rows": [list(r.values()) for r in common]})
        assert records_module._decode(payload, payload.decode())[1]  # the quoted reading is what was compared
