"""Was every structure learned? After fine-tuning, the model segments its own training volumes once more and each
structure's Dice there says whether training took hold of it, so that none is dropped without a word.

The model saw these very voxels, so a structure it learned scores far above :data:`NOT_LEARNED_DICE` on them; a
structure below it was not learned: too few iterations, too few annotated slices for a small structure, or a label
that does not match the image. A structure absent from the training labels cannot be judged and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from ..data.labels import LabelSet
from ..inference.slices import slice_probabilities
from ..preprocess import PreparedVolume
from ..runtime.precision import ExecutionPlan
from ..runtime.progress import ProgressReporter

NOT_LEARNED_DICE = 0.5  # Dice on the training volumes below which a structure counts as not learned
ADVICE = "train longer (--time-budget/--iterations), annotate it on more slices, or check its label"


@dataclass(frozen=True)
class StructureFit:
    """One foreground structure: label value, name, Dice on the training volumes (all pooled), learned or not."""

    value: int
    name: str
    train_dice: float
    learned: bool

    def to_json(self) -> dict:
        return {"value": self.value, "name": self.name, "train_dice": round(self.train_dice, 4),
                "learned": self.learned}

    def warning(self) -> str:
        """The line that tells the user this structure was not learned, and what to do."""
        return (f"structure {self.value} {quoted(self.name)} was not learned (Dice {self.train_dice:.2f} on the "
                f"training volumes): {ADVICE}")


def check_structures(model: nn.Module, volumes: Sequence[PreparedVolume], plan: ExecutionPlan,
                     labels: LabelSet) -> list[StructureFit]:
    """Dice of every foreground class of ``labels`` present in the labels of ``volumes`` (image (S, P, P) float32,
    label (S, P, P) class indices), pooled over all their voxels: the model's argmax against the label, one batched
    forward pass per slice stack. Classes in index order; absent ones left out."""
    classes = labels.num_classes
    counts = torch.zeros(3, classes, dtype=torch.int64, device=plan.device)  # overlap, predicted, reference
    for volume in volumes:
        predicted = slice_probabilities(model, volume.image, plan).argmax(1).flatten()  # (S * P * P,)
        reference = torch.from_numpy(volume.label).to(plan.device).flatten().long()
        for row, indices in enumerate((reference[predicted == reference], predicted, reference)):
            counts[row] += torch.bincount(indices, minlength=classes)[:classes]
    overlap, predicted, reference = counts.cpu().double()
    dice = (2 * overlap / (predicted + reference).clamp_min(1)).tolist()
    return [StructureFit(labels.values[c], labels.names[c], dice[c], dice[c] >= NOT_LEARNED_DICE)
            for c in range(1, classes) if reference[c] > 0]


def report_structures(model: nn.Module, volumes: Sequence[PreparedVolume], plan: ExecutionPlan, labels: LabelSet,
                      reporter: ProgressReporter) -> list[StructureFit]:
    """:func:`check_structures`, with each structure's Dice in the log and a warning for each one not learned."""
    structures = check_structures(model, volumes, plan, labels)
    if structures:
        reporter.log("Dice on the training volumes: "
                     + ", ".join(f"{quoted(s.name)} {s.train_dice:.2f}" for s in structures))
    for structure in structures:
        if not structure.learned:
            reporter.warning(structure.warning())
    return structures


def not_learned(structures: Sequence[dict]) -> list[dict]:
    """The entries of a checkpoint's ``structures`` metadata that were not learned."""
    return [s for s in structures if isinstance(s, dict) and s.get("learned") is False]


def quoted(name: str) -> str:
    """``name`` in double quotes, control and other unprintable characters escaped (a name is the user's text)."""
    return '"' + "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in name) + '"'
