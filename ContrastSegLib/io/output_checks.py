"""Checks on a run's output paths made before any work: a volume suffix, and no output that is an input, holds an
input, lies inside an input DICOM folder, or is another output of the same run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..errors import ContrastSegError

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")  # one self-contained file each (no companion data file)


def check_volume_suffix(path: Path, option: str) -> Path:
    """``path`` must end in one of :data:`VOLUME_SUFFIXES` (``option`` names the flag in the message)."""
    if not path.name.lower().endswith(VOLUME_SUFFIXES):
        raise ContrastSegError(f"{option} {path}: not a volume file name; end it in "
                               f"{'/'.join(VOLUME_SUFFIXES)}")
    return path


def check_distinct(outputs: Iterable[tuple[str, Path]], inputs: Iterable[Path],
                   series_folders: Iterable[Path] = ()) -> None:
    """``outputs``: (option, path) pairs. Refuse two outputs on one path, an output on an input, an output folder
    holding an input, and an output inside one of ``series_folders`` (input DICOM folders, whose series it would
    change)."""
    seen: dict[Path, str] = {}
    sources = [(Path(p), _real(p)) for p in inputs]
    series = [(Path(p), _real(p)) for p in series_folders]
    for option, path in outputs:
        real = _real(path)
        if real in seen:
            raise ContrastSegError(f"{option} {path}: the same path as {seen[real]}; give each output its own name")
        seen[real] = f"{option} {path}"
        for source, source_real in sources:
            if real == source_real:
                raise ContrastSegError(f"{option} {path}: is the input {source} and would replace it; choose "
                                       "another output path")
            if source_real.is_relative_to(real):
                raise ContrastSegError(f"{option} {path}: holds the input {source} and replacing it would delete "
                                       "that; choose another output path")
        for folder, folder_real in series:
            if real.is_relative_to(folder_real):
                raise ContrastSegError(f"{option} {path}: lies inside the input DICOM folder {folder}; write "
                                       "outputs outside it")


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))
