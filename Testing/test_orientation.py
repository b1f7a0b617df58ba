"""Canonical orientation: one scan stored with flipped, permuted or oblique axes gives the same slices, restores
exactly onto each storage's own grid, and is segmented identically by ``contrastseg predict``."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from cli_helpers import FAST_PREDICT, run_cli

from ContrastSegLib.cli import main
from ContrastSegLib.data.phantom import make_phantom, write_phantom_dataset
from ContrastSegLib.io import Volume
from ContrastSegLib.preprocess import (
    Orientation, PreprocessRecord, canonical_orientation, canonical_spacing, preprocess_volume, reorient,
    restore_probabilities, to_volume_order,
)
from ContrastSegLib.settings import PreprocessConfig

CLASSES = (0, 1, 2, 3)
# The same scan stored otherwise; SimpleITK's Flip and PermuteAxes keep every voxel at its physical point.
STORAGES = {
    "flip I": lambda image: sitk.Flip(image, [True, False, False]),
    "swap J and K": lambda image: sitk.PermuteAxes(image, [0, 2, 1]),
    "flip all, axes rotated": lambda image: sitk.PermuteAxes(sitk.Flip(image, [True, True, True]), [2, 0, 1]),
}


def rotation_about_x(degrees: float) -> tuple[float, ...]:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return tuple(np.array([[1, 0, 0], [0, c, -s], [0, s, c]]).ravel())


def phantom_scan(direction: tuple[float, ...] | None = None) -> tuple[Volume, Volume]:
    """Phantom 1 (image, label) with an odd origin and ``direction`` (identity when None)."""
    image, label = make_phantom(1)
    geometry = dict(origin=(-31.5, 12.25, 40.0), direction=direction or image.direction)
    return Volume(image.array, image.spacing, **geometry), Volume(label.array, label.spacing, **geometry)


def stored_as(volume: Volume, storage: str) -> Volume:
    return Volume.from_sitk(STORAGES[storage](volume.to_sitk()), source=f"{volume.name} ({storage})")


def values_at_voxel_centres(target: Volume, source: Volume) -> np.ndarray:
    """``source``'s values at ``target``'s voxel centres, (K, J, I) like ``target``; each centre must be one of
    ``source``'s voxel centres."""
    k, j, i = np.indices(target.array.shape).reshape(3, -1)
    points = np.asarray(target.origin)[:, None] + _index_to_mm(target) @ np.stack([i, j, k])
    index = np.linalg.solve(_index_to_mm(source), points - np.asarray(source.origin)[:, None])
    rounded = np.rint(index).astype(int)
    assert np.abs(index - rounded).max() < 1e-4, "the voxel centres of the two grids do not coincide"
    size = np.asarray(source.array.shape[::-1])[:, None]
    assert ((rounded >= 0) & (rounded < size)).all(), "the two grids cover different regions"
    return source.array[rounded[2], rounded[1], rounded[0]].reshape(target.array.shape)


def _index_to_mm(volume: Volume) -> np.ndarray:
    """(3, 3): direction columns scaled by the spacing, so that point = origin + matrix @ (i, j, k)."""
    return np.asarray(volume.direction).reshape(3, 3) * np.asarray(volume.spacing)


@pytest.mark.parametrize("storage", STORAGES)
def test_storages_keep_every_voxel_in_place(storage):
    image, _ = phantom_scan(rotation_about_x(20))
    copy = stored_as(image, storage)
    assert copy.array.shape != image.array.shape or not np.array_equal(copy.array, image.array)
    np.testing.assert_array_equal(values_at_voxel_centres(image, copy), image.array)


@pytest.mark.parametrize("storage", STORAGES)
def test_reorient_keeps_every_voxel_in_place_and_comes_closest_to_identity(storage):
    image, _ = phantom_scan(rotation_about_x(20))
    copy = stored_as(image, storage)
    orientation = canonical_orientation(copy.direction)
    assert not orientation.identity
    canonical = reorient(copy, orientation)
    np.testing.assert_array_equal(values_at_voxel_centres(canonical, copy), canonical.array)
    np.testing.assert_allclose(canonical.direction, image.direction, atol=1e-12)
    assert canonical.spacing == image.spacing == canonical_spacing(copy)
    np.testing.assert_array_equal(orientation.invert(canonical.array), copy.array)


def test_diagonal_directions_still_give_a_permutation():
    c = np.sqrt(0.5)
    direction = (c, -c, 0.0, c, c, 0.0, 0.0, 0.0, -1.0)  # 45° about z, k reversed: i and j tie for x and y
    orientation = canonical_orientation(direction)
    assert orientation == Orientation((0, 1, 2), (True, False, False))  # ties: the lower physical, then ITK axis


@pytest.mark.parametrize("direction", [None, rotation_about_x(20)], ids=["axis-aligned", "oblique 20°"])
@pytest.mark.parametrize("storage", STORAGES)
def test_every_storage_gives_the_same_slices(storage, direction):
    image, label = phantom_scan(direction)
    copy_image, copy_label = stored_as(image, storage), stored_as(label, storage)
    config = PreprocessConfig(target_spacing=1.3, crop_size=64)
    reference = preprocess_volume(image, config, label, CLASSES)
    prepared = preprocess_volume(copy_image, config, copy_label, CLASSES)
    assert prepared.record.orientation != reference.record.orientation
    assert prepared.record.slice_axis == reference.record.slice_axis == 0  # the largest spacing, k
    np.testing.assert_array_equal(prepared.image, reference.image)
    np.testing.assert_array_equal(prepared.label, reference.label)


@pytest.mark.parametrize("slice_axis", [None, 1, 2])
@pytest.mark.parametrize("storage", [None, *STORAGES])
def test_restore_reproduces_the_label_map_on_each_storage_grid(storage, slice_axis):
    image, label = phantom_scan(rotation_about_x(20))
    if storage is not None:
        image, label = stored_as(image, storage), stored_as(label, storage)
    prepared = preprocess_volume(image, PreprocessConfig(crop_size=96, slice_axis=slice_axis), label, CLASSES)
    assert not prepared.record.resampled
    one_hot = np.eye(len(CLASSES), dtype=np.float32)[prepared.label].transpose(0, 3, 1, 2)  # (S, C, P, P)
    restored = restore_probabilities(one_hot, prepared.record)
    assert restored.shape == (len(CLASSES),) + label.array.shape
    np.testing.assert_array_equal(np.asarray(CLASSES)[restored.argmax(0)], label.array)


def test_a_record_without_orientation_is_the_stored_order(rng):
    planes = rng.random((4, 5, 6)).astype(np.float32)  # (S, R, C') cut along array axis 1
    record = PreprocessRecord((5, 4, 6), 1, (5, 6), (1.0, 1.0), (5, 6), (0, 0), 32, (0.0, 1.0))
    assert record.orientation == Orientation() and record.stack_shape == (4, 5, 6)
    np.testing.assert_array_equal(to_volume_order(planes, record), np.moveaxis(planes, 0, 1))


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("orientation")
    write_phantom_dataset(folder / "phantoms", 3)
    model = folder / "model.pt"
    assert main(["finetune", "--labeled", str(folder / "phantoms"), "--out", str(model), "--iterations", "30",
                 "--crop-size", "32", "--channels", "8,16", "--batch-size", "4", "--spacing", "4", *FAST_PREDICT]) == 0
    return model


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("storage", ["flip I", "swap J and K"])
def test_predict_segments_every_storage_identically(capsys, tmp_path, trained_model, storage):
    image, _ = make_phantom(2)
    scan = image.to_sitk()
    paths = {name: tmp_path / f"{name}.nrrd" for name in ("scan", "copy", "scan_seg", "copy_seg")}
    sitk.WriteImage(scan, str(paths["scan"]))
    sitk.WriteImage(STORAGES[storage](scan), str(paths["copy"]))
    for name in ("scan", "copy"):
        code, _, err = run_cli(capsys, "predict", "--model", trained_model, "--input", paths[name],
                               "--output", paths[f"{name}_seg"], *FAST_PREDICT)
        assert code == 0, err
    stored = {name: Volume.from_sitk(sitk.ReadImage(str(path))) for name, path in paths.items()}
    np.testing.assert_array_equal(values_at_voxel_centres(stored["scan"], stored["copy"]), stored["scan"].array)
    for name in ("scan", "copy"):
        label, source = stored[f"{name}_seg"], stored[name]
        assert (label.array.shape, label.spacing, label.origin, label.direction) == (
            source.array.shape, source.spacing, source.origin, source.direction)
    segmentation = stored["scan_seg"].array
    assert len(np.unique(segmentation)) > 1  # the model segments something: the comparison is not all background
    np.testing.assert_array_equal(values_at_voxel_centres(stored["scan_seg"], stored["copy_seg"]), segmentation)
