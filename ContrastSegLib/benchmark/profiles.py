"""Benchmark profiles: how big each run is.

``smoke`` checks the machinery in seconds (numbers mean nothing); ``cpu`` gives a meaningful phantom / brain-offline
table on two CPU cores; ``paper`` uses the papers' sizes (10 000 iterations per stage, crop of the dataset's paper
convention, batch 40) and is meant for a GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ContrastSegError
from ..settings import DEFAULT_CHANNELS, FinetuneConfig, PretrainConfig

DEFAULT_METHODS = ("random", "GR", "GD-", "GD", "GD+LR", "GD+LD", "GD+SLC", "GD+LR+mixup", "GD+LR+self-training",
                   "full")


@dataclass(frozen=True)
class Profile:
    """Sizes of every run of a benchmark.

    crop: side of the square slices (None: the dataset's paper crop); the in-plane spacing follows from it: the
    paper's, coarser when the crop would not hold the structures (``datasets.DatasetSpec.spacing_for``).
    batch_size: fine-tuning slices per step; volumes_per_batch: m of the pre-training batches (m volumes × 4
    partitions). phantom_pool / brain_subjects: generated training subjects (the fixed test subjects come on top).
    labeled, seeds, methods, performance: defaults of the command's options.
    """

    name: str
    pretrain_iterations: int
    finetune_iterations: int
    crop: int | None
    batch_size: int
    volumes_per_batch: int
    channels: tuple[int, ...]
    phantom_pool: int
    brain_subjects: int
    labeled: tuple[int, ...]
    seeds: int
    methods: tuple[str, ...]
    performance: bool

    def to_json(self) -> dict:
        """Every field that changes results (the option defaults labeled/seeds/methods/performance do not)."""
        values = asdict(self)
        for key in ("labeled", "seeds", "methods", "performance"):
            values.pop(key)
        values["channels"] = list(self.channels)
        return values


PROFILES = {
    "smoke": Profile("smoke", pretrain_iterations=5, finetune_iterations=30, crop=32, batch_size=4,
                     volumes_per_batch=2, channels=(8, 16, 16, 32), phantom_pool=3, brain_subjects=6, labeled=(1,),
                     seeds=1, methods=("random", "GD+LR"), performance=False),
    "cpu": Profile("cpu", pretrain_iterations=200, finetune_iterations=200, crop=64,
                   batch_size=FinetuneConfig.batch_size, volumes_per_batch=PretrainConfig.volumes_per_batch,
                   channels=DEFAULT_CHANNELS, phantom_pool=12, brain_subjects=16,
                   labeled=(1, 2, 8), seeds=3, methods=DEFAULT_METHODS, performance=True),
    "paper": Profile("paper", pretrain_iterations=PretrainConfig.iterations, finetune_iterations=10000, crop=None,
                     batch_size=40, volumes_per_batch=10, channels=DEFAULT_CHANNELS, phantom_pool=32, brain_subjects=40,
                     labeled=(1, 2, 8), seeds=6, methods=DEFAULT_METHODS, performance=True),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ContrastSegError(f"--profile {name}: unknown profile; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]
