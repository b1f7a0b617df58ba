"""Read NIfTI, NRRD, MetaImage and DICOM series into :class:`Volume` objects.

Before any voxel is read: the path must be a readable regular file (``read_checks``), the data files a MetaImage or
NRRD header points to must lie beside it (``headers``), the declared voxel count must be within ``--max-voxels``,
a DICOM series must form one uniform grid (``dicom_series``), and a NIfTI header must give a sane geometry
(``read_nifti``). SimpleITK then reads the voxels; nibabel-parsed NIfTI files ITK cannot read are read directly.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import ContrastSegError
from .dicom_series import read_dicom_series
from .headers import check_data_pointers
from .native_stderr import native_stderr_silenced
from .read_checks import check_exists, check_regular_file, check_voxel_count, first_line
from .read_nifti import (check_nifti_voxels, is_nifti, nifti_geometry, read_nifti_header, read_nifti_voxels,
                         set_geometry)
from .volume import Volume, check_image, check_label

FILE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
HEADER_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
FORMAT_HINT = "a complete .nii/.nii.gz/.nrrd/.mha/.mhd file or a folder holding one DICOM series"
COMPLEX_PIXELS = (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64)


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
    image = _read_sitk(Path(path), channel, "image")
    volume = Volume.from_sitk(image, str(path))
    return check_image(volume.with_array(volume.array.astype(np.float32, copy=False)))


def read_label(path: str | os.PathLike, image: Volume | None = None, allowed: set[int] | None = None) -> Volume:
    """Read a label map (integer array); with ``image``, its grid must match the image's."""
    volume = Volume.from_sitk(_read_sitk(Path(path), None, "label map"), str(path))
    return check_label(volume, image=image, allowed=allowed)


def _read_sitk(path: Path, channel: int | None, role: str) -> sitk.Image:
    check_exists(path)
    if path.is_dir():
        return _to_scalar_3d(read_dicom_series(path), path, channel, role)
    if image_suffix(path) is None and path.suffix.lower() not in (".dcm", ""):
        raise ContrastSegError(f"{path}: unknown image format; use {FORMAT_HINT}")
    check_regular_file(path)
    if is_nifti(path):
        return _read_nifti(path, channel, role)
    if image_suffix(path) in HEADER_SUFFIXES:
        check_data_pointers(path)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        with native_stderr_silenced():
            reader.ReadImageInformation()
        check_voxel_count(path, reader.GetSize() + (reader.GetNumberOfComponents(),))
        with native_stderr_silenced():
            image = reader.Execute()
    except RuntimeError as error:
        raise _corrupt(path, error) from None
    return _to_scalar_3d(image, path, channel, role)


def _read_nifti(path: Path, channel: int | None, role: str) -> sitk.Image:
    """NIfTI-1/-2: header checks and geometry from ``read_nifti``; ITK reads the voxels where it can."""
    nifti = read_nifti_header(path)
    check_nifti_voxels(nifti)
    geometry = nifti_geometry(nifti)
    try:
        image = _read_file(path)
    except RuntimeError:
        image = read_nifti_voxels(nifti)  # NIfTI-2, 1-bit, or an affine ITK calls non-orthonormal
    return set_geometry(_to_scalar_3d(image, path, channel, role), geometry)


def _read_file(path: Path) -> sitk.Image:
    """``sitk.ReadImage`` of exactly ``path``: for ``x.nii.gz`` ITK's NIfTI library takes the voxels from a sibling
    ``x.nii`` when one exists, so such a file is read through a link in a folder of its own. niftilib's console
    lines are held back (``native_stderr``): a failure here is handled by the caller."""
    if not (path.name.lower().endswith(".nii.gz") and path.with_name(path.name[:-3]).exists()):
        with native_stderr_silenced():
            return sitk.ReadImage(str(path))
    with tempfile.TemporaryDirectory() as folder:
        link = Path(folder) / path.name
        try:
            link.symlink_to(path.resolve())
        except OSError:
            raise ContrastSegError(
                f"{path}: {path.name[:-3]} in the same folder would be read instead; move one of the two away"
            ) from None
        with native_stderr_silenced():
            return sitk.ReadImage(str(link))


def _corrupt(path: Path, error: BaseException) -> ContrastSegError:
    return ContrastSegError(f"{path}: cannot read the image ({first_line(error)}); the file is corrupt or "
                            f"truncated — export it again as {FORMAT_HINT}")


def _to_scalar_3d(image: sitk.Image, path: Path, channel: int | None, role: str) -> sitk.Image:
    """A 3-D scalar image; ``channel`` selects the component or frame of an image (``role`` "image"); a label map
    must be 3-D and scalar already (``--channel`` applies to images only)."""
    if image.GetPixelID() in COMPLEX_PIXELS:
        raise ContrastSegError(f"{path}: voxels are complex-valued; save the magnitude (abs) or the real part as a "
                               "real-valued image and retry")
    components = image.GetNumberOfComponentsPerPixel()
    if role != "image" and (components > 1 or image.GetDimension() == 4):
        shape = (f"has {components} components per voxel" if components > 1 else
                 f"is 4-D with {image.GetSize()[3]} frames")
        raise ContrastSegError(f"{path}: the {role} {shape}; a {role} must be one 3-D volume of label values — "
                               f"save the {role} as a single 3-D scalar image")
    if channel is not None and components == 1 and image.GetDimension() == 3:
        raise ContrastSegError(f"{path}: --channel {channel} was given, but the image is a 3-D volume with no "
                               "channels; leave out --channel for it")
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
