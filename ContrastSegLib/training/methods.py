"""Method names as the papers' tables write them: "random", "GR", "GD-", "GD", "GD+LR", "GD+LD", with an optional
"+mixup" — which pre-training stages run before fine-tuning, and how fine-tuning is done."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ContrastSegError
from .pretrain import STRATEGIES


@dataclass(frozen=True)
class Method:
    """global_strategy: None for random initialisation; local_strategy: None to skip the local stage."""

    name: str
    global_strategy: str | None = None
    local_strategy: str | None = None
    mixup: bool = False

    @property
    def pretraining(self) -> tuple[tuple[str, str], ...]:
        """The (stage, strategy) pairs to run, in order."""
        stages = [("global", self.global_strategy)] if self.global_strategy else []
        return tuple(stages + ([("local", self.local_strategy)] if self.local_strategy else []))


def parse_method(name: str) -> Method:
    """``"GD+LR+mixup"`` -> Method(global GD, local LR, mixup); unknown parts are refused with the choices."""
    parts = [p.strip() for p in name.split("+") if p.strip()]
    mixup = "mixup" in parts
    parts = [p for p in parts if p != "mixup"]
    if not parts:
        raise ContrastSegError(f"method {name!r}: name an initialisation (random, {', '.join(STRATEGIES['global'])})")
    first, rest = parts[0], parts[1:]
    if first == "random" and not rest:
        return Method(name, mixup=mixup)
    if first not in STRATEGIES["global"] or len(rest) > 1 or (rest and rest[0] not in STRATEGIES["local"]):
        raise ContrastSegError(
            f"method {name!r} is not one of: random, a global strategy ({', '.join(STRATEGIES['global'])}) "
            f"optionally followed by +{' or +'.join(STRATEGIES['local'])}, each optionally +mixup")
    return Method(name, first, rest[0] if rest else None, mixup)
