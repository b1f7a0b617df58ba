"""How long ago this process started: what a user who launched a job has waited since (interpreter start and
imports included). Standard library only: the budget and the stop file read it before anything heavy is imported."""

from __future__ import annotations

import os
import time

_IMPORTED_AT = time.time()  # the fallback start where ``/proc`` is missing (the command line imports this early)


def process_age_s() -> float:
    """Seconds since this process started: from ``/proc`` where there is one, else since this module's import."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat, open("/proc/uptime", encoding="ascii") as uptime:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            up_s = float(uptime.read().split()[0])
        age = up_s - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        age = -1.0
    return age if 0 <= age < 86400 else time.time() - _IMPORTED_AT
