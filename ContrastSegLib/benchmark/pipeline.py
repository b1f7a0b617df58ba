"""One method's chain from files to scores, shared by ``contrastseg demo`` and ``contrastseg benchmark``:
pre-training stages (each a checkpoint the caller may reuse) -> fine-tuning -> prediction of held-out volumes ->
Dice / HD95 rows, with an optional overlay PNG per volume.

Every stage goes through the library's job functions (``run_pretrain``, ``run_finetune``, ``run_predict``), which
refuse a split's test cases; this module only chooses their arguments. A stop request (SIGINT, SIGTERM) during a
stage ends the whole chain as an interruption once that stage has written its weights (``runtime.stop``): a stopped
stage is never scored or reused as a finished one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from ..data.discovery import Case
from ..evaluation import structure_metrics
from ..evaluation.report import pick_overlay_slice, save_overlay_png
from ..inference.predict_job import run_predict
from ..io import read_image, read_label
from ..io.read import case_stem
from ..runtime.budget import finetune_budget, stage_budget
from ..runtime.progress import ProgressReporter
from ..runtime.stop import end_if_stopped
from ..settings import (DEFAULT_CHANNELS, ExecutionConfig, FinetuneConfig, PreprocessConfig, PretrainConfig, Stage,
                        config_from_args)
from ..training.finetune import FinetuneResult
from ..training.finetune_job import run_finetune
from ..training.methods import MASKED, SUPERVISED_LOCAL, Method
from ..training.pretrain_job import run_pretrain
from ..triage import REVIEW_NAME, read_review
from ..triage.review import review_with_dice


@dataclass(frozen=True)
class RunSettings(ExecutionConfig):
    """Sizes and execution of every stage of one chain; ``seed`` seeds pre-training and fine-tuning alike."""

    pretrain_iterations: int = PretrainConfig.iterations
    finetune_iterations: int = FinetuneConfig.iterations
    seed: int = FinetuneConfig.seed
    batch_size: int = FinetuneConfig.batch_size
    volumes_per_batch: int = PretrainConfig.volumes_per_batch
    channels: tuple[int, ...] = DEFAULT_CHANNELS
    finetune_recipe: tuple[tuple[str, object], ...] = ()  # (FinetuneConfig field, value) pairs set on every run
    time_budget: float | None = None  # of a whole chain, shared out by ``runtime.budget``
    plateau_stop: bool = False

    def pretrain_config(self, stage: str, strategy: str) -> PretrainConfig:
        return replace(PretrainConfig(stage=stage, strategy=strategy), iterations=self.pretrain_iterations,
                       volumes_per_batch=self.volumes_per_batch, time_budget=stage_budget(self.time_budget),
                       plateau_stop=self.plateau_stop, **self._shared())

    def finetune_config(self, method: Method, pretrain_seconds: float = 0.0) -> FinetuneConfig:
        """``pretrain_seconds``: what the chain's pre-training took (the rest of a time budget is fine-tuning's)."""
        recipe = {name: tuple(value) if isinstance(value, list) else value for name, value in self.finetune_recipe}
        return replace(FinetuneConfig(), **recipe, iterations=self.finetune_iterations, batch_size=self.batch_size,
                       mixup=method.mixup, self_training_rounds=int(method.self_training),
                       time_budget=finetune_budget(self.time_budget, pretrain_seconds),
                       plateau_stop=self.plateau_stop, **self._shared()).check()

    def _shared(self) -> dict:
        """What every stage takes alike: the seed and the execution settings."""
        return {"seed": self.seed, **config_from_args(ExecutionConfig, self).to_json()}


@dataclass(frozen=True)
class PretrainStep:
    """One pre-training stage of a method; ``chain`` names the stages up to and including it, e.g. "GD+LR"."""

    stage: str
    strategy: str
    chain: str

    @property
    def supervised(self) -> bool:
        """The supervised-local stage reads the labeled training volumes, so its weights depend on them."""
        return self.stage == Stage.SUPERVISED_LOCAL


def pretraining_steps(method: Method) -> list[PretrainStep]:
    """The stages of ``method`` in order: "GD+SLC" -> [global GD (chain "GD"), supervised-local (chain "GD+SLC")];
    "MIM+LR" -> [masked (chain "MIM"), local LR (chain "MIM+LR")]."""
    steps, chain = [], ""
    for stage, strategy in method.pretraining:
        name = {Stage.SUPERVISED_LOCAL: SUPERVISED_LOCAL[1], Stage.MASKED: MASKED}.get(stage, strategy)
        chain = f"{chain}+{name}" if chain else name
        steps.append(PretrainStep(stage, strategy, chain))
    return steps


def pretrain_stage(step: PretrainStep, data: Path, split: Path, out: Path, preprocess: PreprocessConfig | None,
                   init: Path | None, settings: RunSettings) -> Path:
    """Run one stage into the checkpoint ``out`` on the split's training volumes (labels unused, except by the
    supervised-local stage, which reads the split's train_labeled cases). ``preprocess`` None: the ``init``
    checkpoint's. An interrupted stage resumes from its hidden resume file."""
    config = settings.pretrain_config(step.stage, step.strategy)
    path, _ = run_pretrain([] if step.supervised else [data], out, config, preprocess, channels=settings.channels,
                           init=init, split=split, labeled=data if step.supervised else None,
                           reporter=ProgressReporter(f"pretrain-{step.stage}", settings.pretrain_iterations))
    end_if_stopped()  # stopped: not a finished stage (the benchmark records none, so its next run trains it again)
    return path


def finetune_method(method: Method, data: Path, split: Path, out: Path, preprocess: PreprocessConfig | None,
                    init: Path | None, settings: RunSettings, pretrain_seconds: float = 0.0
                    ) -> tuple[Path, FinetuneResult]:
    """Fine-tune on the split's train_labeled cases (Mixup / self-training as ``method`` says; self-training
    pseudo-labels the split's train_unlabeled cases) into the checkpoint ``out``."""
    config = settings.finetune_config(method, pretrain_seconds)
    result = run_finetune(data, out, config, preprocess, channels=settings.channels, split=split, init=init,
                          reporter=ProgressReporter("finetune", config.total_iterations))
    end_if_stopped()  # stopped: not a finished cell (its staging folder goes)
    return result


def predict_cases(model: Path, test_cases: Sequence[Case], predictions: Path, settings: RunSettings) -> None:
    """Predict ``test_cases`` into the new folder ``predictions`` (``<image name>_seg.nii.gz`` on each image's grid)."""
    run_predict(model, [c.image for c in test_cases], predictions, device=settings.device,
                precision=settings.precision, reporter=ProgressReporter("predict", len(test_cases)),
                channels_last=settings.channels_last, channel=_common_channel(test_cases))


def score_cases(test_cases: Sequence[Case], predictions: Path, structures: dict[int, str],
                overlays: Path | None = None, overlay_count: int | None = None,
                colors: dict[int, tuple[int, int, int]] | None = None, title: str = "") -> list[dict]:
    """Score the predictions of :func:`predict_cases` against the references: rows ``{"case", "structure",
    "label", "dice", "hd95_mm"}``, one per case and structure of ``structures`` {value: name}.

    With ``overlays``, the first ``overlay_count`` cases (all when None) also get ``overlays/<case>.png``: the
    slice with the most reference foreground, image | reference | prediction.
    """
    rows = []
    for number, case in enumerate(test_cases):
        image = read_image(case.image, channel=case.channel)
        reference = read_label(case.label, image=image)
        prediction = read_label(predictions / f"{case_stem(case.image)}_seg.nii.gz", image=image)
        rows += [{"case": case.id, **row} for row in structure_metrics(prediction, reference, structures)]
        if overlays is not None and (overlay_count is None or number < overlay_count):
            index = pick_overlay_slice(reference.array)
            save_overlay_png(image.array[index], reference.array[index], prediction.array[index],
                             overlays / f"{case.id}.png", colors=colors,
                             title=f"{title}{case.id}, slice {index} — image | reference | prediction",
                             pixel_spacing=image.spacing[1::-1])
    return rows


def triage_of(predictions: Path, test_cases: Sequence[Case], rows: Sequence[dict]) -> list[dict]:
    """[{"case", "score", "dice"}] of each test case: the review.csv score of :func:`predict_cases` (which names a
    case by its image file) beside the true mean Dice of ``rows`` (:func:`score_cases`, by case id)."""
    ids = {case_stem(case.image): case.id for case in test_cases}
    review = [{**row, "case": ids.get(row["case"], row["case"])} for row in read_review(predictions / REVIEW_NAME)]
    return [{"case": row["case"], "score": row["score"], "dice": row["dice"]}
            for row in review_with_dice(review, rows)]


def _common_channel(cases: Sequence[Case]) -> int | None:
    """The modality index shared by all ``cases`` (prediction takes one for all inputs)."""
    channels = {case.channel for case in cases}
    return channels.pop() if len(channels) == 1 else None
