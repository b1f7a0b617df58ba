"""Background jobs of the Slicer module on real MRML: a tiny real fine-tune + segmentation through the subprocess
runner, cancel mid-job, and the runner's event/failure handling with an injected fake process."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from python_slicer_launcher import install as install_python_slicer
from python_slicer_launcher import python_real_of, running
from slicer_scene import (add_segmentation, add_volume, new_scene, phantom_node, phantom_segments, segment_array,
                          slicer)

from ContrastSegLogic import ContrastSegWorkflow, JobFailedError, default_pretraining
from ContrastSegLogic.scene_io import image_geometry, scene_node_ids
from ContrastSegLib.cli import build_parser
from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig, PretrainConfig, config_from_args

TINY = replace(FinetuneConfig(), iterations=8, batch_size=4, device="cpu")
TINY_GRID = dict(preprocess=replace(PreprocessConfig(), crop_size=32), channels=(8, 16))
PRETRAIN_GRID = {**TINY_GRID, "channels": (8, 8, 8, 8)}  # the local stage's 3 decoder blocks need 4 encoder blocks
PHANTOM_SEGMENTS = phantom_segments()


def events_of(kind: str, events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("event") == kind]


def test_real_finetune_then_segment_through_subprocess(tmp_path, one_torch_thread):
    scene = new_scene()
    volume, label = phantom_node(scene, 0, "training scan")
    segmentation = add_segmentation(scene, volume, label, PHANTOM_SEGMENTS, name="training labels")
    target, _ = phantom_node(scene, 1, "new scan")
    workflow = ContrastSegWorkflow(scene, jobs_dir=tmp_path / "jobs", models_dir=tmp_path / "models")
    events: list[dict] = []
    model = workflow.finetune([(volume, segmentation)], settings=TINY, **TINY_GRID,
                              model_path=str(tmp_path / "model.pt"), wait=True,
                              on_event=lambda job, event: events.append(event))
    assert Path(model) == tmp_path / "model.pt" and Path(model).stat().st_size > 0
    progress = events_of("progress", events)
    assert progress and progress[-1]["step"] == TINY.iterations and progress[-1]["loss"] is not None
    assert events_of("finished", events)

    assert not list((tmp_path / "jobs").glob("*/inputs")) and not list((tmp_path / "jobs").glob("*/outputs"))
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


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="follows python-real through Linux's /proc")
def test_cancel_mid_job_kills_the_process_and_leaves_the_scene(tmp_path, one_torch_thread, monkeypatch):
    """Run as in Slicer: under ``PythonSlicer``, whose python-real child gets no signal from it."""
    monkeypatch.setenv("PATH", f"{install_python_slicer(tmp_path / 'bin').parent}{os.pathsep}{os.environ['PATH']}")
    scene = new_scene()
    volume, label = phantom_node(scene, 0, "scan")
    segmentation = add_segmentation(scene, volume, label, PHANTOM_SEGMENTS)
    workflow = ContrastSegWorkflow(scene, jobs_dir=tmp_path / "jobs", models_dir=tmp_path / "models")
    nodes_before = scene_node_ids(scene)
    job = workflow.finetune([(volume, segmentation)], settings=replace(TINY, iterations=100000), **TINY_GRID,
                            model_path=str(tmp_path / "model.pt"))
    deadline = time.monotonic() + 120
    while not any(e.get("event") == "progress" for e in job.poll()):
        assert time.monotonic() < deadline and not job.done, job.error
        time.sleep(0.1)
    handle = job._handle
    python_real = python_real_of(handle.process.pid)
    job.cancel()
    assert job.state == "cancelled"
    assert handle.poll() is not None and not running(python_real)  # python-real too, not only the launcher
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
        return True


    def interrupt(self):
        self.interrupted = True


CONFIGS = {"finetune": FinetuneConfig, "pretrain": PretrainConfig}


def parsed(command):
    """``command`` through the real ``contrastseg`` parser, and the configs it describes through their own checks
    (the fake process does not run it, so this is where a command the CLI would refuse shows)."""
    args = build_parser().parse_args(command[3:])
    configs = [config_from_args(CONFIGS[args.command], args).check()] if args.command in CONFIGS else []
    if args.command in CONFIGS and args.init is None:
        configs.append(config_from_args(PreprocessConfig, args).check(args.channels))
    return args, configs


class FakeLauncher:
    """Records every command, after checking it as the CLI would; ``script(command) -> (lines, exit code)``, and
    writes the ``--out`` file on success."""

    def __init__(self, script=None):
        self.commands: list[list[str]] = []
        self.script = script or (lambda command: ([json.dumps({"event": "progress", "step": 1, "total": 2,
                                                               "loss": 0.5, "eta_s": 3.0}), "plain text"], 0))

    def launch(self, command, cwd, env, log_path):
        parsed(command)
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


def with_fake_jobs(tmp_path):
    """A scene with one labeled pair and one unlabeled volume, and a workflow whose jobs a ``FakeLauncher`` runs:
    (workflow, launcher, volume, segmentation, unlabeled volume)."""
    scene = new_scene()
    volume, segmentation = labeled_pair(scene)
    extra = add_volume(scene, np.ones((4, 16, 16), np.float32), "unlabeled scan")
    launcher = FakeLauncher()
    workflow = ContrastSegWorkflow(scene, launcher=launcher, jobs_dir=tmp_path / "jobs", env={},
                                   models_dir=tmp_path / "models")
    return workflow, launcher, volume, segmentation, extra


def test_pretrain_now_chains_global_local_finetune(tmp_path):
    workflow, launcher, volume, segmentation, extra = with_fake_jobs(tmp_path)
    events = []
    job = workflow.finetune([(volume, segmentation)], unlabeled=[extra], pretrain=default_pretraining(5),
                            settings=TINY, **PRETRAIN_GRID, on_event=lambda j, e: events.append(e))
    result = job.wait(timeout=30)
    stages = [c[c.index("--stage") + 1] if "--stage" in c else c[3] for c in launcher.commands]
    assert stages == ["global", "local", "finetune"]
    global_out = launcher.commands[0][launcher.commands[0].index("--out") + 1]
    assert launcher.commands[1][launcher.commands[1].index("--init") + 1] == global_out
    local_out = launcher.commands[1][launcher.commands[1].index("--out") + 1]
    assert launcher.commands[2][launcher.commands[2].index("--init") + 1] == local_out
    global_args, (global_config, preprocess) = parsed(launcher.commands[0])
    assert preprocess == TINY_GRID["preprocess"] and preprocess.target_spacing is None  # the CLI's median default
    assert global_config.volumes_per_batch == 2  # no more than the pool's two volumes
    assert global_config.iterations == 5 and global_args.channels == PRETRAIN_GRID["channels"]
    assert parsed(launcher.commands[2])[1][0] == replace(TINY, device="cpu", budget_devices="cpu")
    assert result == str(tmp_path / "models" / "model.pt") and Path(result).read_bytes() == b"weights"
    assert job.pretrained_model == str(tmp_path / "models" / "model-pretrained.pt")
    assert not job.folder.inputs.exists()  # patient data goes with the job
    assert [e["event"] for e in events].count("progress") == 3 and {"event": "log", "message": "plain text"} in events
    assert job.progress.fraction == pytest.approx(1.0 if job.progress.step_index == 2 else 0.0, abs=0.2)


def test_a_structure_not_learned_is_a_warning_of_the_job_and_of_the_model(tmp_path, monkeypatch):
    from ContrastSegLogic.checkpoints import describe_checkpoint
    warning = 'structure 1 "tumour" was not learned (Dice 0.02 on the training volumes): train longer'
    lines = [json.dumps({"event": "log", "message": "Dice on the training volumes: 0.02"}),
             json.dumps({"event": "log", "message": warning, "level": "warning"})]
    workflow, _, volume, segmentation, _ = with_fake_jobs(tmp_path)
    workflow.launcher.script = lambda command: (lines, 0)
    job = workflow.finetune([(volume, segmentation)], settings=TINY, **TINY_GRID)
    job.wait(timeout=30)
    assert job.warnings == [warning]
    assert job.progress.messages == ["Dice on the training volumes: 0.02", f"warning: {warning}"]

    labels = {"values": [0, 1, 2], "names": ["background", "tumour", "oedema"],
              "colors": [[0, 0, 0], [255, 0, 0], [0, 255, 0]]}
    structures = [{"value": 1, "name": "tumour", "train_dice": 0.0212, "learned": False},
                  {"value": 2, "name": "oedema", "train_dice": 0.91, "learned": True}]
    metadata = {"labels": labels, "stage": "finetune", "step": 40, "structures": structures}
    monkeypatch.setattr("ContrastSegLogic.checkpoints.checkpoint_metadata", lambda path: metadata)
    assert describe_checkpoint("model.pt") == (
        "Segments tumour, oedema (fine-tuned, 40 steps). Not learned on the training volumes: tumour (Dice 0.02); "
        "fine-tune longer (iterations, time budget), annotate it on more slices or check its segment")
    structures[0]["learned"] = True
    assert describe_checkpoint("model.pt") == "Segments tumour, oedema (fine-tuned, 40 steps)"
    del metadata["structures"]  # a checkpoint from before the check
    assert describe_checkpoint("model.pt") == "Segments tumour, oedema (fine-tuned, 40 steps)"


def test_failed_step_reports_its_error_and_adds_nothing(tmp_path):
    scene = new_scene()
    volume, segmentation = labeled_pair(scene)
    error = json.dumps({"event": "error", "message": "labels.nrrd: no foreground; paint it"})
    launcher = FakeLauncher(lambda command: ([error], 1))
    workflow = ContrastSegWorkflow(scene, launcher=launcher, jobs_dir=tmp_path, env={}, models_dir=tmp_path / "m")
    nodes_before = scene_node_ids(scene)
    with pytest.raises(JobFailedError, match="Fine-tuning failed \\(exit 1\\): labels.nrrd: no foreground"):
        workflow.finetune([(volume, segmentation)], settings=TINY, **TINY_GRID, wait=True)
    assert scene_node_ids(scene) == nodes_before
    record = json.loads(next(tmp_path.glob("*finetune*/job.json")).read_text(encoding="utf-8"))
    assert record["state"] == "failed" and "no foreground" in record["message"]


def test_a_failing_import_adds_no_node(tmp_path, monkeypatch):
    scene = new_scene()
    volume, _ = labeled_pair(scene)
    workflow = ContrastSegWorkflow(scene, launcher=FakeLauncher(lambda c: ([], 0)), jobs_dir=tmp_path, env={})
    labels = {"values": [0, 1], "names": ["background", "tumour"], "colors": [[0, 0, 0], [255, 0, 0]]}
    monkeypatch.setattr("ContrastSegLogic.checkpoints.checkpoint_metadata",
                        lambda path: {"labels": labels, "stage": "finetune"})
    nodes_before = scene_node_ids(scene)
    with pytest.raises(JobFailedError, match="could not read the predicted label map"):
        workflow.segment([volume, volume], "model.pt")  # the fake wrote no prediction files
    assert scene_node_ids(scene) == nodes_before


def test_retraining_to_the_same_model_path_keeps_every_model(tmp_path):
    scene = new_scene()
    volume, segmentation = labeled_pair(scene)
    workflow = ContrastSegWorkflow(scene, launcher=FakeLauncher(), jobs_dir=tmp_path / "jobs", env={},
                                   models_dir=tmp_path / "models")
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"precious")
    kept = [workflow.finetune([(volume, segmentation)], settings=TINY, **TINY_GRID, model_path=str(mine),
                              wait=True) for _ in range(2)]
    assert kept == [str(tmp_path / "mine-2.pt"), str(tmp_path / "mine-3.pt")]
    assert mine.read_bytes() == b"precious"
    default = workflow.finetune([(volume, segmentation)], settings=TINY, **TINY_GRID, wait=True)
    assert default == str(tmp_path / "models" / "model.pt")


def test_windows_jobs_get_no_console_and_a_process_group_of_their_own():
    from ContrastSegLogic.process import CREATE_NEW_PROCESS_GROUP, CREATE_NO_WINDOW, popen_options
    flags = popen_options("nt")["creationflags"]
    assert flags & CREATE_NO_WINDOW and flags & CREATE_NEW_PROCESS_GROUP
    assert popen_options("posix") == {"start_new_session": True}


def test_planning_the_device_never_imports_torch(tmp_path):
    import subprocess
    import sys
    code = ("import sys; sys.modules['torch'] = None\n"
            "from ContrastSegLogic.memory import plan_device, parse_nvidia_smi_free\n"
            "print(plan_device('auto', 1).device, parse_nvidia_smi_free('8000\\n2000\\n'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "ContrastSeg")})
    assert done.returncode == 0, done.stderr
    device, free = done.stdout.split()
    assert device in ("auto", "cuda") and int(free) == 8000 * 1024 ** 2


def test_a_scan_stored_flipped_under_a_parent_transform_segments_identically_in_ras(tmp_path, one_torch_thread):
    """Results go under the volume's parent transform, and a flipped storage gives the same segmentation in RAS."""
    scene = new_scene()
    volume, label = phantom_node(scene, 0, "scan")
    segmentation = add_segmentation(scene, volume, label, PHANTOM_SEGMENTS, name="labels")
    workflow = ContrastSegWorkflow(scene, jobs_dir=tmp_path / "jobs", models_dir=tmp_path / "models")
    model = workflow.finetune([(volume, segmentation)], settings=replace(TINY, iterations=30), **TINY_GRID,
                              wait=True)
    # The same scan: voxels stored in reverse I order, placed in RAS by a parent transform
    ijk_to_ras = slicer.util.arrayFromVTKMatrix(_matrix(volume.GetIJKToRASMatrix))
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1, volume.GetImageData().GetDimensions()[0] - 1
    to_world = np.eye(4)
    to_world[:3, 3] = (12.5, -7.0, 3.0)
    stored = add_volume(scene, slicer.util.arrayFromVolume(volume)[:, :, ::-1].copy(), "scan stored flipped",
                        slicer.util.vtkMatrixFromArray(np.linalg.inv(to_world) @ ijk_to_ras @ flip))
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "scanner to RAS")
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(to_world))
    stored.SetAndObserveTransformNodeID(transform.GetID())

    results = workflow.segment([volume, stored], model)
    assert results[1].GetTransformNodeID() == transform.GetID()
    for name in PHANTOM_SEGMENTS.values():  # both on the plain scan's grid in RAS (the export applies transforms)
        plain, flipped = (segment_array(result, name, volume) for result in results)
        assert plain.any() and np.array_equal(plain, flipped), name


def _matrix(getter):
    import vtk
    matrix = vtk.vtkMatrix4x4()
    getter(matrix)
    return matrix


def test_a_cpu_time_budget_is_shared_by_the_stages_and_left_out_on_a_gpu(tmp_path):
    """Each pre-training stage a third of the job's budget, fine-tuning the rest, each applied only where the
    job's process finds itself on the CPU. Every command passes the real parser and the configs' own checks."""
    workflow, launcher, volume, segmentation, extra = with_fake_jobs(tmp_path)
    stages = [replace(default_pretraining(5)[0], stage="masked", strategy="patches"), default_pretraining(5)[1]]
    workflow.finetune([(volume, segmentation)], unlabeled=[extra], pretrain=stages, settings=TINY, **PRETRAIN_GRID,
                      cpu_time_budget=600, wait=True)
    configs = [parsed(c)[1][0] for c in launcher.commands]
    assert [c.time_budget for c in configs] == [200, 200, 200]
    assert [c.stage for c in configs[:2]] == ["masked", "local"]  # MIM, then L^R
    assert all(c.budget_on("cpu") == c.time_budget and c.budget_on("cuda") is None for c in configs)
    launcher.commands.clear()
    workflow.finetune([(volume, segmentation)], settings=TINY, **TINY_GRID, cpu_time_budget=600, wait=True,
                      model_path=str(tmp_path / "random.pt"))
    assert [parsed(c)[1][0].time_budget for c in launcher.commands] == [600]  # no stage: all of it
    launcher.commands.clear()
    workflow.finetune([(volume, segmentation)], settings=TINY, **TINY_GRID, wait=True,
                      model_path=str(tmp_path / "none.pt"))
    assert parsed(launcher.commands[0])[1][0].time_budget is None


def test_evaluating_on_the_labeled_pairs_runs_compare_and_reads_its_verdict(tmp_path):
    """The "Evaluate on my labeled volumes" job: its ``contrastseg compare`` command passes the real parser; the
    verdict it writes comes back as the job's result."""
    scene = new_scene()
    pairs = [labeled_pair(scene), labeled_pair(scene)]
    extra = add_volume(scene, np.ones((4, 16, 16), np.float32), "unlabeled scan")
    verdict = {"format": "contrastseg-verdict", "version": 1, "recommended": "GD+LR", "folds": 2,
               "means": {"random": 0.5, "GD+LR": 0.6}, "paired": {"GD+LR": {"difference": 0.1, "higher_on": 2}},
               "commands": ["contrastseg finetune ..."]}

    def compare(command):
        out = Path(command[command.index("--out") + 1])
        out.mkdir(parents=True)
        (out / "verdict.json").write_text(json.dumps(verdict))
        (out / "report.md").write_text("# report\n")
        return [], 0

    class Writing(FakeLauncher):
        def launch(self, command, cwd, env, log_path):
            args, _ = parsed(command)
            assert args.command == "compare" and args.time_budget == 1200 and args.finetune_iterations == 8
            self.commands.append(args)
            return FakeHandle(*compare(command))

    workflow = ContrastSegWorkflow(scene, launcher=Writing(), jobs_dir=tmp_path / "jobs", env={})
    result = workflow.evaluate_methods(pairs, unlabeled=[extra], iterations=8, cpu_time_budget=1200, device="cpu",
                                       wait=True, **TINY_GRID)
    assert result["recommended"] == "GD+LR" and result["report"] == "# report\n"
    first = workflow.launcher.commands[-1]
    assert first.methods == ("random", "GD+LR", "MIM") and first.init is None
    # from the background pre-training's checkpoint: compared as it is, no unlabeled volume needed
    workflow.evaluate_methods(pairs, pretrained=str(tmp_path / "background.pt"), iterations=8, cpu_time_budget=1200,
                              device="cpu", wait=True, **TINY_GRID)
    args = workflow.launcher.commands[-1]
    assert args.init == tmp_path / "background.pt" and args.unlabeled == [] and args.methods == ("random",)
    with pytest.raises(Exception, match="at least 2 labeled pairs"):
        workflow.evaluate_methods(pairs[:1], unlabeled=[extra], wait=True, **TINY_GRID)
