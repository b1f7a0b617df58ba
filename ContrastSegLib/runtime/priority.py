"""A job that gives way: with ``CONTRASTSEG_PRIORITY=background`` in its environment (the Slicer module sets it for
pre-training while the user annotates) a ``contrastseg`` process lowers its own scheduling priority before it starts
any thread, so that the application the user works in is served first and the job takes the idle processor time.

    >>> background_requested({"CONTRASTSEG_PRIORITY": "background"}), background_requested({})
    (True, False)
"""

from __future__ import annotations

import os
from typing import Mapping

PRIORITY_VARIABLE = "CONTRASTSEG_PRIORITY"
BACKGROUND = "background"
NICE_INCREMENT = 10  # POSIX: threads created afterwards (torch's) inherit it
BELOW_NORMAL_PRIORITY_CLASS = 0x00004000  # winbase.h


def background_requested(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(PRIORITY_VARIABLE, "").strip().lower() == BACKGROUND


def apply_requested_priority(environ: Mapping[str, str] = os.environ) -> bool:
    """Lower this process's priority when ``environ`` asks for the background; whether it was lowered."""
    if not background_requested(environ):
        return False
    if os.name == "nt":
        import ctypes
        kernel = ctypes.windll.kernel32  # type: ignore[attr-defined]
        return bool(kernel.SetPriorityClass(kernel.GetCurrentProcess(), BELOW_NORMAL_PRIORITY_CLASS))
    try:
        os.nice(NICE_INCREMENT)
    except OSError:
        return False
    return True
