"""What the inference benchmark measures: shapes, weight sets, file variants, the plan of a run, one case."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SCRIPT = REPO / "bench" / "inference.py"  # what the children run
MODEL = "uni-hybrid"
FEATURES = 62
SHAPES = {"quick": 1, "paper": 62}
BATCH = 256
SEED = 0
QUIET = 0.10  # a run is "quiet" when other processes used at most this share of the machine's CPU meanwhile
TFLRT_PYTHON = "/tmp/venv-tflrt/bin/python"
WEIGHT_SETS = ("random", "toy")
TFLITE_VARIANTS = ("float", "int8_per_tensor", "int8_per_channel")


@dataclass(frozen=True)
class Plan:
    """Repetitions and data sizes of one benchmark run."""

    rounds: int  # interleaved rounds; one throughput run per case per round
    run_seconds: float  # minimum duration of one batch-256 throughput run
    latency_calls: dict[int, int]  # minimum batch-1 calls per case and T, summed over rounds
    latency_seconds: float  # minimum duration of one batch-1 block
    train_windows: int
    train_epochs: int
    eval_windows: int
    representative_windows: int


FULL = Plan(7, 1.0, {1: 200, 62: 50}, 0.25, 4096, 4, 2000, 512)
QUICK = Plan(2, 0.2, {1: 20, 62: 4}, 0.05, 512, 1, 200, 64)


@dataclass(frozen=True)
class Case:
    """One measured configuration: a runtime's model variant at one shape and thread count."""

    runtime: str  # keras | ai_edge_litert | tflite_runtime
    variant: str  # keras call path or TFLite file variant
    T: int
    threads: int
    batch256: bool = True  # False: batch-1 latency only

    @property
    def key(self) -> str:
        return f"{self.runtime}:{self.variant}:T{self.T}:t{self.threads}"


KERAS_PATHS = {"predict_on_batch": True, "predict": True, "call": False}  # path -> measured at batch 256
TFLRT_VARIANTS = ("float", "int8_per_tensor")
REFERENCE = "int8_per_tensor_no_xnnpack"  # the shipped file on LiteRT's builtin kernels (no default delegates)


def now() -> float:
    return time.perf_counter()


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def random_windows(rng: np.random.Generator, n: int, t: int) -> np.ndarray:
    return rng.random((n, t, FEATURES), dtype=np.float32)


def model_paths(workdir: Path, t: int, weights: str) -> dict[str, Path]:
    d = workdir / f"T{t}" / weights
    return {
        "dir": d,
        "weights": d / "weights.npz",
        "keras_scores": d / "keras_scores.npy",
        **{v: d / f"model_{v}.tflite" for v in TFLITE_VARIANTS},
        "int8_per_tensor_stripped": d / "model_int8_per_tensor.stripped.tflite",  # written by anatomy
    }
