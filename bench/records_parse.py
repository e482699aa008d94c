"""The flow parser's cost per record (``agent.records.parse_flows``) on realistic array messages.

32 real IoTID20 sample rows per message, each with the full-schema identifiers, ``seq`` and ``sensor``
(~1.9 kB per record, 62 model features), as the replay tool publishes them. Cases, interleaved in rounds so
that load from other processes hits them alike:

* ``json.loads`` alone (the floor);
* ``parse_flows`` of this checkout;
* ``parse_flows`` of ``--baseline <git ref>`` (e.g. the commit before a parser change), loaded from git;
* ``json.loads`` with an ``object_pairs_hook`` that finds repeated keys (the obvious way to catch them);
* this checkout on messages holding one zero-duration flow (``Infinity`` rates);
* this checkout on messages written with a space before each colon (the repeated-key check cannot vouch for
  them, so they are parsed a second time with the pairs hook);
* this checkout with the standard library's decoder only (the agent where orjson is not installed);
* this checkout on columnar batches (``ids_core.flowmessage``: column names once), with orjson and without, beside
  ``orjson.loads`` alone (their floor) and the baseline on the same batches.

``python bench/records_parse.py --baseline d0a2f20 [--per-message 1]`` prints a markdown table (CPU µs per
record, min and median over the rounds) and writes nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import agent.records  # noqa: E402
from agent.records import parse_flows  # noqa: E402
from flowmeter.replay import read_flows  # noqa: E402
from ids_core.columns import NUMERIC_COLUMNS  # noqa: E402
from ids_core.flowmessage import encode  # noqa: E402

DATA = Path(os.environ.get("IOTID20_DATA_DIR", REPO.parent / "shared" / "data" / "iotid20"))
FEATURES = NUMERIC_COLUMNS[:62]


def messages(n_records: int, per_message: int = 32) -> list[list[dict]]:
    rows = read_flows(DATA / "iotid20_2000.csv", limit=n_records, shuffle_seed=1)
    full = read_flows(DATA / "iotid20_head5_fullschema.csv")[0]
    ident = {k: full[k] for k in ("Flow_ID", "Src_IP", "Dst_IP", "Timestamp")}
    recs = [{**ident, **{c: r[c] for c in NUMERIC_COLUMNS}, "seq": i, "sensor": "s1"} for i, r in enumerate(rows)]
    return [recs[i : i + per_message] for i in range(0, len(recs), per_message)]


def load_baseline(ref: str) -> Callable:
    """``parse_flows`` of ``agent/records.py`` at git ``ref``."""
    source = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{ref}:agent/records.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "records_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("records_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["records_baseline"] = module
    spec.loader.exec_module(module)
    return module.parse_flows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", help="git ref whose agent/records.py is the 'before' case")
    ap.add_argument("--records", type=int, default=3200)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--per-message", type=int, default=32, help="records per message")
    args = ap.parse_args()

    msgs = messages(args.records, args.per_message)
    n = sum(map(len, msgs))
    plain = [json.dumps(m).encode() for m in msgs]
    zero = []
    for m in msgs:
        m = [dict(r) for r in m]
        m[len(m) // 2].update({"Flow_Duration": 0, "Flow_Byts/s": float("inf"), "Flow_Pkts/s": float("inf")})
        zero.append(json.dumps(m).encode())
    spaced = [json.dumps(m, separators=(", ", " : ")).encode() for m in msgs]
    batches = [encode(m, columnar=True) for m in msgs]
    fast = agent.records._orjson

    def stdlib_parse(p: bytes) -> tuple:
        agent.records._orjson = None
        try:
            return parse_flows(p, FEATURES)
        finally:
            agent.records._orjson = fast

    def hook(pairs: list) -> dict:
        d = dict(pairs)
        if len(d) != len(pairs):
            raise ValueError("repeated key")
        return d

    pairs_decoder = json.JSONDecoder(object_pairs_hook=hook)
    cases: dict[str, tuple[Callable, list[bytes]]] = {
        "json.loads alone": (json.loads, plain),
        "json.loads + object_pairs_hook (always)": (pairs_decoder.decode, [p.decode() for p in plain]),
    }
    if args.baseline:
        base = load_baseline(args.baseline)
        cases[f"parse_flows before ({args.baseline})"] = (lambda p: base(p, FEATURES), plain)
    cases["parse_flows now"] = (lambda p: parse_flows(p, FEATURES), plain)
    cases["parse_flows now, 1 zero-duration flow per message"] = (lambda p: parse_flows(p, FEATURES), zero)
    cases["parse_flows now, ' : ' separators (pairs-hook re-parse)"] = (lambda p: parse_flows(p, FEATURES), spaced)
    cases["parse_flows now, standard-library json only"] = (stdlib_parse, plain)
    if fast is not None:
        cases["orjson.loads alone, columnar batches"] = (fast.loads, batches)
    if args.baseline:
        cases[f"parse_flows before ({args.baseline}), columnar batches"] = (lambda p: base(p, FEATURES), batches)
    cases["parse_flows now, columnar batches"] = (lambda p: parse_flows(p, FEATURES), batches)
    cases["parse_flows now, columnar batches, standard-library json only"] = (stdlib_parse, batches)
    zero_batches = [encode(json.loads(z), columnar=True) for z in zero]
    if args.baseline:
        cases[f"parse_flows before ({args.baseline}), columnar, 1 zero-duration flow per message"] = (
            lambda p: base(p, FEATURES),
            zero_batches,
        )
    cases["parse_flows now, columnar, 1 zero-duration flow per message"] = (
        lambda p: parse_flows(p, FEATURES),
        zero_batches,
    )

    for f, payloads in cases.values():  # warm up, and check that the parser accepts every record
        out = [f(p) for p in payloads]
        if isinstance(out[0], tuple):
            assert sum(len(a) for a, _ in out) == n and not any(r for _, r in out), "records rejected"
    times: dict[str, list[float]] = {k: [] for k in cases}
    load_before = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, (f, payloads) in cases.items():
            t = time.thread_time()  # CPU time: other processes' load preempts the thread but is not counted
            for p in payloads:
                f(p)
            times[name].append((time.thread_time() - t) / n * 1e6)
    opts = (f" --baseline {args.baseline}" if args.baseline else "") + f" --per-message {args.per_message}"
    print(f"`python bench/records_parse.py{opts}` — "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()} ({platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}), load average {load_before:.1f} → {os.getloadavg()[0]:.1f}; "
          f"{n} records in messages of {args.per_message}, {sum(map(len, plain)) / n:.0f} B per record "
          f"({sum(map(len, batches)) / n:.0f} B columnar), {len(FEATURES)} features, {args.rounds} rounds, "
          f"orjson {'installed' if fast else 'absent'}\n")  # fmt: skip
    print("| case | CPU µs per record, min | median |\n|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {min(t):.2f} | {statistics.median(t):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
