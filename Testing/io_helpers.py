"""Shared fixtures of the I/O tests: an oblique anisotropic geometry, arrays, DICOM slice writing, error capture."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.io import Volume

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
