"""What one run of the agent benchmark does: the plans (full and ``--quick``), the agent variants and their
settings, the message formats, and the pass criteria of a trial."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PREFIX = "edge-ids-bench"
MODEL = "uni-hybrid"
FEATURES = 62
SHAPES = {"quick": 1, "paper": 62}
SEED = 0
DRAIN_LIMIT = 0.5  # s: the last verdict of a passing trial arrives at most this long after the last publish
PACE = 0.97  # a trial whose publisher achieved less than this share of the target rate is publisher-limited
MAX_RECORDS = 256  # the agent's default batch.max_records
STEADY = "int8-steady"  # max_wait 5 ms, never overloaded: its RSS is the steady-state memory
STORM = "int8-alerts"  # every flow alerts, rate limiting off
STORM_RL = "int8-alerts-rl"  # every flow alerts, rate limiting as shipped (config/agent.yaml)
STORM_LINES = "int8-alerts-lines"  # every flow alerts, rate limiting off, alerts.max_per_message ALERTS_PER_MESSAGE
ALERTS_PER_MESSAGE = 64
STORMS = (STORM, STORM_RL, STORM_LINES)  # the agents that run the every-flow-alerts model
WAIT_MS = {"int8": 20.0, "int8-5ms": 5.0, "int8-2ms": 2.0, STORM: 20.0, STORM_RL: 20.0, STORM_LINES: 20.0, STEADY: 5.0}
NO_ALERT_THRESHOLD = 0.9  # random-init scores are ≈0.5: benign-looking traffic, no alerts, verdicts only
ALERT_ALL_THRESHOLD = 0.01  # every flow alerts: an attack storm
# Message formats (ids_core.flowmessage): one JSON object per message, a JSON array of records, a columnar batch
# (column names once; what the flow meter publishes by default and ``iotids-replay --columnar`` sends).
RECORD, ARRAY, COLUMNAR = "record", "array", "columnar"


def search_key(t: int, variant: str, per_message: int, fmt: str) -> str:
    """How a search is named in ``agent.json`` (``T1:int8:32:columnar``)."""
    return f"T{t}:{variant}:{per_message}:{fmt}"


@dataclass(frozen=True)
class Plan:
    """Durations, repetitions and which searches run. A search is (agent variant, flows per message, format)."""

    trial_seconds: dict[int, float]  # per T
    max_trials: int  # per search
    resolution: float  # a search stops when (lowest failing rate) / (highest passing rate) <= this
    latency_seconds: dict[int, float]
    latency_reps: int
    raw_seconds: float
    flow_rows: int  # SYNTHETIC flows generated (published cyclically)
    probe_flows: dict[int, int]  # per burst (probe and saturation runs)
    saturation_runs: int  # bursts per search after its trials (the probe is one more)
    searches: tuple[tuple[str, int, str], ...]  # zero-loss searches, then saturated bursts
    bursts_only: tuple[tuple[str, int, str], ...]  # saturated bursts only (flows per agent CPU-s), no search
    latency_variants: tuple[str, ...]  # timed at 50 % of the int8 agent's 1-record/message max

    @property
    def variants(self) -> tuple[str, ...]:
        every = [*self.latency_variants, *(v for v, _, _ in self.searches), *(v for v, _, _ in self.bursts_only)]
        return tuple(dict.fromkeys(["int8", *every, STEADY]))


# zero-loss searches (then saturated bursts) of both plans: the benign agent in two formats, the three storms
SEARCHES = (
    ("int8", 1, RECORD),
    ("int8", 32, COLUMNAR),
    (STORM, 32, COLUMNAR),
    (STORM_RL, 32, COLUMNAR),
    (STORM_LINES, 32, COLUMNAR),
)
FULL = Plan(
    trial_seconds={1: 8.0, 62: 10.0},
    max_trials=5,
    resolution=1.07,
    latency_seconds={1: 8.0, 62: 10.0},
    latency_reps=3,
    raw_seconds=2.0,
    flow_rows=20_000,
    probe_flows={1: 16384, 62: 4096},
    saturation_runs=2,
    searches=SEARCHES,
    bursts_only=(("int8", 32, ARRAY), ("int8", 256, COLUMNAR)),
    latency_variants=("int8", "int8-5ms", "int8-2ms"),
)
QUICK = Plan(
    trial_seconds={1: 3.0, 62: 4.0},
    max_trials=2,
    resolution=1.2,
    latency_seconds={1: 3.0, 62: 4.0},
    latency_reps=1,
    raw_seconds=0.5,
    flow_rows=4_000,
    probe_flows={1: 4096, 62: 1024},
    saturation_runs=1,
    searches=SEARCHES,
    bursts_only=(("int8", 32, ARRAY),),
    latency_variants=("int8", "int8-2ms"),
)
