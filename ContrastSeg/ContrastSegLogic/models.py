"""Where finished models go: a folder the user chose once (by default under Slicer's settings folder, never the
temporary folder), each under a name of its own — a name already taken gets the next free version
(``model.pt``, ``model-2.pt``, ...), so retraining never replaces or refuses an earlier model.

    deliver(job_output, models_dir / "model.pt")   # -> models_dir/model-2.pt when model.pt exists
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

from .errors import SceneInputError


def versions(path: Path):
    """``path``, then ``<stem>-2<suffix>``, ``<stem>-3<suffix>``, ..."""
    yield path
    for number in itertools.count(2):
        yield path.with_name(f"{path.stem}-{number}{path.suffix}")


def check_model_target(path: str | os.PathLike) -> Path:
    """A model file name in an existing, writable folder (checked before a job starts)."""
    target = Path(path).expanduser()
    if target.suffix != ".pt":
        raise SceneInputError(f"{target}: a model file ends in .pt; choose a name like model.pt")
    if target.is_dir():
        raise SceneInputError(f"{target} is a folder; choose a model file name inside it, e.g. {target / 'model.pt'}")
    if not target.parent.is_dir() or not os.access(target.parent, os.W_OK):
        raise SceneInputError(f"{target.parent} is not a writable folder; choose where to save the model")
    return target


def deliver(result: Path, target: Path, overwrite: bool = False) -> Path:
    """Copy the job's checkpoint ``result`` to ``target`` whole (a temporary file in the same folder, flushed and
    size-checked by the library's writer, then an atomic link or rename). ``overwrite`` replaces ``target``;
    otherwise a taken name gets the next free version. A failed write (full disk) names the path and free space."""
    from ContrastSegLib.io.write_file import write_staged_bytes
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
    os.close(handle)
    try:
        write_staged_bytes(Path(result).read_bytes(), Path(temporary), target)
        if overwrite:
            os.replace(temporary, target)
            return target
        for candidate in versions(target):
            try:
                os.link(temporary, candidate)  # fails if the name is taken, even by a concurrent job
                return candidate
            except FileExistsError:
                continue
            except OSError:  # a file system without hard links
                if not candidate.exists():
                    os.replace(temporary, candidate)
                    return candidate
    finally:
        Path(temporary).unlink(missing_ok=True)
    raise AssertionError("unreachable")
