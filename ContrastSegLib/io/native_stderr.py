"""ITK's and niftilib's own console lines held back while the library reads a file.

ITK's NIfTI reader prints lines such as ``** ERROR: nifti_convert_nhdr2nim: bad datatype`` straight to the process's
standard error (file descriptor 2, below Python), even when the file is then read another way (1-bit and NIfTI-2
files) or refused with one ``contrastseg: error:`` line of our own. Within :func:`native_stderr_silenced` such lines
go nowhere; Python's own output (``sys.stderr``, our errors and warnings) is unaffected once the block ends.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Iterator

_lock = threading.Lock()
_state = {"depth": 0, "saved": None}  # blocks open (in any thread), the real descriptor 2 while they are


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Within the block, what C/C++ code writes to file descriptor 2 is discarded (nothing changes when the
    descriptor cannot be duplicated). Blocks may nest or overlap across threads: the last one to end restores it."""
    with _lock:
        if _state["depth"] == 0:
            _state["saved"] = _to_devnull()
        _state["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["depth"] -= 1
            saved = _state["saved"]
            if _state["depth"] == 0 and saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
                _state["saved"] = None


def _to_devnull() -> int | None:
    """Point descriptor 2 at the null device; returns a duplicate of the previous one (None: left as it was)."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
    try:
        saved = os.dup(2)
    except OSError:
        return None
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
    except OSError:
        os.close(saved)
        return None
    return saved
