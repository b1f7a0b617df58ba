"""The procedural cardiac phantom: determinism, anatomy, variation, and the Decathlon folder it writes."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from ContrastSegLib.data.phantom import LABEL_COLORS, LABEL_NAMES, make_phantom, write_phantom_dataset
from ContrastSegLib.errors import ContrastSegError


def test_identical_arguments_give_identical_volumes_and_other_seeds_differ():
    image_a, label_a = make_phantom(3, seed=7)
    image_b, label_b = make_phantom(3, seed=7)
    np.testing.assert_array_equal(image_a.array, image_b.array)
    np.testing.assert_array_equal(label_a.array, label_b.array)
    assert (image_a.spacing, image_a.origin, image_a.direction) == (image_b.spacing, image_b.origin, image_b.direction)
    other_image, other_label = make_phantom(3, seed=8)
    assert other_image.array.shape != image_a.array.shape or not np.array_equal(other_image.array, image_a.array)
    assert other_image.spacing != image_a.spacing or other_image.origin != image_a.origin


@pytest.mark.parametrize("index", range(6))
def test_middle_slice_holds_all_structures_and_shapes_shrink_towards_the_apex(index):
    _, label = make_phantom(index, seed=0)
    slices = label.array
    assert set(np.unique(slices[slices.shape[0] // 2])) == set(LABEL_NAMES)
    lv_area = (slices == 1).sum(axis=(1, 2))
    third = slices.shape[0] // 3
    assert lv_area[:third].mean() > lv_area[-third:].mean()
    assert not (slices[-1] == 3).any(), "the RV must have vanished in the apical slice"
    assert (slices[0] == 3).any() and (slices[0] == 1).any()


def test_image_is_finite_float32_on_the_label_grid_with_mr_like_geometry():
    image, label = make_phantom(0, seed=0)
    assert image.array.dtype == np.float32 and label.array.dtype == np.uint8
    assert np.isfinite(image.array).all()
    assert image.same_grid(label) and image.array.shape == label.array.shape
    assert 0.0 <= image.array.min() and 300.0 < image.array.max() < 2000.0
    n_slices, n_rows, n_cols = image.array.shape
    assert 8 <= n_slices <= 12 and 72 <= n_rows <= 88 and 72 <= n_cols <= 88
    assert image.spacing[2] > max(image.spacing[:2])
    assert image.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert set(np.unique(label.array)) <= set(LABEL_NAMES)


def test_subjects_differ_in_grid_shape_and_intensity():
    subjects = [make_phantom(index, seed=0) for index in range(4)]
    assert len({image.spacing for image, _ in subjects}) > 1
    assert len({image.origin for image, _ in subjects}) > 1
    lv_volumes = {round(float((label.array == 1).sum() * np.prod(label.spacing))) for _, label in subjects}
    assert len(lv_volumes) == len(subjects)
    lv_brightness = [float(np.median(image.array[label.array == 1])) for image, label in subjects]
    assert max(lv_brightness) > 1.1 * min(lv_brightness)


def test_blood_is_brighter_than_myocardium():
    image, label = make_phantom(1, seed=0)
    assert np.median(image.array[label.array == 1]) > 2.0 * np.median(image.array[label.array == 2])
    assert np.median(image.array[label.array == 3]) > 2.0 * np.median(image.array[label.array == 2])


def test_a_dark_blood_subject_has_the_same_anatomy_with_the_contrast_turned_round():
    bright, label = make_phantom(1, seed=0)
    dark, dark_label = make_phantom(1, seed=0, dark_blood=True)
    assert np.array_equal(label.array, dark_label.array)
    assert np.median(dark.array[label.array == 2]) > 2.0 * np.median(dark.array[label.array == 1])
    assert np.median(dark.array[label.array == 2]) > 2.0 * np.median(dark.array[label.array == 3])


def test_colors_cover_every_label():
    assert set(LABEL_COLORS) == set(LABEL_NAMES)
    assert all(len(rgb) == 3 and all(0 <= c <= 255 for c in rgb) for rgb in LABEL_COLORS.values())


def test_dataset_folder_has_the_decathlon_layout_and_reads_back(tmp_path):
    out_dir = tmp_path / "phantom"
    assert write_phantom_dataset(out_dir, n=3, seed=5) == out_dir
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phantom"], "no temporary folder may be left behind"
    description = json.loads((out_dir / "dataset.json").read_text())
    assert description["name"] == "ContrastSeg phantom" and description["reference"] == "procedural, seed 5"
    assert description["labels"] == {"0": "background", "1": "LV", "2": "myocardium", "3": "RV"}
    assert description["modality"] == {"0": "MR"} and description["tensorImageSize"] == "3D"
    assert description["numTraining"] == 3 and description["numTest"] == 0 and description["test"] == []
    assert description["contrastseg_colors"]["1"] == list(LABEL_COLORS[1])
    assert [entry["image"] for entry in description["training"]] == [
        f"./imagesTr/phantom_{index:03d}.nii.gz" for index in range(3)
    ]
    for index, entry in enumerate(description["training"]):
        expected_image, expected_label = make_phantom(index, seed=5)
        image = sitk.ReadImage(str(out_dir / entry["image"]))
        label = sitk.ReadImage(str(out_dir / entry["label"]))
        assert image.GetPixelID() == sitk.sitkFloat32 and label.GetPixelID() == sitk.sitkUInt8
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), expected_image.array)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(label), expected_label.array)
        np.testing.assert_allclose(image.GetSpacing(), expected_image.spacing, atol=1e-4)
        np.testing.assert_allclose(image.GetOrigin(), expected_image.origin, atol=1e-4)
        np.testing.assert_allclose(label.GetOrigin(), image.GetOrigin(), atol=1e-6)


def test_existing_non_empty_folder_is_refused_and_left_untouched(tmp_path):
    out_dir = tmp_path / "phantom"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("precious")
    with pytest.raises(ContrastSegError, match="not empty"):
        write_phantom_dataset(out_dir, n=1)
    assert [p.name for p in out_dir.iterdir()] == ["keep.txt"]
    assert (out_dir / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["phantom"]


def test_overwrite_replaces_the_folder_and_an_empty_folder_is_accepted(tmp_path):
    out_dir = tmp_path / "phantom"
    out_dir.mkdir()
    write_phantom_dataset(out_dir, n=1)
    (out_dir / "stale.txt").write_text("old")
    write_phantom_dataset(out_dir, n=2, overwrite=True)
    assert not (out_dir / "stale.txt").exists()
    assert json.loads((out_dir / "dataset.json").read_text())["numTraining"] == 2
    assert len(list((out_dir / "labelsTr").iterdir())) == 2


def test_bad_counts_and_indices_are_refused(tmp_path):
    with pytest.raises(ContrastSegError):
        write_phantom_dataset(tmp_path / "none", n=0)
    assert not (tmp_path / "none").exists()
    with pytest.raises(ContrastSegError):
        make_phantom(-1)


@pytest.mark.parametrize("index", range(6))
def test_a_thin_structure_subject_adds_a_small_dark_tube_and_changes_nothing_else_of_the_anatomy(index):
    from scipy import ndimage
    from ContrastSegLib.data.phantom import THIN_LABEL
    _, label = make_phantom(index, seed=0)
    image, thin_label = make_phantom(index, seed=0, thin_structure=True)
    tube = thin_label.array == THIN_LABEL
    assert np.array_equal(np.where(tube, 0, thin_label.array), label.array)  # the tube only where nothing was
    assert (label.array[tube] == 0).all()
    assert all(tube[k].sum() >= 4 for k in range(tube.shape[0]))  # through every slice
    assert 0.005 <= tube.sum() / (thin_label.array > 0).sum() <= 0.03  # 1-2 % of the labeled voxels
    around = ndimage.binary_dilation(tube, iterations=2) & ~tube
    assert np.median(image.array[tube]) < 0.8 * np.median(image.array[around])


def test_a_thin_structure_dataset_names_and_colours_the_fourth_label(tmp_path):
    from ContrastSegLib.cli import main
    assert main(["phantom", "--out", str(tmp_path / "thin"), "--n", "2", "--thin-structure"]) == 0
    description = json.loads((tmp_path / "thin" / "dataset.json").read_text())
    assert description["labels"] == {"0": "background", "1": "LV", "2": "myocardium", "3": "RV", "4": "oesophagus"}
    assert set(description["contrastseg_colors"]) == {"1", "2", "3", "4"}
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "thin" / "labelsTr" / "phantom_001.nii.gz")))
    np.testing.assert_array_equal(label, make_phantom(1, seed=0, thin_structure=True)[1].array)
