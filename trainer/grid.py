"""Grid search over Table II (Section III-B) on Ray Tune: 144 combinations × 3 epochs, resumable, distributable.

One Ray Tune experiment runs the selected combinations that are not yet in ``grid.jsonl``. Ray runs locally
(sized to the machine or ``cpus``) or joins a cluster (``address`` / ``RAY_ADDRESS``); each trial reserves the
profile's ``grid.trial_resources`` and TensorFlow in a trial uses that many threads. The prepared data is put in
Ray's object store once (``tune.with_parameters``) and read by every trial from there. The experiment state lives
under ``<out>/tune`` (or ``storage``, e.g. shared storage for a cluster): an interrupted grid is resumed with
``Tuner.restore`` (finished trials are not run again), a failed trial is retried ``grid.max_failures`` times.
Optional ASHA early stopping (``grid.scheduler: asha``). Each finished combination is appended to ``grid.jsonl``
at once (the result format), so a later, larger selection skips it; ``grid.md`` is the ranked table. The recurrent
stack follows the hybrid pattern (layer 1 GRU 256, layer 2 LSTM 128, layer 3 GRU 64, as many as
``num_layers``); dense layers are 128 then 64. Models are ranked on the validation part (the paper ranked on
its test set; test metrics are recorded beside, for comparison).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ray import tune

from trainer.config import Profile

log = logging.getLogger(__name__)

PARAMS = ("learning_rate", "optimizer", "num_layers", "num_dense_layers", "batch_size")
RANK_BY = ("val_accuracy", "val_auc")
RESULTS = "grid.jsonl"
TABLE = "grid.md"
TRIALS_LOG = "grid-trials.log"  # one line per trial event (start, retry, done, error), for people and tests


def combinations(profile: Profile) -> list[dict[str, Any]]:
    """Every combination of the profile's grid, in a fixed order."""
    g = profile.grid
    values = [g.learning_rate, g.optimizer, g.num_layers, g.num_dense_layers, g.batch_size]
    return [dict(zip(PARAMS, combo, strict=True)) for combo in itertools.product(*values)]


def combo_key(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={params[k]}" for k in PARAMS)


def select(combos: list[dict[str, Any]], only: str = "", limit: int | None = None) -> list[dict[str, Any]]:
    """Filter by ``key=value,…`` (values compared as text) and keep the first ``limit``."""
    wanted = dict(item.split("=", 1) for item in only.split(",") if item.strip())
    unknown = set(wanted) - set(PARAMS)
    if unknown:
        raise ValueError(f"--only: unknown parameter(s) {sorted(unknown)}; allowed: {PARAMS}")
    chosen = [c for c in combos if all(str(c[k]) == v for k, v in wanted.items())]
    return chosen[:limit] if limit is not None else chosen


def load_results(path: Path) -> dict[str, dict[str, Any]]:
    """Finished combinations by key; a torn last line (a kill mid-write) is ignored with a warning."""
    done: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return done
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            rec = json.loads(line)
            done[rec["key"]] = rec
        except (json.JSONDecodeError, KeyError):
            log.warning("%s:%d: ignoring an incomplete result line", path, n)
    return done


def _append(path: Path, record: dict[str, Any]) -> None:
    """Append one fsynced line; a torn last line (a kill mid-write) is ended first so this record stays whole."""
    with path.open("ab+") as f:
        end = f.seek(0, os.SEEK_END)
        torn = False
        if end > 0:
            f.seek(end - 1)
            torn = f.read(1) != b"\n"
        f.write((("\n" if torn else "") + json.dumps(record) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def experiment_name(profile: Profile, selection: list[dict[str, Any]]) -> str:
    """Names the experiment by what it computes (data, preprocessing, training, the selected combinations).

    The same command after an interruption finds the same experiment and restores it; a different selection
    or profile starts a new one. Resources, retries and the scheduler are not part of the name.
    """
    settings = dataclasses.asdict(profile)
    for runtime in ("trial_resources", "max_failures", "scheduler"):
        settings["grid"].pop(runtime)
    blob = json.dumps({"profile": settings, "combinations": [combo_key(c) for c in selection]}, sort_keys=True)
    return "grid-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_grid(
    profile: Profile,
    out_dir: Path,
    *,
    limit: int | None = None,
    only: str = "",
    address: str | None = None,
    cpus: int | None = None,
    storage: str | None = None,
    scheduler: str | None = None,
) -> list[dict[str, Any]]:
    """Run the (selected) grid on Ray Tune, skipping finished combinations; returns the selection's results ranked.

    Raises :class:`GridIncomplete` when a trial failed (after its retries) or the run was interrupted; the
    finished combinations are recorded either way and the same command continues.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / RESULTS
    todo = select(combinations(profile), only, limit)
    done = load_results(results_path)
    pending = [c for c in todo if combo_key(c) not in done]
    log.info(
        "grid: %d selected, %d already finished (skipped), %d to run",
        len(todo),
        len(todo) - len(pending),
        len(pending),
    )
    missing: list[str] = []
    if pending:
        name = experiment_name(profile, todo)
        _tune(profile, out_dir, name, pending, address, cpus, storage, scheduler or profile.grid.scheduler)
        done = load_results(results_path)
        missing = [combo_key(c) for c in pending if combo_key(c) not in done]
    ranked = rank([done[combo_key(c)] for c in todo if combo_key(c) in done])
    table = write_table(ranked, out_dir / TABLE)
    print(table)
    if missing:
        raise GridIncomplete(
            f"{len(missing)} of {len(todo)} combinations did not finish (failed after retries or interrupted): "
            f"{'; '.join(missing)}. Run the same command again to continue."
        )
    return ranked


def rank(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best first by validation accuracy, then AUC; combinations ASHA stopped early (no test metrics) last."""
    return sorted(records, key=lambda r: (r.get("test") is None, *(-(r[k] or 0) for k in RANK_BY)))


class GridIncomplete(RuntimeError):
    """Some combinations of the grid did not finish."""


@contextmanager
def ray_session(address: str | None = None, cpus: int | None = None) -> Iterator[dict[str, float]]:
    """Join the cluster at ``address`` / ``RAY_ADDRESS``, or start a quiet local Ray (no dashboard, no usage
    stats, warnings only) whose temporary directory is removed afterwards."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no banner, no status tables
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # inherited by local workers
    import ray

    # Ray's own warnings (e.g. token auth on by default, slow steps on a busy machine) only with -v; the trials'
    # stdout/stderr (TensorFlow's start-up lines) likewise. A failing trial's traceback is reported either way.
    verbose = log.isEnabledFor(logging.DEBUG)
    quiet = {"logging_level": logging.WARNING if verbose else logging.ERROR, "log_to_driver": verbose}
    address = address or os.environ.get("RAY_ADDRESS") or None
    temp_dir = None
    if address:
        log.info("grid: joining the Ray cluster at %s", address)
        if cpus:
            log.warning("grid: --cpus %d ignored: the cluster's nodes say what they have", cpus)
        ray.init(address=address, **quiet)
    else:
        # short path: Ray's socket paths must stay under the 107-byte Unix limit
        temp_dir = tempfile.mkdtemp(prefix="iotids-ray-")
        ray.init(num_cpus=cpus, include_dashboard=False, _temp_dir=temp_dir, **quiet)
    res = ray.cluster_resources()
    log.info("grid: Ray %s, %g CPUs, %g GPUs", ray.__version__, res.get("CPU", 0), res.get("GPU", 0))
    try:
        yield res
    finally:
        ray.shutdown()
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _tune(
    profile: Profile,
    out_dir: Path,
    name: str,
    pending: list[dict[str, Any]],
    address: str | None,
    cpus: int | None,
    storage: str | None,
    scheduler: str,
) -> None:
    """Restore experiment ``name`` if it was interrupted, else start it for ``pending``; finished trials are
    appended to ``grid.jsonl`` as they finish (:class:`TrialLog`)."""
    from trainer.pipeline import prepare

    storage_path = storage or str((out_dir / "tune").resolve())
    res = profile.grid.trial_resources
    with ray_session(address, cpus) as cluster:
        for kind, need in (("CPU", res.cpu), ("GPU", res.gpu)):
            if need > cluster.get(kind, 0):
                raise ValueError(
                    f"grid.trial_resources.{kind.lower()}: a trial needs {need:g} {kind}s, "
                    f"the Ray cluster has {cluster.get(kind, 0):g}"
                )
        prep = prepare(profile, out_dir / "data")
        trainable = tune.with_resources(  # the windows go to the object store once; every trial reads them there
            tune.with_parameters(_trial, profile=profile, train=prep.train, test=prep.test),
            {"cpu": res.cpu, "gpu": res.gpu},
        )
        path = f"{storage_path.rstrip('/')}/{name}"
        if tune.Tuner.can_restore(path):
            log.info("grid: resuming the interrupted experiment %s (finished trials are kept)", path)
            tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, restart_errored=True)
        else:
            log.info("grid: experiment %s, %d trials, %g CPU / %g GPU each", path, len(pending), res.cpu, res.gpu)
            tuner = tune.Tuner(
                trainable,
                param_space={"params": tune.grid_search(pending)},
                tune_config=tune.TuneConfig(
                    scheduler=_scheduler(scheduler, profile.grid.epochs),
                    trial_name_creator=_trial_name,
                    trial_dirname_creator=_trial_name,
                ),
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=storage_path,
                    failure_config=tune.FailureConfig(max_failures=profile.grid.max_failures),
                    callbacks=[TrialLog(out_dir)],
                    verbose=0,
                ),
            )
        results = tuner.fit()
    # a trial Tune has as finished but grid.jsonl lacks (the file was edited, or lost its line): record it now
    recorded = load_results(out_dir / RESULTS)
    for result in results:
        record = (result.metrics or {}).get("record") if result.error is None else None
        if record and record["key"] not in recorded:
            _append(out_dir / RESULTS, record)


def _scheduler(name: str, epochs: int) -> Any:
    if name == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration", metric="val_accuracy", mode="max", max_t=epochs, grace_period=1
    )


def _trial_name(trial: Any) -> str:
    p = trial.config["params"]
    combo = f"lr{p['learning_rate']}_{p['optimizer']}_l{p['num_layers']}_d{p['num_dense_layers']}_b{p['batch_size']}"
    return f"{trial.trial_id}_{combo}"


def _record(params: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """The grid.jsonl line of a trial from its last reported metrics (a trial ASHA stopped has no test metrics)."""
    if "record" in metrics:
        return metrics["record"]
    return {
        "key": combo_key(params),
        "params": params,
        "val_accuracy": metrics["val_accuracy"],
        "val_auc": None,
        "validation": None,
        "test": None,
        "history": None,
        "stopped_at_epoch": metrics.get("training_iteration"),
        "seconds": round(metrics.get("time_total_s", 0.0), 1),
    }


def _trial(config: dict[str, Any], *, profile: Profile, train: Any, test: Any) -> None:
    """One combination: train ``grid.epochs`` epochs, report each epoch, the last report carries the record."""
    cpus = max(1, int(profile.grid.trial_resources.cpu))
    tf_threads = _limit_tensorflow_threads(cpus)

    from tensorflow import keras

    from trainer.evaluate import binary_metrics
    from trainer.train import predict, train_model, validation_split

    params = config["params"]
    epochs = profile.grid.epochs
    _, val = validation_split(train, profile.train.validation_split, profile.seed)  # the part train_model holds out

    class EpochReport(keras.callbacks.Callback):
        """Every epoch but the last goes to Tune (progress; ASHA decides on it); the last one is reported below."""

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            if epoch + 1 < epochs:
                logs = logs or {}
                tune.report({"epoch": epoch + 1, "val_accuracy": float(logs.get("val_accuracy", 0.0))})

    start = time.perf_counter()
    cfg = dataclasses.replace(
        profile.train,
        epochs=epochs,
        batch_size=params["batch_size"],
        learning_rate=params["learning_rate"],
        optimizer=params["optimizer"],
    )
    trained = train_model(
        profile.model.name,
        train,
        cfg,
        Path(tune.get_context().get_trial_dir()),
        seed=profile.seed,
        verbose=0,
        early_stopping=False,
        extra_callbacks=(EpochReport(),),
        num_layers=params["num_layers"],
        dense=(128, 64)[: params["num_dense_layers"]],
    )
    val_m = binary_metrics(val.y, predict(trained.model, val))
    test_m = binary_metrics(test.y, predict(trained.model, test))
    record = {
        "key": combo_key(params),
        "params": params,
        "val_accuracy": val_m["accuracy"],
        "val_auc": val_m["roc_auc"],
        "validation": val_m,
        "test": test_m,
        "history": trained.history,
        "seconds": round(time.perf_counter() - start, 1),
        "tf_threads": tf_threads,
    }
    tune.report({"epoch": epochs, "val_accuracy": val_m["accuracy"], "record": record})


def _limit_tensorflow_threads(cpus: int) -> list[int]:
    """TensorFlow in a trial uses the trial's CPUs, not the machine's (set before TF's first op); returns the
    intra- and inter-op thread counts in force."""
    import tensorflow as tf

    threading = tf.config.threading
    try:
        threading.set_intra_op_parallelism_threads(cpus)
        threading.set_inter_op_parallelism_threads(cpus)
    except RuntimeError:  # TF already initialised in this worker process (a reused actor): keep its setting
        log.debug("TensorFlow threads already set in this worker")
    return [threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()]


class TrialLog(tune.Callback):
    """In the driver: a finished trial's record goes to ``grid.jsonl`` at once; one logged line per trial event
    (start, retry, done, error) also goes to ``grid-trials.log``; epoch progress is logged."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def _line(self, event: str, trial: Any, detail: str = "") -> None:
        key = combo_key(trial.config["params"])
        with (self.out_dir / TRIALS_LOG).open("a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {event} {key} {detail}\n")
        log.info("grid: %s %s %s", event, key, detail)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line("start", trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line("retry", trial, f"(failure {trial.run_metadata.num_failures})")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "record" not in result:
            key = combo_key(trial.config["params"])
            log.info("grid: %s epoch %s val_accuracy %.4f", key, result.get("epoch"), result.get("val_accuracy", 0))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        r = trial.last_result or {}
        _append(self.out_dir / RESULTS, _record(trial.config["params"], r))  # before Tune saves its state
        finished = 1 + sum(t.status == "TERMINATED" for t in trials if t is not trial)  # restored ones too
        self._line("done", trial, f"val_accuracy {r.get('val_accuracy', 0.0):.4f} ({finished}/{len(trials)})")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line("error", trial, f"(after {trial.run_metadata.num_failures} failures)")


def write_table(ranked: list[dict[str, Any]], path: Path) -> str:
    """The ranked results as a markdown table (best first; combinations ASHA stopped early last, without test)."""
    lines = [
        "| rank | "
        + " | ".join(PARAMS)
        + " | val acc | val AUC | test acc | test precision | test recall | test AUC | s |",
        "|---" * (len(PARAMS) + 8) + "|",
    ]
    for i, r in enumerate(ranked, 1):
        t = r["test"]
        if t is None:
            test_cols = f"stopped at epoch {r.get('stopped_at_epoch')} | – | – | –"
        else:
            test_cols = " | ".join(_num(t[k]) for k in ("accuracy", "precision", "recall", "roc_auc"))
        lines.append(
            f"| {i} | "
            + " | ".join(str(r["params"][k]) for k in PARAMS)
            + f" | {r['val_accuracy']:.4f} | {_num(r['val_auc'])} | {test_cols} | {r['seconds']} |"
        )
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"
