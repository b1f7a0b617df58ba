"""Method names as the papers' tables write them: "random", "GR", "GD-", "GD", "GD+LR", "GD+LD",
"GD+supervised-local" (alias "GD+SLC"), each optionally "+mixup" and/or "+self-training" — which pre-training
stages run before fine-tuning, and how fine-tuning is done."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ContrastSegError
from .pretrain import STRATEGIES

SUPERVISED_LOCAL = ("supervised-local", "SLC")
SUPERVISED_LOCAL_MODE = "stride"  # the cheap mode of Hu et al. 2021, every 4th pixel


@dataclass(frozen=True)
class Method:
    """global_strategy: None for random initialisation; second_stage: None, ("local", "LR"/"LD") or
    ("supervised-local", mode)."""

    name: str
    global_strategy: str | None = None
    second_stage: tuple[str, str] | None = None
    mixup: bool = False
    self_training: bool = False

    @property
    def pretraining(self) -> tuple[tuple[str, str], ...]:
        """The (stage, strategy) pairs to run, in order."""
        stages = [("global", self.global_strategy)] if self.global_strategy else []
        return tuple(stages + ([self.second_stage] if self.second_stage else []))


def parse_method(name: str) -> Method:
    """``"GD+LR+mixup"`` -> Method(global GD, local LR, mixup); unknown parts are refused with the choices."""
    parts = [p.strip() for p in name.split("+") if p.strip()]
    mixup, self_training = "mixup" in parts, "self-training" in parts
    parts = [p for p in parts if p not in ("mixup", "self-training")]
    if not parts:
        raise ContrastSegError(f"method {name!r}: name an initialisation (random, {', '.join(STRATEGIES['global'])})")
    first, rest = parts[0], parts[1:]
    if first == "random" and not rest:
        return Method(name, mixup=mixup, self_training=self_training)
    if first in STRATEGIES["global"] and len(rest) <= 1:
        if not rest:
            return Method(name, first, None, mixup, self_training)
        if rest[0] in STRATEGIES["local"]:
            return Method(name, first, ("local", rest[0]), mixup, self_training)
        if rest[0] in SUPERVISED_LOCAL:
            return Method(name, first, ("supervised-local", SUPERVISED_LOCAL_MODE), mixup, self_training)
    raise ContrastSegError(
        f"method {name!r} is not one of: random, a global strategy ({', '.join(STRATEGIES['global'])}) optionally "
        f"followed by +{' or +'.join(STRATEGIES['local'])} or +supervised-local, each optionally +mixup / +self-training")
