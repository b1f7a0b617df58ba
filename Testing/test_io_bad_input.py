"""Bad inputs of the I/O layer: one-line errors naming the file, and atomic writes that leave nothing on refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.io import check_output_path, read_image, read_label, write_volume
from io_helpers import (
    ORIGIN, SPACING, _error, _float_array, _int16_array, _listing, _target, _volume, _write_dicom_slices,
)


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
