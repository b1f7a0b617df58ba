"""What the user chooses for each job (the GUI's fields; defaults suited to 1–3 labeled volumes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PretrainSettings:
    """Contrastive pre-training on the unlabeled volumes: a global stage, then a local one (None: global only)."""

    global_strategy: str = "GD"
    local_strategy: str | None = "LR"
    iterations: int = 2000
    seed: int = 0

    def stage_arguments(self, stage: str) -> list[str]:
        strategy = self.global_strategy if stage == "global" else self.local_strategy
        return ["--stage", stage, "--strategy", str(strategy), "--iterations", str(self.iterations),
                "--seed", str(self.seed)]


@dataclass(frozen=True)
class FinetuneSettings:
    """Fine-tuning: iterations, batch, Mixup, self-training rounds on the unlabeled volumes, seed, device request."""

    iterations: int = 2000
    batch_size: int = 16
    crop_size: int = 128
    spacing: float | None = None
    channels: tuple[int, ...] = (16, 32, 64, 128, 128, 128)
    mixup: bool = False
    self_training_rounds: int = 0
    seed: int = 0
    device: str = "auto"

    def arguments(self) -> list[str]:
        arguments = ["--iterations", str(self.iterations), "--batch-size", str(self.batch_size),
                     "--seed", str(self.seed), "--channels", ",".join(map(str, self.channels))]
        if self.mixup:
            arguments.append("--mixup")
        if self.self_training_rounds:
            arguments += ["--self-training", str(self.self_training_rounds)]
        return arguments

    def preprocessing_arguments(self) -> list[str]:
        """Crop (and spacing) of a model trained from scratch; a pre-trained one brings its own."""
        return ["--crop-size", str(self.crop_size)] + (["--spacing", str(self.spacing)] if self.spacing else [])
