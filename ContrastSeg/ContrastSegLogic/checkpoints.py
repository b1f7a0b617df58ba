"""What a checkpoint file says about itself, read before a job uses it (metadata only; weights are never run):
its classes, whether it is fine-tuned, the structures its fine-tuning did not learn, and a one-line description for
the panel."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .classes import SegmentClass, classes_from_labels
from .errors import SceneInputError


def checkpoint_metadata(path: str) -> dict:
    """The checkpoint's metadata, checked against its weights by the library; before torch is installed (a fresh
    install) read from the file alone, nothing in it run (``read_metadata``), and the weights are checked by the job."""
    if not path or not Path(path).is_file():
        raise SceneInputError(f"checkpoint {path!r} does not exist; choose a .pt file written by ContrastSeg")
    from ContrastSegLib.errors import ContrastSegError
    from ContrastSegLib.runtime.checkpoint import load_checkpoint, read_metadata
    try:
        try:
            return load_checkpoint(path).metadata
        except (ImportError, OSError):  # torch not installed yet, or its libraries not loadable (Windows DLLs)
            return read_metadata(path)
    except ContrastSegError as error:
        raise SceneInputError(str(error)) from None


def finetuned_classes(path: str) -> list[SegmentClass]:
    """The classes a fine-tuned model segments; a pre-training checkpoint is refused."""
    metadata = checkpoint_metadata(path)
    labels = metadata.get("labels")
    if not labels or metadata.get("stage") != "finetune":
        raise SceneInputError(f"checkpoint {path} is not a fine-tuned model; fine-tune it first, then segment with it")
    return classes_from_labels(labels)


def check_checkpoint_classes(path: str, classes: Sequence[SegmentClass]) -> None:
    """A fine-tuned checkpoint used as a starting point must segment exactly the selected segments (by name)."""
    labels = checkpoint_metadata(path).get("labels")
    if labels:
        names = [c.name for c in classes_from_labels(labels)]
        if names != [c.name for c in classes]:
            raise SceneInputError(f"checkpoint {path} segments {names}, the selected segments are "
                                  f"{[c.name for c in classes]}; pick a pre-trained (not fine-tuned) checkpoint or "
                                  "segments with the same names")


def not_learned(metadata: dict) -> str:
    """"RV (Dice 0.02), LV (Dice 0.31)": the structures whose Dice on the training volumes stayed below the
    library's threshold (``ContrastSegLib.training.structure_check``), or "" (all learned, or an older checkpoint)."""
    structures = metadata.get("structures")
    if not isinstance(structures, list):
        return ""
    return ", ".join(f"{entry.get('name')} (Dice {_dice(entry.get('train_dice'))})" for entry in structures
                     if isinstance(entry, dict) and entry.get("learned") is False)


def describe_checkpoint(path: str) -> str:
    """"Segments LV, myocardium, RV (fine-tuned, 3000 steps)", with the structures it did not learn and what to do,
    or why the file cannot be used."""
    try:
        metadata = checkpoint_metadata(path)
    except SceneInputError as error:
        return str(error)
    stage = metadata.get("stage", "unknown stage")
    stopped = metadata.get("stopped")
    steps = f", stopped early at step {stopped['step']}" if stopped else ""
    if metadata.get("labels") and stage == "finetune":
        names = ", ".join(c.name for c in classes_from_labels(metadata["labels"]))
        missed = not_learned(metadata)
        warning = (f". Not learned on the training volumes: {missed}; fine-tune longer (iterations, time budget), "
                   "annotate it on more slices or check its segment" if missed else "")
        return f"Segments {names} (fine-tuned, {metadata.get('step', '?')} steps{steps}){warning}"
    return f"A {stage} checkpoint{steps}: fine-tune it before segmenting"


def _dice(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "?"
