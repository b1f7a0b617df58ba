"""Reading and writing volumes: exact round trips for every format, integer label maps, 4-D and vector inputs,
non-orthonormal NIfTI."""

from __future__ import annotations


import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ContrastSegLib.io import read_image, read_label, write_volume
from io_helpers import (
    DIRECTION, FILE_SUFFIXES, GEOMETRY_ATOL, ORIGIN, SPACING, _assert_geometry, _error, _float_array, _int16_array, _listing, _stored_pixel_id, _target, _volume,
)


# 1. Round trips --------------------------------------------------------------------------------------------------


def test_fixture_geometry_is_anisotropic_offset_and_oblique():
    assert np.isclose(np.linalg.det(DIRECTION), 1.0)
    np.testing.assert_allclose(DIRECTION @ DIRECTION.T, np.eye(3), atol=1e-12)
    assert (np.abs(DIRECTION) > 0.1).sum() > 5  # tilted away from every axis, not a permutation
    assert len(set(SPACING)) == 3 and all(ORIGIN)


@pytest.mark.parametrize("suffix", FILE_SUFFIXES + [""])
def test_int16_round_trip_keeps_voxels_and_geometry(tmp_path, suffix):
    array = _int16_array()
    path = write_volume(_volume(array), _target(tmp_path, suffix))
    assert path == _target(tmp_path, suffix)

    back = read_image(path)
    assert back.array.dtype == np.float32
    assert back.array.shape == array.shape
    np.testing.assert_array_equal(back.array, array.astype(np.float32))
    _assert_geometry(back, SPACING, ORIGIN, DIRECTION, GEOMETRY_ATOL[suffix])
    assert _stored_pixel_id(path) == sitk.sitkInt16
    assert back.source == str(path)

    names = _listing(tmp_path)
    if suffix == ".mhd":
        assert names == ["x.mhd", "x.zraw"]
        header = (tmp_path / "x.mhd").read_text()
        assert "ElementDataFile = x.zraw" in header
    elif suffix == "":
        assert names == ["series"]
        slices = _listing(path)
        assert len(slices) == array.shape[0] and all(n.endswith(".dcm") for n in slices)
    else:
        assert names == [f"x{suffix}"]


@pytest.mark.parametrize("suffix", FILE_SUFFIXES)
def test_float32_round_trip_is_exact(tmp_path, suffix):
    array = _float_array((4, 7, 6))
    path = write_volume(_volume(array), _target(tmp_path, suffix))
    back = read_image(path)
    np.testing.assert_array_equal(back.array, array)
    _assert_geometry(back, SPACING, ORIGIN, DIRECTION, GEOMETRY_ATOL[suffix])
    assert _stored_pixel_id(path) == sitk.sitkFloat32
    assert _listing(tmp_path) == (["x.mhd", "x.zraw"] if suffix == ".mhd" else [f"x{suffix}"])


def test_nii_gz_is_read_even_beside_a_nii_of_the_same_name(tmp_path):
    # ITK's NIfTI library takes the voxels of x.nii when asked for x.nii.gz; the reader must not.
    small = _float_array((3, 4, 5))
    large = _float_array((6, 7, 8)) + 1000
    write_volume(_volume(large), tmp_path / "x.nii")
    write_volume(_volume(small), tmp_path / "x.nii.gz")
    np.testing.assert_array_equal(read_image(tmp_path / "x.nii.gz").array, small)
    np.testing.assert_array_equal(read_image(tmp_path / "x.nii").array, large)
    assert _listing(tmp_path) == ["x.nii", "x.nii.gz"]


def test_dicom_round_trip_of_int64_voxels(tmp_path):
    array = _int16_array().astype(np.int64) * 20  # beyond int16, within int32
    path = write_volume(_volume(array), tmp_path / "series")
    np.testing.assert_array_equal(read_image(path).array, array.astype(np.float32))
    too_large = _error(write_volume, tmp_path / "big", _volume(array + 2**40), tmp_path / "big")
    assert "32 bits" in too_large
    assert _listing(tmp_path) == ["series"]


# 2. Label maps are stored with integer voxel types ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.float64, np.float32, bool])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_labels_are_written_as_uint8(tmp_path, dtype, suffix):
    values = np.random.default_rng(3).integers(0, 2 if dtype is bool else 256, size=(4, 5, 6))
    values.flat[0] = 1 if dtype is bool else 255
    labels = values.astype(dtype)
    path = write_volume(_volume(labels), tmp_path / f"label{suffix}", label=True)

    stored = sitk.ReadImage(str(path))
    assert stored.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(stored), values)

    back = read_label(path)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, values)
    _assert_geometry(back, SPACING, ORIGIN, DIRECTION, GEOMETRY_ATOL[suffix])


def test_labels_above_255_are_written_as_uint16(tmp_path):
    labels = np.zeros((3, 4, 5), dtype=np.int64)
    labels[1, 2, 3] = 300
    path = write_volume(_volume(labels), tmp_path / "label.nrrd", label=True)
    assert sitk.ReadImage(str(path)).GetPixelID() == sitk.sitkUInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), labels)


def test_labels_are_written_to_dicom_as_integers(tmp_path):
    labels = np.random.default_rng(4).integers(0, 4, size=(3, 4, 5)).astype(np.float64)
    path = write_volume(_volume(labels), tmp_path / "labels", label=True)
    assert _stored_pixel_id(path) == sitk.sitkUInt8
    back = read_label(path)
    assert np.issubdtype(back.array.dtype, np.integer)
    np.testing.assert_array_equal(back.array, labels)


@pytest.mark.parametrize("bad", [-1, 0.5, 70000, np.nan])
def test_label_write_refuses_values_an_integer_type_cannot_hold(tmp_path, bad):
    labels = np.zeros((3, 4, 5), dtype=np.float64)
    labels[0, 0, 0] = bad
    target = tmp_path / "label.nii.gz"
    _error(write_volume, target, _volume(labels), target, label=True)
    assert _listing(tmp_path) == []


# 3. 4-D and vector inputs ----------------------------------------------------------------------------------------


def test_4d_nifti_needs_a_channel(tmp_path):
    frames = [_float_array((4, 5, 6)) + 1000 * t for t in range(3)]
    series = sitk.JoinSeries([_volume(f).to_sitk() for f in frames])
    assert series.GetDimension() == 4
    path = tmp_path / "multi.nii.gz"
    sitk.WriteImage(series, str(path))

    message = _error(read_image, path, path)
    assert "--channel" in message and "4-D" in message

    second = read_image(path, channel=1)
    assert second.array.shape == frames[1].shape
    np.testing.assert_array_equal(second.array, frames[1])
    _assert_geometry(second, SPACING, ORIGIN, DIRECTION, 1e-5)
    assert len(second.direction) == 9

    assert "--channel 3" in _error(read_image, path, path, channel=3)


def test_4d_nifti_written_by_nibabel(tmp_path):
    data = _float_array((6, 5, 4, 2))  # nibabel order: i, j, k, t
    affine = np.array([[0.8, 0, 0, 10.0], [0, 1.2, 0, -20.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])
    path = tmp_path / "multi.nii"
    nib.save(nib.Nifti1Image(data, affine), path)
    assert "--channel" in _error(read_image, path, path)
    first = read_image(path, channel=0)
    np.testing.assert_array_equal(first.array, data[..., 0].T)
    _assert_geometry(first, (0.8, 1.2, 2.5), (-10.0, 20.0, 30.0), np.diag([-1.0, -1.0, 1.0]), 1e-5)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".nii.gz"])
def test_vector_image_needs_a_channel(tmp_path, suffix):
    components = [_float_array((4, 5, 6)) + 100 * c for c in range(3)]
    vector = sitk.Compose([_volume(c).to_sitk() for c in components])
    assert vector.GetNumberOfComponentsPerPixel() == 3
    path = tmp_path / f"rgb{suffix}"
    sitk.WriteImage(vector, str(path))

    message = _error(read_image, path, path)
    assert "--channel" in message and "3 components" in message

    third = read_image(path, channel=2)
    np.testing.assert_array_equal(third.array, components[2])
    _assert_geometry(third, SPACING, ORIGIN, DIRECTION, GEOMETRY_ATOL[suffix])
    _error(read_image, path, path, channel=-1)
