"""Method names as the papers' tables write them: "random", "GR", "GD-", "GD", "GD+LR", "GD+LD",
"GD+supervised-local" (alias "GD+SLC"), optionally led by the masked-image stage "MIM" ("MIM", "MIM+LR",
"MIM+GD+LR", ...), each optionally "+mixup" and/or "+self-training" — which pre-training stages run before
fine-tuning, and how fine-tuning is done."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ContrastSegError
from ..settings import DEFAULT_STRATEGY, MASKED_NAME, STRATEGIES, Stage

SUPERVISED_LOCAL = (Stage.SUPERVISED_LOCAL.value, "SLC")  # the names of that stage in a method name


@dataclass(frozen=True)
class Method:
    """masked: the masked-image stage first; global_strategy: None for no global stage; second_stage: None,
    ("local", "LR"/"LD") or ("supervised-local", mode). No stage at all: random initialisation."""

    name: str
    global_strategy: str | None = None
    second_stage: tuple[str, str] | None = None
    mixup: bool = False
    self_training: bool = False
    masked: bool = False

    @property
    def pretraining(self) -> tuple[tuple[str, str], ...]:
        """The (stage, strategy) pairs to run, in order."""
        stages = [(Stage.MASKED.value, DEFAULT_STRATEGY[Stage.MASKED])] if self.masked else []
        stages += [(Stage.GLOBAL.value, self.global_strategy)] if self.global_strategy else []
        return tuple(stages + ([self.second_stage] if self.second_stage else []))


MASKED = MASKED_NAME


def parse_method(name: str) -> Method:
    """``"GD+LR+mixup"`` -> Method(global GD, local LR, mixup); unknown parts are refused with the choices."""
    parts = [p.strip() for p in name.split("+") if p.strip()]
    mixup, self_training = "mixup" in parts, "self-training" in parts
    parts = [p for p in parts if p not in ("mixup", "self-training")]
    masked = bool(parts) and parts[0] == MASKED
    parts = parts[1:] if masked else parts
    strategies = {stage: ", ".join(names) for stage, names in STRATEGIES.items()}
    if not parts and not masked:
        raise ContrastSegError(f"method {name!r}: name an initialisation (random, {MASKED}, "
                               f"{strategies[Stage.GLOBAL]})")
    if masked and not parts or parts == ["random"] and not masked:
        return Method(name, mixup=mixup, self_training=self_training, masked=masked)
    first = parts[0] if parts[0] in STRATEGIES[Stage.GLOBAL] else None
    rest = parts[1:] if first else parts if masked else None
    if rest is not None and len(rest) <= 1:
        if not rest:
            return Method(name, first, None, mixup, self_training, masked)
        if rest[0] in STRATEGIES[Stage.LOCAL]:
            return Method(name, first, (Stage.LOCAL.value, rest[0]), mixup, self_training, masked)
        if rest[0] in SUPERVISED_LOCAL:
            stage = Stage.SUPERVISED_LOCAL.value
            return Method(name, first, (stage, DEFAULT_STRATEGY[stage]), mixup, self_training, masked)
    raise ContrastSegError(
        f"method {name!r} is not one of: random, a global strategy ({strategies[Stage.GLOBAL]}) optionally "
        f"followed by +{' or +'.join(STRATEGIES[Stage.LOCAL])} or +supervised-local, all optionally led by "
        f"{MASKED}+ ({MASKED} alone too), each optionally +mixup / +self-training")
