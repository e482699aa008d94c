"""``iotids-train adapt``: site benign flows from the reference CICFlowMeter on the shared real captures.

One session fixture runs the reference tool on ``../shared/pcaps`` (IoTID20-like timeouts) and trains twice:
the IoTID20 baseline and the site-adapted quick model (no learning-curve points: they are trainings too).
Measured on the dev VM (seed 42, 192 site flows, 58 held out): held-out site false-positive rate 96.6 % →
8.6 %; IoTID20 test detection DoS 99.0 %, MITM 98.4 %, Mirai 99.5 %, Scan 100 %; IoTID20 Normal FPR 8.0 %.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from trainer.cli import main
from trainer.data import DataError
from trainer.pipeline import IOTID20_SOURCE, source_weights
from trainer.site_data import learning_prefix, load_site_csv, load_site_files, split_in_time, thin_attacks

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("IOTID20_SHARED_DIR", REPO.parent / "shared"))
PCAPS = SHARED / "pcaps"
REFERENCE = SHARED / "tools" / "cicflowmeter" / "run.sh"
SITE_FILES = "*_Flow.csv"


@pytest.fixture(scope="session")
def site_csvs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The reference flow meter's CSVs of the shared captures (100 ms flows, 1 ms activity timeout)."""
    if shutil.which("java") is None or not REFERENCE.exists() or not PCAPS.is_dir():
        pytest.skip("java, the reference CICFlowMeter or the shared pcaps are missing")
    out = tmp_path_factory.mktemp("site_flows")
    env = {**os.environ, "TZ": "UTC", "CFM_FLOW_TIMEOUT": "100000", "CFM_ACTIVITY_TIMEOUT": "1000"}
    proc = subprocess.run(
        [str(REFERENCE), str(PCAPS), str(out)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = sorted(out.glob(SITE_FILES))
    assert files, proc.stdout[-2000:]
    return files


@dataclass(frozen=True)
class SiteRun:
    out: Path
    summary: dict[str, Any]

    @property
    def site(self) -> dict[str, Any]:
        return self.summary["site_adaptation"]

    def rate(self, model: str, group: str) -> float:
        g = self.site["heldout"][model][group]
        return g["false_positive_rate"] if g["benign"] else g["detection_rate"]


@pytest.fixture(scope="session")
def site_run(site_csvs: list[Path], sample_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> SiteRun:
    """Baseline + site-adapted quick model on the real sample and the shared captures' flows (2 trainings)."""
    from trainer.config import load_profile
    from trainer.site_adapt import adapt

    out = tmp_path_factory.mktemp("site_run") / "site"
    profile = load_profile("quick", overrides=[f"data={sample_csv}"])
    summary = adapt(profile, out, site_benign=site_csvs, holdout=0.3, curve=(), model_version="test-site")
    return SiteRun(out, summary)


# --------------------------------------------------------------------------- loading and splitting (no training)


def test_reference_csv_loads_as_normal_rows_with_iotid20_names(site_csvs: list[Path]) -> None:
    raw = pd.read_csv(site_csvs[0], nrows=0).columns
    assert "Flow Byts/s" in raw  # the reference's own spelling
    frame, counts = load_site_files(site_csvs)
    assert len(frame) > 150 and set(frame["category"]) == {"Normal"} and (frame["y"] == 0).all()
    assert {"Flow_Byts/s", "Tot_Fwd_Pkts", "Init_Fwd_Win_Byts", "timestamp", "source", "file_row"} <= set(frame)
    assert frame["timestamp"].notna().all()
    assert sum(c["rows"] for c in counts) == len(frame)


def test_cat_column_names_the_category_and_anomaly_without_cat_is_refused(site_csvs: list[Path], tmp_path) -> None:
    src = pd.read_csv(site_csvs[-1])
    labelled = src.assign(Cat=["Scan"] * (len(src) - 1) + [""])
    labelled.to_csv(tmp_path / "lab.csv", index=False)
    table = load_site_csv(tmp_path / "lab.csv")
    assert table.frame["category"].tolist() == ["Scan"] * (len(src) - 1) + ["Normal"]
    assert table.frame["y"].tolist() == [1] * (len(src) - 1) + [0]
    src.assign(Label="Anomaly").to_csv(tmp_path / "anomaly.csv", index=False)
    with pytest.raises(DataError, match="without a Cat column"):
        load_site_csv(tmp_path / "anomaly.csv")


def test_hold_out_is_the_later_traffic_of_every_file(site_csvs: list[Path]) -> None:
    frame, _ = load_site_files(site_csvs)
    split = split_in_time(frame, 0.3)
    assert len(split.learn) + len(split.held) == len(frame)
    for src, held in split.held.groupby("source"):
        learn = split.learn[split.learn["source"] == src]
        assert len(held) == len(learn) + len(held) - round((len(learn) + len(held)) * 0.7)
        assert learn["timestamp"].max() <= held["timestamp"].min(), src
    prefix = learning_prefix(split.learn, 0.25)
    for src, part in prefix.groupby("source"):
        full = split.learn[split.learn["source"] == src]
        assert len(part) == max(1, round(len(full) * 0.25))
        assert part["timestamp"].max() <= full["timestamp"].sort_values().iloc[len(part) - 1]


def test_every_attack_type_of_a_lab_file_is_on_both_sides(site_csvs: list[Path], tmp_path: Path) -> None:
    src = max((pd.read_csv(f) for f in site_csvs), key=len)
    half = len(src) // 2
    src.assign(Cat="Scan", Sub_Cat=["Scan Hostport"] * half + ["Scan Port OS"] * (len(src) - half)).to_csv(
        tmp_path / "lab.csv", index=False
    )
    split = split_in_time(load_site_csv(tmp_path / "lab.csv").frame, 0.3)
    for part in (split.learn, split.held):
        assert set(part["sub_category"]) == {"Scan Hostport", "Scan Port OS"}


def test_attack_types_are_thinned_evenly_over_time_and_benign_rows_kept() -> None:
    n = 1000
    frame = pd.DataFrame(
        {
            "source": "lab:l.csv",
            "category": ["Normal"] * n + ["DoS"] * n,
            "sub_category": ["Normal"] * n + ["DoS-Synflooding"] * n,
            "timestamp": pd.Timestamp("2026-12-05") + pd.to_timedelta(np.r_[np.arange(n), np.arange(n)], unit="s"),
            "file_row": np.arange(2 * n),
        }
    )
    thin = thin_attacks(frame, 10)
    assert (thin["category"] == "Normal").sum() == n
    dos = thin[thin["category"] == "DoS"]
    assert len(dos) == 10 and dos["file_row"].iloc[0] == n and dos["file_row"].iloc[-1] == 2 * n - 1


def test_site_rows_carry_their_share_of_each_class_weight() -> None:
    frame = pd.DataFrame({"y": [0] * 80 + [1] * 320 + [0] * 10, "source": [IOTID20_SOURCE] * 400 + ["site.csv"] * 10})
    w = source_weights(frame, 0.5)
    site, benign = frame["source"].ne(IOTID20_SOURCE).to_numpy(), frame["y"].eq(0).to_numpy()
    assert w[benign].sum() == pytest.approx(90) and w[~benign].sum() == pytest.approx(320)
    assert w[site].sum() == pytest.approx(45) and w[benign & ~site].sum() == pytest.approx(45)
    assert np.all(w[~benign] == 1.0)
    with pytest.raises(ValueError, match="extra_share"):
        source_weights(frame, 1.0)


def test_rates_per_group() -> None:
    from trainer.site_adapt import rates

    frame = pd.DataFrame(
        {
            "role": ["site"] * 4 + ["lab"] * 3 + ["iotid20"] * 2 + ["other"] * 2,
            "source": ["a.csv"] * 4 + ["lab:l.csv"] * 3 + ["IoTID20 test"] * 2 + ["other:o.csv"] * 2,
            "category": ["Normal"] * 4 + ["Normal", "Scan", "Scan"] + ["Normal", "DoS"] + ["Normal", "Normal"],
        }
    )
    flagged = np.array([1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0], dtype=bool)
    r = rates(frame, flagged)
    assert r["site benign (all held-out)"] == {"n": 5, "flagged": 2, "benign": True, "false_positive_rate": 0.4}
    assert r["site benign: a.csv"]["false_positive_rate"] == 0.25
    assert r["lab attack: Scan"] == {"n": 2, "flagged": 1, "benign": False, "detection_rate": 0.5}
    assert r["IoTID20 test: Normal"]["false_positive_rate"] == 0.0 and r["IoTID20 test: DoS"]["detection_rate"] == 1
    assert r["not trained on: benign (all)"]["false_positive_rate"] == 0.5
    assert "not trained on: other:o.csv / Normal" in r


def test_adapt_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["adapt", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: iotids-train adapt")
    flags = ("--site-benign", "--site-attacks", "--also-score", "--data", "--holdout", "--baseline", "--curve", "--out")
    for flag in flags:
        assert flag in out


def test_adapt_without_site_data_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["adapt", "--out", str(tmp_path / "site")]) == 2
    assert "no site data" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()


# --------------------------------------------------------------------------- the trained pair


@pytest.mark.timeout(900)
def test_adapted_model_has_fewer_false_alarms_on_held_out_site_traffic(site_run: SiteRun) -> None:
    before = site_run.rate("IoTID20 model", "site benign (all held-out)")
    after = site_run.rate("site-adapted", "site benign (all held-out)")
    assert site_run.site["site"]["held_rows"] >= 50
    assert before >= 0.8  # measured 0.966: the IoTID20 model calls the real captures attacks
    assert after <= 0.25 and after < before - 0.5  # measured 0.086


@pytest.mark.timeout(900)
def test_adapted_model_still_detects_iotid20_attacks(site_run: SiteRun) -> None:
    groups = site_run.site["heldout"]["site-adapted"]
    attacks = [g for g, v in groups.items() if g.startswith("IoTID20 test:") and not v["benign"]]
    assert len(attacks) == 4
    for g in attacks:
        assert site_run.rate("site-adapted", g) >= 0.95, g  # measured 0.984–1.0
    assert site_run.rate("site-adapted", "IoTID20 test: Normal") <= 0.15  # measured 0.080


@pytest.mark.timeout(900)
def test_adapted_run_is_an_ordinary_run_directory(site_run: SiteRun) -> None:
    from firmware_bundle import keys
    from firmware_bundle.builder import build_from_artifacts
    from firmware_bundle.model_check import inspect_model
    from firmware_bundle.verifier import verify_bundle

    created = datetime.now(UTC)
    key = keys.generate_private_key()
    data = build_from_artifacts(
        site_run.out,
        bundle_version=1,
        created=created,
        expires=created + timedelta(days=30),
        sign_key=key,
        inspect_model=inspect_model,
    )
    v = verify_bundle(
        data,
        trusted_keys=[key.public_key()],
        now=created + timedelta(minutes=1),
        highest_installed=0,
        agent_version="0.1.0",
        inspect_model=inspect_model,
    )
    assert v.manifest.model_version == "test-site"
    assert site_run.site["baseline_same_iotid20_split"]
    spec = json.loads((site_run.out / "spec.json").read_text())
    assert spec["extra"]["site_adapted"]["holdout"] == 0.3
    report = (site_run.out / "report.md").read_text()
    assert "## Site adaptation" in report and "| site benign (all held-out) (false positives) |" in report
    assert (site_run.out / "site_learning_curve.png").stat().st_size > 1000
    curve = json.loads((site_run.out / "report.json").read_text())["site_adaptation"]["learning_curve"]
    assert [p["fraction"] for p in curve] == [0.0, 1.0]
    assert curve[0]["heldout_site_fpr"] > curve[1]["heldout_site_fpr"]
