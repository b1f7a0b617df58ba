"""The string choices of the settings, as enums that equal, print and serialise as their values, and which
strategies each pre-training stage has. Standard library only (see ``settings``)."""

from __future__ import annotations

import enum


class Choice(str, enum.Enum):
    """A string choice that equals, prints and serialises as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)


class Stage(Choice):
    GLOBAL, LOCAL, SUPERVISED_LOCAL, MASKED = "global", "local", "supervised-local", "masked"


class GlobalStrategy(Choice):
    """Chaitanya et al. 2020: G^R contrasts views of each slice; G^D- and G^D use the (volume, partition) cue."""

    GR, GD_MINUS, GD = "GR", "GD-", "GD"


class LocalStrategy(Choice):
    LR, LD = "LR", "LD"


class Selection(Choice):
    """How the benchmark chooses a cell's labeled volumes: the seed's random draw, or ``contrastseg suggest``."""

    RANDOM, SUGGEST = "random", "suggest"


DEFAULT_SELECTIONS = (Selection.RANDOM.value,)


class SupervisedLocalMode(Choice):
    """How the supervised-local loss (Hu et al. 2021) visits the pixels: that stage's "strategy"."""

    STRIDE, BLOCK, EXACT, DENSE = "stride", "block", "exact", "dense"


class Flips(Choice):
    """Random flips of training slices, by the slice's axes: horizontal = its second axis (left-right in axial and
    coronal slices of a canonically oriented volume), vertical = its first."""

    NONE, HORIZONTAL, VERTICAL, BOTH = "none", "horizontal", "vertical", "both"


class MaskedStrategy(Choice):
    """Masked-image modelling: square patches of each slice are hidden and reconstructed."""

    PATCHES = "patches"


MASKED_NAME = "MIM"  # the masked stage in method names ("MIM+LR") and the Slicer module's "first stage" choice


class BudgetDevices(Choice):
    """Where a time budget applies: on every device, or only on the CPU (GPUs then run the iterations in full)."""

    ALL, CPU = "all", "cpu"


class LrSchedule(Choice):
    """The learning rate over a run (``training.lr_schedules``): constant, cosine annealing to 0, or a short
    warm-up, a constant rate and a linear decay over the last part of the run; auto: warmup-decay where a time
    budget ends the run, constant where the iterations do."""

    AUTO, COSINE, CONSTANT, WARMUP_DECAY = "auto", "cosine", "constant", "warmup-decay"


class Precision(Choice):
    AUTO, FP32, BF16, FP16 = "auto", "fp32", "bf16", "fp16"


class ChannelsLast(Choice):
    AUTO, ON, OFF = "auto", "on", "off"


class Device(Choice):
    """Device names; ``cuda:N`` is accepted too."""

    AUTO, CPU, CUDA, MPS = "auto", "cpu", "cuda", "mps"


STRATEGIES: dict[str, tuple[str, ...]] = {Stage.GLOBAL: GlobalStrategy.values(), Stage.LOCAL: LocalStrategy.values(),
                                          Stage.SUPERVISED_LOCAL: SupervisedLocalMode.values(),
                                          Stage.MASKED: MaskedStrategy.values()}
DEFAULT_STRATEGY: dict[str, str] = {Stage.GLOBAL: GlobalStrategy.GD.value, Stage.LOCAL: LocalStrategy.LR.value,
                                    Stage.SUPERVISED_LOCAL: SupervisedLocalMode.STRIDE.value,
                                    Stage.MASKED: MaskedStrategy.PATCHES.value}  # the papers' choices
DOMAIN_STRATEGIES = (GlobalStrategy.GD_MINUS, GlobalStrategy.GD, LocalStrategy.LD)
