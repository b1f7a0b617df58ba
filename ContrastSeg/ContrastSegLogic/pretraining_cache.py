"""Pre-trained checkpoints kept per set of unlabeled volumes and settings, so that pre-training runs once (in the
background, while the user annotates) and every later fine-tune and suggestion starts from it.

The key is a fingerprint of what the weights depend on: the voxels and geometry of each scene volume, the files of
each folder (names, sizes, modification times; a manifest by its contents), the stages' settings, the preprocessing, the UNet's widths and the
library's version. Its folder under ``<models>/pretraining/<key>/`` holds the exported volumes with their manifest
(``inputs/``, a stable path, so that a stopped stage can go on with ``pretrain --continue``) and one checkpoint per
stage (``1-global-GD.pt``, ``2-local-LR.pt``). A stage is finished, stopped (at step s of t) or not started; the
usable checkpoint is the last one written.

    cache = PretrainingCache.of(models_dir, volumes, folders, stages, preprocess, channels)
    cache.checkpoint()      # the latest stage's weights, or None
    cache.states()          # [global GD finished (600 steps), local LR stopped at step 120 of 600]
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ContrastSegLib import __version__
from ContrastSegLib.settings import PreprocessConfig, PretrainConfig, command_arguments

from . import scene_io
from .checkpoints import checkpoint_metadata
from .errors import SceneInputError
from .job import JobStep
from .process import contrastseg_command

CACHE_FOLDER = "pretraining"
POOL_NAME = "pool.json"
KEY_LENGTH = 16  # hex digits of the fingerprint that name the folder
_digests: dict[tuple, str] = {}  # (node id, image and scalars modification times) -> digest of the volume


def volume_digest(volume) -> str:
    """The voxels, their type, the grid and its position in space of a scene volume, hashed (remembered until
    the image data changes)."""
    from vtk.util.numpy_support import vtk_to_numpy
    image = volume.GetImageData()
    scalars = image.GetPointData().GetScalars()
    key = (volume.GetID(), image.GetMTime(), scalars.GetMTime())
    if key not in _digests:
        matrix, dimensions = scene_io.image_geometry(volume)
        voxels = np.ascontiguousarray(vtk_to_numpy(scalars))
        digest = hashlib.sha256(f"{dimensions} {voxels.dtype.str}".encode())
        digest.update(np.round(matrix, 6).tobytes())
        digest.update(memoryview(voxels).cast("B"))
        _digests[key] = digest.hexdigest()
    return _digests[key]


def source_digest(source: str | os.PathLike) -> str:
    """A folder of scans by its files' relative paths, sizes and modification times (not their contents); a
    manifest file by its contents."""
    root = Path(source).expanduser().resolve()
    if root.is_file():
        return hashlib.sha256(str(root).encode() + b"\0" + root.read_bytes()).hexdigest()
    if not root.is_dir():
        raise SceneInputError(f"unlabeled folder {root} does not exist; choose a folder of scans")
    entries = []
    for parent, _, files in os.walk(root):
        for name in files:
            path = Path(parent) / name
            try:
                info = path.stat()
            except OSError:
                continue  # removed meanwhile, or a dangling link: discovery will say so
            entries.append((str(path.relative_to(root)), info.st_size, info.st_mtime_ns))
    return hashlib.sha256(json.dumps([str(root), sorted(entries)]).encode()).hexdigest()


def fingerprint(volumes: Sequence, folders: Sequence[str], stages: Sequence[PretrainConfig],
                preprocess: PreprocessConfig, channels: Sequence[int]) -> str:
    """What pre-trained weights depend on, hashed: the data, every setting, the library's version."""
    record = {"volumes": [volume_digest(v) for v in volumes], "folders": [source_digest(f) for f in folders],
              "stages": [command_arguments(s) for s in stages], "preprocess": command_arguments(preprocess),
              "channels": list(channels), "version": __version__}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:KEY_LENGTH]


def pretrain_arguments(stage: PretrainConfig, sources: Sequence[str], out: str | os.PathLike,
                       init: str | os.PathLike | None, preprocess: PreprocessConfig,
                       channels: Sequence[int]) -> list[str]:
    """``contrastseg pretrain`` arguments of one stage: from ``init`` (its preprocessing and UNet), or the first
    stage with the preprocessing's flags and the UNet's ``channels``."""
    arguments = ["pretrain", *command_arguments(stage), "--unlabeled", *map(str, sources), "--out", str(out)]
    return arguments + (["--init", str(init)] if init else [*command_arguments(preprocess), "--channels",
                                                            ",".join(map(str, channels))])


@dataclass(frozen=True)
class StageState:
    """One stage's checkpoint: "missing", "stopped" (at ``step`` of ``planned``) or "finished" (``step`` steps)."""

    config: PretrainConfig
    path: Path
    state: str
    step: int = 0
    planned: int = 0

    @property
    def name(self) -> str:
        return f"{self.config.stage} {self.config.strategy}"

    def describe(self) -> str:
        if self.state == "finished":
            return f"{self.name} finished ({self.step} steps)"
        if self.state == "stopped":
            return f"{self.name} stopped at step {self.step} of {self.planned}"
        return f"{self.name} not started"


@dataclass(frozen=True)
class PretrainingCache:
    """The kept pre-training of one set of volumes and settings (``key``) in ``folder``."""

    key: str
    folder: Path
    volumes: tuple
    folders: tuple[str, ...]
    stages: tuple[PretrainConfig, ...]
    preprocess: PreprocessConfig
    channels: tuple[int, ...]

    @classmethod
    def of(cls, models_dir: str | os.PathLike, volumes: Sequence, folders: Sequence[str],
           stages: Sequence[PretrainConfig], preprocess: PreprocessConfig, channels: Sequence[int]
           ) -> "PretrainingCache":
        folders = tuple(str(Path(f).expanduser().resolve()) for f in folders)
        key = fingerprint(volumes, folders, stages, preprocess, channels)
        return cls(key, Path(models_dir) / CACHE_FOLDER / key, tuple(volumes), folders, tuple(stages), preprocess,
                   tuple(channels))

    def stage_path(self, index: int) -> Path:
        stage = self.stages[index]
        return self.folder / f"{index + 1}-{stage.stage}-{stage.strategy}.pt"

    def states(self) -> list[StageState]:
        """Each stage's checkpoint as it is on disk now (an unreadable one counts as missing: it is trained
        again)."""
        states = []
        for index, stage in enumerate(self.stages):
            path = self.stage_path(index)
            try:
                metadata = checkpoint_metadata(str(path)) if path.is_file() else None
            except SceneInputError:
                metadata = None
            if metadata is None:
                states.append(StageState(stage, path, "missing"))
            elif isinstance(metadata.get("stopped"), dict):
                stopped = metadata["stopped"]
                states.append(StageState(stage, path, "stopped", int(stopped.get("step") or 0),
                                         int(stopped.get("planned") or stage.iterations)))
            else:
                states.append(StageState(stage, path, "finished", int(metadata.get("step") or 0)))
        return states

    def checkpoint(self) -> Path | None:
        """The weights to start from: the last stage's checkpoint that exists (finished or stopped)."""
        written = [s.path for s in self.states() if s.state != "missing"]
        return written[-1] if written else None

    def pool(self) -> Path | None:
        """The manifest of the exported scene volumes (written once: the key fixes their contents), or None."""
        if not self.volumes:
            return None
        inputs = self.folder / "inputs"
        manifest = inputs / POOL_NAME
        if not manifest.is_file():
            staging = self.folder / ".inputs-staging"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            cases = []
            for index, volume in enumerate(self.volumes):
                image = f"unlabeled{index:03d}.nrrd"
                scene_io.write_volume(volume, staging / image)
                cases.append({"id": f"unlabeled{index:03d}", "image": image})
            (staging / POOL_NAME).write_text(json.dumps({"cases": cases}, indent=2), encoding="utf-8")
            shutil.rmtree(inputs, ignore_errors=True)
            os.replace(staging, inputs)
        return manifest

    def steps(self, states: Sequence[StageState] | None = None) -> list[JobStep]:
        """The processes still to run, from ``states`` (default: read now): a stopped stage goes on
        (``--continue``), a missing one starts from the previous stage's checkpoint; none when all have finished."""
        sources = [*([str(self.pool())] if self.volumes else []), *self.folders]
        steps, init = [], None
        for state in self.states() if states is None else states:
            if state.state != "finished":
                arguments = pretrain_arguments(state.config, sources, state.path, init, self.preprocess,
                                               self.channels)
                arguments += ["--continue"] if state.state == "stopped" else []
                verb = "going on" if state.state == "stopped" else "starting"
                steps.append(JobStep(f"Pre-training in the background ({state.name}, {verb})",
                                     contrastseg_command(*arguments)))
            init = state.path
        return steps

    def drop_inputs(self) -> None:
        """Remove the exported volumes (copies of the user's scans) once they are no longer needed."""
        shutil.rmtree(self.folder / "inputs", ignore_errors=True)
