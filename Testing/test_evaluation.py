"""Evaluation: Dice/HD95 against hand-computed values, conventions, folder matching, tables, files and overlays."""

import csv
import json
import math
import struct

import numpy as np
import pytest
import SimpleITK as sitk

from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.evaluation import (
    CASE_COLUMNS,
    SUMMARY_COLUMNS,
    case_id,
    evaluate_folders,
    format_table,
    pick_overlay_slice,
    save_overlay_png,
    structure_metrics,
    summarise,
    write_rows,
)
from ContrastSegLib.io import Volume

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def make_volume(array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), source=""):
    return Volume(np.asarray(array, dtype=np.uint8), tuple(spacing), tuple(origin), IDENTITY, source)


def write_label(path, array, spacing=(1.0, 1.0, 1.0)):
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.uint8))
    image.SetSpacing(spacing)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def row_for(rows, label, case=None):
    matches = [r for r in rows if r["label"] == label and (case is None or r["case"] == case)]
    assert len(matches) == 1, matches
    return matches[0]


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_dice_of_overlapping_cubes_matches_hand_count():
    reference = np.zeros((16, 16, 16), np.uint8)
    prediction = np.zeros_like(reference)
    reference[2:6, 2:6, 2:6] = 1  # 64 voxels
    prediction[2:6, 2:6, 4:8] = 1  # 64 voxels, 4*4*2 = 32 shared
    reference[9:13, 9:13, 9:13] = 2  # 64 voxels
    prediction[10:12, 10:12, 10:12] = 2  # 8 voxels, all inside
    rows = structure_metrics(make_volume(prediction), make_volume(reference), {1: "liver", 2: "tumour"})
    assert [r["structure"] for r in rows] == ["liver", "tumour"]
    assert row_for(rows, 1)["dice"] == pytest.approx(2 * 32 / (64 + 64))
    assert row_for(rows, 2)["dice"] == pytest.approx(2 * 8 / (8 + 64))
    assert row_for(rows, 1)["hd95_mm"] == pytest.approx(2.0)  # shifted 2 voxels of 1 mm along i


@pytest.mark.parametrize(
    "axis, expected_mm", [(0, 5.0), (1, 2.0), (2, 1.0)], ids=["k-axis-5mm", "j-axis-2mm", "i-axis-1mm"]
)
def test_hd95_of_one_voxel_shift_uses_spacing_of_that_axis(axis, expected_mm):
    # A one-voxel-thick plate across the other two axes, shifted by one voxel along `axis`: every surface voxel of
    # one plate has its nearest neighbour in the other plate right beside it, one voxel spacing away.
    reference = np.zeros((10, 10, 10), np.uint8)
    plate = [slice(2, 8)] * 3
    plate[axis] = slice(4, 5)
    reference[tuple(plate)] = 1
    prediction = np.roll(reference, 1, axis=axis)
    spacing_ijk = (1.0, 2.0, 5.0)  # array axes are (k, j, i): 5 mm, 2 mm, 1 mm
    rows = structure_metrics(make_volume(prediction, spacing_ijk), make_volume(reference, spacing_ijk), {1: "plate"})
    assert rows[0]["hd95_mm"] == pytest.approx(expected_mm)
    assert rows[0]["dice"] == 0.0


def test_hd95_of_cube_shifted_along_thick_slices():
    reference = np.zeros((12, 12, 12), np.uint8)
    reference[3:7, 3:9, 3:9] = 1
    prediction = np.roll(reference, 1, axis=0)
    rows = structure_metrics(make_volume(prediction, (1.0, 1.0, 5.0)), make_volume(reference, (1.0, 1.0, 5.0)), None)
    assert rows[0]["hd95_mm"] == pytest.approx(5.0)
    assert rows[0]["dice"] == pytest.approx(2 * 3 * 36 / (4 * 36 * 2))


def test_empty_structure_conventions():
    reference = np.zeros((8, 8, 8), np.uint8)
    prediction = np.zeros_like(reference)
    reference[1:3, 1:3, 1:3] = 1
    prediction[1:3, 1:3, 1:3] = 1
    reference[5:7, 5:7, 5:7] = 2  # missed by the prediction
    prediction[5:7, 1:3, 1:3] = 4  # not in the reference
    labels = {0: "background", 1: "found", 2: "missed", 3: "absent", 4: "false_alarm"}
    rows = structure_metrics(make_volume(prediction), make_volume(reference), labels)
    assert [r["label"] for r in rows] == [1, 2, 3, 4]
    assert (row_for(rows, 1)["dice"], row_for(rows, 1)["hd95_mm"]) == (1.0, 0.0)
    assert row_for(rows, 2)["dice"] == 0.0 and math.isnan(row_for(rows, 2)["hd95_mm"])
    assert (row_for(rows, 3)["dice"], row_for(rows, 3)["hd95_mm"]) == (1.0, 0.0)
    assert row_for(rows, 4)["dice"] == 0.0 and math.isnan(row_for(rows, 4)["hd95_mm"])


def test_labels_default_to_values_present_in_either_map():
    reference = np.zeros((6, 6, 6), np.uint8)
    prediction = np.zeros_like(reference)
    reference[1:3, 1:3, 1:3] = 2
    prediction[3:5, 3:5, 3:5] = 7
    rows = structure_metrics(make_volume(prediction), make_volume(reference))
    assert [(r["label"], r["structure"]) for r in rows] == [(2, "label_2"), (7, "label_7")]


@pytest.mark.parametrize("change", ["spacing", "origin", "shape"])
def test_grid_mismatch_names_both_volumes_and_the_fix(change):
    reference = make_volume(np.zeros((6, 6, 6)), source="ref/case_01_seg.nii.gz")
    if change == "spacing":
        prediction = make_volume(np.zeros((6, 6, 6)), spacing=(1.0, 1.0, 2.0), source="pred/case_01.nii.gz")
    elif change == "origin":
        prediction = make_volume(np.zeros((6, 6, 6)), origin=(0.0, 3.0, 0.0), source="pred/case_01.nii.gz")
    else:
        prediction = make_volume(np.zeros((6, 6, 7)), source="pred/case_01.nii.gz")
    with pytest.raises(ContrastSegError) as error:
        structure_metrics(prediction, reference, {1: "a"})
    message = str(error.value)
    assert "pred/case_01.nii.gz" in message and "ref/case_01_seg.nii.gz" in message
    assert "resample the prediction onto the reference grid" in message and "contrastseg predict" in message


@pytest.mark.parametrize(
    "name, expected",
    [("case_01_seg.nii.gz", "case_01"), ("case_01_pred.nii", "case_01"), ("case_01_prediction.mha", "case_01"),
     ("case_01_label.nrrd", "case_01"), ("case_01_GT.nii.gz", "case_01"), ("case_01.nii.gz", "case_01"),
     ("_seg.nii.gz", "_seg"), ("case_seg_01.nii.gz", "case_seg_01")],
)
def test_case_id_removes_one_known_suffix(name, expected):
    assert case_id(f"/data/{name}") == expected


def test_evaluate_folders_matches_seg_and_pred_suffixes(tmp_path):
    reference = np.zeros((6, 8, 8), np.uint8)
    reference[1:4, 2:6, 2:6] = 1  # 48 voxels
    reference[4:6, 0:2, 0:2] = 2
    shifted = np.zeros_like(reference)
    shifted[1:4, 2:6, 3:7] = 1  # 36 shared voxels
    spacing = (0.5, 0.5, 3.0)
    write_label(tmp_path / "ref" / "case_a_seg.nii.gz", reference, spacing)
    write_label(tmp_path / "pred" / "case_a_pred.nii.gz", reference, spacing)
    write_label(tmp_path / "ref" / "case_b_seg.nii.gz", np.where(reference == 1, 1, 0), spacing)
    write_label(tmp_path / "pred" / "case_b_pred.nii.gz", shifted, spacing)
    write_label(tmp_path / "pred" / "case_c_pred.nii.gz", reference, spacing)
    write_label(tmp_path / "ref" / "case_d_seg.nii.gz", reference, spacing)
    (tmp_path / "ref" / "notes.txt").write_text("not an image")

    with pytest.warns(UserWarning) as caught:
        rows = evaluate_folders(tmp_path / "pred", tmp_path / "ref")
    warned = " ".join(str(w.message) for w in caught)
    assert "case_c" in warned and "case_d" in warned

    assert [(r["case"], r["label"]) for r in rows] == [("case_a", 1), ("case_a", 2), ("case_b", 1), ("case_b", 2)]
    assert all(set(r) == set(CASE_COLUMNS) for r in rows)
    assert row_for(rows, 1, "case_a")["dice"] == 1.0 and row_for(rows, 2, "case_a")["hd95_mm"] == 0.0
    assert row_for(rows, 1, "case_b")["dice"] == pytest.approx(2 * 36 / (48 + 48))
    assert row_for(rows, 1, "case_b")["hd95_mm"] == pytest.approx(0.5)  # one voxel along i, 0.5 mm
    assert (row_for(rows, 2, "case_b")["dice"], row_for(rows, 2, "case_b")["hd95_mm"]) == (1.0, 0.0)

    with pytest.warns(UserWarning):
        named = evaluate_folders(tmp_path / "pred", tmp_path / "ref", {1: "liver"})
    assert [(r["case"], r["structure"]) for r in named] == [("case_a", "liver"), ("case_b", "liver")]


def test_evaluate_folders_reads_references_from_msd_labels_tr(tmp_path):
    label = np.zeros((4, 6, 6), np.uint8)
    label[1:3, 1:4, 1:4] = 1
    write_label(tmp_path / "Task04" / "labelsTr" / "hippo_001.nii.gz", label)
    write_label(tmp_path / "Task04" / "imagesTr" / "hippo_001.nii.gz", label)
    (tmp_path / "Task04" / "labelsTr" / "._hippo_001.nii.gz").write_bytes(b"resource fork")
    write_label(tmp_path / "pred" / "hippo_001_seg.nii.gz", label)
    rows = evaluate_folders(tmp_path / "pred", tmp_path / "Task04", {1: "hippocampus"})
    assert rows == [{"case": "hippo_001", "structure": "hippocampus", "label": 1, "dice": 1.0, "hd95_mm": 0.0}]


def test_evaluate_folders_without_common_case_names_both_folders(tmp_path):
    write_label(tmp_path / "pred" / "alpha.nii.gz", np.zeros((3, 3, 3)))
    write_label(tmp_path / "ref" / "beta_seg.nii.gz", np.zeros((3, 3, 3)))
    with pytest.raises(ContrastSegError) as error:
        evaluate_folders(tmp_path / "pred", tmp_path / "ref")
    assert str(tmp_path / "pred") in str(error.value) and str(tmp_path / "ref") in str(error.value)


def test_evaluate_folders_reports_grid_mismatch_with_both_files(tmp_path):
    write_label(tmp_path / "pred" / "c1.nii.gz", np.zeros((4, 4, 4)), spacing=(1.0, 1.0, 1.0))
    write_label(tmp_path / "ref" / "c1_gt.nii.gz", np.zeros((4, 4, 4)), spacing=(1.0, 1.0, 2.5))
    with pytest.raises(ContrastSegError, match="c1.nii.gz.*c1_gt.nii.gz.*resample"):
        evaluate_folders(tmp_path / "pred", tmp_path / "ref")


def test_summarise_gives_nan_aware_means_and_a_mean_row():
    rows = [
        {"case": "a", "structure": "liver", "label": 1, "dice": 0.8, "hd95_mm": 2.0},
        {"case": "a", "structure": "tumour", "label": 2, "dice": 0.0, "hd95_mm": math.nan},
        {"case": "b", "structure": "liver", "label": 1, "dice": 0.6, "hd95_mm": 4.0},
        {"case": "b", "structure": "tumour", "label": 2, "dice": 0.5, "hd95_mm": 6.0},
    ]
    summary = summarise(rows)
    assert [s["structure"] for s in summary] == ["liver", "tumour", "mean"]
    assert all(set(s) == set(SUMMARY_COLUMNS) for s in summary)
    liver, tumour, mean = summary
    assert liver["dice_mean"] == pytest.approx(0.7) and liver["dice_std"] == pytest.approx(0.1)
    assert liver["hd95_mm_mean"] == pytest.approx(3.0) and liver["hd95_cases"] == 2 and liver["cases"] == 2
    assert tumour["dice_mean"] == pytest.approx(0.25)
    assert tumour["hd95_mm_mean"] == pytest.approx(6.0) and tumour["hd95_mm_std"] == 0.0
    assert tumour["hd95_cases"] == 1
    # Per-case means over structures: dice a 0.4, b 0.55; hd95 a 2.0 (NaN skipped), b 5.0.
    assert mean["label"] is None and mean["cases"] == 2
    assert mean["dice_mean"] == pytest.approx(0.475) and mean["dice_std"] == pytest.approx(0.075)
    assert mean["hd95_mm_mean"] == pytest.approx(3.5)
    assert summarise([]) == []


def test_format_table_aligns_rounds_and_marks_nan():
    rows = [
        {"structure": "liver", "label": 1, "dice": 0.87654, "hd95_mm": 12.5},
        {"structure": "tumour", "label": 12, "dice": 0.0, "hd95_mm": math.nan},
        {"structure": "mean", "label": None, "dice": 0.438, "hd95_mm": 12.5},
    ]
    text = format_table(rows, ["structure", "label", "dice", "hd95_mm"], title="Case 7")
    lines = text.splitlines()
    assert lines[0] == "Case 7"
    assert lines[1].split() == ["structure", "label", "dice", "hd95_mm"]
    assert set(lines[2].replace(" ", "")) == {"-"}
    assert lines[3].split() == ["liver", "1", "0.877", "12.500"]
    assert lines[4].split() == ["tumour", "12", "0.000", "—"]
    assert lines[5].split() == ["mean", "0.438", "12.500"]
    # numbers are right-aligned: the last characters of the value lines line up with the header's end
    assert len({len(line) for line in lines[1:5]}) == 1
    assert lines[3].index("liver") == lines[1].index("structure")


def test_write_rows_round_trips_csv_and_json(tmp_path):
    rows = [
        {"case": "a", "structure": "liver", "label": 1, "dice": 0.75, "hd95_mm": np.float32(2.5)},
        {"case": "b", "structure": "liver", "label": np.int64(1), "dice": 0.0, "hd95_mm": math.nan},
    ]
    csv_path = write_rows(rows, tmp_path / "out" / "metrics.csv")
    with open(csv_path, newline="", encoding="utf-8") as handle:
        read_back = list(csv.DictReader(handle))
    assert [list(r) for r in read_back] == [CASE_COLUMNS, CASE_COLUMNS]
    assert float(read_back[0]["dice"]) == 0.75 and float(read_back[0]["hd95_mm"]) == 2.5
    assert read_back[1]["hd95_mm"] == "" and read_back[1]["label"] == "1"

    json_path = write_rows(rows, tmp_path / "metrics.json")
    loaded = json.loads(json_path.read_text(encoding="utf-8"))
    assert loaded[0] == {"case": "a", "structure": "liver", "label": 1, "dice": 0.75, "hd95_mm": 2.5}
    assert loaded[1]["hd95_mm"] is None and loaded[1]["label"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "out"]


def test_write_rows_refuses_existing_file_and_unknown_suffix(tmp_path):
    existing = tmp_path / "metrics.csv"
    existing.write_text("keep me")
    with pytest.raises(ContrastSegError, match="already exists"):
        write_rows([{"a": 1}], existing)
    assert existing.read_text() == "keep me"
    write_rows([{"a": 1}], existing, overwrite=True)
    assert existing.read_text().splitlines() == ["a", "1"]
    with pytest.raises(ContrastSegError, match=r"\.csv or \.json"):
        write_rows([{"a": 1}], tmp_path / "metrics.xlsx")
    assert not (tmp_path / "metrics.xlsx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_pick_overlay_slice_finds_the_fullest_slice():
    labels = np.zeros((5, 6, 6), np.uint8)
    labels[1, 0:2, 0:2] = 1
    labels[3, 0:4, 0:4] = 2
    assert pick_overlay_slice(labels) == 3
    assert pick_overlay_slice(np.zeros((5, 6, 6))) == 2


def test_overlay_png_has_three_panels_side_by_side(tmp_path, rng):
    image = rng.normal(100.0, 20.0, (64, 64))
    reference = np.zeros((64, 64), np.uint8)
    reference[16:40, 16:40] = 1
    reference[44:56, 20:30] = 2
    prediction = np.zeros_like(reference)
    prediction[20:44, 18:42] = 1
    path = save_overlay_png(image, reference, prediction, tmp_path / "case_01.png", title="case_01  slice 12")
    width, height = png_size(path)
    assert width > 2 * height

    two_panels = save_overlay_png(image, None, prediction, tmp_path / "no_reference.png", colors={1: (0, 0, 255)})
    two_width, two_height = png_size(two_panels)
    assert two_width < width and two_width > two_height

    before = path.read_bytes()
    with pytest.raises(ContrastSegError, match="already exists"):
        save_overlay_png(image, reference, prediction, path)
    assert path.read_bytes() == before
    with pytest.raises(ContrastSegError, match="shape"):
        save_overlay_png(image, reference[:10], prediction, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
