"""Triage of a segmented cohort: the review row of a by-hand case (volumes, z-scores, uncertain share, score,
flags), the sorting, the rank correlation, the training labels' volumes a fine-tuned checkpoint records, and
``review.csv`` written by ``contrastseg predict`` on a folder and joined with the true Dice by ``evaluate``."""

import csv
import math
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from cli_helpers import FAST_PREDICT, assert_refused, run_cli
from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.io import Volume
from ContrastSegLib.runtime.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ContrastSegLib.triage import SD_FLOOR, VolumeNorms, review_row, sorted_review, spearman

pytestmark = pytest.mark.usefixtures("one_torch_thread")
GEOMETRY = dict(spacing=(2.0, 2.0, 2.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))


def by_hand_case():
    """One 10×10 slice at 2 mm (a voxel is 0.008 mL): structure 1 a 5×5 square with 3 voxels of entropy 0.8,
    structure 2 predicted nowhere."""
    label = np.zeros((1, 10, 10), np.uint8)
    label[0, 2:7, 2:7] = 1
    entropy = np.zeros((1, 10, 10), np.float32)
    entropy[0, 3, 3:6] = 0.8
    return Volume(label, **GEOMETRY), Volume(entropy, **GEOMETRY)


def test_a_by_hand_review_row():
    label, entropy = by_hand_case()
    norms = VolumeNorms.from_training({1: [0.1, 0.2], 2: [0.05, 0.05]})
    row = review_row("case", label, entropy, {1: "a", 2: "b"}, norms)
    assert row["a_ml"] == pytest.approx(25 * 0.008) and row["b_ml"] == 0
    spread = abs(math.log(0.2) - math.log(0.1)) / math.sqrt(2)  # sample std of two values
    assert row["a_z"] == pytest.approx((math.log(0.2) - (math.log(0.1) + math.log(0.2)) / 2) / spread, abs=0.01)
    assert row["b_z"] == pytest.approx((math.log(0.008) - math.log(0.05)) / SD_FLOOR, abs=0.01)  # one voxel
    # region of a: 25 voxels + the 20 of its one-voxel border; 3 of them uncertain
    assert row["mean_uncertainty"] == pytest.approx(3 * 0.8 / 45, abs=1e-4)
    assert row["uncertain_fraction"] == pytest.approx(3 / 25)
    assert row["score"] == pytest.approx((3 / 25 + 1.0) / 2)  # b is missing: doubt 1
    assert row["flags"] == "b missing"


def test_a_structure_three_times_the_training_volume_is_flagged_and_doubted():
    label, entropy = by_hand_case()
    norms = VolumeNorms.from_training({1: [0.2 / 3]})  # one labeled volume: the spread is the floor
    row = review_row("case", label, entropy, {1: "a"}, norms)
    assert row["a_z"] == pytest.approx(math.log(3) / SD_FLOOR, abs=0.01)  # ≈ 5.5
    assert row["score"] == 1.0 and "a 3× the training volume" in row["flags"]


def test_without_norms_there_are_no_z_scores():
    label, entropy = by_hand_case()
    row = review_row("case", label, entropy, {1: "a"})
    assert math.isnan(row["a_z"]) and row["score"] == pytest.approx(3 / 25)
    assert VolumeNorms.from_metadata({}) is None


@pytest.mark.parametrize("stored", ["lots", [1.0], {"1": "55"}, {"1": [float("inf")]}, {"1": [-1.0]},
                                    {"1": [True]}, {"LV": [1.0]}, {"1": {"a": 1}}])
def test_a_damaged_record_of_training_volumes_is_refused(stored):
    with pytest.raises(ContrastSegError, match="model.pt: .*training_volumes_ml.*fine-tune the model again"):
        VolumeNorms.from_metadata({"training_volumes_ml": stored}, "model.pt")


def test_a_damaged_record_refuses_the_prediction_in_one_line(capsys, workspace, pairs, model):
    trained = load_checkpoint(model)
    damaged = workspace / "damaged.pt"
    save_checkpoint(Checkpoint(trained.model, {**trained.metadata, "training_volumes_ml": {"1": ["x"]}}), damaged)
    out = workspace / "never"
    assert_refused(*run_cli(capsys, "predict", "--model", damaged, "--input", pairs, "--output", out,
                            *FAST_PREDICT), str(damaged), "training_volumes_ml")
    assert not out.exists()


def test_structures_sharing_a_name_keep_their_own_columns():
    label, entropy = by_hand_case()
    row = review_row("case", label, entropy, {1: "part", 2: "part"})
    assert row["part_1_ml"] == pytest.approx(0.2) and row["part_2_ml"] == 0


def test_review_rows_are_sorted_worst_first_with_ties_by_name():
    rows = [{"case": c, "score": s} for c, s in (("b", 0.2), ("a", 0.2), ("c", 0.9), ("d", 0.0))]
    ordered = sorted_review(rows)
    assert [(r["rank"], r["case"]) for r in ordered] == [(1, "c"), (2, "a"), (3, "b"), (4, "d")]


def test_spearman():
    assert spearman([0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.5, 0.1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([0.1, 0.2], [0.9, 0.8])) and math.isnan(spearman([1, 1, 1], [0.1, 0.2, 0.3]))


def label_ml(path, value):
    image = sitk.ReadImage(str(path))
    return float((sitk.GetArrayFromImage(image) == value).sum()) * float(np.prod(image.GetSpacing())) / 1000


def test_predict_on_a_folder_writes_the_review_and_evaluate_adds_the_true_dice(capsys, workspace, pairs, model):
    metadata = load_checkpoint(model).metadata
    assert metadata["training_volumes_ml"] == {"1": [pytest.approx(label_ml(pairs / f"{c}_seg.nii.gz", 1), abs=1e-3)
                                                     for c in ("alpha", "beta")]}
    out = workspace / "predicted"
    code, _, _ = run_cli(capsys, "predict", "--model", model, "--input", pairs, "--output", out, *FAST_PREDICT)
    assert code == 0
    with open(out / "review.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["case"] for r in rows) == ["alpha", "beta"]
    assert [float(r["score"]) for r in rows] == sorted((float(r["score"]) for r in rows), reverse=True)
    norms = VolumeNorms.from_metadata(metadata)
    for row in rows:
        predicted = label_ml(row["prediction"], 1)
        assert float(row["label_1_ml"]) == pytest.approx(predicted, abs=1e-3)
        if predicted > 0:
            assert float(row["label_1_z"]) == pytest.approx(norms.z_score(1, predicted, 1.5 * 1.5 * 4 / 1000),
                                                            abs=0.01)
    references = workspace / "references"
    references.mkdir()
    for case in ("alpha", "beta"):
        shutil.copy(pairs / f"{case}_seg.nii.gz", references)
    metrics = workspace / "metrics.csv"
    code, stdout, _ = run_cli(capsys, "evaluate", "--pred", out, "--ref", references, "--out", metrics)
    assert code == 0 and "Spearman" in stdout
    with open(workspace / "metrics_review.csv", newline="") as handle:
        joined = list(csv.DictReader(handle))
    assert [r["case"] for r in joined] == [r["case"] for r in rows]
    assert all(0 <= float(r["dice"]) <= 1 and r["dice"] == r["label_1_dice"] for r in joined)
