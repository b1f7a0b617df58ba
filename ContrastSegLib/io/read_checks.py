"""Checks made before any voxel is read: the path exists (a dangling link named as such), a folder can be listed,
a file is a readable regular file, and the declared size is bounded.

The limits are process-wide (the command line sets them from ``--max-voxels`` and ``--accept-shear``);
:func:`reading` changes them for a block of code, e.g. a script reading larger scans.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import ContrastSegError
from ..settings import ReadConfig

_current = [ReadConfig()]


def max_voxels() -> int:
    """The largest voxel count (over all frames and components) an image may declare."""
    return _current[0].max_voxels


def shear_accepted() -> bool:
    """Whether a sheared NIfTI affine is read (nearest orthogonal axes) rather than refused."""
    return _current[0].accept_shear


@contextlib.contextmanager
def reading(config: ReadConfig | None) -> Iterator[None]:
    """Within the block, images are read under ``config`` (None: keep the current settings)."""
    previous = _current[0]
    if config is not None:
        _current[0] = config.check()
    try:
        yield
    finally:
        _current[0] = previous


def voxel_limit(limit: int | None) -> contextlib.AbstractContextManager:
    """Within the block, images may declare up to ``limit`` voxels (None: keep the current limit)."""
    return reading(None if limit is None else ReadConfig(max_voxels=limit, accept_shear=shear_accepted()))


def check_voxel_count(path: str | os.PathLike, shape: Sequence[int]) -> None:
    """Refuse an image whose header declares more voxels than :func:`max_voxels` (``shape``: any order)."""
    count = 1
    for n in shape:
        count *= max(int(n), 1)
    if count > max_voxels():
        size = "×".join(str(int(n)) for n in shape)
        raise ContrastSegError(
            f"{path}: the header declares {size} = {count:,} voxels, more than --max-voxels {max_voxels():,}; "
            "crop or downsample the scan, or raise --max-voxels if the file is genuine and memory allows")


def check_regular_file(path: Path, role: str = "image file", header: Path | None = None) -> None:
    """Refuse ``path`` unless it is an existing, readable regular file (no FIFO, device or folder: opening those
    can block or read without end). ``header``: the file that points to ``path``, named in the message."""
    where = f"{header}: its data file {path}" if header else f"{path}"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ContrastSegError(f"{where}: no such file; put the {role} there or fix the path") from None
    except OSError as error:
        raise ContrastSegError(f"{where}: cannot be inspected ({error.strerror}); check the path") from None
    if not stat.S_ISREG(mode):
        raise ContrastSegError(f"{where}: is not a regular file (a FIFO, device or folder); point to the {role} "
                               "itself")
    check_readable(path, where)


def check_exists(path: Path, fix: str = "check the path") -> None:
    """Refuse a path that does not exist, naming a symbolic link that points nowhere as such, or that cannot be
    looked at (a folder on the way that may not be searched)."""
    try:
        os.stat(path)
        return
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as error:
        raise ContrastSegError(f"{path}: cannot be inspected ({error.strerror or error}); make its folder readable "
                               "(chmod +rx) or check the path") from None
    if os.path.islink(path):
        raise ContrastSegError(f"{path}: the link points nowhere ({os.readlink(path)} does not exist); fix the "
                               "link or remove it")
    raise ContrastSegError(f"{path}: no such file or folder; {fix}")


def list_folder(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted; a folder that cannot be listed (no permission) is refused in one line."""
    try:
        return sorted(folder.iterdir())
    except OSError as error:
        raise ContrastSegError(f"{folder}: cannot list the folder ({error.strerror or error}); make it readable "
                               "(chmod +rx) or copy it somewhere readable") from None


def check_readable(path: Path, where: str | None = None) -> None:
    """Refuse a file this process may not open for reading, naming it as unreadable rather than corrupt."""
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise ContrastSegError(f"{where or path}: permission denied; make the file readable (chmod +r) or copy "
                               "it somewhere readable") from None
    except OSError as error:
        raise ContrastSegError(f"{where or path}: cannot be opened ({error.strerror}); check the path") from None


def first_line(error: BaseException) -> str:
    """The useful last line of an exception's message (ITK's carry a C++ trace first), at most 200 characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception thrown", "sitk::ERROR"))]
    return (useful or lines or [type(error).__name__])[-1][:200]
