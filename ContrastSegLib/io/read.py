"""Read NIfTI, NRRD, MetaImage and DICOM series into :class:`Volume` objects.

SimpleITK does the reading; nibabel reads the NIfTI files ITK refuses because their direction cosines are not
orthonormal (common after some registrations and conversions), and the direction is then orthonormalised.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import ContrastSegError
from .volume import Volume, check_image, check_label, non_finite_error

FILE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
FORMAT_HINT = "a complete .nii/.nii.gz/.nrrd/.mha/.mhd file or a folder holding one DICOM series"


def image_suffix(path: str | os.PathLike) -> str | None:
    """The known image suffix of ``path`` (``.nii.gz`` counts as one), or None."""
    name = str(path).lower()
    return next((s for s in FILE_SUFFIXES if name.endswith(s)), None)


def case_stem(path: str | os.PathLike) -> str:
    """File name without its image suffix: ``/a/case_01.nii.gz`` -> ``case_01``."""
    name = Path(path).name
    suffix = image_suffix(name)
    return name[: -len(suffix)] if suffix else name


def read_image(path: str | os.PathLike, channel: int | None = None) -> Volume:
    """Read an intensity volume (float32) and check it is usable (3-D, ≥ 2 slices, finite)."""
    image = _read_sitk(Path(path), channel)
    volume = Volume.from_sitk(image, str(path))
    return check_image(volume.with_array(volume.array.astype(np.float32, copy=False)))


def read_label(path: str | os.PathLike, image: Volume | None = None, allowed: set[int] | None = None) -> Volume:
    """Read a label map (integer array); with ``image``, its grid must match the image's."""
    volume = Volume.from_sitk(_read_sitk(Path(path), None), str(path))
    return check_label(volume, image=image, allowed=allowed)


def _read_sitk(path: Path, channel: int | None) -> sitk.Image:
    if not path.exists():
        raise ContrastSegError(f"{path}: no such file or folder; check the path")
    if path.is_dir():
        image = _read_dicom_series(path)
    else:
        if image_suffix(path) is None and path.suffix.lower() not in (".dcm", ""):
            raise ContrastSegError(f"{path}: unknown image format; use {FORMAT_HINT}")
        try:
            image = _read_file(path)
            if path.name.lower().endswith((".nii", ".nii.gz")):
                _check_nifti_voxels(path)
        except RuntimeError as error:
            if "orthonormal" in str(error) and path.name.lower().endswith((".nii", ".nii.gz")):
                image = _read_nifti_non_orthonormal(path)
            else:
                raise ContrastSegError(
                    f"{path}: cannot read the image ({_first_line(error)}); the file is corrupt or truncated — "
                    f"export it again as {FORMAT_HINT}"
                ) from None
    return _to_scalar_3d(image, path, channel)


def _read_file(path: Path) -> sitk.Image:
    """``sitk.ReadImage`` of exactly ``path``: for ``x.nii.gz`` ITK's NIfTI library takes the voxels from a sibling
    ``x.nii`` when one exists, so such a file is read through a link in a folder of its own."""
    if not (path.name.lower().endswith(".nii.gz") and path.with_name(path.name[:-3]).exists()):
        return sitk.ReadImage(str(path))
    with tempfile.TemporaryDirectory() as folder:
        link = Path(folder) / path.name
        try:
            link.symlink_to(path.resolve())
        except OSError:
            raise ContrastSegError(
                f"{path}: {path.name[:-3]} in the same folder would be read instead; move one of the two away"
            ) from None
        return sitk.ReadImage(str(link))


def _check_nifti_voxels(path: Path) -> None:
    """ITK reads a truncated NIfTI file without complaint, filling the missing voxels with zeros, and silently
    replaces NaN and Inf by 0; refuse such files as for the other formats."""
    import nibabel

    bad = 0
    try:
        voxels = nibabel.load(str(path)).dataobj  # its offset is the file's; the loaded header's is reset to 0
        remaining = int(np.prod(voxels.shape)) * voxels.dtype.itemsize
        step = voxels.dtype.itemsize << 20
        with (gzip.open if path.name.lower().endswith(".gz") else open)(path, "rb") as stream:
            stream.seek(int(voxels.offset))
            while remaining:
                size = min(remaining, step)
                chunk = stream.read(size)
                if len(chunk) < size:
                    break
                remaining -= size
                if voxels.dtype.kind in "fc":
                    bad += int(np.count_nonzero(~np.isfinite(np.frombuffer(chunk, voxels.dtype))))
    except Exception as error:  # nibabel, gzip and zlib raise many types for damaged files
        raise ContrastSegError(
            f"{path}: cannot read the NIfTI file ({_first_line(error)}); the file is corrupt or truncated — "
            f"export it again as {FORMAT_HINT}"
        ) from None
    if remaining:
        raise ContrastSegError(
            f"{path}: the NIfTI file is truncated before its last voxel; export it again as {FORMAT_HINT}"
        )
    if bad:
        raise non_finite_error(str(path), bad)


def _read_dicom_series(folder: Path) -> sitk.Image:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise ContrastSegError(f"{folder}: folder holds no DICOM series; point to a folder of .dcm slices or to a file")
    if len(series_ids) > 1:
        raise ContrastSegError(
            f"{folder}: folder holds {len(series_ids)} DICOM series; move each series into a folder of its own"
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise ContrastSegError(f"{folder}: cannot read the DICOM series ({_first_line(error)})") from None


def _read_nifti_non_orthonormal(path: Path) -> sitk.Image:
    import nibabel

    try:
        nifti = nibabel.load(str(path))
        data = np.asanyarray(nifti.dataobj)
    except Exception as error:  # nibabel raises many types for damaged files
        raise ContrastSegError(f"{path}: cannot read the NIfTI file ({_first_line(error)})") from None
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ nifti.affine
    linear = lps_affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    u, _, vt = np.linalg.svd(linear / spacing)
    warnings.warn(f"{path}: direction cosines are not orthonormal; using the nearest orthonormal direction")
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.T) if data.ndim == 3 else data.T)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in lps_affine[:3, 3]])
    image.SetDirection([float(d) for d in (u @ vt).ravel()])
    return image


def _to_scalar_3d(image: sitk.Image, path: Path, channel: int | None) -> sitk.Image:
    components = image.GetNumberOfComponentsPerPixel()
    if components > 1:
        if channel is None:
            raise ContrastSegError(
                f"{path}: image has {components} components per voxel (RGB/vector); "
                "select one with --channel N or convert it to a scalar volume"
            )
        image = sitk.VectorIndexSelectionCast(image, _check_channel(channel, components, path))
    if image.GetDimension() == 4:
        frames = image.GetSize()[3]
        if channel is None:
            raise ContrastSegError(
                f"{path}: image is 4-D with {frames} frames/channels; select one with --channel N "
                "(e.g. 0 for the first MSD modality) or extract a 3-D volume"
            )
        size = list(image.GetSize())
        size[3] = 0
        index = [0, 0, 0, _check_channel(channel, frames, path)]
        image = sitk.Extract(image, size, index, sitk.ExtractImageFilter.DIRECTIONCOLLAPSETOSUBMATRIX)
    if image.GetDimension() != 3:
        raise ContrastSegError(
            f"{path}: image is {image.GetDimension()}-D; ContrastSeg needs a 3-D volume (a stack of slices)"
        )
    return image


def _check_channel(channel: int, count: int, path: Path) -> int:
    if not 0 <= channel < count:
        raise ContrastSegError(f"{path}: --channel {channel} is out of range; the image has {count} (0..{count - 1})")
    return channel


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception thrown", "sitk::ERROR"))]
    return (useful or lines or [type(error).__name__])[-1][:200]
