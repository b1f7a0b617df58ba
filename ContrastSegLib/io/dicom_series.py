"""A folder of DICOM slices, checked before it is stacked onto a grid: ITK stacks any set of slices of one series on
a uniform grid (a missing slice, a duplicated position or a second orientation only earn a console warning), which
would give a label map on a grid the scan does not have.

Checked from the slice headers: one SeriesInstanceUID, one ImageOrientationPatient, and positions along the slice
normal that are distinct and equally spaced (within 1 % of the spacing, at least 0.01 mm); the refusal names the
slice that breaks the rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import ContrastSegError
from .read_checks import check_voxel_count, first_line, list_folder
from .volume import format_numbers

ORIENTATION_TOLERANCE = 1e-3  # direction cosines
POSITION_TOLERANCE = 0.01  # of the slice spacing (and at least 0.01 mm)
PROBED_FILES = 8  # files whose first bytes are read to recognise DICOM slices named without .dcm
TAGS = ["SeriesInstanceUID", "ImageOrientationPatient", "ImagePositionPatient", "NumberOfFrames", "Rows", "Columns"]


def is_dicom_folder(folder: Path) -> bool:
    """Whether ``folder`` holds DICOM slices: a ``.dcm`` file, or a file with the ``DICM`` marker at byte 128 among
    its first few files (slices are often named without a suffix). Hidden files are ignored; a folder that
    cannot be listed is refused (``read_checks.list_folder``)."""
    if not folder.is_dir():
        return False
    files = [p for p in list_folder(folder) if not p.name.startswith(".")]
    if any(p.suffix.lower() == ".dcm" for p in files):
        return True
    return any(_has_dicom_marker(p) for p in files[:PROBED_FILES])


def _has_dicom_marker(path: Path) -> bool:
    try:
        if not path.is_file():  # never open a FIFO or device: that can block
            return False
        with open(path, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def read_dicom_series(folder: Path) -> sitk.Image:
    """The one DICOM series in ``folder`` as an image, after :func:`check_series` of its slices."""
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise ContrastSegError(f"{folder}: folder holds no DICOM series; point to a folder of .dcm slices or to a file")
    if len(series_ids) > 1:
        raise ContrastSegError(
            f"{folder}: folder holds {len(series_ids)} DICOM series; move each series into a folder of its own"
        )
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0])
    check_series(folder, [Path(f) for f in files])
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise ContrastSegError(f"{folder}: cannot read the DICOM series ({first_line(error)}); export the series "
                               "again") from None


def check_series(folder: Path, files: Sequence[Path]) -> None:
    """Refuse slices that do not form one uniform grid (see the module docstring); sizes bounded first."""
    import pydicom

    headers = []
    for file in files:
        try:
            headers.append(pydicom.dcmread(file, stop_before_pixels=True, specific_tags=TAGS))
        except Exception as error:  # pydicom raises many types for damaged files
            raise ContrastSegError(f"{file}: cannot read the DICOM header ({first_line(error)}); "
                                   f"remove the file from {folder} or export the series again") from None
    first = headers[0]
    frames = sum(int(getattr(h, "NumberOfFrames", 1) or 1) for h in headers)
    check_voxel_count(folder, (int(getattr(first, "Rows", 0) or 0), int(getattr(first, "Columns", 0) or 0), frames))
    if len(files) < 2 or frames != len(files):
        return  # a single slice or multi-frame files: ITK's reader handles their geometry
    uids = [str(getattr(h, "SeriesInstanceUID", "")) for h in headers]
    for file, uid in zip(files, uids):
        if uid != uids[0]:
            raise ContrastSegError(f"{file}: belongs to series {uid}, not {uids[0]} like {files[0].name}; move each "
                                   "series into a folder of its own")
    if any(not hasattr(h, "ImageOrientationPatient") or not hasattr(h, "ImagePositionPatient") for h in headers):
        return  # no patient geometry to check (e.g. secondary capture): ITK stacks the slices in file order
    orientations = np.array([[float(v) for v in h.ImageOrientationPatient] for h in headers])
    for file, orientation in zip(files, orientations):
        if np.abs(orientation - orientations[0]).max() > ORIENTATION_TOLERANCE:
            raise ContrastSegError(
                f"{file}: slice orientation {format_numbers(orientation)} differs from "
                f"{format_numbers(orientations[0])} of {files[0].name}; keep only the slices of one orientation "
                f"(one stack) in {folder}")
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    positions = np.array([[float(v) for v in h.ImagePositionPatient] for h in headers]) @ normal
    _check_positions(folder, files, positions)


def _check_positions(folder: Path, files: Sequence[Path], positions: np.ndarray) -> None:
    order = np.argsort(positions, kind="stable")
    ordered, names = positions[order], [files[i] for i in order]
    gaps = np.diff(ordered)
    spacing = float(np.median(gaps))
    tolerance = max(POSITION_TOLERANCE * spacing, 0.01)
    for n, gap in enumerate(gaps):
        if gap < tolerance:
            raise ContrastSegError(
                f"{names[n + 1]}: has the same slice position ({ordered[n + 1]:.4g} mm along the normal) as "
                f"{names[n].name}; remove the duplicate slice from {folder}")
    for n, gap in enumerate(gaps):
        if abs(gap - spacing) <= tolerance:
            continue
        missing = round(gap / spacing) - 1
        what = (f"{missing} slice(s) are missing after it (gap {gap:.4g} mm, spacing {spacing:.4g} mm)"
                if missing >= 1 and abs(gap - (missing + 1) * spacing) <= tolerance else
                f"the gap to the next slice is {gap:.4g} mm where the others are {spacing:.4g} mm")
        raise ContrastSegError(f"{names[n]}: {what}; export the complete series again (slices must be equally "
                               f"spaced to form one grid)")
