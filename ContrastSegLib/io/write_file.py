"""Write text and bytes outputs (JSON, CSV, Markdown, checkpoints, PNG) atomically, size-checked before the rename."""

from __future__ import annotations

import os
from pathlib import Path

from .output_path import atomic_path, write_errors, write_failure


def write_bytes(data: bytes, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` through a staged, flushed file of exactly ``len(data)`` bytes."""
    path = Path(path)
    with atomic_path(path, overwrite, kind="file") as temporary:
        write_staged_bytes(data, temporary, path)
    return path


def write_text(text: str, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`write_bytes`."""
    return write_bytes(text.encode("utf-8"), path, overwrite)


def write_staged_bytes(data: bytes, temporary: Path, target: Path) -> None:
    """Write ``data`` to the staged file ``temporary`` (``target`` named in errors), flush it and check its size."""
    with write_errors(target):
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if temporary.stat().st_size != len(data):
            raise write_failure(target, f"{temporary.stat().st_size} of {len(data)} bytes written")
