"""Hostile inputs to the readers, through ``contrastseg predict``: data-file pointers leaving the header's folder or
naming a FIFO, sizes declared beyond ``--max-voxels``, absurd spacings, damaged DICOM series, NIfTI headers with a
shear or complex voxels, unreadable files. Each is one ``contrastseg: error:`` line naming the file and the fix,
exit 1, nothing written. Valid NIfTI-2, 1-bit and sform/qform files read with the header's geometry."""

from __future__ import annotations

import gzip
import os
import warnings

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from cli_helpers import FAST_PREDICT, assert_nothing_written, assert_refused, run_cli, write_pair
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.io import read_checks, read_image, reading, voxel_limit
from ContrastSegLib.settings import ReadConfig
from ContrastSegLib.preprocess.geometry import resampled_shape

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _predict_refused(capsys, tmp_path, model, bad, *fragments):
    out = tmp_path / "seg.nii.gz"
    before = sorted(p.name for p in tmp_path.iterdir())
    code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input", bad, "--output", out, *FAST_PREDICT)
    message = assert_refused(code, stdout, err, *fragments)
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert_nothing_written(out, tmp_path)
    return message


# --- data-file pointers of MetaImage and NRRD headers -----------------------------------------------------------

def _mhd(folder, pointer, name="scan.mhd", size=(8, 8, 4)):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"ObjectType = Image\nNDims = 3\nDimSize = {' '.join(map(str, size))}\n"
                    f"ElementType = MET_UCHAR\nElementSpacing = 1 1 1\nElementDataFile = {pointer}\n")
    return path


def _nhdr(folder, pointer, name="scan.nhdr"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 8 8 4\nspacings: 1 1 1\nencoding: raw\n"
                    f"data file: {pointer}\n\n")
    return path


def _outside_raw(tmp_path):
    secret = tmp_path / "secret.raw"
    secret.write_bytes(bytes(range(256)))
    return secret


POINTERS = {
    "mhd ../": lambda d, t: _mhd(d, "../secret.raw"),
    "mhd absolute": lambda d, t: _mhd(d, str(_outside_raw(t))),
    "nhdr ../": lambda d, t: _nhdr(d, "../secret.raw"),
    "nhdr LIST": lambda d, t: _nhdr(d, "LIST\nok.raw\n../secret.raw"),
    "mhd link out": lambda d, t: (_mhd(d, "link.raw"), (d / "link.raw").symlink_to(_outside_raw(t)))[0],
}


@pytest.mark.parametrize("name", list(POINTERS))
def test_data_file_pointer_outside_the_header_folder(capsys, tmp_path, model, name):
    _outside_raw(tmp_path)
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "ok.raw").write_bytes(bytes(128))
    header = POINTERS[name](folder, tmp_path)
    _predict_refused(capsys, tmp_path, model, header, str(header), "outside the header's folder", "beside")


@pytest.mark.parametrize("kind", ["fifo data file", "fifo image", "folder data file"])
def test_data_file_or_image_that_is_not_a_regular_file(capsys, tmp_path, model, kind):
    folder = tmp_path / "inputs"
    folder.mkdir()
    if kind == "fifo image":  # predict takes a path that is no file for a dataset folder: read it directly
        image = folder / "scan.nii.gz"
        os.mkfifo(image)
        with pytest.raises(ContrastSegError, match="scan.nii.gz: is not a regular file"):
            read_image(image)
        return
    header = _mhd(folder, "data.raw")
    os.mkfifo(folder / "data.raw") if kind == "fifo data file" else (folder / "data.raw").mkdir()
    _predict_refused(capsys, tmp_path, model, header, str(header), "not a regular file")


def test_missing_or_unreadable_data_is_named_as_such(capsys, tmp_path, model, monkeypatch):
    header = _mhd(tmp_path / "inputs", "scan.raw")
    message = _predict_refused(capsys, tmp_path, model, header, str(header), "scan.raw", "no such file")
    assert "corrupt" not in message
    image = write_pair(tmp_path / "inputs", "gamma")[0]
    real_open = open
    monkeypatch.setattr(read_checks, "open", lambda p, *a, **k: (_ for _ in ()).throw(PermissionError(13, "x"))
                        if str(p) == str(image) else real_open(p, *a, **k), raising=False)
    message = _predict_refused(capsys, tmp_path, model, image, str(image), "permission denied", "chmod")
    assert "corrupt" not in message


# --- sizes declared in headers, and spacings ----------------------------------------------------------------------

def _nifti_header_only(path, shape, data=b""):
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header["vox_offset"] = 352
    block = header.binaryblock + bytes(4) + data
    path.write_bytes(gzip.compress(block, 1) if path.name.endswith(".gz") else block)
    return path


@pytest.mark.parametrize("kind", ["nii header", "nii.gz bomb", "mha header"])
def test_declared_size_beyond_max_voxels(capsys, tmp_path, model, kind):
    folder = tmp_path / "inputs"
    folder.mkdir()
    if kind == "nii header":  # 4 KB claiming 2^31 voxels: refused before any allocation
        bad = _nifti_header_only(folder / "huge.nii", (2048, 2048, 512), bytes(4096))
    elif kind == "nii.gz bomb":  # 8 MB of zeros compressed to a few KB, header claiming 1100^3 voxels
        bad = _nifti_header_only(folder / "bomb.nii.gz", (1100, 1100, 1000), bytes(8 << 20))
    else:
        bad = folder / "huge.mha"
        bad.write_text("ObjectType = Image\nNDims = 3\nDimSize = 2048 2048 512\nElementType = MET_UCHAR\n"
                       "ElementDataFile = LOCAL\n")
    _predict_refused(capsys, tmp_path, model, bad, str(bad), "--max-voxels")


def test_max_voxels_can_be_lowered_and_raised(tmp_path):
    path = _nifti_header_only(tmp_path / "small.nii.gz", (16, 16, 8), bytes(16 * 16 * 8))
    with voxel_limit(1000), pytest.raises(ContrastSegError, match="more than --max-voxels 1,000"):
        read_image(path)
    with voxel_limit(16 * 16 * 8):
        assert read_image(path).array.shape == (8, 16, 16)


@pytest.mark.parametrize("spacing", [1e-9, 1e4])
def test_absurd_file_spacing(capsys, tmp_path, model, spacing):
    bad = tmp_path / "inputs" / "odd.nii.gz"
    bad.parent.mkdir()
    image = sitk.GetImageFromArray(np.ones((4, 16, 16), np.float32))
    image.SetSpacing((spacing, spacing, 1.0))
    sitk.WriteImage(image, str(bad))
    _predict_refused(capsys, tmp_path, model, bad, str(bad), "voxel spacing", "true spacing")


def test_resampling_factor_out_of_range(capsys, tmp_path, model):
    bad = tmp_path / "inputs" / "coarse.nii.gz"
    bad.parent.mkdir()
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((4, 16, 16)).astype(np.float32))
    image.SetSpacing((400.0, 400.0, 4.0))  # the model resamples to 4 mm: a factor of 100
    sitk.WriteImage(image, str(bad))
    _predict_refused(capsys, tmp_path, model, bad, "--spacing", "scale factors")
    with pytest.raises(ContrastSegError, match="scan.nii: resampling"):
        resampled_shape((16, 16), (1e-3, 1e-3), 1.0, source="scan.nii")
    with voxel_limit(10_000), pytest.raises(ContrastSegError, match="--max-voxels"):
        resampled_shape((100, 100), (1.0, 1.0), 0.5, source="scan.nii", slices=2)
    assert resampled_shape((40, 40), (1.5, 1.5), 4.0) == (15, 15)


# --- DICOM series ---------------------------------------------------------------------------------------------

def _dicom_slice(path, series_uid, position, orientation=(1, 0, 0, 0, 1, 0), number=1):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = f"{series_uid}.{number}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = "MR", "1.2.826.0.1.3680043.2.1125.7", series_uid
    ds.InstanceNumber, ds.ImagePositionPatient = number, [0.0, 0.0, float(position)]
    ds.ImageOrientationPatient, ds.PixelSpacing = [float(v) for v in orientation], [1.0, 1.0]
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.full((8, 8), number, np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


SERIES = {  # name: (positions, the slice (index) that differs, in what, expected phrase)
    "missing slice": ([0, 2, 4, 8, 10], None, None, "1 slice(s) are missing"),
    "uneven gap": ([0, 2, 4, 7, 9, 11], None, None, "the gap to the next slice is 3"),
    "duplicated position": ([0, 2, 4, 4, 6], None, None, "same slice position"),
    "mixed orientation": ([0, 2, 4, 6, 8], 2, "orientation", "slice orientation"),
    "two series UIDs": ([0, 2, 4, 6, 8], 3, "uid", "2 DICOM series"),
}


@pytest.mark.parametrize("name", list(SERIES))
def test_damaged_dicom_series(capsys, tmp_path, model, name):
    positions, odd, what, phrase = SERIES[name]
    folder = tmp_path / "inputs" / "series"
    folder.mkdir(parents=True)
    uid = "1.2.826.0.1.3680043.2.1125.7.1"
    for n, z in enumerate(positions):
        orientation = (1, 0, 0, 0, 0.8, 0.6) if n == odd and what == "orientation" else (1, 0, 0, 0, 1, 0)
        _dicom_slice(folder / f"s{n:02d}.dcm", uid + (".9" if n == odd and what == "uid" else ""), z, orientation,
                     number=n + 1)
    message = _predict_refused(capsys, tmp_path, model, folder, str(folder), phrase)
    assert what == "uid" or ".dcm" in message  # the slice that breaks the grid is named


def test_complete_dicom_series_reads(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for n, z in enumerate([0, 2, 4, 6]):
        _dicom_slice(folder / f"s{n:02d}.dcm", "1.2.826.0.1.3680043.2.1125.7.2", z, number=n + 1)
    volume = read_image(folder)
    assert volume.array.shape == (4, 8, 8)
    np.testing.assert_allclose(volume.spacing, (1.0, 1.0, 2.0), atol=1e-6)


# --- NIfTI headers ------------------------------------------------------------------------------------------------

def _nifti(path, data, sform=None, qform=None, klass=nib.Nifti1Image):
    image = klass(data, sform if sform is not None else np.eye(4))
    image.set_sform(sform, code=1 if sform is not None else 0)
    image.set_qform(qform, code=1 if qform is not None else 0)
    nib.save(image, path)
    return path


def test_sheared_or_complex_nifti_is_refused(capsys, tmp_path, model):
    folder = tmp_path / "inputs"
    folder.mkdir()
    shear = np.array([[2.0, 0.3, 0, 0], [0, 2.0, 0, 0], [0, 0, 4.0, 0], [0, 0, 0, 1]])
    bad = _nifti(folder / "sheared.nii.gz", np.ones((16, 16, 4), np.float32), sform=shear)
    _predict_refused(capsys, tmp_path, model, bad, str(bad), "sheared", "--accept-shear")
    with reading(ReadConfig(accept_shear=True)), pytest.warns(UserWarning, match="nearest orthogonal axes"):
        volume = read_image(bad)  # asked for: read, on the nearest orthogonal axes
    assert volume.array.shape == (4, 16, 16)
    np.testing.assert_allclose(np.reshape(volume.direction, (3, 3)) @ np.reshape(volume.direction, (3, 3)).T,
                               np.eye(3), atol=1e-6)
    bad = _nifti(folder / "complex.nii.gz", np.ones((16, 16, 4), np.complex64), sform=np.eye(4))
    _predict_refused(capsys, tmp_path, model, bad, str(bad), "complex-valued", "magnitude")


def _lps(affine):
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    return spacing, lps[:3, 3], (lps[:3, :3] / spacing).ravel()


def test_sform_is_preferred_and_a_disagreeing_qform_reported(tmp_path):
    data = np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8)  # nibabel order (i, j, k)
    sform = np.array([[0, -1.5, 0, 10], [1.5, 0, 0, -20], [0, 0, 3.0, 30], [0, 0, 0, 1]])  # 90° from the qform
    qform = np.diag([1.5, 1.5, 3.0, 1.0])
    qform[:3, 3] = (70, -20, 30)  # 60 mm apart
    path = _nifti(tmp_path / "forms.nii.gz", data, sform=sform, qform=qform)
    with pytest.warns(UserWarning, match="qform and sform disagree; using the sform"):
        volume = read_image(path)
    spacing, origin, direction = _lps(sform)
    np.testing.assert_allclose(volume.spacing, spacing, atol=1e-5)
    np.testing.assert_allclose(volume.origin, origin, atol=1e-4)
    np.testing.assert_allclose(volume.direction, direction, atol=1e-6)
    np.testing.assert_array_equal(volume.array, data.T)
    same = _nifti(tmp_path / "same.nii.gz", data, sform=sform, qform=sform)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(same)


def test_nifti2_and_one_bit_nifti_read_with_their_geometry(tmp_path):
    affine = np.array([[-2.0, 0, 0, 5], [0, 2.5, 0, -6], [0, 0, 3.0, 7], [0, 0, 0, 1]])
    data = np.random.default_rng(1).integers(0, 1000, (6, 7, 8)).astype(np.int16)
    path = _nifti(tmp_path / "two.nii", data, sform=affine, klass=nib.Nifti2Image)
    volume = read_image(path)
    spacing, origin, direction = _lps(affine)
    np.testing.assert_array_equal(volume.array, data.T)
    np.testing.assert_allclose(volume.spacing, spacing, atol=1e-6)
    np.testing.assert_allclose(volume.origin, origin, atol=1e-6)
    np.testing.assert_allclose(volume.direction, direction, atol=1e-9)

    bits = (np.arange(8 * 4 * 3) % 3 == 0).astype(np.uint8).reshape((8, 4, 3), order="F")
    header = nib.Nifti1Header()
    header.set_data_shape(bits.shape)
    header.set_sform(affine, 1)
    header["datatype"], header["bitpix"], header["vox_offset"] = 1, 1, 352
    binary = tmp_path / "mask.nii"
    binary.write_bytes(header.binaryblock + bytes(4) + np.packbits(bits.ravel(order="F")).tobytes())
    volume = read_image(binary)
    np.testing.assert_array_equal(volume.array, bits.T)
    np.testing.assert_allclose(volume.spacing, spacing, atol=1e-6)


def test_rounding_shear_is_read_with_the_nearest_orthonormal_direction(tmp_path):
    affine = np.array([[-0.8, 0.0004, 0, 10], [0, 1.2, 0, -20], [0, 0, 2.5, 30], [0, 0, 0, 1]])  # ITK refuses it
    data = np.random.default_rng(2).random((6, 7, 8)).astype(np.float32)
    volume = read_image(_nifti(tmp_path / "nearly.nii.gz", data, sform=affine))
    direction = np.asarray(volume.direction).reshape(3, 3)
    np.testing.assert_allclose(direction @ direction.T, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(volume.origin, (-10.0, 20.0, 30.0), atol=1e-5)
    np.testing.assert_array_equal(volume.array, data.T)
