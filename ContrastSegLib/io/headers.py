"""Data-file pointers of MetaImage (``ElementDataFile``) and NRRD (``data file``) headers, checked before ITK opens
anything: each data file must be a readable regular file inside the header's own folder (after resolving ``..`` and
symbolic links), so that a header cannot make the reader follow a path anywhere, or block on a FIFO.

Forms handled: a single file name, ``LOCAL`` (MetaImage: the voxels follow the header), ``LIST`` (the file names
follow, one a line), and the numbered pattern ``name%03d.raw MIN MAX STEP``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ContrastSegError
from .read_checks import check_regular_file

HEADER_BYTES = 1 << 20  # headers are text at the start of the file; the voxels may follow
MAX_DATA_FILES = 100_000


def check_data_pointers(header: Path) -> None:
    """Refuse a ``.mhd``/``.mha``/``.nhdr``/``.nrrd`` header whose data files are not regular files in its folder."""
    for name in data_file_names(header):
        check_data_file(header, name)


def data_file_names(header: Path) -> list[str]:
    """The data files a MetaImage or NRRD header points to (empty when the voxels are in the header's file)."""
    with open(header, "rb") as stream:
        lines = stream.read(HEADER_BYTES).decode("latin-1").splitlines()
    if header.name.lower().endswith((".mhd", ".mha")):
        return _metaimage_files(header, lines)
    return _nrrd_files(header, lines)


def check_data_file(header: Path, name: str) -> Path:
    """The path of data file ``name`` of ``header``, refused when it leaves the header's folder or is no regular
    readable file."""
    folder = header.parent
    target = folder / name
    try:
        resolved, inside = target.resolve(), folder.resolve()
    except (OSError, RuntimeError):
        resolved, inside = None, None
    if resolved is None or not resolved.is_relative_to(inside):
        raise ContrastSegError(
            f"{header}: its data file pointer {name!r} leads outside the header's folder {folder}; keep the data "
            "file beside its header and point to it by name")
    check_regular_file(target, "data file named in the header", header=header)
    return target


def _metaimage_files(header: Path, lines: list[str]) -> list[str]:
    for number, line in enumerate(lines):
        key, _, value = line.partition("=")
        if key.strip().lower() != "elementdatafile":
            continue
        value = value.strip()
        if value.upper() == "LOCAL":
            return []
        if value.upper().startswith("LIST"):
            return _listed(header, lines[number + 1:], value)
        return _pattern(header, value) or [value]
    raise ContrastSegError(f"{header}: the MetaImage header has no ElementDataFile line; export the image again "
                           "as a .mha file (voxels in the same file)")


def _nrrd_files(header: Path, lines: list[str]) -> list[str]:
    for number, line in enumerate(lines):
        if not line.strip():
            break  # the header ends at the first blank line
        key, _, value = line.partition(":")
        if line.startswith("#") or key.strip().lower() not in ("data file", "datafile") or value.startswith("="):
            continue
        value = value.strip()
        if value.upper().startswith("LIST"):
            return _listed(header, lines[number + 1:], value)
        return _pattern(header, value) or [value]
    if header.name.lower().endswith(".nhdr"):
        raise ContrastSegError(f"{header}: the detached NRRD header has no 'data file' line; add one naming the "
                               "data file beside it, or export the image as a single .nrrd file")
    return []


def _listed(header: Path, lines: list[str], value: str) -> list[str]:
    names = [line.strip() for line in lines if line.strip()]
    if not names or len(names) > MAX_DATA_FILES:
        raise ContrastSegError(f"{header}: the header's data file pointer {value!r} lists {len(names)} files; list "
                               f"1..{MAX_DATA_FILES} data files after it, one a line")
    return names


def _pattern(header: Path, value: str) -> list[str] | None:
    """The files of a numbered pattern ``name%03d.raw MIN MAX STEP [SUBDIM]``, or None for a plain name."""
    words = value.split()
    if len(words) not in (4, 5) or "%" not in words[0]:
        return None
    try:
        first, last, step = (int(w) for w in words[1:4])
        count = len(range(first, last + (1 if step > 0 else -1), step))
        if not 0 < count <= MAX_DATA_FILES:
            raise ValueError
        return [words[0] % n for n in range(first, last + (1 if step > 0 else -1), step)]
    except (ValueError, TypeError):
        raise ContrastSegError(f"{header}: the header's data file pattern {value!r} is not 'NAME%d MIN MAX STEP' "
                               f"with 1..{MAX_DATA_FILES} files; fix the pattern or list the files") from None
