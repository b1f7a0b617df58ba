"""Do two execution plans (fp16 with gradient scaling and bf16 on CUDA) learn the same? The same short fine-tuning
schedule (same seed, data and batches) under each, then the mean foreground Dice on held-out phantoms."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from ..runtime.precision import ExecutionPlan
from ..settings import DEFAULT_CHANNELS, FinetuneConfig
from ..training.finetune import finetune, validation_dice
from .workloads import NUM_CLASSES, paper_unet, phantom_volumes

AGREEMENT = 0.01  # largest Dice difference between the plans


@dataclass(frozen=True)
class PrecisionDice:
    """plan: ``ExecutionPlan.describe()``; dice: mean foreground Dice on the held-out phantoms; final_loss: mean
    of the last ten training losses."""

    plan: str
    dice: float
    final_loss: float


def trained_dice(plan: ExecutionPlan, config: FinetuneConfig, crop: int, train: int, test: int, seed: int = 0,
                 channels: tuple[int, ...] = DEFAULT_CHANNELS) -> PrecisionDice:
    """Fine-tune a fresh paper UNet on phantoms 0..train-1 under ``plan``; its Dice on the next ``test``."""
    volumes = phantom_volumes(train + test, crop, seed)
    model = paper_unet(plan, seed, channels)
    result = finetune(model, volumes[:train], replace(config, seed=seed), plan=plan)
    dice = validation_dice(model, volumes[train:], plan, NUM_CLASSES)
    tail = result.losses[-10:]
    return PrecisionDice(plan.describe(), dice, sum(tail) / len(tail))


def precision_agreement(plans: Sequence[ExecutionPlan], config: FinetuneConfig, crop: int, train: int, test: int,
                        channels: tuple[int, ...] = DEFAULT_CHANNELS) -> dict:
    """Dice of each plan after the same schedule, the largest difference and whether it is within ``AGREEMENT``."""
    rows = [trained_dice(plan, config, crop, train, test, channels=channels) for plan in plans]
    spread = max(row.dice for row in rows) - min(row.dice for row in rows)
    return {"rows": [vars(row) for row in rows], "largest_difference": spread, "agree": spread <= AGREEMENT,
            "within": AGREEMENT}
