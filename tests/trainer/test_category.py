"""The attack-category model of the quick run: exported int8 with its spec, accurate on the flows the shipped
model flags, in the report, and carried and self-tested by a firmware bundle (real LiteRT, real installer)."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from ota_helpers import make_keypair, npy, utcnow

from agent import __version__ as AGENT_VERSION
from agent.category import UNCERTAIN, CategoryModel
from agent.install import Installer
from agent.scorer import Scorer
from agent.slots import SlotStore
from firmware_bundle.builder import build_bundle, build_from_artifacts
from firmware_bundle.errors import ManifestError
from firmware_bundle.limits import Limits
from firmware_bundle.model_check import inspect_model
from firmware_bundle.verifier import read_members
from ids_core import artifacts
from ids_core.category import CATEGORY_SPEC_FORMAT, CATEGORY_SPEC_FORMAT_CODES, CategorySpec, ClassCodes
from ids_core.interpreter import TFLiteModel
from ids_core.preprocess import SpecError
from trainer.category import fit_class_codes, newest_raw, newest_vectors, out_of_fold_inputs

pytestmark = pytest.mark.timeout(1800)

MIN_FLAGGED_ACCURACY = 0.95
CLASSES = ("DoS", "MITM ARP Spoofing", "Mirai", "Scan")


# --------------------------------------------------------------------------- class codes and the spec format


def test_class_codes_are_smoothed_category_shares_per_value() -> None:
    x = np.array([443, 443, 443, 9020, 9020, 53190, np.nan])
    y = np.array([1, 1, 3, 3, 3, 2, 0])
    codes = ClassCodes.fit(x, y, 4, min_count=2, smoothing=2.0)
    prior = np.bincount(y, minlength=4) / len(y)
    assert codes.values.tolist() == [443.0, 9020.0]  # 53190 seen once (< min_count), NaN never a value
    assert np.allclose(codes.codes[0], np.round((np.array([0, 2, 0, 1]) + 2 * prior) / 5, 6))
    got = codes.transform(np.array([9020, 53190, np.inf, np.nan, 443]))
    assert np.allclose(got[0], codes.codes[1]) and np.allclose(got[4], codes.codes[0])
    assert all(np.allclose(got[i], codes.default) for i in (1, 2, 3))  # rare, ±inf, NaN → the class shares
    assert np.allclose(ClassCodes.fit(x, y, 4, min_count=1, smoothing=0.0).transform(np.array([53190.0])), [0, 0, 1, 0])


def _spec(**kw) -> CategorySpec:
    codes = ClassCodes(
        np.array([80.0, 443.0]), np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]]), np.full(4, 0.25)
    )
    base = dict(classes=CLASSES, features=("Dst_Port", "Flow_Duration"), transform_sha256="a" * 64,
                class_codes={"Dst_Port": codes})  # fmt: skip
    return CategorySpec(**(base | kw))


def test_spec_with_class_codes_is_format_3_and_appends_codes_to_the_main_vector() -> None:
    spec = _spec()
    assert spec.input_shape == (2 + 4,)
    doc = spec.to_dict()
    assert doc["format"] == CATEGORY_SPEC_FORMAT_CODES and doc["input"]["shape"] == [6]
    again = CategorySpec.from_bytes(spec.to_json().encode())
    vectors, raw = np.array([[0.5, 0.1], [0.2, 0.3]], np.float32), np.array([[443.0, 7.0], [1.0, 9.0]])
    x = again.model_input(vectors, raw)
    assert x.dtype == np.float32 and x.shape == (2, 6)
    assert (
        np.allclose(x[:, :2], vectors) and np.allclose(x[0, 2:], [0.7, 0.1, 0.1, 0.1]) and np.allclose(x[1, 2:], 0.25)
    )
    with pytest.raises(ValueError, match="raw values"):
        again.model_input(vectors)  # class codes need the raw port values


def test_spec_format_2_without_codes_still_reads_and_format_1_or_misplaced_codes_are_refused() -> None:
    plain = _spec(class_codes={})
    doc = plain.to_dict()
    assert doc["format"] == CATEGORY_SPEC_FORMAT and "class_codes" not in doc  # older gateways read it
    assert CategorySpec.from_dict(doc).input_shape == (2,)
    vectors = np.ones((1, 2), np.float32)
    assert np.array_equal(CategorySpec.from_dict(doc).model_input(vectors), vectors)
    with pytest.raises(SpecError, match="format must be one of"):
        CategorySpec.from_dict(doc | {"format": "edge-ids/category-spec/1"})
    with pytest.raises(SpecError, match="class codes belong to format"):
        CategorySpec.from_dict(doc | {"class_codes": _spec().to_dict()["class_codes"]})
    with pytest.raises(SpecError, match="among the features"):
        _spec(features=("Src_Port", "Flow_Duration"))
    bad = _spec().to_dict()
    bad["class_codes"]["Dst_Port"]["codes"] = [[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]  # 3 classes for 4
    with pytest.raises(SpecError):
        CategorySpec.from_dict(bad)


def test_training_rows_get_out_of_fold_codes() -> None:
    """A training row's codes never come from its own label: a port seen once gets the class shares."""
    rng = np.random.default_rng(0)
    raw = np.column_stack([np.arange(100.0), rng.random(100)])  # every Dst_Port value once
    y = rng.integers(0, 4, 100)
    codes = fit_class_codes(raw, y, ("Dst_Port", "Flow_Duration"), 4)
    spec = _spec(class_codes=codes)
    x = out_of_fold_inputs(spec, raw.astype(np.float32), raw, y, seed=1)
    assert np.allclose(x[:, 2:].sum(1), 1.0, atol=1e-5)
    in_sample = spec.model_input(raw.astype(np.float32), raw)
    assert (in_sample[np.arange(100), 2 + y] > 0.4).all()  # fitted on all rows, each row's code names its label
    assert (x[np.arange(100), 2 + y] < 0.4).all()  # out of fold: it cannot (the class shares)


@pytest.fixture(scope="module")
def flagged(quick_run):
    """The test split's flows the shipped int8 model flags: (true categories, the agent's categories)."""
    spec = quick_run.spec()
    main = TFLiteModel(quick_run.model_path)
    scores = main.predict(quick_run.prep.test.windows())
    over = np.flatnonzero(scores > spec.threshold)
    category = CategoryModel.load(quick_run.out_dir, spec)
    assert category is not None
    prep = quick_run.prep
    raw = newest_raw(prep.test_frame, prep.test, prep.selection.transform, over)
    found = category.classify(newest_vectors(prep.test, over), raw)
    return quick_run.prep.test.category[over].astype(str), found


def test_category_model_is_full_integer_int8_with_a_spec_on_the_main_input(quick_run):
    out = quick_run.out_dir
    assert all((out / n).is_file() for n in artifacts.CATEGORY_FILES)
    spec = CategorySpec.load(out / artifacts.CATEGORY_SPEC)
    spec.check_against(quick_run.spec())  # same features, same transform
    assert set(spec.classes) == {"DoS", "MITM ARP Spoofing", "Mirai", "Scan"}
    model = TFLiteModel(out / artifacts.CATEGORY_MODEL)
    assert model.is_int8 and model.output_dtype == np.int8
    assert model.input_shape == spec.input_shape and model.output_shape == spec.output_shape
    assert model.op_summary()["float_tensors"] == []
    x = np.load(out / artifacts.CATEGORY_SELFTEST_INPUTS)
    assert np.array_equal(model.invoke_raw(x), np.load(out / artifacts.CATEGORY_SELFTEST_OUTPUTS))


def test_category_accuracy_on_the_flows_the_model_flags(quick_run, flagged):
    truth, found = flagged
    attack = truth != "Normal"  # a flagged benign flow (false alarm) has no right attack category
    names = np.array([c.name for c in found])
    confident = np.array([c.confident for c in found])
    sure = attack & confident
    accuracy = float((names[sure] == truth[sure]).mean())
    coverage = float(sure.sum() / attack.sum())
    summary = quick_run.summary["category"]["flagged"]
    assert summary["confident_accuracy"] == pytest.approx(accuracy)  # the agent's classes = the report's
    assert accuracy >= MIN_FLAGGED_ACCURACY, f"category accuracy {accuracy:.4f} on {sure.sum()} confident flows"
    assert coverage >= 0.8, f"only {coverage:.1%} of the flagged attacks get a confident category"
    every = float((names[attack] == truth[attack]).mean())  # best guesses included (bench/results/category.md)
    assert every == pytest.approx(summary["accuracy"])
    assert every >= MIN_FLAGGED_ACCURACY, f"category accuracy {every:.4f} on all {attack.sum()} flagged attacks"
    mirai = attack & (truth == "Mirai")
    assert (names[mirai] == "Mirai").mean() >= 0.5  # the best guess
    assert all(c.alert_attack[0] == (c.name if c.confident else f"{c.name} {UNCERTAIN}") for c in found)


def test_report_has_the_per_category_confusion_matrix(quick_run):
    text = (quick_run.out_dir / "report.md").read_text()
    assert "## Attack category" in text
    assert "Confusion, flagged attack flows (rows: true, columns: predicted):" in text
    c = quick_run.summary["category"]
    matrix = np.array(c["flagged"]["confusion"]["matrix"])
    assert matrix.sum() == c["flagged"]["attacks"] and np.trace(matrix) / matrix.sum() == pytest.approx(
        c["flagged"]["accuracy"]
    )
    assert c["size_bytes"] == (quick_run.out_dir / artifacts.CATEGORY_MODEL).stat().st_size


# --------------------------------------------------------------------------- the firmware bundle


def _installer(root: Path, public_key, events: list) -> Installer:
    return Installer(
        SlotStore(root), trusted_keys=[public_key], agent_version=AGENT_VERSION, limits=Limits(),
        probation_seconds=0.0, probation_min_windows=8, status=events.append,
    )  # fmt: skip


def _bundle(files: dict[str, bytes], version: int, key) -> bytes:
    created = utcnow() - timedelta(minutes=1)
    return build_bundle(files, bundle_version=version, model_name="uni-hybrid", model_version="test-quick",
                        created=created, expires=created + timedelta(days=1), sign_key=key)  # fmt: skip


def test_bundle_carries_and_self_tests_the_category_model(quick_run, tmp_path):
    keypair = make_keypair(tmp_path / "keys")
    created = utcnow() - timedelta(minutes=1)
    data = build_from_artifacts(quick_run.out_dir, bundle_version=1, created=created,
                                expires=created + timedelta(days=1), sign_key=keypair.private,
                                inspect_model=inspect_model)  # fmt: skip
    members = {m.name: m.data for m in read_members(data)}
    assert set(artifacts.CATEGORY_FILES) <= set(members)
    events: list = []
    installer = _installer(tmp_path / "models", keypair.public, events)
    installed = installer.install(data, load=Scorer.load)
    assert installed is not None, events[-1]
    assert installed.scorer.category is not None and installed.scorer.category.spec.classes

    # a tampered category self-test vector (one expected int8 output off by one step): rejected, nothing switched
    want = np.load(io.BytesIO(members[artifacts.CATEGORY_SELFTEST_OUTPUTS]))
    want[0, 0] = want[0, 0] - 1 if want[0, 0] > -128 else want[0, 0] + 1
    files = {n: b for n, b in members.items() if n not in (artifacts.MANIFEST, artifacts.SIGNATURE)}
    assert installer.install(_bundle(files | {artifacts.CATEGORY_SELFTEST_OUTPUTS: npy(want)}, 2, keypair.private),
                             load=Scorer.load) is None  # fmt: skip
    assert (events[-1]["event"], events[-1]["reason"]) == ("rejected", "selftest_failed")
    assert "category model" in events[-1]["detail"]
    assert installer.state.active == 1

    # an older-style bundle without a category model installs; its model has no category
    plain = {n: b for n, b in files.items() if n not in artifacts.CATEGORY_FILES}
    installed = installer.install(_bundle(plain, 3, keypair.private), load=Scorer.load)
    assert installed is not None and installed.scorer.category is None

    # half a category model is not a bundle
    with pytest.raises(ManifestError, match="or none"):
        _bundle(plain | {artifacts.CATEGORY_MODEL: members[artifacts.CATEGORY_MODEL]}, 4, keypair.private)
