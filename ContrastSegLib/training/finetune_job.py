"""Fine-tuning from files to a checkpoint: discover the labeled volumes, honour the split, check every input,
preprocess, train, and write the checkpoint atomically. The CLI, the demo and the Slicer module call this."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.discovery import Case, Dataset, discover
from ..data.labels import MAX_CLASSES, LabelSet
from ..data.pools import unlabeled_cases
from ..data.splits import cases_in, check_not_test, load_split
from ..errors import ContrastSegError
from ..io import Volume, check_output_path, read_image, read_label
from ..models import UNet2D, UNetConfig
from ..preprocess import (PreparedVolume, inherited_preprocessing, preprocess_volume, resolve_preprocessing,
                          whole_slice_side)
from ..runtime.budget import clock as budget_clock
from ..runtime.checkpoint import Checkpoint, lineage_after, load_checkpoint, save_checkpoint
from ..runtime.precision import plan_execution
from ..runtime.progress import ProgressReporter
from ..settings import DEFAULT_CHANNELS, FinetuneConfig, PreprocessConfig
from ..triage.volumes import structure_volumes_ml
from .finetune import FinetuneResult, finetune
from .structure_check import report_structures


@dataclass(frozen=True)
class LabeledVolume:
    """A checked (image, label) pair of one case."""

    case: Case
    image: Volume
    label: Volume


def read_labeled_cases(dataset: Dataset, cases: Sequence[Case]) -> list[LabeledVolume]:
    """Read and check every pair: readable, 3-D, finite, label on the image grid, declared values, foreground."""
    allowed = set(dataset.label_names) if dataset.label_names else None
    pairs = []
    for case in cases:
        image = read_image(case.image, channel=case.channel)
        label = read_label(case.label, image=image, allowed=allowed)
        if not label.array.any():
            raise ContrastSegError(
                f"{case.label}: label map has no foreground (all 0); annotate at least one structure or leave "
                "this volume out of the labeled set"
            )
        pairs.append(LabeledVolume(case, image, label))
    return pairs


def label_set_for(dataset: Dataset, pairs: Sequence[LabeledVolume]) -> LabelSet:
    """Classes from the dataset's declared labels, else from the values found in the label maps; at most
    ``MAX_CLASSES``."""
    if dataset.label_names:
        labels = LabelSet.build(dataset.label_names, dataset.label_names, dataset.label_colors)
    else:
        values = set()
        for pair in pairs:
            values |= set(np.unique(pair.label.array).tolist())
        labels = LabelSet.build(values)
    if labels.num_classes > MAX_CLASSES:
        raise ContrastSegError(f"{dataset.root}: {labels.num_classes} classes (background included), more than the "
                               f"{MAX_CLASSES} a model segments; merge structures or relabel them")
    return labels


def initialise_model(model: UNet2D, init: Checkpoint, source: str, labels: LabelSet) -> list[str]:
    """Copy the matching tensors of ``init`` into ``model``; the segmentation head only when the classes agree.

    Returns the names of the parts taken from ``init``."""
    init_labels = init.metadata.get("labels")
    if init_labels and LabelSet.from_json(init_labels, source).values != labels.values:
        raise ContrastSegError(
            f"{source}: the checkpoint segments labels {init_labels['values']}, the labeled data has "
            f"{list(labels.values)}; fine-tune from a pre-trained checkpoint or use data with the same labels"
        )
    own = model.state_dict()
    taken = {k: v for k, v in init.model.items() if k in own and own[k].shape == v.shape}
    if not any(k.startswith("encoder.") and v.dim() for k, v in taken.items()):  # not only BatchNorm step counts
        raise ContrastSegError(f"{source}: no encoder weights fit this UNet; check --channels matches the checkpoint")
    model.load_state_dict(taken, strict=False)
    return sorted({".".join(k.split(".")[:2]) if k.startswith("decoder.") else k.split(".")[0] for k in taken})


def run_finetune(
    labeled: str | os.PathLike,
    out: str | os.PathLike,
    config: FinetuneConfig = FinetuneConfig(),
    preprocess: PreprocessConfig | None = None,
    channels: tuple[int, ...] = DEFAULT_CHANNELS,
    split: str | os.PathLike | None = None,
    init: str | os.PathLike | None = None,
    channel: int | None = None,
    overwrite: bool = False,
    reporter: ProgressReporter | None = None,
    unlabeled: Sequence[str | os.PathLike] = (),
    started_at: float | None = None,
) -> tuple[Path, FinetuneResult]:
    """Fine-tune on the labeled volumes of ``labeled`` (folder or manifest) and write the checkpoint ``out``.

    With ``split``, only its ``train_labeled`` cases train and its ``validation`` cases validate; a test case is
    refused. Without, every labeled case trains and there is no validation. The UNet has the ``init`` checkpoint's
    widths (``channels`` is then unused). ``preprocess`` None: the ``init`` checkpoint's preprocessing (a
    pre-trained encoder expects its own spacing), else the default
    ``PreprocessConfig()`` (a side the checkpoint chose from its own volumes is chosen again from these:
    ``inherited_preprocessing``); an unset spacing becomes the median in-plane spacing of the training volumes. With
    self-training (``config.self_training_rounds``), pseudo-labels are made for the volumes of ``unlabeled``, or
    else for the split's train_unlabeled cases. A stop request (``runtime.stop``) ends training early; the checkpoint
    then holds the best weights so far (with validation), else the last, and says where it stopped. A time budget
    counts from ``started_at`` (on ``runtime.budget``'s clock; None: this call) to the written checkpoint.
    Afterwards each structure's Dice on the training volumes is recorded (``"structures"``), and one not learned is
    named in a warning (``structure_check``).

    The training side (``preprocess.crop_size``) is what each step sees. Chosen from the data (unset), it covers
    the slices up to ``MAX_AUTO_CROP``: the training and validation slices are kept whole (``whole_slice_side``),
    cut into patches of that side where larger, and the checkpoint says so (``"whole_slices"``), so that prediction
    covers whole slices too. A side asked for (or asked for by the run that made ``init``) is a centre window in training and
    prediction alike, as it always was: measured on brain-offline, patches drawn around the structures learned
    slower than a fixed window on them. A side from the data may
    A time budget too short for ``MIN_BUDGET_STEPS`` steps lowers the batch (``config.budget_batch``,
    ``training.budget_batch``); the checkpoint records the batch trained with.
    """
    started_at = budget_clock() if started_at is None else started_at
    config.check()
    out = check_output_path(out, overwrite, kind="file")
    reporter = reporter or ProgressReporter("finetune", config.total_iterations)
    dataset = discover(labeled, channel=channel)
    train_cases, validation_cases = _training_cases(dataset, split)
    init_checkpoint = load_checkpoint(init) if init else None
    if init_checkpoint is not None:  # its widths, as pre-training from it takes them
        channels = tuple(init_checkpoint.metadata["architecture"]["channels"])
    if preprocess is None:
        preprocess = inherited_preprocessing(init_checkpoint.metadata) if init_checkpoint else PreprocessConfig()
    preprocess.check(channels)
    whole_slices = preprocess.crop_size is None  # a side from the data: slices kept whole, predicted whole
    train_pairs = read_labeled_cases(dataset, train_cases)
    validation_pairs = read_labeled_cases(dataset, validation_cases)
    labels = label_set_for(dataset, train_pairs)
    model_config = UNetConfig(in_channels=1, num_classes=labels.num_classes, channels=tuple(channels))
    preprocess = resolve_preprocessing(preprocess, [p.image for p in train_pairs], channels)
    side = (whole_slice_side([p.image for p in train_pairs + validation_pairs], preprocess, channels)
            if whole_slices else preprocess.crop_size)
    train = [_prepare(p, preprocess, labels, side) for p in train_pairs]
    validation = [_prepare(p, preprocess, labels, side) for p in validation_pairs]
    pseudo_pool = _self_training_pool(config, dataset, split, unlabeled, preprocess)
    torch.manual_seed(config.seed)
    model = UNet2D(model_config)
    if init_checkpoint is not None:
        parts = initialise_model(model, init_checkpoint, str(init), labels)
        reporter.log(f"initialised {', '.join(parts)} from {init}")
    plan = plan_execution(config.device, config.precision, config.channels_last)
    result = finetune(model, train, config, validation, reporter, plan=plan, unlabeled=pseudo_pool,
                      started_at=started_at, patch=preprocess.crop_size)
    structures = report_structures(model, train, plan, labels, reporter)
    metadata = {
        "stage": "finetune",
        "architecture": model_config.to_json(),
        "labels": labels.to_json(),
        "preprocessing": preprocess.to_json(),
        "whole_slices": whole_slices,
        "config": config.to_json(),
        "data": {"source": _data_source(labeled, out), "train_cases": [c.id for c in train_cases],
                 "validation_cases": [c.id for c in validation_cases],
                 "split": _data_source(split, out) if split else None},
        "result": {"best_step": result.best_step, "final_loss": float(np.mean(result.losses[-10:])),
                   "validation": result.validation, "seconds": round(result.seconds, 2),
                   "job_seconds": round(budget_clock() - started_at, 2), "ended_early": result.ended_early or None,
                   "self_training_rounds": [{"round": r, "labeled_dice_before": round(before, 4),
                                             "labeled_dice_after": round(after, 4)}
                                            for r, before, after in result.rounds],
                   "rejected_round": result.rejected_round, "batch_size": result.batch_size},
        "training_volumes_ml": training_volumes_ml(train_pairs, labels),
        "structures": [s.to_json() for s in structures],
        "lineage": lineage_after(init_checkpoint, init),
        "step": len(result.losses),
    }
    if result.stopped:
        metadata["stopped"] = result.stopped.to_json()
    save_checkpoint(Checkpoint(model.state_dict(), metadata), out, overwrite=overwrite)
    reporter.checkpoint(str(out), metadata["step"])
    reporter.finished(checkpoint=str(out), best_step=result.best_step)
    return out, result


def training_volumes_ml(pairs: Sequence[LabeledVolume], labels: LabelSet) -> dict[str, list[float]]:
    """{label value: [mL in each training label map]}: the norms review.csv compares predicted volumes with."""
    volumes = [structure_volumes_ml(pair.label, list(labels.foreground)) for pair in pairs]
    return {str(value): [float(f"{v[value]:.6g}") for v in volumes] for value in labels.foreground}


def _training_cases(dataset: Dataset, split_path) -> tuple[list[Case], list[Case]]:
    if split_path is None:
        cases = list(dataset.labeled)
        validation: list[Case] = []
    else:
        split = load_split(split_path)
        check_not_test(split, split.groups["train_labeled"] + split.groups["validation"], stage="finetune")
        cases = list(cases_in(dataset, split, "train_labeled").cases)
        validation = list(cases_in(dataset, split, "validation").cases)
    if not cases:
        raise ContrastSegError(
            f"{dataset.root}: no labeled volumes to train on; give image/label pairs (e.g. case.nii.gz + "
            "case_seg.nii.gz) or a manifest with a 'label' column"
        )
    unlabeled = [c.id for c in cases + validation if c.label is None]
    if unlabeled:
        raise ContrastSegError(f"{dataset.root}: cases {unlabeled} have no label map; fix the split or the data")
    return cases, validation


def _self_training_pool(config: FinetuneConfig, dataset: Dataset, split, unlabeled,
                        preprocess: PreprocessConfig) -> list[PreparedVolume]:
    """Preprocessed volumes to pseudo-label: ``unlabeled`` sources, else the split's train_unlabeled cases."""
    if not config.self_training_rounds:
        return []
    if unlabeled:
        cases = unlabeled_cases(unlabeled, split)
    elif split is not None:
        cases = list(cases_in(dataset, load_split(split), "train_unlabeled").cases)
    else:
        cases = []
    return [preprocess_volume(read_image(c.image, channel=c.channel), preprocess) for c in cases]


def _data_source(labeled, checkpoint: Path) -> str:
    """The data's path, relative to the checkpoint's folder when it lies inside it (so a job folder can move)."""
    data, folder = Path(labeled).resolve(), checkpoint.resolve().parent
    return str(data.relative_to(folder)) if data.is_relative_to(folder) else str(data)


def _prepare(pair: LabeledVolume, config: PreprocessConfig, labels: LabelSet, side: int) -> PreparedVolume:
    return preprocess_volume(pair.image, config, pair.label, labels.values, side)

