"""Pre-training while the user annotates, through the module's logic on real MRML with real ``contrastseg``
subprocesses at tiny sizes: the background job runs at low priority, a stop keeps its weights, a fine-tune starts
from them, the next start goes on (``--continue``) instead of starting again, other volumes get their own
checkpoints, and a finished chain is reused as it is."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from slicer_scene import add_segmentation, new_scene, phantom_node, phantom_segments

from ContrastSegLogic import ContrastSegWorkflow, default_pretraining
from ContrastSegLogic.checkpoints import checkpoint_metadata
from ContrastSegLogic.pretraining_cache import CACHE_FOLDER, PretrainingCache
from ContrastSegLib.runtime.priority import NICE_INCREMENT, PRIORITY_VARIABLE
from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig

GRID = dict(preprocess=replace(PreprocessConfig(), crop_size=32), channels=(8, 8, 8, 8))
TINY_FINETUNE = replace(FinetuneConfig(), iterations=4, batch_size=4, device="cpu")


def stages(iterations: int):
    return [replace(s, device="cpu", volumes_per_batch=2, partitions=2) for s in default_pretraining(iterations)]


def scene_with_scans(count: int = 3):
    scene = new_scene()
    scans = [phantom_node(scene, index, f"scan{index}") for index in range(count)]
    pair = (scans[0][0], add_segmentation(scene, scans[0][0], scans[0][1], phantom_segments(), name="scan0 labels"))
    return scene, [volume for volume, _ in scans], pair


def poll_until(workflow, condition, timeout_s: float = 180.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, workflow.background.status()
        workflow.background.poll()
        time.sleep(0.05)


def progressed(workflow, at_least: int):
    job = workflow.background.job
    return lambda: job.done or (job.progress.title.startswith("Pre-training in the background")
                                and job.progress.step >= at_least)


def nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_a_stop_keeps_the_weights_a_fine_tune_starts_from_them_and_the_next_start_goes_on(tmp_path,
                                                                                           one_torch_thread):
    scene, volumes, pair = scene_with_scans()
    workflow = ContrastSegWorkflow(scene, jobs_dir=tmp_path / "jobs", models_dir=tmp_path / "models")
    long_chain = stages(100_000)  # never ends by itself here
    job = workflow.pretrain_in_background(volumes, stages=long_chain, **GRID, device="cpu")
    assert job is not None and not job.done  # returned at once
    poll_until(workflow, progressed(workflow, 3))
    assert not job.done, workflow.background.status()
    assert "step" in workflow.background.status()
    if Path("/proc/self/stat").exists():  # the job gives way to the application the user works in
        assert nice_of(job._handle.process.pid) >= NICE_INCREMENT

    init = workflow.background_checkpoint(volumes, stages=long_chain, **GRID, device="cpu")
    assert job.state == "succeeded" and init is not None
    first = checkpoint_metadata(init)
    assert Path(init).name == "1-global-GD.pt" and Path(init).parent.parent.name == CACHE_FOLDER
    assert first["stopped"]["planned"] == 100_000 and first["stopped"]["step"] >= 3
    assert "stopped at step" in workflow.background.status() and "local LR not started" in workflow.background.status()

    model = workflow.finetune([pair], pretrained=init, settings=TINY_FINETUNE, **GRID, wait=True,
                              cpu_time_budget=600)
    fine_tuned = checkpoint_metadata(model)
    assert fine_tuned["stage"] == "finetune" and str(Path(init).resolve()) in str(fine_tuned["lineage"])

    again = workflow.pretrain_in_background(volumes, stages=long_chain, **GRID, device="cpu")
    command = again.steps[0].command
    assert "--continue" in command and command[command.index("--out") + 1] == init
    poll_until(workflow, progressed(workflow, first["stopped"]["step"] + 2))
    assert workflow.background_checkpoint(volumes, stages=long_chain, **GRID, device="cpu") == init
    assert checkpoint_metadata(init)["stopped"]["step"] > first["stopped"]["step"]  # went on, never from scratch

    other = workflow.background.plan(volumes[:2], stages=long_chain, **GRID, device="cpu")
    assert other.folder != Path(init).parent and other.checkpoint() is None


def test_a_finished_chain_is_reused_and_its_copies_of_the_scans_removed(tmp_path, one_torch_thread):
    scene, volumes, _ = scene_with_scans()
    workflow = ContrastSegWorkflow(scene, jobs_dir=tmp_path / "jobs", models_dir=tmp_path / "models")
    short = stages(3)
    job = workflow.pretrain_in_background(volumes, stages=short, **GRID, device="cpu")
    assert [step.title for step in job.steps] == ["Pre-training in the background (global GD, starting)",
                                                  "Pre-training in the background (local LR, starting)"]
    poll_until(workflow, lambda: job.done)
    assert job.state == "succeeded", job.error
    cache = workflow.background.cache
    assert [state.state for state in cache.states()] == ["finished", "finished"]
    assert job.result == str(cache.stage_path(1)) and not (cache.folder / "inputs").exists()
    assert workflow.background.status().startswith("Background pre-training ready")
    assert workflow.pretrain_in_background(volumes, stages=short, **GRID, device="cpu") is None  # nothing to run
    assert workflow.background_checkpoint(volumes, stages=short, **GRID, device="cpu") == job.result


def test_the_key_follows_the_voxels_and_the_settings_not_the_node(tmp_path):
    import numpy as np
    from slicer_scene import slicer
    scene, volumes, _ = scene_with_scans(2)
    key = PretrainingCache.of(tmp_path, volumes, [], stages(10), **GRID).key
    assert PretrainingCache.of(tmp_path, volumes, [], stages(10), **GRID).key == key
    assert PretrainingCache.of(tmp_path, volumes, [], stages(11), **GRID).key != key
    assert PretrainingCache.of(tmp_path, volumes[::-1], [], stages(10), **GRID).key != key
    voxels = slicer.util.arrayFromVolume(volumes[1])
    voxels[0, 0, 0] += 1
    slicer.util.arrayFromVolumeModified(volumes[1])
    assert PretrainingCache.of(tmp_path, volumes, [], stages(10), **GRID).key != key
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "a.nii.gz").write_bytes(b"x")
    with_folder = PretrainingCache.of(tmp_path, [], [str(folder)], stages(10), **GRID).key
    (folder / "b.nii.gz").write_bytes(b"y")
    assert PretrainingCache.of(tmp_path, [], [str(folder)], stages(10), **GRID).key != with_folder
    assert np.isfinite(voxels).all()


@pytest.mark.skipif(os.name == "nt", reason="POSIX nice values")
@pytest.mark.parametrize("value, lowered", [("background", True), ("", False)])
def test_the_priority_variable_lowers_the_contrastseg_command(value, lowered):
    """``python -m ContrastSegLib`` (what every job runs) lowers itself before the command starts."""
    code = "import os, ContrastSegLib.__main__; print(os.nice(0))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, PRIORITY_VARIABLE: value}, check=True)
    before = os.nice(0)
    assert int(result.stdout.split()[-1]) == (min(19, before + NICE_INCREMENT) if lowered else before)
