"""Prediction from files to files: one volume to one label map, or many volumes to one output folder.

All outputs are checked before any work starts (before the model is loaded): suffixes, existing paths of the other
kind, and no output on an input or on another output. A single volume's outputs are written only once its prediction
has succeeded, and a folder of outputs appears as a whole (written in a hidden folder, renamed at the end, removed on
an error or a stop signal), so a bad input never leaves partial results. A folder of outputs also holds
``review.csv``: one row per case, the predictions most likely wrong first (``triage.review``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from ..data.discovery import discover
from ..errors import ContrastSegError
from ..io import atomic_path, check_output_path, image_suffix, read_image, write_image_like, write_volume
from ..io.dicom_series import is_dicom_folder
from ..io.read_checks import check_exists
from ..io.output_path import output_kind, shown_as
from ..io.output_checks import check_distinct, check_volume_suffix
from ..io.read import case_stem
from ..runtime.progress import ProgressReporter
from ..triage import REVIEW_NAME, review_row, write_review
from .predictor import Prediction, Predictor


@dataclass(frozen=True)
class PredictionTask:
    """One input volume and where its label map (and optional maps) go; ``case`` names it in review.csv."""

    image: Path
    output: Path
    channel: int | None = None
    probabilities: Path | None = None
    uncertainty: Path | None = None
    case: str = ""


def companion_path(output: Path, tag: str) -> Path:
    """``scan_seg.nii.gz`` + ``probabilities`` -> ``scan_seg_probabilities.nii.gz`` (same folder and format)."""
    suffix = image_suffix(output) or ".nii.gz"
    return output.with_name(f"{case_stem(output)}_{tag}{suffix}")


def run_predict(model: str | os.PathLike, inputs: Sequence[str | os.PathLike], output: str | os.PathLike,
                probabilities: bool | str = False, uncertainty: bool | str = False, overwrite: bool = False,
                device: str = "auto", precision: str = "auto", channel: int | None = None,
                reporter: ProgressReporter | None = None, channels_last: str = "auto") -> list[Path]:
    """Predict ``inputs`` (one file or DICOM folder -> ``output`` file when it has a file suffix, which must be a
    volume's; otherwise, and for several files or a dataset folder -> ``output`` folder of ``<case>_seg.nii.gz``;
    errors met while writing it name ``output``, not its hidden staging folder). ``probabilities``/
    ``uncertainty``: True for a name derived from the output, or a path (single input only). Every output path is
    checked before the model is read. A folder output also gets ``review.csv`` (see ``triage.review``). Returns the
    label-map paths written."""
    output = Path(output)
    single = len(inputs) == 1 and _is_volume(Path(inputs[0])) and bool(image_suffix(output) or output_kind(output))
    if single:
        tasks = [_single_task(Path(inputs[0]), output, channel, probabilities, uncertainty, overwrite)]
    else:
        tasks = _folder_plan(inputs, output, channel, probabilities, uncertainty, overwrite)
    _check_paths(tasks, [] if single else [output])
    predictor = Predictor.from_file(model, device=device, precision=precision, channels_last=channels_last)
    reporter = reporter or ProgressReporter("predict", 0)
    reporter.total = len(tasks)
    if single:
        reporter.started(device=predictor.plan.describe())
        _write_outputs(tasks[0], _predict_task(predictor, tasks[0]), overwrite)
        reporter.update(1)
        reporter.finished(outputs=[str(output)])
        return [output]
    with atomic_path(output, overwrite, kind="folder") as staging, shown_as(staging, output):
        staging.mkdir()
        reporter.started(device=predictor.plan.describe(), volumes=len(tasks))
        review = []
        for done, task in enumerate(tasks, start=1):
            staged = _rebased(task, output, staging)
            prediction = _predict_task(predictor, staged, for_review=True)
            _write_outputs(staged, prediction, overwrite=False)
            review.append(_review_row(predictor, task, prediction))
            reporter.update(done)
        write_review(review, staging / REVIEW_NAME)
    written = [t.output for t in tasks]
    reporter.finished(outputs=[str(p) for p in written], review=str(output / REVIEW_NAME))
    return written


def _folder_plan(inputs, output: Path, channel, probabilities, uncertainty, overwrite) -> list[PredictionTask]:
    """The tasks of a folder prediction, named inside ``output`` (checked as a folder; nothing created)."""
    if isinstance(probabilities, str) or isinstance(uncertainty, str):
        raise ContrastSegError(f"{output}: with several inputs, give --probabilities/--uncertainty without a path "
                               "(the names are derived from each case)")
    check_output_path(output, overwrite, kind="folder")
    if image_suffix(output) or output_kind(output) == "file":
        raise ContrastSegError(f"--output {output}: with several inputs or a dataset folder the output is a folder; "
                               "give a folder name without a file suffix")
    return _folder_tasks(inputs, output, channel, bool(probabilities), bool(uncertainty))


def _check_paths(tasks: list[PredictionTask], folders: list[Path]) -> None:
    """No output on an input, on another output, or inside an input DICOM folder."""
    outputs = [("--output", f) for f in folders]
    for task in tasks:
        outputs += [(option, path) for option, path in (("--output", task.output),
                    ("--probabilities", task.probabilities), ("--uncertainty", task.uncertainty)) if path]
    images = [task.image for task in tasks]
    check_distinct(outputs, images, [image for image in images if image.is_dir()])


def _rebased(task: PredictionTask, folder: Path, staging: Path) -> PredictionTask:
    """``task`` with its outputs moved from ``folder`` into the staging folder."""
    def move(path):
        return None if path is None else staging / path.relative_to(folder)
    return replace(task, output=move(task.output), probabilities=move(task.probabilities),
                   uncertainty=move(task.uncertainty))


def _predict_task(predictor: Predictor, task: PredictionTask, for_review: bool = False) -> Prediction:
    image = read_image(task.image, channel=task.channel)
    return predictor.predict(image, probabilities=task.probabilities is not None,
                             uncertainty=task.uncertainty is not None, entropy_map=for_review)


def _review_row(predictor: Predictor, task: PredictionTask, prediction: Prediction) -> dict:
    """The case's review row, with the final paths of its files."""
    paths = {"image": str(task.image.absolute()), "prediction": str(task.output.absolute()),
             "uncertainty": str(task.uncertainty.absolute()) if task.uncertainty else ""}
    return review_row(task.case, prediction.label, prediction.uncertainty, predictor.labels.foreground,
                      predictor.volume_norms, paths)


def _write_outputs(task: PredictionTask, prediction: Prediction, overwrite: bool) -> None:
    if task.probabilities is not None:
        write_image_like(prediction.probability_image(), task.probabilities, overwrite)
    if task.uncertainty is not None:
        write_volume(prediction.uncertainty, task.uncertainty, overwrite)
    write_volume(prediction.label, task.output, overwrite, label=True)


def _single_task(image: Path, output: Path, channel, probabilities, uncertainty, overwrite) -> PredictionTask:
    check_output_path(check_volume_suffix(output, "--output"), overwrite, kind="file")
    extras = {}
    for tag, request in (("probabilities", probabilities), ("uncertainty", uncertainty)):
        if request:
            path = companion_path(output, tag) if request is True else check_volume_suffix(Path(request), f"--{tag}")
            extras[tag] = check_output_path(path, overwrite, kind="file")
    return PredictionTask(image, output, channel, extras.get("probabilities"), extras.get("uncertainty"))


def _folder_tasks(inputs, folder: Path, channel, probabilities: bool, uncertainty: bool) -> list[PredictionTask]:
    sources: list[tuple[str, Path, int | None]] = []
    for item in map(Path, inputs):
        if _is_volume(item):
            sources.append((case_stem(item), item, channel))
        else:
            sources += [(c.id, c.image, c.channel if channel is None else channel)
                        for c in discover(item, channel=channel).cases]
    ids = [case_id for case_id, _, _ in sources]
    if len(set(ids)) != len(ids):
        raise ContrastSegError(f"{folder.name}: two inputs share a case name; rename them so outputs do not collide")
    return [PredictionTask(
        image, folder / f"{case_id}_seg.nii.gz", ch,
        folder / f"{case_id}_seg_probabilities.nii.gz" if probabilities else None,
        folder / f"{case_id}_seg_uncertainty.nii.gz" if uncertainty else None, case_id,
    ) for case_id, image, ch in sources]


def _is_volume(path: Path) -> bool:
    """One volume (a file or a folder of DICOM slices) rather than a dataset; a missing path or a link that points
    nowhere is refused here, a folder that cannot be listed too."""
    check_exists(path)
    return path.is_file() or is_dicom_folder(path)
