"""Background jobs of the Slicer module on real MRML: a tiny real fine-tune + segmentation through the subprocess
runner, cancel mid-job, and the runner's event/failure handling with an injected fake process."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from slicer_scene import add_segmentation, add_volume, new_scene, segment_array, slicer, vtk

from ContrastSegLogic import ContrastSegWorkflow, FinetuneSettings, JobFailedError, PretrainSettings
from ContrastSegLogic.scene_io import image_geometry, scene_node_ids
from ContrastSegLib.data.phantom import LABEL_NAMES, make_phantom

TINY = FinetuneSettings(iterations=8, batch_size=4, crop_size=32, channels=(8, 16), device="cpu")
PHANTOM_SEGMENTS = {v: n for v, n in LABEL_NAMES.items() if v}


def phantom_node(scene, index: int, name: str):
    """Phantom ``index`` as a scene volume (ITK's LPS geometry turned into Slicer's RAS) and its label array."""
    image, label = make_phantom(index, seed=3)
    columns = np.diag([-1.0, -1.0, 1.0]) @ np.reshape(image.direction, (3, 3)) @ np.diag(image.spacing)
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, columns[r, c])
        matrix.SetElement(r, 3, (-1, -1, 1)[r] * image.origin[r])
    return add_volume(scene, image.array, name, matrix), label.array


def events_of(kind: str, events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("event") == kind]


def test_real_finetune_then_segment_through_subprocess(tmp_path, one_torch_thread):
    scene = new_scene()
    volume, label = phantom_node(scene, 0, "training scan")
    segmentation = add_segmentation(scene, volume, label, PHANTOM_SEGMENTS, name="training labels")
    target, _ = phantom_node(scene, 1, "new scan")
    workflow = ContrastSegWorkflow(scene, jobs_dir=tmp_path / "jobs")
    events: list[dict] = []
    model = workflow.finetune([(volume, segmentation)], settings=TINY, model_path=str(tmp_path / "model.pt"),
                              wait=True, on_event=lambda job, event: events.append(event))
    assert Path(model) == tmp_path / "model.pt" and Path(model).stat().st_size > 0
    progress = events_of("progress", events)
    assert progress and progress[-1]["step"] == TINY.iterations and progress[-1]["loss"] is not None
    assert events_of("finished", events)

    nodes_before = scene_node_ids(scene)
    result = workflow.segment(target, model, uncertainty=True)
    assert result.GetName() == "new scan ContrastSeg" and result.IsA("vtkMRMLSegmentationNode")
    names = [result.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(result.GetSegmentation().GetNumberOfSegments())]
    assert names == list(PHANTOM_SEGMENTS.values())
    # aligned with its volume: same reference grid, masks on the volume's voxels
    reference = result.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
    assert reference is target
    mask = segment_array(result, "LV", target)
    assert mask.shape == slicer.util.arrayFromVolume(target).shape
    uncertainty = [scene.GetNodeByID(i) for i in scene_node_ids(scene) - nodes_before
                   if scene.GetNodeByID(i).IsA("vtkMRMLScalarVolumeNode")]
    assert [u.GetName() for u in uncertainty] == ["new scan ContrastSeg uncertainty"]
    np.testing.assert_allclose(image_geometry(uncertainty[0])[0], image_geometry(target)[0], atol=1e-5)
    values = slicer.util.arrayFromVolume(uncertainty[0])
    assert values.min() >= 0 and values.max() <= 1
    # the user's own nodes were only read
    assert segment_array(segmentation, "LV", volume).sum() == (label == 1).sum()


def test_cancel_mid_job_kills_the_process_and_leaves_the_scene(tmp_path, one_torch_thread):
    scene = new_scene()
    volume, label = phantom_node(scene, 0, "scan")
    segmentation = add_segmentation(scene, volume, label, PHANTOM_SEGMENTS)
    workflow = ContrastSegWorkflow(scene, jobs_dir=tmp_path / "jobs")
    nodes_before = scene_node_ids(scene)
    long = FinetuneSettings(iterations=100000, batch_size=4, crop_size=32, channels=(8, 16), device="cpu")
    job = workflow.finetune([(volume, segmentation)], settings=long, model_path=str(tmp_path / "model.pt"))
    deadline = time.monotonic() + 120
    while not any(e.get("event") == "progress" for e in job.poll()):
        assert time.monotonic() < deadline and not job.done, job.error
        time.sleep(0.1)
    handle = job._handle
    job.cancel()
    assert job.state == "cancelled"
    assert handle.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(handle.process.pid, 0)  # the whole process group is gone
    assert scene_node_ids(scene) == nodes_before
    assert not (tmp_path / "model.pt").exists()
    record = json.loads((job.folder.root / "job.json").read_text(encoding="utf-8"))
    assert record["state"] == "cancelled"
    assert not job.folder.inputs.exists() and not job.folder.outputs.exists()
    with pytest.raises(JobFailedError, match="cancelled"):
        job.wait()


class FakeHandle:
    """A finished-at-once process that printed ``lines`` and exits with ``code``."""

    def __init__(self, lines, code):
        self._lines, self.code, self.killed = lines, code, False

    def lines(self):
        yield from self._lines

    def poll(self):
        return self.code

    def wait(self, timeout=None):
        return self.code

    def kill_tree(self):
        self.killed = True


class FakeLauncher:
    """Records every command; ``script(command) -> (lines, exit code)`` and writes the ``--out`` file on success."""

    def __init__(self, script=None):
        self.commands: list[list[str]] = []
        self.script = script or (lambda command: ([json.dumps({"event": "progress", "step": 1, "total": 2,
                                                               "loss": 0.5, "eta_s": 3.0}), "plain text"], 0))

    def launch(self, command, cwd, env, log_path):
        self.commands.append(list(command))
        lines, code = self.script(command)
        if code == 0 and "--out" in command:
            Path(command[command.index("--out") + 1]).write_bytes(b"weights")
        return FakeHandle(lines, code)


def labeled_pair(scene):
    volume = add_volume(scene, np.random.default_rng(0).random((4, 16, 16)).astype(np.float32), "img")
    label = np.zeros((4, 16, 16), np.uint8)
    label[1:3, 4:9, 4:9] = 1
    return volume, add_segmentation(scene, volume, label, {1: "tumour"})


def test_pretrain_now_chains_global_local_finetune(tmp_path):
    scene = new_scene()
    volume, segmentation = labeled_pair(scene)
    extra = add_volume(scene, np.ones((4, 16, 16), np.float32), "unlabeled scan")
    launcher = FakeLauncher()
    workflow = ContrastSegWorkflow(scene, launcher=launcher, jobs_dir=tmp_path, env={})
    events = []
    job = workflow.finetune([(volume, segmentation)], unlabeled=[extra], pretrain=PretrainSettings(iterations=5),
                            settings=TINY, on_event=lambda j, e: events.append(e))
    result = job.wait(timeout=30)
    stages = [c[c.index("--stage") + 1] if "--stage" in c else c[3] for c in launcher.commands]
    assert stages == ["global", "local", "finetune"]
    global_out = launcher.commands[0][launcher.commands[0].index("--out") + 1]
    assert launcher.commands[1][launcher.commands[1].index("--init") + 1] == global_out
    local_out = launcher.commands[1][launcher.commands[1].index("--out") + 1]
    assert launcher.commands[2][launcher.commands[2].index("--init") + 1] == local_out
    pool = json.loads((job.folder.root / "inputs" / "pool.json").read_text(encoding="utf-8"))
    assert [c["image"] for c in pool["cases"]] == ["case000.nrrd", "unlabeled000.nrrd"]
    assert all("label" not in case for case in pool["cases"])
    assert result.endswith("model.pt") and Path(result).read_bytes() == b"weights"
    assert [e["event"] for e in events].count("progress") == 3 and {"event": "log", "message": "plain text"} in events
    assert job.progress.fraction == pytest.approx(1.0 if job.progress.step_index == 2 else 0.0, abs=0.2)


def test_failed_step_reports_its_error_and_adds_nothing(tmp_path):
    scene = new_scene()
    volume, segmentation = labeled_pair(scene)
    error = json.dumps({"event": "error", "message": "labels.nrrd: no foreground; paint it"})
    launcher = FakeLauncher(lambda command: ([error], 1))
    workflow = ContrastSegWorkflow(scene, launcher=launcher, jobs_dir=tmp_path, env={})
    nodes_before = scene_node_ids(scene)
    with pytest.raises(JobFailedError, match="Fine-tuning failed \\(exit 1\\): labels.nrrd: no foreground"):
        workflow.finetune([(volume, segmentation)], settings=TINY, wait=True)
    assert scene_node_ids(scene) == nodes_before
    record = json.loads(next(tmp_path.glob("*finetune*/job.json")).read_text(encoding="utf-8"))
    assert record["state"] == "failed" and "no foreground" in record["message"]


def test_a_failing_import_adds_no_node(tmp_path, monkeypatch):
    scene = new_scene()
    volume, _ = labeled_pair(scene)
    workflow = ContrastSegWorkflow(scene, launcher=FakeLauncher(lambda c: ([], 0)), jobs_dir=tmp_path, env={})
    labels = {"values": [0, 1], "names": ["background", "tumour"], "colors": [[0, 0, 0], [255, 0, 0]]}
    monkeypatch.setattr("ContrastSegLogic.workflow._checkpoint_metadata", lambda path: {"labels": labels})
    nodes_before = scene_node_ids(scene)
    with pytest.raises(JobFailedError, match="could not read the predicted label map"):
        workflow.segment([volume, volume], "model.pt")  # the fake wrote no prediction files
    assert scene_node_ids(scene) == nodes_before
