"""``OUT/benchmark.json``: the settings that fix a benchmark's numbers. The first run records them; a later run into
the same folder must repeat them (methods, |X_L| values and seeds may change: they only add or select cells), so
results made under different settings are never mixed."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ContrastSegError
from ..io import atomic_path

SETTINGS_FILE = "benchmark.json"
SETTINGS_FORMAT = "contrastseg-benchmark"


def check_settings(out: Path, settings: dict) -> bool:
    """True when ``out`` already records ``settings``; False when it records none (a new folder, or one holding only
    the ``data`` of an interrupted first run); a different record, or another kind of folder, is refused with one
    line naming what differs."""
    path = out / SETTINGS_FILE
    if not path.exists():
        others = sorted(p.name for p in out.iterdir() if p.name != "data") if out.is_dir() else []
        if others or out.exists() and not out.is_dir():
            raise ContrastSegError(f"{out}: exists and is not a benchmark folder (no {SETTINGS_FILE}); choose another "
                                   "--out")
        return False
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        recorded = saved["settings"] if saved.get("format") == SETTINGS_FORMAT else None
    except (OSError, ValueError, KeyError, AttributeError):
        recorded = None
    if not isinstance(recorded, dict):
        raise ContrastSegError(f"{path}: not a readable benchmark record; choose another --out (this folder's "
                               "results cannot be checked)")
    asked = json.loads(json.dumps(settings))  # as stored: tuples become lists
    differences = [f"{key} {_show(recorded.get(key))} (asked {_show(asked.get(key))})"
                   for key in sorted(set(recorded) | set(asked)) if recorded.get(key) != asked.get(key)]
    if differences:
        raise ContrastSegError(f"{out}: holds results made with other settings: {'; '.join(differences)}; repeat "
                               "those settings to continue, or choose another --out")
    return True


def record_settings(out: Path, settings: dict, environment: dict) -> None:
    """Write the record (settings + the environment of the first run) atomically."""
    with atomic_path(out / SETTINGS_FILE) as temporary:
        temporary.write_text(json.dumps({"format": SETTINGS_FORMAT, "version": 1, "settings": settings,
                                         "first_run": environment}, indent=2) + "\n", encoding="utf-8")


def _show(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in value.items()) + "}"
    return str(value)
