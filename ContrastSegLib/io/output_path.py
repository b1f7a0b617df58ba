"""Output paths: refuse what must not be replaced, stage every write beside its target, check it, rename it in.

A file replaces only a file and a folder only a folder, and either only with ``overwrite``. Everything is written
under a hidden ``.<name>.partial-<pid>-*`` folder beside the target; the staged result is flushed to disk and must be
non-empty before it is renamed into place, so a crash, a full disk or a signal never leaves a partial or emptied
output, and an existing output stays byte-identical. Staging left by a killed run is removed by the next write of
the same output.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Literal

from ..errors import ContrastSegError

Kind = Literal["file", "folder"]
# Suffixes that name a file, so that an existing folder of that name is refused before any work.
FILE_SUFFIXES = {".pt", ".pth", ".resume", ".csv", ".json", ".md", ".png", ".txt", ".nii", ".gz", ".nrrd", ".mha",
                 ".mhd", ".raw", ".zraw"}
NEVER_EMPTY = (FILE_SUFFIXES - {".txt", ".md"}) | {".dcm"}
WRITE_ERRNOS = {getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EIO", "EFBIG") if hasattr(errno, name)}
STALE_AFTER_S = 24 * 3600  # where a staging folder's process cannot be asked whether it still runs (Windows)


def output_kind(path: Path, kind: Kind | None = None) -> Kind | None:
    """``kind`` if given, else "file" for a known file suffix, else None (decided by what is written)."""
    return kind or ("file" if path.suffix.lower() in FILE_SUFFIXES else None)


def check_output_path(path: str | os.PathLike, overwrite: bool = False, kind: Kind | None = None) -> Path:
    """Refuse an existing output (unless ``overwrite``), one of the other kind (a folder where a file goes, or the
    reverse; ``kind`` None: from the suffix), or one that cannot be written; nothing is created."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise ContrastSegError(f"{path}: output already exists; pass --overwrite or choose another path")
        check_same_kind(path, output_kind(path, kind))
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise ContrastSegError(f"{path}: output folder {ancestor} is not a writable folder; choose another path")
    return path


def check_same_kind(path: Path, kind: Kind | None) -> None:
    """--overwrite replaces a file by a file and a folder by a folder only."""
    if kind == "file" and path.is_dir():
        raise ContrastSegError(f"{path}: is a folder and --overwrite replaces only a file; remove the folder "
                               "yourself or choose another file name")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise ContrastSegError(f"{path}: is a file and --overwrite replaces only a folder; remove the file "
                               "yourself or choose another folder name")


def write_failure(path: Path, error: BaseException | str) -> ContrastSegError:
    """One-line error for a write that failed: the path, the cause and the free space where it was written."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free in {folder}"
    except OSError:
        free = f"free space in {folder} unknown"
    cause = " ".join(str(error).split())[:160] or type(error).__name__
    return ContrastSegError(f"{path}: writing failed ({cause}); {free}; free some space or choose another folder "
                            "(an existing output is left as it was)")


@contextlib.contextmanager
def write_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn a writer's OSError/RuntimeError (full disk, SimpleITK's writer, torch.save) into :func:`write_failure`."""
    try:
        yield
    except ContrastSegError:
        raise
    except (OSError, RuntimeError) as error:
        raise write_failure(Path(path), error) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = False, kind: Kind | None = None) -> Iterator[Path]:
    """Yield a path with ``path``'s name in a hidden staging folder beside it; on success what was written there is
    flushed, checked and replaces ``path`` (companion files such as a .mhd's .zraw first, the named one last); on
    any error, or a signal, the staging folder is removed and ``path`` is unchanged."""
    path = check_output_path(path, overwrite, kind)
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(path)
        staging = Path(tempfile.mkdtemp(prefix=f"{staging_prefix(path)}{os.getpid()}-", dir=path.parent))
    try:
        try:
            yield staging / path.name
        except OSError as error:
            if error.errno in WRITE_ERRNOS:
                raise write_failure(path, error) from None
            raise
        _commit(staging, path, overwrite)
    finally:
        with _signals_held():
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def shown_as(staging: Path, path: Path) -> Iterator[None]:
    """Errors raised in the block name ``path`` (the output the user gave) where they named its hidden staging
    folder ``staging`` (e.g. a full disk met while writing a file inside a staged output folder)."""
    try:
        yield
    except ContrastSegError as error:
        raise ContrastSegError(str(error).replace(str(staging), str(path))) from None


def staging_prefix(path: Path) -> str:
    return f".{path.name}.partial-"


def remove_stale_staging(path: Path) -> None:
    """Remove staging folders of ``path`` left by runs that were killed (their process is gone); one line each."""
    for leftover in path.parent.glob(f"{glob_escape(staging_prefix(path))}*"):
        if leftover.is_dir() and not _owner_alive(leftover, leftover.name[len(staging_prefix(path)):]):
            shutil.rmtree(leftover, ignore_errors=True)
            print(f"contrastseg: removed {leftover}, left by an interrupted run", file=sys.stderr)


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _owner_alive(folder: Path, tail: str) -> bool:
    pid = tail.split("-", 1)[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False  # older naming, or this process (which has no other staging of the same output)
    if os.name == "nt":  # os.kill would end the process there; go by age instead
        return time.time() - folder.stat().st_mtime < STALE_AFTER_S
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True


def _commit(staging: Path, path: Path, overwrite: bool) -> None:
    staged = staging / path.name
    if not staged.exists():
        raise write_failure(path, "the writer produced no file")
    if path.exists() or path.is_symlink():
        check_same_kind(path, "folder" if staged.is_dir() else "file")
    with write_errors(path):
        _flush_and_check(staging, path)
        companions = sorted(p for p in staging.iterdir() if p.name != path.name)
        for companion in companions:
            os.replace(companion, path.parent / companion.name)
        if not (staged.is_dir() and path.is_dir()):
            os.replace(staged, path)
            return
        previous = staging / f"{path.name}.replaced"  # a folder cannot be renamed onto a non-empty one
        os.replace(path, previous)
        try:
            os.replace(staged, path)
        except OSError:
            os.replace(previous, path)
            raise


def _flush_and_check(staging: Path, path: Path) -> None:
    """fsync every staged file; an empty data file (a writer that failed silently on a full disk) is a failure."""
    for file in sorted(staging.rglob("*")):
        if file.is_file():
            if file.stat().st_size == 0 and file.suffix.lower() in NEVER_EMPTY:
                raise write_failure(path, f"{file.name} came out empty")
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while cleaning up, so that a signal cannot cut the clean-up short (POSIX, main thread)."""
    held = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)

