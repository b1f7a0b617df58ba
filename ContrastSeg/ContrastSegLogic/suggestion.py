"""Which volumes to annotate next: ``contrastseg suggest`` over the unlabeled scene volumes and folders, with a
pre-trained or fine-tuned model, or after pre-training on them now. Each suggestion names its scene volume or its
file.

    rows = workflow.suggest(unlabeled=[scan2, scan3], folders=["~/more scans"], model="pretrained.pt", count=2,
                            wait=True)
    rows[0]["volume"] or rows[0]["file"], rows[0]["reason"]
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ContrastSegLib.runtime.budget import stage_budget
from ContrastSegLib.settings import (DEFAULT_CHANNELS, BudgetDevices, FinetuneConfig, PreprocessConfig,
                                     PretrainConfig, SuggestConfig, command_arguments)

from . import scene_io
from .checkpoints import checkpoint_metadata
from .errors import SceneInputError, checked_config
from .job import Job, JobStep
from .job_folder import JobFolder
from .models import deliver
from .process import contrastseg_command

SUGGESTIONS_NAME = "suggestions.csv"
NO_MODEL = ("suggesting needs a model: choose a pre-trained checkpoint (Model section) or a fine-tuned model "
            "(Segment section), or choose 'Pre-train now' to pre-train on the unlabeled volumes first")


class Suggestions:
    """Mixed into the workflow: needs its scene, jobs folder, launcher, exports and pre-training steps."""

    def suggest(self, unlabeled: Sequence = (), folders: Sequence[str] = (), model: str | None = None,
                count: int = SuggestConfig.count, labeled_volumes: Sequence = (),
                pretrain: Sequence[PretrainConfig] | None = None,
                preprocess: PreprocessConfig = PreprocessConfig(), channels: Sequence[int] = DEFAULT_CHANNELS,
                device: str = "auto", cpu_time_budget: float | None = None, wait: bool = False, on_event=None):
        """Suggest ``count`` candidates to annotate next — the ``unlabeled`` scene volumes and the scans of
        ``folders`` — with ``model`` (a pre-trained or fine-tuned checkpoint), or without one after pre-training now
        (``pretrain``: the stages, each within a third of ``cpu_time_budget`` seconds on a CPU; the checkpoint is kept
        in the models folder as ``job.pretrained_model``). ``labeled_volumes``: scans annotated already, never
        suggested (their slices count as covered). The result, best first: one dict per suggestion with "rank",
        "case", "name", "volume" (the scene node, or None) or "file" (the scan's path), "score", "distance",
        "uncertainty" (fine-tuned model only, else None) and "reason"."""
        if model and pretrain:
            raise SceneInputError("choose either a model to suggest with or pre-training now, not both")
        if not model and not pretrain:
            raise SceneInputError(NO_MODEL)
        if model:
            checkpoint_metadata(model)
        known = [scene_io.checked_scalar_volume(v) for v in labeled_volumes]
        annotated_ids = {v.GetID() for v in known}
        volumes = [v for v in map(scene_io.checked_scalar_volume, unlabeled) if v.GetID() not in annotated_ids]
        available = len(volumes) + sum(_scans_in(folder) for folder in folders)
        if not available:
            raise SceneInputError("suggesting needs candidates: tick unlabeled scene volumes (not in a labeled pair) "
                                  "or choose an unlabeled folder")
        if count > available:
            raise SceneInputError(f"{count} volumes to suggest, but there are only {available} candidate(s); ask "
                                  f"for at most {available}")
        config = checked_config(replace(SuggestConfig(), count=count, device=device))
        stages, target = [], None
        if pretrain:
            target = self._model_target(None, "pretrained.pt")
            device = self._device(device, FinetuneConfig.batch_size, preprocess, channels)
            budget = {"time_budget": stage_budget(cpu_time_budget), "budget_devices": BudgetDevices.CPU.value}
            stages = self._checked_stages([replace(s, **budget) for s in pretrain], preprocess, channels, device,
                                          None if folders else len(volumes) + len(known))
            config = replace(config, device=device)
        folder = JobFolder.create(self.jobs_dir, "suggest")
        with folder.removed_on_error():
            cases = self._export_unlabeled(folder, volumes)
            scene_files = {(folder.inputs / c["image"]).resolve(): v for c, v in zip(cases, volumes)}
            candidates = [str(folder.write_manifest(cases, name="candidates.json"))] if cases else []
            annotated = self._export_unlabeled(folder, known, prefix="labeled")
            labeled = [str(folder.write_manifest(annotated, name="labeled_images.json"))] if annotated else []
        steps, init = [], model
        if stages:  # the annotated scans join the pre-training pool
            steps, init = self._pretrain_steps(folder, [*candidates, *labeled, *map(str, folders)], stages,
                                               preprocess, channels)

            def keep_pretrained(job: Job) -> None:  # kept even if suggesting then fails
                job.pretrained_model = str(deliver(init, target))
                job.progress.messages.append(f"pre-trained checkpoint kept: {job.pretrained_model}")
            steps[-1] = replace(steps[-1], after=keep_pretrained)
        out = folder.outputs / SUGGESTIONS_NAME
        arguments = ["suggest", "--model", str(init), "--unlabeled", *candidates, *map(str, folders),
                     "--out", str(out), *command_arguments(config)] + (["--labeled", *labeled] if labeled else [])
        steps.append(JobStep("Suggesting volumes to annotate", contrastseg_command(*arguments)))

        return self._run(Job("suggest", folder, steps, self.launcher, self.env,
                             on_success=lambda job: suggestion_rows(out, scene_files), on_event=on_event), wait)


def suggestion_rows(path: Path, scene_files: dict) -> list[dict]:
    """The rows of ``suggestions.csv``; ``scene_files``: exported file (resolved) -> the scene volume it came from."""
    from ContrastSegLib.selection import read_suggestions
    rows = []
    for row in read_suggestions(path):
        volume = scene_files.get(Path(row["image"]).resolve())
        rows.append({"rank": row["rank"], "case": row["case"],
                     "name": volume.GetName() if volume is not None else Path(row["image"]).name,
                     "volume": volume, "file": None if volume is not None else row["image"],
                     **{key: _present(row[key]) for key in ("score", "distance", "uncertainty")},
                     "reason": row["reason"]})
    return rows


def _scans_in(folder: str) -> int:
    """How many scans the folder holds (the library's own discovery)."""
    from ContrastSegLib.data.pools import unlabeled_cases
    from ContrastSegLib.errors import ContrastSegError
    try:
        return len(unlabeled_cases([folder]))
    except ContrastSegError as error:
        raise SceneInputError(str(error)) from None


def _present(value: float) -> float | None:
    """A number of the table; an empty cell (NaN) as None."""
    return None if math.isnan(value) else value
