"""The outcome of ``contrastseg compare`` as a file: ``OUT/verdict.json`` (recommended method, mean Dice per method,
the paired comparison with random initialisation, the training commands). Standard library only, so the Slicer
module reads it without torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ContrastSegError

DEFAULT_COMPARE_METHODS = ("random", "GD+LR", "MIM")
VERDICT_FILE, VERDICT_FORMAT = "verdict.json", "contrastseg-verdict"


def verdict_record(recommended: str, means: dict[str, float], paired: dict[str, dict], commands: list[str],
                   folds: int) -> dict:
    """``paired``: method -> {"difference": mean Dice − random's, "higher_on": folds it scored higher}."""
    return {"format": VERDICT_FORMAT, "version": 1, "recommended": recommended, "folds": folds,
            "means": means, "paired": paired, "commands": commands}


def read_verdict(folder: str | os.PathLike) -> dict:
    """verdict.json of a ``contrastseg compare`` folder, with the report's text under "report"."""
    folder = Path(folder)
    try:
        verdict = json.loads((folder / VERDICT_FILE).read_text(encoding="utf-8"))
        report = (folder / "report.md").read_text(encoding="utf-8")
    except (OSError, ValueError) as error:
        raise ContrastSegError(f"{folder}: no readable comparison ({error}); run contrastseg compare again") from None
    if not isinstance(verdict, dict) or verdict.get("format") != VERDICT_FORMAT:
        raise ContrastSegError(f"{folder / VERDICT_FILE}: not a contrastseg comparison verdict")
    return {**verdict, "report": report}
