"""The module's logic for "which volumes to annotate" and "which predictions to check first", on real MRML
(slicer-core) with real ``contrastseg suggest`` / ``predict`` subprocess jobs and a tiny fine-tuned phantom model:
``workflow.suggest`` (scene volumes and folder scans, the annotated ones never suggested), opening a suggestion for
annotation, ``workflow.segment(..., review=True)`` (the review table with its nodes, worst first) and one row shown
in the slice views; bad input refused before any job starts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from slicer_scene import new_scene, phantom_node, slicer

from ContrastSegLib.settings import PreprocessConfig
from ContrastSegLogic import ContrastSegWorkflow, SceneInputError
from ContrastSegLogic.annotation import SEGMENT_EDITOR_TAG, prepare_annotation
from ContrastSegLogic.classes import SegmentClass
from ContrastSegLogic.review_table import show_in_views, structure_names
from ContrastSegLogic.scene_io import scene_node_ids
from ContrastSegLogic.suggestion import NO_MODEL

STRUCTURES = ["LV", "myocardium", "RV"]


@pytest.fixture(scope="module")
def phantom_model(tmp_path_factory):
    """A fine-tuned phantom model from the real CLI (trained long enough, a few seconds, for its review scores to
    differ between scans), and a folder holding one more scan."""
    from cli_helpers import phantom_model_subprocess
    from ContrastSegLib.data.phantom import make_phantom
    from ContrastSegLib.io import write_volume
    model, _ = phantom_model_subprocess(tmp_path_factory.mktemp("phantom-model"), 2, 400)
    root = model.parent
    folder = root / "more scans"
    folder.mkdir()
    write_volume(make_phantom(7, seed=3)[0], folder / "extra_scan.nii.gz")
    return str(model), folder


def workflow_with_scans(tmp_path, count=4):
    scene = new_scene()
    volumes = [phantom_node(scene, index, f"scan{index}")[0] for index in range(count)]
    workflow = ContrastSegWorkflow(scene, jobs_dir=tmp_path / "jobs", models_dir=tmp_path / "models")
    return scene, volumes, workflow


def test_suggest_then_open_a_suggestion_for_annotation(tmp_path, phantom_model, one_torch_thread):
    from ContrastSegLib.data.phantom import make_phantom
    model, folder = phantom_model
    scene, (scan0, scan1, scan2, scan3), workflow = workflow_with_scans(tmp_path)
    rows = workflow.suggest(unlabeled=[scan0, scan1, scan2, scan3], folders=[str(folder)], model=model, count=4,
                            labeled_volumes=[scan0], device="cpu", wait=True)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert {r["name"] for r in rows} == {"scan1", "scan2", "scan3", "extra_scan.nii.gz"}  # scan0 is annotated
    for row in rows:
        assert (row["volume"] is None) == (row["file"] is not None) and row["reason"]
        assert 0 <= row["score"] <= 1 and row["uncertainty"] is not None  # a fine-tuned model: its uncertainty
    by_name = {r["name"]: r for r in rows}
    assert by_name["scan2"]["volume"] is scan2 and by_name["extra_scan.nii.gz"]["file"] == str(
        folder / "extra_scan.nii.gz")
    assert not list((tmp_path / "jobs").glob("*/inputs"))  # the exported scans are gone

    before = scene_node_ids(scene)
    classes = [SegmentClass(v, n, (0.1 * v, 0.5, 0.2)) for v, n in enumerate(STRUCTURES, 1)]
    volume, segmentation = prepare_annotation(scene, by_name["extra_scan.nii.gz"], classes)
    assert volume.GetName() == "extra_scan" and by_name["extra_scan.nii.gz"]["volume"] is volume
    assert slicer.util.arrayFromVolume(volume).shape == make_phantom(7, seed=3)[0].array.shape
    names = [segmentation.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
    assert segmentation.GetName() == "extra_scan segmentation" and names == STRUCTURES
    editor = scene.GetSingletonNode(SEGMENT_EDITOR_TAG, "vtkMRMLSegmentEditorNode")
    assert editor.GetSegmentationNode() is segmentation and editor.GetSourceVolumeNode() is volume
    added = scene_node_ids(scene) - before
    assert prepare_annotation(scene, by_name["extra_scan.nii.gz"], classes) == (volume, segmentation)
    assert scene_node_ids(scene) - before == added  # a second time: nothing loaded or made again
    assert prepare_annotation(scene, by_name["scan2"])[0] is scan2
    assert editor.GetSourceVolumeNode() is scan2

    scene.RemoveNode(volume)  # the loaded scan deleted: a click loads its file again
    again, _ = prepare_annotation(scene, by_name["extra_scan.nii.gz"], classes)
    assert again.GetScene() is scene and again is not volume and editor.GetSourceVolumeNode() is again
    before = scene_node_ids(scene)
    dicom = tmp_path / "series"  # a DICOM series folder among the folder's scans: one line, the scene unchanged
    dicom.mkdir()
    with pytest.raises(SceneInputError, match="series.*DICOM module"):
        prepare_annotation(scene, {"name": "series", "case": "series", "volume": None, "file": str(dicom)})
    with pytest.raises(SceneInputError, match="no longer there"):
        prepare_annotation(scene, {"name": "gone", "case": "gone", "volume": None, "file": str(tmp_path / "x.nrrd")})
    assert scene_node_ids(scene) == before


def test_segment_returns_the_review_table_worst_first(tmp_path, phantom_model, one_torch_thread):
    model, _ = phantom_model
    scene, volumes, workflow = workflow_with_scans(tmp_path, 3)
    rows = workflow.segment(volumes, model, uncertainty=True, device="cpu", review=True)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert len(set(scores)) == 3  # distinct: the order is the scores', not the case names' of a tie
    assert structure_names(rows) == STRUCTURES
    for row in rows:
        index = volumes.index(row["volume"])
        assert row["case"] == f"volume{index:03d}"  # the row of that volume's own prediction
        assert row["segmentation"].GetName() == f"scan{index} ContrastSeg"
        assert row["uncertainty"].GetName() == f"scan{index} ContrastSeg uncertainty"
        assert {f"{name}_ml" for name in STRUCTURES} <= set(row) and isinstance(row["flags"], str)
        assert not {"image", "prediction"} & set(row)  # the job's files are gone: the nodes stand for them

    last = rows[-1]
    show_in_views(last["volume"], last["segmentation"], last["uncertainty"], hidden=[r["segmentation"] for r in rows])
    views = [scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
             for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]
    assert all(v.GetBackgroundVolumeID() == last["volume"].GetID() and
               v.GetForegroundVolumeID() == last["uncertainty"].GetID() for v in views)
    assert [r["segmentation"].GetDisplayNode().GetVisibility() for r in rows] == [0, 0, 1]

    single = workflow.segment(volumes[0], model, device="cpu")  # without review: the node, as before
    assert single.IsA("vtkMRMLSegmentationNode") and single.GetName() == "scan0 ContrastSeg_1"


class NoLauncher:
    def launch(self, *args, **kwargs):
        raise AssertionError("no process may start for bad input")


@pytest.mark.parametrize("case", ["no model", "too many", "no candidates", "both"])
def test_bad_suggestions_are_refused_before_any_job(tmp_path, phantom_model, case):
    model, folder = phantom_model
    scene, (scan0, scan1, scan2, _), _ = workflow_with_scans(tmp_path)
    workflow = ContrastSegWorkflow(scene, launcher=NoLauncher(), jobs_dir=tmp_path / "jobs", env={},
                                   models_dir=tmp_path / "models")
    call, match = {
        "no model": (lambda: workflow.suggest(unlabeled=[scan1, scan2]), "suggesting needs a model"),
        "too many": (lambda: workflow.suggest(unlabeled=[scan0, scan1], folders=[str(folder)], model=model, count=3,
                                              labeled_volumes=[scan0]), "only 2 candidate"),
        "no candidates": (lambda: workflow.suggest(unlabeled=[scan0], model=model, labeled_volumes=[scan0]),
                          "needs candidates"),
        "both": (lambda: workflow.suggest(unlabeled=[scan1], model=model, pretrain=[object()]), "not both"),
    }[case]
    nodes = scene_node_ids(scene)
    with pytest.raises(SceneInputError, match=match) as raised:
        call()
    assert "\n" not in str(raised.value) and len(str(raised.value)) < 400
    assert scene_node_ids(scene) == nodes and not (tmp_path / "jobs").exists()
    assert NO_MODEL.startswith("suggesting needs a model")


def test_a_failed_suggestion_keeps_the_checkpoint_pre_trained_for_it(tmp_path, one_torch_thread):
    from ContrastSegLib.io import Volume, write_volume
    from ContrastSegLogic import JobFailedError, default_pretraining
    scene, scans, workflow = workflow_with_scans(tmp_path)
    folder = tmp_path / "scans"  # a scan whose plane is too small for suggesting, not for pre-training
    small = np.random.default_rng(0).normal(100, 20, (6, 6, 6)).astype(np.float32)
    write_volume(Volume(small, (4.0, 4.0, 4.0), (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1)), folder / "tiny.nii.gz")
    with pytest.raises(JobFailedError, match="tiny.nii.gz.*less than 25%"):
        workflow.suggest(unlabeled=scans, folders=[str(folder)], count=1, pretrain=default_pretraining(3),
                         preprocess=replace(PreprocessConfig(), crop_size=32, target_spacing=4.0), channels=(8, 8, 8, 8),
                         device="cpu", wait=True)
    kept = list((tmp_path / "models").glob("pretrained*.pt"))
    assert len(kept) == 1 and kept[0].stat().st_size > 0  # the pre-training is not lost with the job
    with pytest.raises(SceneInputError, match="--decoder-blocks 3: the UNet of --channels 8,16 has 1"):
        workflow.suggest(unlabeled=scans, count=1, pretrain=default_pretraining(3), channels=(8, 16), device="cpu")
