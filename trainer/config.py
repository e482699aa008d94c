"""Typed trainer profiles loaded from ``config/trainer.yaml``; unknown keys and bad values are errors."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ids_core.typedconfig import ConfigError, apply_overrides, build, setting

# config/trainer.yaml, shipped inside the package (defaults/trainer.yaml) so a wheel finds it as a checkout does
DEFAULT_CONFIG = Path(str(resources.files("trainer") / "defaults" / "trainer.yaml"))
MODEL_NAMES = ("uni-hybrid", "bi-hybrid", "ullah-cnn")
OPTIMIZERS = ("adam", "adamax", "nadam")

__all__ = ["DEFAULT_CONFIG", "ConfigError", "Profile", "load_profile", "profile_names"]


@dataclass
class Features:
    top_k: int = setting(62, min=1, help="Extra-Trees keeps the k most important columns")
    include_identifiers: list[str] = setting(
        factory=list,
        choices=("Flow_ID", "Src_IP", "Dst_IP", "Timestamp"),
        help="identifier columns label-encoded and offered as features (not recommended)",
    )
    extra_trees_estimators: int = setting(100, min=1)
    scaling: str = setting(
        "minmax",
        choices=("minmax", "log-minmax"),
        help="minmax (the paper) | log-minmax (signed log1p first: keeps heavy-tailed rates apart in int8)",
    )
    value_codes: list[str] = setting(
        factory=list,
        choices=("Src_Port", "Dst_Port", "Protocol"),
        help="numeric columns whose values are categories: each value coded by its training share of malicious flows",
    )
    value_code_min_count: int = setting(20, min=1, help="training flows a value needs for a code of its own")
    value_code_smoothing: float = setting(10.0, min=0.0, help="pseudo-flows at the overall malicious share per value")


@dataclass
class Split:
    test_size: float = setting(0.2, min=0.01, max=0.99, help="stratified on the binary label")


@dataclass
class Window:
    length: int = setting(1, min=1, help="T flows per window; 1 = per-flow classification")
    key: list[str] = setting(factory=list, help="stream key columns, e.g. [Src_IP]; [] = one stream")
    order: str = setting(
        "auto",
        choices=("auto", "timestamp", "shuffle", "file"),
        help="auto = Timestamp if present, else a seeded shuffle",
    )


@dataclass
class Model:
    name: str = setting("uni-hybrid", choices=MODEL_NAMES)


@dataclass
class Train:
    epochs: int = setting(50, min=1)
    batch_size: int = setting(256, min=1)
    patience: int = setting(5, min=1, help="early stopping patience (epochs), best weights restored")
    monitor: str = setting(
        "val_accuracy",
        choices=("val_accuracy", "val_loss"),
        help="what early stopping and the checkpoint watch (Algorithm 1: val_accuracy)",
    )
    validation_split: float = setting(0.2, min=0.01, max=0.99, help="a seeded random fraction of the training windows")
    learning_rate: float = setting(0.001, min=0.0)
    optimizer: str = setting("adam", choices=OPTIMIZERS)
    steps_per_epoch: int | None = setting(None, min=1, help="cap, for smoke runs of big profiles")
    reduce_lr_patience: int = setting(
        0, min=0, help="halve the learning rate after N epochs without val_loss gain (0 = off)"
    )


@dataclass
class Export:
    per_channel: bool = setting(False, help="per-channel int8 weights (bigger at large T, see bench/)")
    hoist_input_projections: bool = setting(
        True, help="recurrent layers' input projections for all steps in one op (trainer.hoisted; false: unroll twin)"
    )
    representative_windows: int = setting(512, min=1, help="calibration windows drawn from the training split")
    threshold: float = setting(0.5, min=0.0, max=1.0)
    selftest_windows: int = setting(32, min=1, help="int8 input/output pairs shipped for the on-device self-test")


@dataclass
class TrialResources:
    cpu: float = setting(1.0, min=0.0, help="CPUs per grid trial; TensorFlow's intra/inter-op threads follow it")
    gpu: float = setting(0.0, min=0.0, help="GPUs per grid trial (a fraction shares a GPU between trials)")


@dataclass
class Grid:
    epochs: int = setting(3, min=1)
    learning_rate: list[float] = setting(factory=lambda: [0.001, 0.0001], min=0.0)
    optimizer: list[str] = setting(factory=lambda: list(OPTIMIZERS), choices=OPTIMIZERS)
    num_layers: list[int] = setting(factory=lambda: [1, 2, 3], choices=(1, 2, 3))
    num_dense_layers: list[int] = setting(factory=lambda: [1, 2], choices=(1, 2))
    batch_size: list[int] = setting(factory=lambda: [32, 64, 128, 256], min=1)
    trial_resources: TrialResources = setting(factory=TrialResources, help="what Ray reserves for each trial")
    max_failures: int = setting(2, min=0, help="times a failed trial is retried from scratch")
    scheduler: str = setting(
        "none", choices=("none", "asha"), help="none = every combination all epochs (the paper) | asha = early stop"
    )


@dataclass
class Profile:
    name: str = "quick"
    data: str = setting("auto", help="auto | sample | synthetic | path to an IoTID20 CSV")
    synthetic_rows: int = setting(20000, min=100)
    seed: int = 42
    features: Features = setting(factory=Features)
    split: Split = setting(factory=Split)
    window: Window = setting(factory=Window)
    model: Model = setting(factory=Model)
    train: Train = setting(factory=Train)
    compare: list[str] = setting(factory=list, choices=MODEL_NAMES, help="models also trained for Table V")
    export: Export = setting(factory=Export)
    grid: Grid = setting(factory=Grid)


def profile_names(path: str | Path = DEFAULT_CONFIG) -> list[str]:
    """The profiles a trainer YAML defines."""
    try:
        profiles = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read trainer config: {e}") from e
    return sorted(profiles)


def load_profile(name: str, path: str | Path = DEFAULT_CONFIG, overrides: list[str] | None = None) -> Profile:
    """Load profile ``name`` from ``path`` and apply ``section.key=value`` overrides (YAML values)."""
    profiles = yaml.safe_load(Path(path).read_text()) or {}
    if name not in profiles:
        raise ConfigError(f"{path}: no profile {name!r}; available: {sorted(profiles)}")
    data = apply_overrides(dict(profiles[name]), overrides or [])
    return build(Profile, {"name": name, **data})
