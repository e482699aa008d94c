"""The Table II grid search on Ray Tune (trainer/grid.py): selection, experiment identity, result format, and a
2-combination grid on a local Ray (2 CPUs) that is SIGKILLed after its first trial and resumed without repeating it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from trainer.config import ConfigError, load_profile
from trainer.grid import (
    PARAMS,
    RESULTS,
    TABLE,
    TRIALS_LOG,
    _append,
    combinations,
    combo_key,
    experiment_name,
    load_results,
    rank,
    run_grid,
    select,
    write_table,
)

REPO = Path(__file__).resolve().parents[2]
ONLY = "learning_rate=0.001,num_layers=1,num_dense_layers=1,batch_size=256"
# tiny: 2,000 synthetic rows, 1 epoch; each trial takes both CPUs, so the trials run one after the other
TINY = [
    "data=synthetic",
    "synthetic_rows=2000",
    "features.extra_trees_estimators=10",
    "grid.epochs=1",
    "grid.batch_size=[256,128]",
    "grid.trial_resources.cpu=2",
]
TINY_ONLY = "learning_rate=0.001,optimizer=adam,num_layers=1,num_dense_layers=1"


def _tiny():
    return load_profile("quick", overrides=TINY)


def _table_rows(grid_md: Path) -> list[list[str]]:
    rows = [line for line in grid_md.read_text().splitlines() if line.startswith("| ") and line[2].isdigit()]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows]


def _record(params: dict, val: float, test: dict | None = None, **extra) -> dict:
    return {"key": combo_key(params), "params": params, "val_accuracy": val, "val_auc": 0.9, "test": test, **extra}


def test_selection() -> None:
    profile = load_profile("quick")
    combos = combinations(profile)
    assert len(combos) == 2 * 3 * 3 * 2 * 4 == 144
    chosen = select(combos, ONLY, limit=2)
    assert [c["optimizer"] for c in chosen] == ["adam", "adamax"]
    assert all(c["batch_size"] == 256 and c["num_layers"] == 1 for c in chosen)
    assert combo_key(chosen[0]) == "learning_rate=0.001,optimizer=adam,num_layers=1,num_dense_layers=1,batch_size=256"
    assert len(select(combos, "optimizer=nadam")) == 48
    with pytest.raises(ValueError, match="unknown parameter"):
        select(combos, "epochs=3")


def test_grid_settings_and_experiment_identity() -> None:
    profile = load_profile("quick")
    g = profile.grid
    assert (g.trial_resources.cpu, g.trial_resources.gpu, g.max_failures, g.scheduler) == (1.0, 0.0, 2, "none")
    assert load_profile("paper").grid.scheduler == "none"  # paper-faithful: every combination all epochs
    with pytest.raises(ConfigError, match=r"grid\.scheduler"):
        load_profile("quick", overrides=["grid.scheduler=hyperband"])
    with pytest.raises(ConfigError, match=r"grid\.trial_resources\.gpu"):
        load_profile("quick", overrides=["grid.trial_resources.gpu=-1"])
    combos = select(combinations(profile), ONLY)
    name = experiment_name(profile, combos)
    assert name == experiment_name(profile, list(combos)) and name.startswith("grid-")
    # resources, retries and the scheduler do not change what is computed: the same experiment is restored
    runtime = dataclasses.replace(
        g, trial_resources=dataclasses.replace(g.trial_resources, cpu=4), max_failures=0, scheduler="asha"
    )
    assert experiment_name(dataclasses.replace(profile, grid=runtime), combos) == name
    # another selection, other data or another epoch count is another experiment
    assert experiment_name(profile, combos[:1]) != name
    assert experiment_name(dataclasses.replace(profile, data="synthetic"), combos) != name
    assert experiment_name(dataclasses.replace(profile, grid=dataclasses.replace(g, epochs=1)), combos) != name


def test_results_file_and_ranked_table(tmp_path: Path) -> None:
    """grid.jsonl survives a torn last line; the table ranks by validation, ASHA-stopped combinations last."""
    a, b, c = select(combinations(load_profile("quick")), ONLY, limit=3)
    test = {"accuracy": 0.97, "precision": 0.96, "recall": 0.99, "roc_auc": 0.98}
    path = tmp_path / RESULTS
    path.write_text('{"key": "torn')  # a kill mid-write
    _append(path, _record(a, 0.95, test, seconds=3.0))
    _append(path, _record(b, 0.97, test, seconds=4.0))
    _append(path, {**_record(c, 0.99, None, stopped_at_epoch=1, seconds=1.0), "val_auc": None})
    done = load_results(path)
    assert sorted(done) == sorted(combo_key(p) for p in (a, b, c))
    write_table(rank(list(done.values())), tmp_path / TABLE)
    rows = _table_rows(tmp_path / TABLE)
    assert [row[0] for row in rows] == ["1", "2", "3"]
    assert [row[1 + len(PARAMS)] for row in rows] == ["0.9700", "0.9500", "0.9900"]
    assert rows[0][1 + len(PARAMS) + 2 : 1 + len(PARAMS) + 6] == ["0.9700", "0.9600", "0.9900", "0.9800"]
    assert rows[2][1 + len(PARAMS) + 1 :] == ["–", "stopped at epoch 1", "–", "–", "–", "1.0"]


def _grid_cmd(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "trainer.cli",
        "grid",
        *[a for s in TINY for a in ("--set", s)],
        "--only",
        TINY_ONLY,
        "--cpus",
        "2",
        "--out",
        str(out),
    ]


def _terminated_trials(tune_dir: Path) -> list[dict]:
    """Trials Ray Tune has recorded as finished in its experiment state (what Tuner.restore reads)."""
    done = []
    for state in tune_dir.glob("grid-*/experiment_state-*.json"):
        try:
            trials = [json.loads(t[0]) for t in json.loads(state.read_text())["trial_data"]]
        except (json.JSONDecodeError, KeyError, IndexError, OSError):
            continue  # being written
        done += [t for t in trials if t["status"] == "TERMINATED"]
    return done


def _events(trials_log: Path, event: str, key: str) -> int:
    return sum(line.split()[1:3] == [event, key] for line in trials_log.read_text().splitlines())


def _trial_workers(driver: int) -> list[psutil.Process]:
    """The Ray worker processes running a trial, among the driver's descendants (its local Ray)."""
    found = []
    with contextlib.suppress(psutil.Error):
        for proc in psutil.Process(driver).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if " ".join(proc.cmdline()).startswith("ray::ImplicitFunc"):
                    found.append(proc)
    return found


def _kill_leftovers(marker: str, group: int) -> None:
    """Ray processes of this test only: those whose command line names its private temp dir, and its group."""
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                proc.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


@pytest.mark.timeout(600)
def test_killed_grid_resumes_without_repeating_finished_trials(tmp_path: Path) -> None:
    """SIGKILL `iotids-train grid` once Ray has recorded one trial as finished; the same command restores the
    experiment (Tuner.restore), runs only the other trial (retried once after its worker is killed) and prints the
    ranked table of both."""
    out = tmp_path / "grid"
    trials_log = out / TRIALS_LOG
    ray_tmp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # short: Ray's socket paths have a 107-byte limit
    # TUNE_GLOBAL_CHECKPOINT_S 0: Tune writes its experiment state every step, not every ≥ 10 s ("auto"), so the
    # first trial is recorded as finished while the second still runs (two tiny trials can both end within 10 s)
    env = {**os.environ, "TMPDIR": ray_tmp, "TF_CPP_MIN_LOG_LEVEL": "2", "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    env.pop("RAY_ADDRESS", None)
    started = time.monotonic()
    resumed: subprocess.Popen[str] | None = None
    proc = subprocess.Popen(
        _grid_cmd(out), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (finished := _terminated_trials(out / "tune")):
            assert proc.poll() is None, f"grid exited early ({proc.returncode}): {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no trial finished within 300 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        first_run_s = time.monotonic() - started
        assert proc.returncode == -signal.SIGKILL
        assert len(finished) == 1, "both trials finished before the kill; the test needs one unfinished"
        first = combo_key(finished[0]["config"]["params"])
        (other,) = [k for k in map(combo_key, select(combinations(_tiny()), TINY_ONLY)) if k != first]
        assert (_events(trials_log, "start", first), _events(trials_log, "done", first)) == (1, 1)
        assert _events(trials_log, "done", other) == 0
        assert list(load_results(out / RESULTS)) == [first]  # recorded as it finished

        # the resumed run; its trial's worker process is killed once (a real failure): Tune retries the trial
        starts = _events(trials_log, "start", other)
        resumed = subprocess.Popen(
            _grid_cmd(out), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while not (victims := _trial_workers(resumed.pid)) or _events(trials_log, "start", other) == starts:
            assert resumed.poll() is None, f"resumed grid exited early: {resumed.communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, "the resumed trial did not start within 300 s"
            time.sleep(0.2)
        for victim in victims:
            victim.kill()
        stdout, stderr = resumed.communicate(timeout=400)
    finally:
        for p in (proc, resumed):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=30)
            if p is not None:
                _kill_leftovers(ray_tmp, p.pid)
        proc.stderr.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    print(f"first run (to the kill) {first_run_s:.0f} s, total {time.monotonic() - started:.0f} s")
    assert resumed.returncode == 0, stderr[-3000:]
    assert "grid: 2 selected, 1 already finished (skipped), 1 to run" in stderr
    assert "resuming the interrupted experiment" in stderr
    # the finished trial was not run again; the unfinished one failed once, was retried and ran to its end once
    assert (_events(trials_log, "start", first), _events(trials_log, "done", first)) == (1, 1)
    assert (_events(trials_log, "retry", other), _events(trials_log, "done", other)) == (1, 1)
    assert _events(trials_log, "start", other) == starts + 2
    first_dir = next((out / "tune").glob(f"grid-*/{finished[0]['trial_id']}_*"))
    assert len((first_dir / "result.json").read_text().splitlines()) == 1  # one report (1 epoch), not two

    records = load_results(out / RESULTS)
    assert sorted(records) == sorted([first, other])
    for r in records.values():
        assert len(r["history"]["loss"]) == 1  # grid.epochs=1
        assert r["tf_threads"] == [2, 2]  # TensorFlow's intra/inter-op threads = the trial's 2 CPUs
        assert 0.5 < r["val_accuracy"] <= 1 and 0.5 < r["test"]["accuracy"] <= 1
        assert r["validation"]["n"] == 320 and r["test"]["n"] == 400  # 2,000 rows: 1,600 train (20% val), 400 test
    rows = _table_rows(out / TABLE)
    assert [row[0] for row in rows] == ["1", "2"]
    assert sorted(row[1 + PARAMS.index("batch_size")] for row in rows) == ["128", "256"]
    val = [float(row[1 + len(PARAMS)]) for row in rows]
    assert val == sorted(val, reverse=True)
    assert all(float(x) > 0.5 for row in rows for x in row[1 + len(PARAMS) + 2 : 1 + len(PARAMS) + 5])
    assert "| 1 | 0.001 | adam | 1 | 1 |" in stdout  # the ranked table is printed too

    # a third run finds both recorded and starts no experiment (nor Ray)
    ranked = run_grid(_tiny(), out, only=TINY_ONLY)
    assert [str(r["params"]["batch_size"]) for r in ranked] == [row[1 + PARAMS.index("batch_size")] for row in rows]
    assert len(list((out / "tune").glob("grid-*"))) == 1
