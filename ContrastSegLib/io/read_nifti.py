"""NIfTI-1 and NIfTI-2 files, judged from their header before any voxel is read.

* size: the declared voxel count is bounded (``read_checks.check_voxel_count``), and the data must be complete: ITK
  fills missing voxels with zeros and turns NaN/Inf into 0 without a word, so the voxels are scanned in chunks;
* voxel type: complex values are refused (their imaginary part would be dropped), 1-bit data (``DT_BINARY``, packed
  most significant bit first) and NIfTI-2 files, which ITK cannot read, are read here;
* geometry: the sform when its code is set, else the qform (as nibabel and FSL do), else the voxel sizes alone; a
  one-line warning when both are set and disagree; a sheared affine is refused, tiny deviations (float32 rounding)
  are orthonormalised.
"""

from __future__ import annotations

import gzip
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import ContrastSegError
from .read_checks import check_voxel_count, first_line, shear_accepted
from .volume import non_finite_error

SHEAR_TOLERANCE = 1e-3  # largest |cos| between two voxel axes (0.06° from perpendicular) accepted as rounding
FORM_TOLERANCE_MM = 1e-2  # qform and sform further apart than this (any entry, mm) are reported
DT_BINARY = 1
REEXPORT = "export it again as a complete .nii/.nii.gz file"


@dataclass(frozen=True)
class NiftiHeader:
    """The parsed header of ``path``: ``shape`` in (i, j, k, ...) order; ``dtype`` None for 1-bit data."""

    path: Path
    header: object  # nibabel Nifti1Header / Nifti2Header
    shape: tuple[int, ...]
    dtype: np.dtype | None
    offset: int

    @property
    def data_bytes(self) -> int:
        count = int(np.prod(self.shape))
        return (count + 7) // 8 if self.dtype is None else count * self.dtype.itemsize


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def read_nifti_header(path: Path) -> NiftiHeader:
    """The header of ``path``, checked: known voxel type, not complex, declared size within ``--max-voxels``."""
    import nibabel

    try:
        with _open(path) as stream:
            raw = stream.read(540)
        size = int.from_bytes(raw[:4], "little")
        version = 2 if 540 in (size, int.from_bytes(raw[:4], "big")) else 1
        klass = nibabel.Nifti2Header if version == 2 else nibabel.Nifti1Header
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nibabel's own remarks on odd headers: the checks below decide
            header = klass.from_fileobj(io.BytesIO(raw[:540 if version == 2 else 348]), check=False)
        if bytes(header["magic"]).rstrip(b"\0") not in (b"n+1", b"n+2"):
            raise ValueError("no single-file NIfTI magic string")
        ndim = int(header["dim"][0])
        shape = tuple(int(n) for n in header["dim"][1:ndim + 1])
        if not 1 <= ndim <= 7 or min(shape) < 1:
            raise ValueError(f"dimensions {tuple(int(n) for n in header['dim'])}")
        code = int(header["datatype"])
        dtype = None if code == DT_BINARY else np.dtype(header.get_data_dtype())
        offset = int(header["vox_offset"])
    except Exception as error:  # nibabel, gzip and zlib raise many types for damaged headers
        raise ContrastSegError(f"{path}: cannot read the NIfTI header ({first_line(error)}); the file is corrupt "
                               f"or not NIfTI — {REEXPORT}") from None
    check_voxel_count(path, shape)
    if dtype is not None and dtype.kind == "c":
        raise ContrastSegError(f"{path}: voxels are complex-valued ({dtype}); save the magnitude (abs) or the real "
                               "part as a real-valued image and retry")
    return NiftiHeader(path, header, shape, dtype, offset)


def check_nifti_voxels(nifti: NiftiHeader) -> None:
    """Refuse a file that ends before its last voxel, or holds NaN/Inf, reading at most a few MB at a time."""
    path, remaining, bad = nifti.path, nifti.data_bytes, 0
    dtype = nifti.dtype or np.dtype(np.uint8)
    if not path.name.lower().endswith(".gz") and path.stat().st_size < nifti.offset + remaining:
        raise _truncated(path)
    step = dtype.itemsize << 20
    try:
        with _open(path) as stream:
            stream.seek(nifti.offset)
            while remaining:
                size = min(remaining, step)
                chunk = stream.read(size)
                if len(chunk) < size:
                    raise _truncated(path)
                remaining -= size
                if dtype.kind == "f":
                    bad += int(np.count_nonzero(~np.isfinite(np.frombuffer(chunk, dtype))))
    except (OSError, EOFError, ValueError) as error:  # gzip and zlib raise these for damaged files
        raise ContrastSegError(f"{path}: cannot read the NIfTI file ({first_line(error)}); the file is corrupt or "
                               f"truncated — {REEXPORT}") from None
    if bad:
        raise non_finite_error(str(path), bad)


def read_nifti_voxels(nifti: NiftiHeader) -> sitk.Image:
    """The voxels of a file ITK cannot read (NIfTI-2, 1-bit, a non-orthonormal affine) as an image without
    geometry; (i, j, k[, t]) storage order, scaled by scl_slope/scl_inter like ITK does."""
    if len(nifti.shape) not in (2, 3, 4) or (nifti.dtype is not None and nifti.dtype.fields):
        raise ContrastSegError(f"{nifti.path}: a {len(nifti.shape)}-D NIfTI file of voxel type {nifti.dtype} "
                               "cannot be read; save it as a 3-D (or 4-D) scalar image")
    with _open(nifti.path) as stream:
        stream.seek(nifti.offset)
        data = stream.read(nifti.data_bytes)
    count = int(np.prod(nifti.shape))
    if nifti.dtype is None:
        array = np.unpackbits(np.frombuffer(data, np.uint8))[:count]
    else:
        array = np.frombuffer(data, nifti.dtype).astype(nifti.dtype.newbyteorder("="))
    array = array.reshape(nifti.shape, order="F")
    slope, inter = nifti.header.get_slope_inter()
    if slope not in (None, 1.0) or inter not in (None, 0.0):
        array = array * np.float32(1.0 if slope is None else slope) + np.float32(inter or 0.0)
    return sitk.GetImageFromArray(np.ascontiguousarray(array.T), isVector=False)


def nifti_geometry(nifti: NiftiHeader) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(spacing, origin, direction) in ITK's LPS convention of the header's affine (see the module docstring)."""
    header, path = nifti.header, nifti.path
    sform, qform = int(header["sform_code"]), int(header["qform_code"])
    if sform > 0:
        affine, name = header.get_sform(), "sform"
    elif qform > 0:
        affine, name = header.get_qform(), "qform"
    else:
        zooms = (list(header.get_zooms()) + [1.0, 1.0, 1.0])[:3]
        affine, name = np.diag(zooms + [1.0]), "voxel size"
    linear = (np.diag([-1.0, -1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)[:3, :3])
    spacing = np.linalg.norm(linear, axis=0)
    if not np.isfinite(linear).all() or not np.all(spacing > 0):
        raise ContrastSegError(f"{path}: the {name} gives a zero or non-finite voxel size; fix the header (e.g. "
                               f"nibabel's set_sform) or {REEXPORT}")
    axes = linear / spacing
    cosines = np.abs(axes.T @ axes - np.eye(3)).max()
    if cosines > SHEAR_TOLERANCE:
        angle = 90.0 - np.degrees(np.arccos(min(cosines, 1.0)))
        if not shear_accepted():
            raise ContrastSegError(f"{path}: the {name} is sheared (voxel axes {angle:.2f}° off perpendicular); "
                                   "resample it onto an orthogonal grid, or pass --accept-shear to read it with the "
                                   "nearest orthogonal axes")
        warnings.warn(f"{path}: the {name} is sheared ({angle:.2f}°); read with the nearest orthogonal axes "
                      "(--accept-shear)")
    if sform > 0 and qform > 0 and np.abs(header.get_sform() - header.get_qform()).max() > FORM_TOLERANCE_MM:
        warnings.warn(f"{path}: qform and sform disagree; using the sform (as nibabel and FSL do) — rewrite the "
                      "header with both set alike to silence this")
    u, _, vt = np.linalg.svd(axes)
    origin = np.diag([-1.0, -1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)[:3, 3]
    return tuple(map(float, spacing)), tuple(map(float, origin)), tuple(map(float, (u @ vt).ravel()))


def set_geometry(image: sitk.Image, geometry: tuple) -> sitk.Image:
    """``image`` (3-D) with the (spacing, origin, direction) of :func:`nifti_geometry`."""
    spacing, origin, direction = geometry
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _truncated(path: Path) -> ContrastSegError:
    return ContrastSegError(f"{path}: the NIfTI file is truncated before its last voxel; {REEXPORT}")
