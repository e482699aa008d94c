"""The report's "What this means", written from the numbers so that a re-run cannot leave stale prose behind."""

from __future__ import annotations

from typing import Any

import numpy as np
from inference_plan import BATCH, QUIET, REFERENCE, SHAPES, WEIGHT_SETS
from inference_view import FLOAT, INT8, KERAS, View, extra_copies, fmt_k, fmt_ms, fmt_x


def _size_note(res: dict[str, Any]) -> str:
    p = SHAPES["paper"]
    prep = res["prepare"][str(p)]
    sizes = {w: prep[w]["sizes"] for w in WEIGHT_SETS}
    ratio = {w: sizes[w]["int8_per_tensor"] / sizes[w]["float"] for w in WEIGHT_SETS}
    a, pc = prep["toy"]["anatomy"]["int8_per_tensor"], prep["toy"]["anatomy"]["int8_per_channel"]
    float_stripped = prep["toy"]["anatomy"]["float"]["stripped_bytes"]
    note = (
        f"- **Size: the target holds with random-init weights ({ratio['random']:.3f}×) but not with the toy-trained "
        f"ones ({ratio['toy']:.3f}×).**"
        if ratio["random"] <= 0.7 < ratio["toy"]
        else f"- **Size.** The shipped int8 file at T={p} is {ratio['toy']:.3f}× float (toy), "
        f"{ratio['random']:.3f}× (random init)."
    )
    dup, copies = extra_copies(a)
    if dup:
        shapes = ", ".join("×".join(map(str, d["shape"])) for d in a["duplicate_int8_weights"])
        inputs = sorted(
            {
                "/".join(i.rsplit("/", 2)[-2:]) if "/" in i else f"tensor {i}"
                for c in copies
                for i in c["inputs_of_users"]
            }
        )
        note += (
            f" Of the {sizes['toy']['int8_per_tensor'] - sizes['random']['int8_per_tensor']:,} bytes the toy file has "
            f"over the random-init one, {dup:,} are second copies of int8 weight matrices ({shapes}), used by "
            f"{' / '.join(str(c['users']) for c in copies)} op(s) whose input is "
            f"{' / '.join(f'`{i}`' for i in inputs)}, and {a['constants'].get('int32', 0):,} are int32 biases. "
            "The first unrolled step multiplies the zero initial state by the recurrent kernel; that input has an "
            "empty calibrated range, and with a non-zero "
            "recurrent bias (zero at random init) the converter stores a rescaled kernel copy for that one step. "
            "So the ratio depends on training: check it on the real trained model (the export reports it)."
        )
    e = res["agreement"][f"T{p}:toy"]["stripped_vs_int8_per_tensor"]
    note += (
        f" Tensor names take {a['tensor_name_bytes']:,} bytes "
        f"({a['tensor_name_bytes'] / sizes['toy']['int8_per_tensor']:.0%} of the file). With them stripped "
        f"(`flatbuffer_utils.strip_strings`; {e['identical_fraction']:.0%} of the scores identical) the shipped "
        f"file is {a['stripped_bytes'] / sizes['toy']['float']:.3f}× the float file as converted, "
        f"{a['stripped_bytes'] / float_stripped:.3f}× the float file stripped alike"
        + (
            f"; removing the extra copies as well would give ~{(a['stripped_bytes'] - dup) / float_stripped:.2f}×."
            if dup
            else "."
        )
    )
    pc_ratio = sizes["toy"]["int8_per_channel"] / sizes["toy"]["float"]
    note += (
        f" Per-channel is {pc_ratio:.2f}× float (toy): its constants are the same, but "
        f"{pc['per_channel_tensors'].get('int32', 0)} int32 bias tensors of the unrolled steps each "
        f"carry a scale and zero point per channel ({pc['quantization_scales']:,} scale entries against "
        f"{a['quantization_scales']:,} per-tensor)."
    )
    return note


def _threads_note(view: View) -> str:
    sp, p = view.speed, SHAPES["paper"]
    quiet = [fmt_x(sp(f"{INT8}:q256", t, 2), sp(f"{INT8}:q256", t, 1)) for t in (p, 1)]
    loaded = [fmt_x(sp(f"{INT8}:b256", t, 2), sp(f"{INT8}:b256", t, 1)) for t in (p, 1)]
    note = (
        f"- **A second thread** (int8 LiteRT, batch {BATCH}, T={p} / T=1): {loaded[0]} / {loaded[1]} over all runs, "
        f"while other processes used a median {np.median(view.others_cpu()):.0%} of the CPU"
    )
    if "–" in quiet:
        return note + f"; no run was quiet enough (others ≤ {QUIET:.0%}) for both thread counts to compare."
    note += f"; {quiet[0]} / {quiet[1]} in quiet runs (others ≤ {QUIET:.0%})."
    if sp(f"{INT8}:q256", p, 2) > sp(f"{INT8}:q256", p, 1) and sp(f"{INT8}:b256", p, 2) < sp(f"{INT8}:b256", p, 1):
        note += (
            " A second thread pays only when a core is free: a thread that waits for a busy core holds the whole batch "
            "up. On a gateway that also runs the broker and the agent, 1 thread is the safer default."
        )
    return note


def notes(res: dict[str, Any], view: View) -> list[str]:
    """'What this means', written from the numbers so that a re-run cannot leave stale prose behind."""
    p, sp = SHAPES["paper"], view.speed
    mem = {k: v["stages_mb"]["batch256"]["VmHWM"] for k, v in res["memory"].items() if "stages_mb" in v}
    agree = res["agreement"][f"T{p}:toy"]["int8_per_tensor_vs_float"]
    agree1 = res["agreement"]["T1:toy"]["int8_per_tensor_vs_float"]
    lines = [
        "",
        "## What this means",
        "",
        f"- **Batching decides the agent's speed.** int8 LiteRT at T={p}, 1 thread: one window per call gives "
        f"{fmt_k(sp(f'{INT8}:b1', p, 1))} windows/s, batches of {BATCH} give {fmt_k(sp(f'{INT8}:b256', p, 1))} "
        f"({fmt_x(sp(f'{INT8}:b256', p, 1), sp(f'{INT8}:b1', p, 1), 1)}); at T=1 "
        f"{fmt_x(sp(f'{INT8}:b256', 1, 1), sp(f'{INT8}:b1', 1, 1), 1)}. Keras is worse at batch 1: `predict` costs "
        f"{fmt_ms(view.case('keras:predict', p, 1)['batch1_ms']['median'])} ms per call at T={p} and "
        f"{fmt_ms(view.case('keras:predict', 1, 1)['batch1_ms']['median'])} ms at T=1 (per-call set-up), eager "
        f"`model(x)` {fmt_ms(view.case('keras:call', p, 1)['batch1_ms']['median'])} ms at T={p}.",
        f"- **int8 pays.** At T={p}, batch {BATCH}, 1 thread, int8 LiteRT is "
        f"{fmt_x(sp(f'{INT8}:b256', p, 1), sp(f'{FLOAT}:b256', p, 1), 1)} float TFLite and "
        f"{fmt_x(sp(f'{INT8}:b256', p, 1), sp(f'{KERAS}:b256', p, 1), 1)} Keras `predict_on_batch`; at T=1 "
        f"{fmt_x(sp(f'{INT8}:b256', 1, 1), sp(f'{FLOAT}:b256', 1, 1), 1)} and "
        f"{fmt_x(sp(f'{INT8}:b256', 1, 1), sp(f'{KERAS}:b256', 1, 1), 1)}. With the toy weights the shipped int8 "
        f"file agrees with float on {agree['label_agreement_at_0.5']:.1%} of labels at T={p} (mean abs Δscore "
        f"{agree['mean_abs_diff']:.3f}) and {agree1['label_agreement_at_0.5']:.1%} at T=1.",
        _threads_note(view),
    ]
    e = res["agreement"][f"T{p}:toy"]
    if "tflite_runtime_vs_litert_int8_per_tensor" in e and view.case("tflite_runtime:int8_per_tensor", p, 1):
        ref = f"ai_edge_litert:{REFERENCE}:b256"
        same_ref = e["tflite_runtime_vs_litert_no_xnnpack_int8_per_tensor"]["identical_fraction"]
        same = e["tflite_runtime_vs_litert_int8_per_tensor"]["identical_fraction"]
        lines.append(
            f"- **tflite-runtime 2.14 is a slow and numerically different fallback.** Its int8 T={p} file runs at "
            f"{fmt_x(sp('tflite_runtime:int8_per_tensor:b256', p, 1), sp(f'{INT8}:b256', p, 1))} of LiteRT's windows/s "
            f"(float: {fmt_x(sp('tflite_runtime:float:b256', p, 1), sp(f'{FLOAT}:b256', p, 1))}). Its int8 scores "
            f"match LiteRT *without* XNNPACK on {same_ref:.1%} of windows but LiteRT with XNNPACK on only {same:.1%}"
            f", and LiteRT itself drops to {fmt_x(sp(ref, p, 1), sp(f'{INT8}:b256', p, 1))} without XNNPACK: 2.14 "
            "evidently runs this int8 graph on its builtin kernels, not through XNNPACK. Consequence: the bundle "
            "self-test (identical int8 outputs, recorded "
            f"with LiteRT) fails on a tflite-runtime gateway unless every self-test window is among the {same:.0%} "
            "that match. Its process is smaller "
            f"({mem.get('tflite_runtime', 0):.0f} MB peak against {mem.get('ai_edge_litert', 0):.0f} MB)."
        )
    lines += [
        _size_note(res),
        f"- **Memory.** A process with the agent's interpreter wrapper and the int8 T={p} model peaks at "
        f"{mem.get('ai_edge_litert', 0):.0f} MB after a batch of {BATCH}; TensorFlow with the Keras model at "
        f"{mem.get('tensorflow', 0):.0f} MB.",
        "",
    ]
    return lines
