"""Write volumes atomically, refusing to overwrite unless asked.

A volume is written to a staged file beside its target (see :mod:`.output_path`), read back (header size and
spacing, and every data byte for NIfTI, whose writer reports no short write) and only then renamed into place, so a
crash, a full disk or a bad input never leaves a partial output. A path without an image suffix is written as a
DICOM series folder.
"""

from __future__ import annotations

import gzip
import os
import time
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import ContrastSegError
from .output_path import atomic_path, check_output_path, write_errors, write_failure
from .read import FORMAT_HINT, image_suffix
from .volume import Volume, smallest_label_dtype

__all__ = ["atomic_path", "check_output_path", "write_image_like", "write_volume"]  # the first two: from .output_path


def write_volume(volume: Volume, path: str | os.PathLike, overwrite: bool = False, label: bool = False) -> Path:
    """Write ``volume`` to ``path`` (format from the suffix; no suffix: DICOM series folder).

    Label maps (``label=True``) are stored as uint8/uint16; geometry is written as held by the volume.
    """
    path = Path(path)
    if label and volume.array.size:  # the cast below would wrap -1 to 255 and truncate 0.5 to 0
        values = volume.array
        if not np.array_equal(values, np.round(values)) or values.min() < 0 or values.max() > 65535:
            raise ContrastSegError(
                f"{path}: a label map holds integers in 0..65535 (found {values.min()}..{values.max()}, "
                "or non-integer values); write it as an image (label=False) or relabel it"
            )
    array = volume.array.astype(smallest_label_dtype(volume.array)) if label else volume.array
    image = volume.with_array(array).to_sitk()
    if not image_suffix(path) and path.suffix != "":
        raise ContrastSegError(f"{path}: unknown output format; use {FORMAT_HINT}")
    with atomic_path(path, overwrite, kind="file" if image_suffix(path) else "folder") as temporary:
        if image_suffix(path):
            _write_checked(image, temporary, path)
        else:
            with write_errors(path):
                _write_dicom_series(image, temporary, target=path)
    return path


def write_image_like(image: sitk.Image, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write an already-built SimpleITK image (e.g. a multi-component probability map) atomically."""
    path = Path(path)
    if not image_suffix(path):
        raise ContrastSegError(f"{path}: unknown output format; use a .nii.gz, .nii, .nrrd or .mha file name")
    with atomic_path(path, overwrite, kind="file") as temporary:
        _write_checked(image, temporary, path)
    return path


def _write_checked(image: sitk.Image, temporary: Path, target: Path) -> None:
    """Write ``image`` to the staged file and read it back: a failed or short write raises :func:`write_failure`."""
    with write_errors(target):
        sitk.WriteImage(image, str(temporary), useCompression=True)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(temporary))
        reader.ReadImageInformation()
    if reader.GetSize() != image.GetSize() or not np.allclose(reader.GetSpacing(), image.GetSpacing(), rtol=1e-5):
        raise write_failure(target, f"read back as size {reader.GetSize()}, spacing {reader.GetSpacing()}")
    name = temporary.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        data_bytes = image.GetNumberOfPixels() * image.GetNumberOfComponentsPerPixel() * image.GetSizeOfPixelComponent()
        stored = _stored_bytes(temporary, target)
        if stored < 352 + data_bytes:  # NIfTI-1: a 348-byte header and 4 extension bytes, then the voxels
            raise write_failure(target, f"{stored} of {352 + data_bytes} bytes written")


def _stored_bytes(path: Path, target: Path) -> int:
    """Uncompressed length of a (gzipped) file, read in chunks; a truncated gzip stream is a write failure."""
    if not path.name.lower().endswith(".gz"):
        return path.stat().st_size
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(1 << 22):
                total += len(chunk)
    except (OSError, EOFError, zlib.error) as error:
        raise write_failure(target, f"compressed data incomplete: {error}") from None
    return total


def _write_dicom_series(image: sitk.Image, folder: Path, target: Path) -> None:
    """One file per slice with position, orientation and spacing tags; integer voxels only. ``folder`` is the
    staging folder, ``target`` the final path (named in messages; its name is the series description)."""
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        if not np.array_equal(array, np.round(array)) or array.min() < -32768 or array.max() > 32767:
            raise ContrastSegError(
                f"{target}: DICOM output holds integer voxels only; write a .nii.gz/.nrrd/.mha file instead"
            )
        image = sitk.Cast(image, sitk.sitkInt16)
    elif array.dtype.itemsize == 8:  # GDCM writes integers of at most 32 bits
        if array.min() < -(2**31) or array.max() >= 2**31:
            raise ContrastSegError(
                f"{target}: DICOM output holds integers of at most 32 bits (found {array.min()}..{array.max()}); "
                "write a .nii.gz/.nrrd/.mha file instead"
            )
        image = sitk.Cast(image, sitk.sitkInt32)
    folder.mkdir()
    direction = image.GetDirection()
    now = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    uid_root = "1.2.826.0.1.3680043.2.1125." + str(int(time.time() * 1e3))
    shared_tags = {
        "0008|0060": "OT",
        "0008|0020": now[0],
        "0008|0030": now[1],
        "0008|103e": target.name[:64],
        "0020|000d": uid_root + ".1",
        "0020|000e": uid_root + ".2",
        "0020|0037": "\\".join(f"{v:.10g}" for v in (direction[0], direction[3], direction[6],
                                                      direction[1], direction[4], direction[7])),
        "0018|0050": f"{image.GetSpacing()[2]:.10g}",
    }
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_image = image[:, :, k]
        for tag, value in shared_tags.items():
            slice_image.SetMetaData(tag, value)
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        slice_image.SetMetaData("0020|0032", "\\".join(f"{v:.10g}" for v in position))
        slice_image.SetMetaData("0020|0013", str(k + 1))
        slice_image.SetMetaData("0008|0018", f"{uid_root}.3.{k + 1}")
        writer.SetFileName(str(folder / f"slice_{k:04d}.dcm"))
        writer.Execute(slice_image)
