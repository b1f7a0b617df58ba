"""The module's logic without Qt: scene nodes in, background ``contrastseg`` jobs, new nodes out.

    workflow = ContrastSegWorkflow(slicer.mrmlScene)
    model = workflow.finetune(labeled=[(volume, segmentation)], pretrained="global_local.pt", wait=True)
    segmentation = workflow.segment(other_volume, model)          # a NEW "<volume> ContrastSeg" node

Every input is checked before anything is written; the user's nodes are only read; results are imported into new nodes
on the caller's thread after the job succeeded (all or nothing). ``wait=False`` returns the running ``Job`` instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from . import scene_io
from .classes import SegmentClass, check_same_classes, classes_from_labels, classes_of, segment_ids
from .errors import SceneInputError
from .job import Job, JobStep
from .job_folder import JobFolder
from .memory import plan_device, training_memory_bytes
from .process import ProcessLauncher, SubprocessLauncher, contrastseg_command, library_environment
from .settings import FinetuneSettings, PretrainSettings

RESULT_SUFFIX = " ContrastSeg"
EventCallback = Callable[[Job, dict], None]


class ContrastSegWorkflow:
    """``launcher``: how processes start (a fake one in tests); ``jobs_dir``: where job folders go."""

    def __init__(self, scene, launcher: ProcessLauncher | None = None, jobs_dir: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None):
        self.scene = scene
        self.launcher = launcher or SubprocessLauncher()
        self.jobs_dir = Path(jobs_dir) if jobs_dir else Path(tempfile.gettempdir()) / "ContrastSeg-jobs"
        self.env = env if env is not None else library_environment()
        self.last_device_message = ""

    # ---- jobs -----------------------------------------------------------------------------------------------------

    def pretrain(self, unlabeled: Sequence = (), folders: Sequence[str] = (), settings: PretrainSettings = PretrainSettings(),
                 finetune_settings: FinetuneSettings = FinetuneSettings(), model_path: str | None = None,
                 wait: bool = False, on_event: EventCallback | None = None, overwrite: bool = False):
        """Contrastive pre-training on scene volumes and/or folders; the result is the checkpoint path."""
        target = _checked_target(model_path, overwrite)
        volumes = [_checked_volume(v) for v in unlabeled]
        if not volumes and not folders:
            raise SceneInputError("pre-training needs unlabeled volumes: select scene volumes or a folder of scans")
        device = self._device(finetune_settings)
        folder = JobFolder.create(self.jobs_dir, "pretrain")
        with _removed_on_error(folder):
            unlabeled_cases = self._export_unlabeled(folder, volumes)
            pools = [str(folder.write_manifest(unlabeled_cases, name="pool.json"))] if unlabeled_cases else []
        steps, final = self._pretrain_steps(folder, [*pools, *map(str, folders)], settings, finetune_settings, device)
        return self._run(Job("pretrain", folder, steps, self.launcher, self.env,
                             on_success=lambda job: _deliver(final, target), on_event=on_event), wait)

    def finetune(self, labeled: Sequence[tuple[Any, Any]], pretrained: str | None = None, unlabeled: Sequence = (),
                 folders: Sequence[str] = (), pretrain: PretrainSettings | None = None,
                 settings: FinetuneSettings = FinetuneSettings(), segments: Sequence[str] | None = None,
                 model_path: str | None = None, wait: bool = False, on_event: EventCallback | None = None,
                 overwrite: bool = False):
        """Fine-tune on ``labeled`` (volume, segmentation) pairs, from ``pretrained`` or after pre-training now
        (``pretrain`` settings) or from random weights. ``segments``: the segment names to learn (default: all of the
        first pair). Returns the checkpoint path (``wait``) or the job."""
        target = _checked_target(model_path, overwrite)
        if pretrained and pretrain:
            raise SceneInputError("choose either a pre-trained checkpoint or pre-training now, not both")
        pairs, classes = self.check_labeled(labeled, segments)
        volumes = [_checked_volume(v) for v in unlabeled]
        if pretrained:
            check_checkpoint_classes(pretrained, classes)
        device = self._device(settings)
        if settings.self_training_rounds and not volumes and not folders:
            raise SceneInputError("self-training needs unlabeled volumes: select scene volumes or a folder of scans")
        folder = JobFolder.create(self.jobs_dir, "finetune")
        with _removed_on_error(folder):
            labeled_cases = self._export_labeled(folder, pairs)
            manifest = folder.write_manifest(labeled_cases, classes)
            unlabeled_cases = self._export_unlabeled(folder, volumes)
            steps, init = [], pretrained
            if pretrain is not None:  # the labeled images join the pool, their labels unused
                images = [{"id": case["id"], "image": case["image"]} for case in labeled_cases]
                pool = folder.write_manifest(images + unlabeled_cases, name="pool.json")
                steps, init = self._pretrain_steps(folder, [str(pool), *map(str, folders)], pretrain, settings, device)
            model = folder.outputs / "model.pt"
            arguments = ["finetune", "--labeled", str(manifest), "--out", str(model), "--device", device,
                         *settings.arguments()]
            arguments += ["--init", str(init)] if init else settings.preprocessing_arguments()
            if settings.self_training_rounds:
                pools = [str(folder.write_manifest(unlabeled_cases, name="unlabeled.json"))] if unlabeled_cases else []
                arguments += ["--unlabeled", *pools, *map(str, folders)]
            steps.append(JobStep("Fine-tuning", contrastseg_command(*arguments)))
        return self._run(Job("finetune", folder, steps, self.launcher, self.env,
                             on_success=lambda job: _deliver(model, target), on_event=on_event), wait)

    def segment(self, volumes, model: str, uncertainty: bool = False, device: str = "auto", wait: bool = True,
                on_event: EventCallback | None = None):
        """NEW segmentation node(s) "<volume> ContrastSeg" (and "<volume> ContrastSeg uncertainty" volumes), segments
        named and coloured from the checkpoint. One volume -> one node; a list -> a list; ``wait=False`` -> the job."""
        single = not isinstance(volumes, (list, tuple))
        volumes = [_checked_volume(v) for v in ([volumes] if single else volumes)]
        if not volumes:
            raise SceneInputError("select at least one volume to segment")
        classes = classes_from_labels(_finetuned_labels(model))
        folder = JobFolder.create(self.jobs_dir, "segment")
        images = folder.inputs / "volumes"
        with _removed_on_error(folder):
            images.mkdir()
            for index, volume in enumerate(volumes):
                scene_io.write_volume(volume, images / f"volume{index:03d}.nrrd")
        predictions = folder.outputs / "predictions"
        arguments = ["predict", "--model", str(model), "--input", str(images), "--output", str(predictions),
                     "--device", device]
        if uncertainty:
            arguments.append("--uncertainty")

        def import_results(job: Job) -> list:
            created: list = []
            with scene_io.nodes_removed_on_error(self.scene):
                for index, volume in enumerate(volumes):
                    stem = predictions / f"volume{index:03d}_seg"
                    name = self.scene.GenerateUniqueName(volume.GetName() + RESULT_SUFFIX)
                    created.append(scene_io.read_labelmap_as_segmentation(
                        self.scene, f"{stem}.nii.gz", volume, classes, name))
                    if uncertainty:
                        created.append(scene_io.read_scalar_volume(self.scene, f"{stem}_uncertainty.nii.gz",
                                                                   f"{name} uncertainty"))
            segmentations = [n for n in created if n.IsA("vtkMRMLSegmentationNode")]
            return segmentations[0] if single else created

        job = Job("segment", folder, [JobStep("Segmenting", contrastseg_command(*arguments))], self.launcher,
                  self.env, on_success=import_results, on_event=on_event)
        return self._run(job, wait)

    # ---- review ---------------------------------------------------------------------------------------------------

    def compare(self, prediction, reference, volume) -> list[dict]:
        """Dice and HD95 (mm) per segment name found in both segmentations, on ``volume``'s grid."""
        from ContrastSegLib.evaluation import structure_metrics
        from ContrastSegLib.io import Volume
        names = [c.name for c in classes_of(reference, segment_ids(reference))]
        shared = [n for n in names if prediction.GetSegmentation().GetSegmentIdBySegmentName(n)]
        if not shared:
            raise SceneInputError(f"segmentations '{prediction.GetName()}' and '{reference.GetName()}' share no "
                                  "segment name; rename the segments so they match")
        arrays = [scene_io.labelmap_array(self.scene, node, segment_ids(node, shared), volume)
                  for node in (prediction, reference)]
        spacing = tuple(float(s) for s in volume.GetSpacing())
        grid = dict(spacing=spacing, origin=(0.0, 0.0, 0.0), direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
        labels = {value: name for value, name in enumerate(shared, 1)}
        return structure_metrics(Volume(arrays[0], **grid), Volume(arrays[1], **grid), labels)

    def check_labeled(self, labeled: Sequence[tuple[Any, Any]], segments: Sequence[str] | None = None
                      ) -> tuple[list[tuple[Any, Any, list[str]]], list[SegmentClass]]:
        """Validated (volume, segmentation, segment ids) triples and the classes they define."""
        if not labeled:
            raise SceneInputError("add at least one labeled pair (a volume and its segmentation)")
        pairs, classes = [], None
        for volume, segmentation in labeled:
            _checked_volume(volume)
            if segmentation is None:
                raise SceneInputError(f"volume '{volume.GetName()}' has no segmentation; pick its segmentation node "
                                      "or segment it in the Segment Editor first")
            scene_io.check_same_geometry(segmentation, volume)
            ids = segment_ids(segmentation, segments if segments is not None else (
                None if classes is None else [c.name for c in classes]))
            if not ids:
                raise SceneInputError(f"segmentation '{segmentation.GetName()}' has no segments; paint at least one "
                                      "structure in the Segment Editor")
            found = classes_of(segmentation, ids)
            if classes is None:
                classes = found
            check_same_classes(classes, found, f"segmentation '{segmentation.GetName()}'")
            pairs.append((volume, segmentation, ids))
        return pairs, classes

    def add_to_training_set(self, labeled: Sequence[tuple[Any, Any]], volume, segmentation) -> list[tuple[Any, Any]]:
        """``labeled`` plus (volume, segmentation) — e.g. a corrected prediction — after the same checks."""
        if any(v is volume for v, _ in labeled):
            raise SceneInputError(f"volume '{volume.GetName()}' is already in the training set; remove its pair first")
        extended = [*labeled, (volume, segmentation)]
        self.check_labeled(extended)
        return extended

    # ---- helpers --------------------------------------------------------------------------------------------------

    def _device(self, settings: FinetuneSettings) -> str:
        plan = plan_device(settings.device, training_memory_bytes(settings.batch_size, settings.crop_size,
                                                                  settings.channels))
        self.last_device_message = plan.message
        return plan.device

    def _export_labeled(self, folder: JobFolder, pairs) -> list[dict[str, str]]:
        """Each (volume, segmentation, ids) as ``caseNNN.nrrd`` + ``caseNNN_seg.nrrd``; their manifest entries."""
        cases = []
        for index, (volume, segmentation, ids) in enumerate(pairs):
            image, label = f"case{index:03d}.nrrd", f"case{index:03d}_seg.nrrd"
            scene_io.write_segments_as_labelmap(self.scene, segmentation, ids, volume, folder.inputs / label)
            scene_io.write_volume(volume, folder.inputs / image)
            cases.append({"id": f"case{index:03d}", "image": image, "label": label})
        return cases

    def _export_unlabeled(self, folder: JobFolder, volumes: Sequence) -> list[dict[str, str]]:
        """Each unlabeled volume as ``unlabeledNNN.nrrd``; their manifest entries."""
        cases = []
        for index, volume in enumerate(volumes):
            image = f"unlabeled{index:03d}.nrrd"
            scene_io.write_volume(volume, folder.inputs / image)
            cases.append({"id": f"unlabeled{index:03d}", "image": image})
        return cases

    def _pretrain_steps(self, folder: JobFolder, sources: list[str], settings: PretrainSettings,
                        shape: FinetuneSettings, device: str) -> tuple[list[JobStep], Path]:
        """The global (and local) pre-training processes, and the checkpoint the last one writes."""
        common = ["--unlabeled", *sources, "--device", device, "--channels", ",".join(map(str, shape.channels))]
        global_out = folder.outputs / f"pretrained_{settings.global_strategy}.pt"
        steps = [JobStep(f"Pre-training (global {settings.global_strategy})", contrastseg_command(
            "pretrain", *settings.stage_arguments("global"), *common, "--out", str(global_out),
            *shape.preprocessing_arguments()))]
        if settings.local_strategy:
            local_out = folder.outputs / f"pretrained_{settings.global_strategy}_{settings.local_strategy}.pt"
            steps.append(JobStep(f"Pre-training (local {settings.local_strategy})", contrastseg_command(
                "pretrain", *settings.stage_arguments("local"), *common, "--init", str(global_out),
                "--out", str(local_out))))
            return steps, local_out
        return steps, global_out

    def _run(self, job: Job, wait: bool):
        job.start()
        return job.wait() if wait else job


def check_checkpoint_classes(path: str, classes: Sequence[SegmentClass]) -> None:
    """A fine-tuned checkpoint must segment exactly the selected segments (by name, in order)."""
    labels = _checkpoint_metadata(path).get("labels")
    if labels:
        names = [c.name for c in classes_from_labels(labels)]
        if names != [c.name for c in classes]:
            raise SceneInputError(f"checkpoint {path} segments {names}, the selected segments are "
                                  f"{[c.name for c in classes]}; pick a pre-trained (not fine-tuned) checkpoint or "
                                  "segments with the same names")


def _finetuned_labels(path: str) -> dict:
    labels = _checkpoint_metadata(path).get("labels")
    if not labels:
        raise SceneInputError(f"checkpoint {path} is not a fine-tuned model; fine-tune it first, then segment with it")
    return labels


def _checkpoint_metadata(path: str) -> dict:
    if not path or not Path(path).is_file():
        raise SceneInputError(f"checkpoint {path!r} does not exist; choose a .pt file written by ContrastSeg")
    from ContrastSegLib.errors import ContrastSegError
    from ContrastSegLib.training.checkpoint import load_checkpoint
    try:
        return load_checkpoint(path).metadata
    except ContrastSegError as error:
        raise SceneInputError(str(error)) from None


@contextmanager
def _removed_on_error(folder: JobFolder) -> Iterator[None]:
    """Export into ``folder``; if anything fails, the folder goes away (the scene was only read)."""
    try:
        yield
    except BaseException:
        shutil.rmtree(folder.root, ignore_errors=True)
        raise


def _checked_volume(volume):
    scene_io.check_scalar_volume(volume)
    return volume


def _checked_target(model_path: str | None, overwrite: bool) -> Path | None:
    if model_path is None:
        return None
    target = Path(model_path)
    if target.exists() and not overwrite:
        raise SceneInputError(f"{target} already exists; choose another model file or allow overwriting")
    if not target.parent.is_dir():
        raise SceneInputError(f"{target.parent} is not a folder; choose where to save the model")
    return target


def _deliver(result: Path, target: Path | None) -> str:
    """The job's checkpoint, copied to ``target`` whole (a temporary file renamed) when one was asked for."""
    if target is None:
        return str(result)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        shutil.copyfile(result, temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return str(target)
