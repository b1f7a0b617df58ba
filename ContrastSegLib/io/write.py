"""Write volumes and other outputs atomically, refusing to overwrite unless asked.

A file is written to a temporary name in the target folder and renamed into place, so a crash or a bad input never
leaves a partial output behind. A path without an image suffix is written as a DICOM series folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import SimpleITK as sitk

from ..errors import ContrastSegError
from .read import FORMAT_HINT, image_suffix
from .volume import Volume, smallest_label_dtype


def check_output_path(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an existing output (unless ``overwrite``) or one that cannot be written; nothing is created."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ContrastSegError(f"{path}: output already exists; pass --overwrite or choose another path")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise ContrastSegError(f"{path}: output folder {ancestor} is not a writable folder; choose another path")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a path with ``path``'s name in a hidden temporary folder beside it; on success its files replace
    ``path`` (companion files such as a .mhd's .zraw first, the named file last), on error they are removed."""
    path = check_output_path(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        yield staging / path.name
        companions = sorted(p for p in staging.iterdir() if p.name != path.name)
        for companion in companions:
            os.replace(companion, path.parent / companion.name)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists() and (staging / path.name).is_dir():
            path.unlink()  # rename() cannot put a folder in place of a file
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
    with atomic_path(path, overwrite) as temporary:
        if image_suffix(path):
            sitk.WriteImage(image, str(temporary), useCompression=True)
        elif path.suffix == "":
            _write_dicom_series(image, temporary, target=path)
        else:
            raise ContrastSegError(f"{path}: unknown output format; use {FORMAT_HINT}")
    return path


def write_image_like(image: sitk.Image, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write an already-built SimpleITK image (e.g. a multi-component probability map) atomically."""
    with atomic_path(path, overwrite) as temporary:
        sitk.WriteImage(image, str(temporary), useCompression=True)
    return Path(path)


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
