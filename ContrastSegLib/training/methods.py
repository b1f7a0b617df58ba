"""Method names as the papers' tables write them: "random", "GR", "GD-", "GD", "GD+LR", "GD+LD",
"GD+supervised-local" (alias "GD+SLC"), each optionally "+mixup" and/or "+self-training" — which pre-training
stages run before fine-tuning, and how fine-tuning is done."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ContrastSegError
from ..settings import DEFAULT_STRATEGY, STRATEGIES, Stage

SUPERVISED_LOCAL = (Stage.SUPERVISED_LOCAL.value, "SLC")  # the names of that stage in a method name


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
        stages = [(Stage.GLOBAL.value, self.global_strategy)] if self.global_strategy else []
        return tuple(stages + ([self.second_stage] if self.second_stage else []))


def parse_method(name: str) -> Method:
    """``"GD+LR+mixup"`` -> Method(global GD, local LR, mixup); unknown parts are refused with the choices."""
    parts = [p.strip() for p in name.split("+") if p.strip()]
    mixup, self_training = "mixup" in parts, "self-training" in parts
    parts = [p for p in parts if p not in ("mixup", "self-training")]
    strategies = {stage: ", ".join(names) for stage, names in STRATEGIES.items()}
    if not parts:
        raise ContrastSegError(f"method {name!r}: name an initialisation (random, {strategies[Stage.GLOBAL]})")
    first, rest = parts[0], parts[1:]
    if first == "random" and not rest:
        return Method(name, mixup=mixup, self_training=self_training)
    if first in STRATEGIES[Stage.GLOBAL] and len(rest) <= 1:
        if not rest:
            return Method(name, first, None, mixup, self_training)
        if rest[0] in STRATEGIES[Stage.LOCAL]:
            return Method(name, first, (Stage.LOCAL.value, rest[0]), mixup, self_training)
        if rest[0] in SUPERVISED_LOCAL:
            stage = Stage.SUPERVISED_LOCAL.value
            return Method(name, first, (stage, DEFAULT_STRATEGY[stage]), mixup, self_training)
    raise ContrastSegError(
        f"method {name!r} is not one of: random, a global strategy ({strategies[Stage.GLOBAL]}) optionally "
        f"followed by +{' or +'.join(STRATEGIES[Stage.LOCAL])} or +supervised-local, each optionally +mixup / "
        "+self-training")
