"""Reading and writing volumes: exact round trips, integer label maps, 4-D and vector inputs, non-orthonormal
NIfTI, one-line errors naming the file for every bad input, and atomic writes that leave nothing on refusal."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.io import Volume, check_output_path, read_image, read_label, write_volume

SPACING = (0.7, 1.25, 3.1)
ORIGIN = (-12.3, 45.6, 7.89)
FILE_SUFFIXES = [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"]
# NIfTI stores geometry as float32, DICOM as decimal strings; NRRD/MetaImage keep doubles (NRRD stores
# spacing * direction, so division may cost one rounding step).
GEOMETRY_ATOL = {".nii": 1e-5, ".nii.gz": 1e-5, ".nrrd": 1e-12, ".mha": 1e-12, ".mhd": 1e-12, "": 1e-4}


def _rotation(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    a, b = [i for i in range(3) if i != axis]
    matrix = np.eye(3)
    matrix[a, a], matrix[a, b], matrix[b, a], matrix[b, b] = c, -s, s, c
    return matrix


DIRECTION = _rotation(2, 0.3) @ _rotation(0, 0.5)  # rotation about z and x: right-handed, not axis-aligned


def _volume(array: np.ndarray, spacing=SPACING, origin=ORIGIN, direction=DIRECTION) -> Volume:
    return Volume(array, tuple(float(s) for s in spacing), tuple(float(o) for o in origin),
                  tuple(float(d) for d in np.asarray(direction).ravel()))


def _int16_array(shape=(5, 6, 7)) -> np.ndarray:
    return np.random.default_rng(7).integers(-1024, 3000, size=shape).astype(np.int16)


def _float_array(shape=(5, 6, 7)) -> np.ndarray:
    return (np.random.default_rng(8).normal(size=shape) * 100).astype(np.float32)


def _target(folder: Path, suffix: str) -> Path:
    return folder / ("series" if suffix == "" else f"x{suffix}")


def _listing(folder: Path) -> list[str]:
    """Every entry of ``folder``, hidden ones included; no staging leftovers may ever be there."""
    names = sorted(os.listdir(folder))
    assert not [n for n in names if ".partial" in n or n.startswith(".")], names
    return names


def _error(call, path, *args, **kwargs) -> str:
    """Run ``call``; it must raise ContrastSegError with a one-line message naming ``path``."""
    with pytest.raises(ContrastSegError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert str(path) in message, message
    return message


def _assert_geometry(volume: Volume, spacing, origin, direction, atol: float) -> None:
    np.testing.assert_allclose(volume.spacing, spacing, rtol=0, atol=atol)
    np.testing.assert_allclose(volume.origin, origin, rtol=0, atol=atol)
    np.testing.assert_allclose(volume.direction, np.asarray(direction).ravel(), rtol=0, atol=atol)


def _stored_pixel_id(path: Path) -> int:
    file = sorted(path.glob("*.dcm"))[0] if path.is_dir() else path
    return sitk.ReadImage(str(file)).GetPixelID()


def _write_dicom_slices(folder: Path, prefix: str, series_uid: str, slices: int) -> None:
    """A minimal DICOM series written slice by slice with SimpleITK, with the given series UID."""
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(slices):
        image = sitk.GetImageFromArray(np.full((4, 5), k, dtype=np.int16))
        tags = {
            "0008|0060": "OT",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.99.1",
            "0020|000e": series_uid,
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|0013": str(k + 1),
            "0020|0032": f"0\\0\\{2.0 * k}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
        }
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{prefix}_{k:03d}.dcm"))
        writer.Execute(image)


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


# 4. NIfTI with sheared (non-orthonormal) axes --------------------------------------------------------------------


def test_sheared_nifti_is_read_through_nibabel(tmp_path):
    data = _float_array((6, 7, 8))  # nibabel order: i, j, k
    affine = np.array([
        [-0.8, 0.05, 0.0, 10.0],
        [0.0, 1.2, 0.1, -20.0],
        [0.02, 0.0, 2.5, 30.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    image = nib.Nifti1Image(data, affine)
    image.set_qform(None, code=0)
    image.set_sform(affine, code=1)
    path = tmp_path / "sheared.nii.gz"
    nib.save(image, path)
    with pytest.raises(RuntimeError, match="orthonormal"):
        sitk.ReadImage(str(path))

    with pytest.warns(UserWarning, match="orthonormal"):
        volume = read_image(path)

    expected = np.asarray(nib.load(path).dataobj).T
    assert volume.array.shape == (8, 7, 6)
    np.testing.assert_array_equal(volume.array, expected.astype(np.float32))

    lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    np.testing.assert_allclose(volume.spacing, spacing, atol=1e-5)
    np.testing.assert_allclose(volume.origin, (-10.0, 20.0, 30.0), atol=1e-5)
    direction = np.asarray(volume.direction).reshape(3, 3)
    np.testing.assert_allclose(direction @ direction.T, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(direction, lps / spacing, atol=0.06)  # nearest orthonormal: close to the columns


# 5. Bad inputs: one-line errors that name the file ---------------------------------------------------------------


@pytest.mark.parametrize("reader", [read_image, read_label])
def test_missing_file(tmp_path, reader):
    path = tmp_path / "missing.nii.gz"
    assert "no such file" in _error(reader, path, path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_truncated_file(tmp_path, suffix):
    path = write_volume(_volume(_float_array((6, 7, 8))), tmp_path / f"scan{suffix}")
    read_image(path)  # complete: readable
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    _error(read_image, path, path)
    _error(read_label, path, path)


def test_text_file_named_nrrd(tmp_path):
    path = tmp_path / "notes.nrrd"
    path.write_text("this is a text file, not an image\nline two\n")
    assert "corrupt" in _error(read_image, path, path)


def test_2d_image(tmp_path):
    path = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(_float_array((5, 6))), str(path))
    assert "2-D" in _error(read_image, path, path)


@pytest.mark.parametrize("shape", [(1, 5, 6), (4, 1, 6), (4, 5, 1)])
def test_single_slice(tmp_path, shape):
    path = tmp_path / "thin.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones(shape, dtype=np.float32)), str(path))
    assert "one slice" in _error(read_image, path, path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_intensities(tmp_path, bad, suffix):
    # ITK's NIfTI reader turns NaN and Inf into 0 without a word; the reader must still refuse them.
    array = _float_array((3, 4, 5)).astype(np.float64)
    array[1, 2, 3] = bad
    path = write_volume(_volume(array), tmp_path / f"scan{suffix}")
    assert "1 voxels are NaN or Inf" in _error(read_image, path, path)
    _error(read_label, path, path)  # NIfTI: NaN or Inf; other formats: non-integer label values


def _write_label(path: Path, array: np.ndarray, spacing=SPACING, origin=ORIGIN) -> Path:
    sitk.WriteImage(_volume(array, spacing, origin).to_sitk(), str(path))
    return path


def test_label_with_non_integer_values(tmp_path):
    array = np.zeros((3, 4, 5), dtype=np.float32)
    array[1, 1, 1] = 0.5
    path = _write_label(tmp_path / "label.nrrd", array)
    assert "non-integer" in _error(read_label, path, path)
    integral = _write_label(tmp_path / "integral.nrrd", np.round(array * 4))
    assert read_label(integral).array.dtype == np.uint8


def test_label_with_negative_values(tmp_path):
    array = np.zeros((3, 4, 5), dtype=np.int16)
    array[0, 1, 2] = -1
    path = _write_label(tmp_path / "label.nii.gz", array)
    assert "0..255" in _error(read_label, path, path)


def test_label_values_outside_allowed(tmp_path):
    array = np.zeros((3, 4, 5), dtype=np.uint8)
    array[0, 0, :3] = [1, 2, 5]
    path = _write_label(tmp_path / "label.nii.gz", array)
    assert "[5]" in _error(read_label, path, path, allowed={0, 1, 2})
    np.testing.assert_array_equal(read_label(path, allowed={0, 1, 2, 5}).array, array)


@pytest.mark.parametrize("change", ["spacing", "origin", "shape"])
def test_label_grid_must_match_its_image(tmp_path, change):
    image = read_image(write_volume(_volume(_float_array((3, 4, 5))), tmp_path / "image.nii.gz"))
    good = _write_label(tmp_path / "good.nii.gz", np.zeros((3, 4, 5), dtype=np.uint8))
    assert read_label(good, image=image).same_grid(image)

    spacing = (0.7, 1.25, 3.3) if change == "spacing" else SPACING
    origin = (-12.3, 45.6, 8.89) if change == "origin" else ORIGIN
    shape = (3, 4, 6) if change == "shape" else (3, 4, 5)
    path = _write_label(tmp_path / "label.nii.gz", np.zeros(shape, dtype=np.uint8), spacing, origin)
    message = _error(read_label, path, path, image=image)
    assert "geometry" in message and str(image.source) in message


def test_unknown_suffix_for_read_and_write(tmp_path):
    path = tmp_path / "photo.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6), dtype=np.uint8)), str(path))
    assert "unknown image format" in _error(read_image, path, path)
    target = tmp_path / "out.png"
    assert "unknown output format" in _error(write_volume, target, _volume(_int16_array()), target)
    assert _listing(tmp_path) == ["photo.png"]


def test_dicom_write_of_non_integer_floats(tmp_path):
    target = tmp_path / "series"
    message = _error(write_volume, target, _volume(_float_array()), target)
    assert "integer" in message
    assert _listing(tmp_path) == []
    integral = write_volume(_volume(np.round(_float_array())), target)  # integer-valued floats are fine
    np.testing.assert_array_equal(read_image(integral).array, np.round(_float_array()))


def test_folder_without_dicom(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no DICOM series" in _error(read_image, empty, empty)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not DICOM")
    write_volume(_volume(_int16_array()), other / "scan.nii.gz")
    assert "no DICOM series" in _error(read_image, other, other)


def test_folder_with_two_dicom_series(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    _write_dicom_slices(folder, "a", "1.2.826.0.1.3680043.2.1125.99.2.1", 3)
    single = read_image(folder)  # one series: readable
    assert single.array.shape == (3, 4, 5)
    _write_dicom_slices(folder, "b", "1.2.826.0.1.3680043.2.1125.99.2.2", 3)
    assert "2 DICOM series" in _error(read_image, folder, folder)


# 6. Nothing written on refusal -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii.gz", ".mhd", ""])
def test_existing_output_is_kept_unless_overwrite(tmp_path, suffix):
    first = _int16_array((4, 5, 6))
    second = _int16_array((3, 5, 6)) + 7
    target = _target(tmp_path, suffix)
    write_volume(_volume(first), target)

    def snapshot() -> dict[str, bytes]:
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        return {str(p.relative_to(tmp_path)): p.read_bytes() for p in files}

    before, names = snapshot(), _listing(tmp_path)
    assert "already exists" in _error(write_volume, target, _volume(second), target)
    assert snapshot() == before and _listing(tmp_path) == names

    write_volume(_volume(second), target, overwrite=True)
    assert _listing(tmp_path) == names
    np.testing.assert_array_equal(read_image(target).array, second)
    if suffix == "":
        assert len(_listing(target)) == second.shape[0]


def test_check_output_path(tmp_path):
    nested = tmp_path / "a" / "b" / "out.nii.gz"
    assert check_output_path(nested) == nested
    assert _listing(tmp_path) == []
    existing = tmp_path / "done.nrrd"
    existing.write_text("x")
    _error(check_output_path, existing, existing)
    assert check_output_path(existing, overwrite=True) == existing


@pytest.mark.parametrize("relative", ["file.txt/out.nii.gz", "file.txt/sub/out.nii.gz", "file.txt/series"])
def test_output_below_a_regular_file(tmp_path, relative):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file")
    target = tmp_path / relative
    _error(write_volume, target, _volume(_int16_array()), target)
    _error(check_output_path, target, target)
    assert _listing(tmp_path) == ["file.txt"] and blocker.read_text() == "a regular file"


def test_failing_write_leaves_nothing(tmp_path):
    target = tmp_path / "series"
    _error(write_volume, target, _volume(_float_array()), target)
    assert not target.exists()
    assert _listing(tmp_path) == []


# 7. Messages are one line ----------------------------------------------------------------------------------------


def test_error_message_is_one_line():
    error = ContrastSegError("first line\nsecond line\r\n\tthird  line ")
    assert str(error) == "first line second line third line"
    assert "\n" not in str(ContrastSegError(ValueError("a\nb")))
