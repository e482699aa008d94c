"""Reading a results dict for the report: row labels, number formats, speeds by case, Markdown tables."""

from __future__ import annotations

from typing import Any

from inference_plan import REFERENCE, SHAPES

RUNTIME_ROWS = [  # (runtime, variant, label)
    ("keras", "predict_on_batch", "Keras float32 `predict_on_batch`"),
    ("keras", "predict", "Keras float32 `predict`"),
    ("keras", "call", "Keras float32 `model(x, training=False)`"),
    ("ai_edge_litert", "float", "float TFLite, LiteRT"),
    ("ai_edge_litert", "int8_per_tensor", "**int8 per-tensor (shipped), LiteRT**"),
    ("ai_edge_litert", "int8_per_channel", "int8 per-channel, LiteRT"),
    ("ai_edge_litert", REFERENCE, "int8 per-tensor, LiteRT without XNNPACK (builtin kernels)"),
    ("tflite_runtime", "float", "float TFLite, tflite-runtime 2.14"),
    ("tflite_runtime", "int8_per_tensor", "int8 per-tensor, tflite-runtime 2.14"),
]
INT8, FLOAT, KERAS = "ai_edge_litert:int8_per_tensor", "ai_edge_litert:float", "keras:predict_on_batch"
RATIO_ROWS = [  # (label, numerator, denominator) as runtime:variant:b256|b1
    ("int8 LiteRT / Keras `predict_on_batch`, batch 256", f"{INT8}:b256", f"{KERAS}:b256"),
    ("int8 LiteRT / Keras `predict_on_batch`, batch 1", f"{INT8}:b1", f"{KERAS}:b1"),
    ("int8 / float TFLite (LiteRT), batch 256", f"{INT8}:b256", f"{FLOAT}:b256"),
    ("int8 / float TFLite (LiteRT), batch 1", f"{INT8}:b1", f"{FLOAT}:b1"),
    ("int8 per-tensor / per-channel (LiteRT), batch 256", f"{INT8}:b256", "ai_edge_litert:int8_per_channel:b256"),
    ("int8 tflite-runtime / LiteRT, batch 256", "tflite_runtime:int8_per_tensor:b256", f"{INT8}:b256"),
    ("float tflite-runtime / LiteRT, batch 256", "tflite_runtime:float:b256", f"{FLOAT}:b256"),
    ("int8 LiteRT without / with XNNPACK, batch 256", f"ai_edge_litert:{REFERENCE}:b256", f"{INT8}:b256"),
    (
        "int8 tflite-runtime / LiteRT without XNNPACK, batch 256",
        "tflite_runtime:int8_per_tensor:b256",
        f"ai_edge_litert:{REFERENCE}:b256",
    ),
    ("batch 256 / batch 1, int8 LiteRT", f"{INT8}:b256", f"{INT8}:b1"),
    ("batch 256 / batch 1, Keras `predict_on_batch`", f"{KERAS}:b256", f"{KERAS}:b1"),
]
PROBE_LABELS = {
    "ai_edge_litert": "agent interpreter wrapper + ai_edge_litert, int8 per-tensor",
    "tflite_runtime": "agent interpreter wrapper + tflite-runtime 2.14, int8 per-tensor",
    "tensorflow": "`import tensorflow` + Keras float32 model",
}
COLS = [(t, n) for t in SHAPES.values() for n in (1, 2)]


def fmt_k(v: float) -> str:
    return f"{v / 1000:.2f}k" if v >= 1000 else f"{v:.0f}"


def fmt_ms(v: float) -> str:
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def fmt_x(a: float | None, b: float | None, digits: int = 2) -> str:
    return f"{a / b:.{digits}f}×" if a and b else "–"


class View:
    """Read access to a results dict: speeds by ``runtime:variant:b256|b1`` at (T, threads)."""

    def __init__(self, res: dict[str, Any]) -> None:
        self.res, self.cases = res, res["bench"]["cases"]

    def case(self, rt_variant: str, t: int, n: int) -> dict[str, Any] | None:
        return self.cases.get(f"{rt_variant}:T{t}:t{n}")

    def speed(self, spec: str, t: int, n: int) -> float | None:
        """Windows/s at batch 256 (``…:b256``; ``…:q256`` over quiet runs only) or at batch 1 (``…:b1``, from the
        median latency)."""
        rt_variant, batch = spec.rsplit(":", 1)
        c = self.case(rt_variant, t, n)
        if not c:
            return None
        if batch == "b1":
            return 1000 / c["batch1_ms"]["median"]
        b = c.get("batch256_windows_per_s")
        return (b["quiet_median"] if batch == "q256" else b["median"]) if b else None

    def others_cpu(self) -> list[float]:
        return [
            r["others_cpu_share"]
            for c in self.cases.values()
            for r in c.get("batch256_windows_per_s", {}).get("runs", [])
        ]


def md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|---" * len(head) + "|", *("| " + " | ".join(r) + " |" for r in rows)]


def extra_copies(constants: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """Bytes of the extra copies of int8 weight matrices (all but the most used copy of each), and those copies."""
    extra = [c for d in constants["duplicate_int8_weights"] for c in sorted(d["copies"], key=lambda c: -c["users"])[1:]]
    return sum(c["bytes"] for c in extra), extra
