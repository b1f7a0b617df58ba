"""The module's logic without Qt: scene nodes in, background ``contrastseg`` jobs, new nodes or files out.

    workflow = ContrastSegWorkflow(slicer.mrmlScene, models_dir="~/ContrastSeg/models")
    model = workflow.finetune(labeled=[(volume, segmentation)], pretrained="global_local.pt", wait=True)
    segmentation = workflow.segment(other_volume, model, wait=True)    # a NEW "<volume> ContrastSeg" node
    review = workflow.segment([scan2, scan3], model, review=True)       # a row per volume, most likely wrong first
    suggestions = workflow.suggest(unlabeled=[scan2, scan3], model=model, count=1, wait=True)  # what to annotate
    workflow.pretrain_in_background(unlabeled=[scan2, scan3])       # while the user annotates; returns at once
    model = workflow.finetune(labeled=pairs, pretrained=workflow.background_checkpoint(unlabeled=[scan2, scan3]))

The job's settings are the library's own (``ContrastSegLib.settings``): checked with their ``check()`` and turned into
the command line by ``command_arguments`` before anything is exported. Every input is checked before anything is
written; the user's nodes are only read; results are imported into new nodes on the caller's thread after the job
succeeded (all or nothing); models are kept in ``models_dir`` under versioned names. ``wait=False`` returns the
running ``Job``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ContrastSegLib.benchmark.verdict import DEFAULT_COMPARE_METHODS, read_verdict
from ContrastSegLib.runtime.budget import finetune_budget, format_duration, stage_budget
from ContrastSegLib.settings import (DEFAULT_CHANNELS, DEFAULT_STRATEGY, BudgetDevices, FinetuneConfig,
                                     PreprocessConfig, PretrainConfig, Stage, command_arguments)

from . import scene_io
from .background_pretraining import BackgroundPretraining
from .checkpoints import check_checkpoint_classes, finetuned_classes
from .errors import SceneInputError, checked_config, library_checked
from .job import Job, JobStep
from .job_folder import JobFolder
from .memory import plan_device, training_memory_bytes
from .models import check_model_target, deliver
from .pretraining_cache import pretrain_arguments
from .process import ProcessLauncher, SubprocessLauncher, contrastseg_command, library_environment
from .review_table import review_rows
from .suggestion import Suggestions
from .training_set import TrainingSet

RESULT_SUFFIX = " ContrastSeg"
DEFAULT_MODELS_DIR = Path.home() / ".contrastseg" / "models"
EventCallback = Callable[[Job, dict], None]


class ContrastSegWorkflow(TrainingSet, Suggestions):
    """``launcher``: how processes start (a fake one in tests); ``jobs_dir``: job records and logs;
    ``models_dir``: where models are kept; ``process_events``: run while ``wait=True`` waits (Slicer:
    ``slicer.app.processEvents``, so the application stays responsive)."""

    def __init__(self, scene, launcher: ProcessLauncher | None = None, jobs_dir: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, models_dir: str | os.PathLike | None = None,
                 process_events: Callable[[], None] | None = None):
        self.scene = scene
        self.launcher = launcher or SubprocessLauncher()
        self.jobs_dir = Path(jobs_dir) if jobs_dir else Path(tempfile.gettempdir()) / "ContrastSeg-jobs"
        self.models_dir = Path(models_dir).expanduser() if models_dir else DEFAULT_MODELS_DIR
        self.env = env if env is not None else library_environment()
        self.process_events = process_events
        self.last_device_message = ""
        self.background = BackgroundPretraining(self)

    # ---- jobs -----------------------------------------------------------------------------------------------------

    def pretrain(self, unlabeled: Sequence = (), folders: Sequence[str] = (),
                 stages: Sequence[PretrainConfig] | None = None, preprocess: PreprocessConfig = PreprocessConfig(),
                 channels: Sequence[int] = DEFAULT_CHANNELS, model_path: str | None = None, wait: bool = False,
                 on_event: EventCallback | None = None, overwrite: bool = False):
        """Contrastive pre-training (default: global G^D then local L^R) on scene volumes and/or folders; the
        result is the kept checkpoint's path."""
        stages = list(stages) if stages is not None else default_pretraining()
        target = self._model_target(model_path, "pretrained.pt")
        volumes = [scene_io.checked_scalar_volume(v) for v in unlabeled]
        if not volumes and not folders:
            raise SceneInputError("pre-training needs unlabeled volumes: select scene volumes or a folder of scans")
        device = self._device(stages[0].device, FinetuneConfig().batch_size, preprocess, channels)
        stages = self._checked_stages(stages, preprocess, channels, device, None if folders else len(volumes))
        folder = JobFolder.create(self.jobs_dir, "pretrain")
        with folder.removed_on_error():
            cases = self._export_unlabeled(folder, volumes)
            pools = [str(folder.write_manifest(cases, name="pool.json"))] if cases else []
        steps, final = self._pretrain_steps(folder, [*pools, *map(str, folders)], stages, preprocess, channels)
        return self._run(Job("pretrain", folder, steps, self.launcher, self.env,
                             on_success=lambda job: str(deliver(final, target, overwrite)), on_event=on_event), wait)

    def pretrain_in_background(self, unlabeled: Sequence = (), folders: Sequence[str] = (),
                               stages: Sequence[PretrainConfig] | None = None,
                               preprocess: PreprocessConfig = PreprocessConfig(),
                               channels: Sequence[int] = DEFAULT_CHANNELS, device: str = "auto",
                               on_event: EventCallback | None = None) -> Job | None:
        """Pre-training (default: the papers' chain) on these volumes and folders as a low-priority background job
        that goes on from where an earlier one stopped, kept per volumes and settings (``background_pretraining``).
        Returns the running job (its events arrive through ``self.background.poll()``), or None when it is
        complete or failed before (``self.background.status()``)."""
        return self.background.start(self._background_cache(unlabeled, folders, stages, preprocess, channels, device),
                                     on_event)

    def background_checkpoint(self, unlabeled: Sequence = (), folders: Sequence[str] = (),
                              stages: Sequence[PretrainConfig] | None = None,
                              preprocess: PreprocessConfig = PreprocessConfig(),
                              channels: Sequence[int] = DEFAULT_CHANNELS, device: str = "auto") -> str | None:
        """The weights the background pre-training kept for these volumes and settings, to fine-tune or suggest
        from (``pretrained=``); a running one is stopped first and keeps what it reached. None: nothing written
        yet."""
        return self.background.take(self._background_cache(unlabeled, folders, stages, preprocess, channels, device))

    def _background_cache(self, unlabeled, folders, stages, preprocess, channels, device):
        return self.background.plan(unlabeled, folders, default_pretraining() if stages is None else stages,
                                    preprocess, channels, device)

    def finetune(self, labeled: Sequence[tuple[Any, Any]], pretrained: str | None = None, unlabeled: Sequence = (),
                 folders: Sequence[str] = (), pretrain: Sequence[PretrainConfig] | None = None,
                 settings: FinetuneConfig = FinetuneConfig(), preprocess: PreprocessConfig = PreprocessConfig(),
                 channels: Sequence[int] = DEFAULT_CHANNELS, segments: Sequence[str] | None = None,
                 model_path: str | None = None, wait: bool = False, on_event: EventCallback | None = None,
                 overwrite: bool = False, cpu_time_budget: float | None = None):
        """Fine-tune on ``labeled`` (volume, segmentation) pairs, from ``pretrained`` or after pre-training now
        (``pretrain``: the stages) or from random weights. ``segments``: the segment names to learn (default: all of
        the first pair). ``cpu_time_budget``: seconds the whole job may take when it runs on the CPU (each
        pre-training stage a third, fine-tuning the rest; ``runtime.budget``); on a GPU the iterations run in full.
        Returns the kept model's path (``wait``) or the job."""
        target = self._model_target(model_path, "model.pt")
        if pretrained and pretrain:
            raise SceneInputError("choose either a pre-trained checkpoint or pre-training now, not both")
        pairs, classes = self.check_labeled(labeled, segments)
        volumes = [scene_io.checked_scalar_volume(v) for v in unlabeled]
        if pretrained:
            check_checkpoint_classes(pretrained, classes)
        device = self._device(settings.device, settings.batch_size, preprocess, channels)
        on_cpu = {"budget_devices": BudgetDevices.CPU.value}  # the job's process knows where it runs
        stages = [replace(s, time_budget=stage_budget(cpu_time_budget), **on_cpu) for s in pretrain or ()]
        settings = finetune_settings(settings, device, cpu_time_budget, sum(s.time_budget or 0 for s in stages))
        preprocess = checked_config(preprocess)
        if settings.self_training_rounds and not volumes and not folders:
            raise SceneInputError("self-training needs unlabeled volumes: select scene volumes or a folder of scans")
        stages = self._checked_stages(stages, preprocess, channels, device,
                                      None if folders else len(pairs) + len(volumes)) if stages else []
        folder = JobFolder.create(self.jobs_dir, "finetune")
        with folder.removed_on_error():
            labeled_cases = self._export_labeled(folder, pairs)
            manifest = folder.write_manifest(labeled_cases, classes)
            unlabeled_cases = self._export_unlabeled(folder, volumes)
            steps, init, pretrained_out = [], pretrained, None
            if stages:  # the labeled images join the pool, their labels unused
                images = [{"id": case["id"], "image": case["image"]} for case in labeled_cases]
                pool = folder.write_manifest(images + unlabeled_cases, name="pool.json")
                steps, init = self._pretrain_steps(folder, [str(pool), *map(str, folders)], stages, preprocess,
                                                   channels)
                pretrained_out = init
            model = folder.outputs / "model.pt"
            arguments = finetune_arguments(manifest, model, settings, preprocess, channels, init)
            if settings.self_training_rounds:
                pools = [str(folder.write_manifest(unlabeled_cases, name="unlabeled.json"))] if unlabeled_cases else []
                arguments += ["--unlabeled", *pools, *map(str, folders)]
            steps.append(JobStep("Fine-tuning", contrastseg_command(*arguments)))

        def keep_models(job: Job) -> str:
            if pretrained_out is not None:
                job.pretrained_model = str(deliver(pretrained_out, target.with_name(f"{target.stem}-pretrained.pt")))
            return str(deliver(model, target, overwrite))
        return self._run(Job("finetune", folder, steps, self.launcher, self.env, on_success=keep_models,
                             on_event=on_event), wait)

    def evaluate_methods(self, labeled: Sequence[tuple[Any, Any]], unlabeled: Sequence = (),
                         folders: Sequence[str] = (), methods: Sequence[str] = DEFAULT_COMPARE_METHODS,
                         pretrain_iterations: int = PretrainConfig.iterations,
                         iterations: int = FinetuneConfig.iterations, preprocess: PreprocessConfig = PreprocessConfig(),
                         channels: Sequence[int] = DEFAULT_CHANNELS, segments: Sequence[str] | None = None,
                         device: str = "auto", cpu_time_budget: float | None = None, wait: bool = False,
                         on_event: EventCallback | None = None, pretrained: str | None = None):
        """"Did pre-training help on my data?": ``contrastseg compare`` (leave-one-out) over the labeled pairs,
        pre-training on ``unlabeled`` volumes and ``folders`` — or, given ``pretrained`` (the background
        pre-training's checkpoint), fine-tuning from it against random initialisation with nothing pre-trained again
        — within ``cpu_time_budget`` seconds on any device (it trains one model per fold and method). The result:
        {"recommended", "means", "commands", "rows", "report"} (``compare``'s verdict.json and report.md)."""
        pairs, classes = self.check_labeled(labeled, segments)
        if len(pairs) < 2:
            raise SceneInputError("evaluating needs at least 2 labeled pairs (each is left out once); add another")
        volumes = [] if pretrained else [scene_io.checked_scalar_volume(v) for v in unlabeled]
        if not volumes and not folders and not pretrained:
            raise SceneInputError("evaluating pre-training needs unlabeled volumes: select scene volumes or a folder")
        device = self._device(device, FinetuneConfig.batch_size, preprocess, channels)
        budget = cpu_time_budget  # on any device: evaluating trains a model per fold and method
        checked_config(preprocess)
        folder = JobFolder.create(self.jobs_dir, "evaluate")
        with folder.removed_on_error():
            manifest = folder.write_manifest(self._export_labeled(folder, pairs), classes)
            cases = self._export_unlabeled(folder, volumes)
            pools = [str(folder.write_manifest(cases, name="pool.json"))] if cases else []
        results = folder.outputs / "compare"
        sources = (["--init", str(pretrained), "--methods", "random"] if pretrained else
                   ["--unlabeled", *pools, *map(str, folders), "--methods", ",".join(methods)])
        arguments = ["compare", "--labeled", str(manifest), *sources, "--out", str(results), "--device", device,
                     "--pretrain-iterations", str(pretrain_iterations), "--finetune-iterations", str(iterations),
                     *command_arguments(preprocess), "--channels", ",".join(map(str, channels))]
        arguments += ["--time-budget", format_duration(round(budget))] if budget else []
        return self._run(Job("evaluate", folder, [JobStep("Evaluating (leave-one-out)",
                                                          contrastseg_command(*arguments))],
                             self.launcher, self.env, on_success=lambda job: read_verdict(results),
                             on_event=on_event), wait)

    def segment(self, volumes, model: str, uncertainty: bool = False, device: str = "auto", wait: bool = True,
                on_event: EventCallback | None = None, review: bool = False):
        """NEW segmentation node(s) "<volume> ContrastSeg" (and "<volume> ContrastSeg uncertainty" volumes), segments
        named and coloured from the checkpoint, under the volume's parent transform. One volume -> one node; a list
        -> a list; ``review=True`` -> the review table instead (``review_table.review_rows``: a row per volume, the
        predictions most likely wrong first, with their nodes); ``wait=False`` -> the job (its ``volumes`` are the
        segmented ones, its ``review`` the review table)."""
        single = not isinstance(volumes, (list, tuple))
        volumes = [scene_io.checked_scalar_volume(v) for v in ([volumes] if single else volumes)]
        if not volumes:
            raise SceneInputError("select at least one volume to segment (tick it in the Volumes list)")
        classes = finetuned_classes(model)
        folder = JobFolder.create(self.jobs_dir, "segment")
        images = folder.inputs / "volumes"
        cases = [f"volume{index:03d}" for index in range(len(volumes))]
        with folder.removed_on_error():
            images.mkdir()
            for case, volume in zip(cases, volumes):
                scene_io.write_volume(volume, images / f"{case}.nrrd")
        predictions = folder.outputs / "predictions"
        arguments = ["predict", "--model", str(model), "--input", str(images), "--output", str(predictions),
                     "--device", device] + (["--uncertainty"] if uncertainty else [])

        def import_results(job: Job):
            created, nodes = [], {}
            with scene_io.nodes_removed_on_error(self.scene):
                for case, volume in zip(cases, volumes):
                    stem = predictions / f"{case}_seg"
                    name = self.scene.GenerateUniqueName(volume.GetName() + RESULT_SUFFIX)
                    segmentation = scene_io.read_labelmap_as_segmentation(self.scene, f"{stem}.nii.gz", volume,
                                                                          classes, name)
                    doubt = scene_io.read_scalar_volume(self.scene, f"{stem}_uncertainty.nii.gz",
                                                        f"{name} uncertainty", like=volume) if uncertainty else None
                    created += [segmentation] + ([doubt] if doubt is not None else [])
                    nodes[case] = (volume, segmentation, doubt)
                job.review = review_rows(predictions, nodes)
            if review:
                return job.review
            return created[0] if single else created

        job = Job("segment", folder, [JobStep("Segmenting", contrastseg_command(*arguments))], self.launcher,
                  self.env, on_success=import_results, on_event=on_event)
        job.volumes = volumes
        return self._run(job, wait)

    def segment_folder(self, inputs: str, output: str, model: str, uncertainty: bool = False, device: str = "auto",
                       wait: bool = True, on_event: EventCallback | None = None):
        """Segment every scan of the folder ``inputs`` into a new folder (``<case>_seg.nii.gz`` on each scan's own
        grid, written when all are done): ``output`` itself when it does not exist yet, else a new sub-folder of it
        (:func:`segmentation_folder`). The job's ``output_folder`` and ``note`` say which; returns the written
        files."""
        source, chosen = Path(inputs).expanduser(), Path(output).expanduser()
        if not source.is_dir():
            raise SceneInputError(f"{source} is not a folder; choose the folder of scans to segment")
        target = segmentation_folder(source, chosen)
        finetuned_classes(model)
        folder = JobFolder.create(self.jobs_dir, "segment-folder")
        arguments = ["predict", "--model", str(model), "--input", str(source), "--output", str(target),
                     "--device", device] + (["--uncertainty"] if uncertainty else [])
        job = Job("segment", folder, [JobStep("Segmenting a folder", contrastseg_command(*arguments))],
                  self.launcher, self.env, on_success=lambda job: sorted(map(str, target.iterdir())),
                  on_event=on_event)
        job.output_folder = target
        job.note = (f"writing into the new folder {target}" if target == chosen else
                    f"{chosen} exists: writing into its new sub-folder '{target.name}' (nothing in it is replaced)")
        return self._run(job, wait)

    # ---- helpers --------------------------------------------------------------------------------------------------

    def _model_target(self, model_path: str | None, default_name: str) -> Path:
        if model_path:
            return check_model_target(model_path)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        return check_model_target(self.models_dir / default_name)

    def _device(self, requested: str, batch_size: int, preprocess: PreprocessConfig, channels: Sequence[int]) -> str:
        plan = plan_device(requested, training_memory_bytes(batch_size, preprocess.crop_size, channels))
        self.last_device_message = plan.message
        return plan.device

    def _checked_stages(self, stages: Sequence[PretrainConfig], preprocess: PreprocessConfig,
                        channels: Sequence[int], device: str, volumes: int | None) -> list[PretrainConfig]:
        """The stages on ``device``, each checked, also against the UNet of ``channels`` and the crop; m volumes per
        batch no more than the pool has (when known)."""
        if not stages or stages[0].stage not in (Stage.GLOBAL.value, Stage.MASKED.value):
            raise SceneInputError("pre-training starts with a global stage (G^D, G^D- or G^R) or the masked-image "
                                  "stage (MIM)")
        checked_config(preprocess)
        checked = [checked_config(replace(s, device=device, volumes_per_batch=s.volumes_per_batch if volumes is None
                                          else max(1, min(s.volumes_per_batch, volumes)))) for s in stages]
        for stage in checked:
            library_checked(lambda: stage.check_model(tuple(channels), preprocess.crop_size))
        return checked

    def _export_labeled(self, folder: JobFolder, pairs) -> list[dict[str, str]]:
        """Each (volume, segmentation, ids) as ``caseNNN.nrrd`` + ``caseNNN_seg.nrrd``; their manifest entries."""
        cases = []
        for index, (volume, segmentation, ids) in enumerate(pairs):
            image, label = f"case{index:03d}.nrrd", f"case{index:03d}_seg.nrrd"
            scene_io.write_segments_as_labelmap(self.scene, segmentation, ids, volume, folder.inputs / label)
            scene_io.write_volume(volume, folder.inputs / image)
            cases.append({"id": f"case{index:03d}", "image": image, "label": label})
        return cases

    def _export_unlabeled(self, folder: JobFolder, volumes: Sequence, prefix: str = "unlabeled"
                          ) -> list[dict[str, str]]:
        """Each volume as ``<prefix>NNN.nrrd``; their manifest entries (images only)."""
        cases = []
        for index, volume in enumerate(volumes):
            image = f"{prefix}{index:03d}.nrrd"
            scene_io.write_volume(volume, folder.inputs / image)
            cases.append({"id": f"{prefix}{index:03d}", "image": image})
        return cases

    def _pretrain_steps(self, folder: JobFolder, sources: list[str], stages: Sequence[PretrainConfig],
                        preprocess: PreprocessConfig, channels: Sequence[int]) -> tuple[list[JobStep], Path]:
        """One process per stage, each starting from the previous one's checkpoint; the last checkpoint."""
        steps, init, chain = [], None, []
        for stage in stages:
            chain.append(stage.strategy)
            out = folder.outputs / f"pretrained_{'_'.join(chain)}.pt"
            arguments = pretrain_arguments(stage, sources, out, init, preprocess, channels)
            steps.append(JobStep(f"Pre-training ({stage.stage} {stage.strategy})", contrastseg_command(*arguments)))
            init = out
        return steps, init

    def _run(self, job: Job, wait: bool):
        job.start()
        return job.wait(process_events=self.process_events) if wait else job


def finetune_settings(settings: FinetuneConfig, device: str, cpu_time_budget: float | None,
                      pretraining_s: float = 0.0) -> FinetuneConfig:
    """``settings`` of a fine-tuning job on ``device``, checked: what is left of ``cpu_time_budget`` seconds after
    ``pretraining_s`` of pre-training stages (``runtime.budget``), applied only where the job runs on the CPU."""
    return checked_config(replace(settings, device=device, time_budget=finetune_budget(cpu_time_budget, pretraining_s),
                                  budget_devices=BudgetDevices.CPU.value))


def finetune_arguments(manifest: str | os.PathLike, model: str | os.PathLike, settings: FinetuneConfig,
                       preprocess: PreprocessConfig, channels: Sequence[int],
                       init: str | os.PathLike | None = None) -> list[str]:
    """The ``contrastseg finetune`` arguments of a job (without self-training's ``--unlabeled``): every setting
    explicit, the UNet's ``channels``, then ``--init`` (the model keeps that checkpoint's preprocessing) or the
    preprocessing's flags. ``benchmarks/bench_minutes.py`` runs the panel's defaults through it."""
    arguments = ["finetune", "--labeled", str(manifest), "--out", str(model), *command_arguments(settings),
                 "--channels", ",".join(map(str, channels))]
    return arguments + (["--init", str(init)] if init else command_arguments(preprocess))


def default_pretraining(iterations: int | None = None) -> list[PretrainConfig]:
    """The papers' chain: G^D global, then L^R local."""
    base = PretrainConfig() if iterations is None else replace(PretrainConfig(), iterations=iterations)
    return [replace(base, stage=stage.value, strategy=DEFAULT_STRATEGY[stage.value])
            for stage in (Stage.GLOBAL, Stage.LOCAL)]


def segmentation_folder(scans: Path, chosen: Path) -> Path:
    """Where "Segment folder to files" writes: ``chosen`` when it does not exist yet (its parent must); inside an
    existing folder (what the browse dialog picks), a new sub-folder "<scans folder> segmentations" (-2, -3, ...
    when taken), so that nothing already there is replaced."""
    if not chosen.exists():
        if not chosen.parent.is_dir():
            raise SceneInputError(f"{chosen.parent} does not exist; choose where the output folder goes")
        target = chosen
    elif not chosen.is_dir():
        raise SceneInputError(f"{chosen} is a file; choose a folder for the segmentations")
    else:
        base = f"{scans.resolve().name or 'scans'} segmentations"
        target, number = chosen / base, 1
        while target.exists():
            number += 1
            target = chosen / f"{base}-{number}"
    if target.resolve() == scans.resolve() or scans.resolve() in target.resolve().parents:
        raise SceneInputError(f"{target} is inside the folder of scans; choose a folder outside {scans}")
    return target
