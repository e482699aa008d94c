"""The Markdown report of an ``inference.json``: header, file sizes, speed, memory, agreement, notes."""

from __future__ import annotations

from typing import Any

import numpy as np
from inference_notes import notes
from inference_plan import BATCH, QUIET, SHAPES, TFLITE_VARIANTS, WEIGHT_SETS
from inference_view import (
    COLS,
    PROBE_LABELS,
    RATIO_ROWS,
    RUNTIME_ROWS,
    View,
    extra_copies,
    fmt_k,
    fmt_ms,
    fmt_x,
    md_table,
)


def _header(res: dict[str, Any], view: View) -> list[str]:
    m, plan = res["machine"], res["plan"]
    calls = {int(k): v for k, v in plan["latency_calls"].items()}  # JSON turns int keys into strings
    tflrt = res.get("tflite_runtime") or {}
    rt = (
        f"{tflrt['versions']['tflite_runtime']} (numpy {tflrt['versions']['numpy']}) in `{tflrt['python']}`"
        if tflrt.get("versions")
        else f"not measured ({tflrt.get('skipped', 'unknown')})"
    )
    others = view.others_cpu()
    prep = res["prepare"]
    return [
        "# Inference benchmark: Keras float32 vs float TFLite vs int8 TFLite (Uni-Hybrid)",
        "",
        f"- Command: `{res['command']}` — {res['date']}, commit {m['git_commit']}, "
        f"run time {res['seconds'] / 60:.1f} min",
        f"- Machine: {m['cpu']} ({m['hypervisor'] or 'bare-metal'} VM), {m['cores']} cores, AVX-512 VNNI "
        f"{'yes' if m['avx512_vnni'] else 'no'}; Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- tflite-runtime: {rt}",
        f"- Load average (1/5/15 min): before {res['loadavg_before']}, after {res['loadavg_after']}, highest 1-min "
        f"after a round {max(v[0] for v in res['bench']['loadavg_after_each_round']):.2f}. Other engineers share the "
        f"machine: during the batch-{BATCH} runs other processes used a median {np.median(others):.0%} of its CPU "
        f"(max {max(others):.0%}; per run in the JSON).",
        f"- Method: {plan['rounds']} interleaved rounds, one case at a time, each runtime and thread count in its own "
        f"worker process; per round every case runs a block of batch-1 calls (≥ {plan['latency_seconds']} s; "
        f"≥ {calls[1]} calls in total at T=1, ≥ {calls[62]} at T=62) and one batch-{BATCH} run of "
        f"≥ {plan['run_seconds']} s. Latency: median / p99 over all calls; windows/s: median over rounds. TFLite "
        "is timed through `ids_core.interpreter.TFLiteModel.predict` (float windows in, float scores out, "
        "quantization included). Keras: intra- and inter-op threads both n; TFLite: `num_threads=n`.",
        f'- Weights: "toy" = random init, then {plan["train_epochs"]} epoch(s) on {plan["train_windows"]} random '
        "windows labelled by a synthetic rule (newest flow's feature 0 > 0.5; eval accuracy "
        + ", ".join(f"T={t}: {prep[str(t)]['toy_eval_accuracy']:.2f}" for t in SHAPES.values())
        + "), so biases and BatchNorm statistics are non-zero as in a trained model. All speeds use the toy "
        "weights (speed does not depend on weight values); sizes are given for random-init and toy weights "
        "(size does depend on them). Calibration: "
        f"{plan['representative_windows']} random windows in [0, 1].",
    ]


def _size_section(res: dict[str, Any]) -> list[str]:
    rows, anatomy = [], []
    for t in SHAPES.values():
        prep = res["prepare"][str(t)]
        for w in WEIGHT_SETS:
            s = prep[w]["sizes"]
            pt = s["int8_per_tensor"] / s["float"]
            target = (" ✅ ≤ 0.7" if pt <= 0.7 else " ❌ > 0.7") if t == SHAPES["paper"] else ""
            pc = s["int8_per_channel"] / s["float"]
            rows.append([f"T={t}", w, *(f"{s[v]:,}" for v in TFLITE_VARIANTS), f"**{pt:.3f}**{target}", f"{pc:.3f}"])
            if t != SHAPES["paper"]:
                continue
            for v in TFLITE_VARIANTS:
                a = prep[w]["anatomy"][v]
                weights = sum(n for k, n in a["constants"].items() if k != "int32")
                extra, _ = extra_copies(a)
                stripped_float = prep[w]["anatomy"]["float"]["stripped_bytes"]
                anatomy.append(
                    [
                        f"T={t}, {w}, {v.replace('_', ' ')}",
                        *(f"{n:,}" for n in (s[v], weights, extra, a["constants"].get("int32", 0))),
                        f"{a['tensor_name_bytes']:,}",
                        f"{a['quantization_scales']:,} ({sum(a['per_channel_tensors'].values())})",
                        f"{a['stripped_bytes']:,}",
                        f"{a['stripped_bytes'] / stripped_float:.3f}",
                        f"{a['stripped_bytes'] / s['float']:.3f}",
                    ]
                )
    head = ["shape", "weights", "float", "int8 per-tensor (shipped)", "int8 per-channel", "per-tensor / float"]
    head += ["per-channel / float"]
    head2 = ["file", "bytes", "weight constants", "of which extra copies", "int32 constants", "tensor names"]
    head2 += ["quantization scales (per-channel tensors)", "names stripped", "stripped / stripped float"]
    head2 += ["stripped / float as converted"]
    params = res["prepare"][str(SHAPES["paper"])]["params"]
    return [
        "",
        "## Model files, bytes (`trainer.convert.run_conversion`: the `unroll=True` twin)",
        "",
        f"{params:,} parameters at both shapes. Target: shipped int8 (per-tensor) at T=62 ≤ 0.7× the float file.",
        "",
        *md_table(head, rows),
        "",
        'Where the T=62 bytes go. "Extra copies": int8 weight matrices stored twice; "names stripped": the '
        "same file after `tensorflow.lite.tools.flatbuffer_utils.strip_strings` (tensor names removed; scores "
        "checked identical below).",
        "",
        *md_table(head2, anatomy),
    ]


def _speed_sections(view: View) -> list[str]:
    head = [f"T={t}, {n} thr" for t, n in COLS]
    lat_rows, thr_rows = [], []
    for rt, v, label in RUNTIME_ROWS:
        cs = [view.case(f"{rt}:{v}", t, n) for t, n in COLS]
        if not any(cs):
            continue
        lat_rows.append(
            [label]
            + [f"{fmt_ms(c['batch1_ms']['median'])} / {fmt_ms(c['batch1_ms']['p99'])}" if c else "–" for c in cs]
        )
        bs = [c.get("batch256_windows_per_s") if c else None for c in cs]
        if any(bs):
            thr_rows.append(
                [label] + [f"{fmt_k(b['median'])} ({fmt_k(b['min'])}–{fmt_k(b['max'])})" if b else "–" for b in bs]
            )
    ratio_rows = [
        [name] + [fmt_x(view.speed(a, t, n), view.speed(b, t, n)) for t, n in COLS] for name, a, b in RATIO_ROWS
    ]
    thread_rows = [
        [label]
        + [
            fmt_x(view.speed(f"{rt}:{v}:{b}", t, 2), view.speed(f"{rt}:{v}:{b}", t, 1))
            for t in SHAPES.values()
            for b in ("b256", "q256", "b1")
        ]
        for rt, v, label in RUNTIME_ROWS
        if view.case(f"{rt}:{v}", 1, 1)
    ]
    batch_names = {"b256": f"batch {BATCH}", "q256": f"batch {BATCH}, quiet runs", "b1": "batch 1"}
    return [
        "",
        "## Batch-1 latency per window, ms (median / p99)",
        "",
        *md_table(["runtime", *head], lat_rows),
        "",
        f"## Throughput at batch {BATCH}, windows/s (median over rounds; min–max)",
        "",
        *md_table(["runtime", *head], thr_rows),
        "",
        "## Ratios of windows/s (> 1× means the first is faster)",
        "",
        *md_table(["ratio", *head], ratio_rows),
        "",
        f'2 threads / 1 thread (windows/s). "Quiet runs": median over the runs during which other processes used '
        f"≤ {QUIET:.0%} of the CPU (– if there was no such run for 1 or 2 threads).",
        "",
        *md_table(
            ["runtime"] + [f"T={t}, {batch_names[b]}" for t in SHAPES.values() for b in batch_names], thread_rows
        ),
    ]


def _memory_section(res: dict[str, Any]) -> list[str]:
    rows = []
    for name, probe in res["memory"].items():
        if "stages_mb" in probe:
            s = probe["stages_mb"]
            rows.append(
                [PROBE_LABELS[name]]
                + [f"{s[k]['VmHWM']:.0f}" for k in ("start", "import", "load", "batch1", "batch256")]
            )
        else:
            rows.append([PROBE_LABELS[name], probe.get("error", "?").splitlines()[0], "", "", "", ""])
    head = ["process", "python + numpy", "+ import", "+ load model", "+ 1 window", f"+ {BATCH} windows"]
    return ["", "## Memory: peak RSS (VmHWM, MB) of a fresh process, T=62 model", "", *md_table(head, rows)]


def _agreement_section(res: dict[str, Any]) -> list[str]:
    rows = []
    for key, e in res["agreement"].items():
        t, w = key.split(":")
        for name in ("int8_per_tensor", "int8_per_channel"):
            a = e[f"{name}_vs_float"]
            rows.append(
                [
                    t.replace("T", "T="),
                    w,
                    f"{e['float_score_stats']['std']:.4f}",
                    f"{e['float_tflite_vs_keras']['max_abs_diff']:.1e}",
                    name.replace("_", " "),
                    *(f"{a[k]:.4f}" for k in ("label_agreement_at_0.5", "label_agreement_at_ref_median")),
                    *(f"{a[k]:.4f}" for k in ("mean_abs_diff", "max_abs_diff")),
                ]
            )
    head = ["shape", "weights", "float score std", "float TFLite vs Keras, max abs Δ", "int8 file"]
    head += ["label agreement @0.5", "@float median", "mean abs Δscore", "max abs Δscore"]
    windows = next(iter(res["agreement"].values()))["windows"]
    lines = [
        "",
        f"## Int8 vs float TFLite on {windows:,} random windows in [0, 1]",
        "",
        "Label agreement at 0.5 and at the float file's median score (labels split 50/50, the hardest threshold). "
        "With random-init weights every score sits near 0.5 with a spread at or below the int8 output step "
        "(1/256 ≈ 0.0039), so only the toy rows say something about int8 fidelity.",
        "",
        *md_table(head, rows),
    ]
    pairs = {
        "stripped_vs_int8_per_tensor": "names stripped vs as converted, LiteRT",
        "no_xnnpack_vs_xnnpack_int8_per_tensor": "LiteRT without XNNPACK vs LiteRT",
        "tflite_runtime_vs_litert_int8_per_tensor": "tflite-runtime 2.14 vs LiteRT",
        "tflite_runtime_vs_litert_no_xnnpack_int8_per_tensor": "tflite-runtime 2.14 vs LiteRT without XNNPACK",
    }
    rows = [
        [key.replace("T", "T=").replace(":", ", ")]
        + [f"{e[k]['identical_fraction']:.1%} / {e[k]['max_abs_diff']:.4f}" if k in e else "–" for k in pairs]
        for key, e in res["agreement"].items()
    ]
    return [
        *lines,
        "",
        "The same int8 per-tensor file on other kernels: share of identical scores / max abs Δscore (the firmware "
        "self-test demands identical int8 outputs).",
        "",
        *md_table(["shape, weights", *pairs.values()], rows),
    ]


def render(res: dict[str, Any]) -> str:
    view = View(res)
    sections = [_header(res, view), _size_section(res), _speed_sections(view), _memory_section(res)]
    sections += [_agreement_section(res), notes(res, view)]
    return "\n".join(line for section in sections for line in section)
