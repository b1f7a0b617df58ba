"""Bad inputs to the Slicer module's logic: each refused before anything runs, with one line that names the node or
file and the fix; the scene, the user's files and the jobs folder stay as they were."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slicer_scene import add_segmentation, add_volume, ijk_to_ras, new_scene, slicer

from ContrastSegLogic import ContrastSegWorkflow, SceneInputError, default_pretraining
from ContrastSegLogic.scene_io import scene_node_ids
from ContrastSegLib.runtime.checkpoint import Checkpoint, save_checkpoint

SHAPE = (4, 16, 18)


class NoLauncher:
    def launch(self, *args, **kwargs):
        raise AssertionError("no process may start for bad input")


def setup(tmp_path):
    scene = new_scene()
    volume = add_volume(scene, np.random.default_rng(0).random(SHAPE).astype(np.float32), "scan A")
    label = np.zeros(SHAPE, np.uint8)
    label[1:3, 4:9, 4:9] = 1
    label[2:4, 10:14, 9:15] = 2
    segmentation = add_segmentation(scene, volume, label, {1: "liver", 2: "spleen"}, name="scan A labels")
    workflow = ContrastSegWorkflow(scene, launcher=NoLauncher(), jobs_dir=tmp_path / "jobs", env={},
                                   models_dir=tmp_path / "models")
    return scene, volume, segmentation, workflow


def checkpoint(path, names):
    labels = {"values": list(range(len(names) + 1)), "names": ["background", *names],
              "colors": [[0, 0, 0]] + [[200, 10 * i, 0] for i in range(len(names))]}
    save_checkpoint(Checkpoint({"w": torch.zeros(1)}, {"stage": "finetune", "labels": labels}), path)
    return str(path)


def refused(tmp_path, scene, call, match):
    nodes = scene_node_ids(scene)
    with pytest.raises(SceneInputError, match=match) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message and len(message) < 400
    assert scene_node_ids(scene) == nodes
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())
    return message


def test_volume_without_segmentation(tmp_path):
    scene, volume, _, workflow = setup(tmp_path)
    message = refused(tmp_path, scene, lambda: workflow.finetune([(volume, None)]), "has no segmentation")
    assert "'scan A'" in message and "Segment Editor" in message


def test_segmentation_without_segments(tmp_path):
    scene, volume, _, workflow = setup(tmp_path)
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "nothing yet")
    empty.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    refused(tmp_path, scene, lambda: workflow.finetune([(volume, empty)]), "'nothing yet' has no segments")


def test_segmentation_with_only_empty_segments(tmp_path):
    scene, volume, _, workflow = setup(tmp_path)
    blank = add_segmentation(scene, volume, np.zeros(SHAPE, np.uint8), {1: "liver"}, name="blank")
    refused(tmp_path, scene, lambda: workflow.finetune([(volume, blank)]), "'blank' is empty on volume 'scan A'")


def test_segmentation_drawn_on_another_grid(tmp_path):
    scene, volume, _, workflow = setup(tmp_path)
    other = add_volume(scene, np.zeros(SHAPE, np.float32), "scan B", ijk_to_ras((1.0, 1.0, 2.0), (5, 0, 0), 10))
    label = np.zeros(SHAPE, np.uint8)
    label[1:3, 2:6, 2:6] = 1
    elsewhere = add_segmentation(scene, other, label, {1: "liver"}, name="scan B labels")
    message = refused(tmp_path, scene, lambda: workflow.finetune([(volume, elsewhere)]), "another grid")
    assert "'scan B labels'" in message and "'scan A'" in message


def test_rgb_volume(tmp_path):
    scene, _, segmentation, workflow = setup(tmp_path)
    rgb = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "photo")
    rgb.SetIJKToRASMatrix(ijk_to_ras())
    slicer.util.updateVolumeFromArray(rgb, np.zeros(SHAPE + (3,), np.uint8))
    refused(tmp_path, scene, lambda: workflow.finetune([(rgb, segmentation)]), "'photo' has 3 components")
    refused(tmp_path, scene, lambda: workflow.segment(rgb, "model.pt"), "'photo' has 3 components")


def test_label_map_given_as_image(tmp_path):
    scene, _, segmentation, workflow = setup(tmp_path)
    labelmap = add_volume(scene, np.zeros(SHAPE, np.uint8), "mask", labelmap=True)
    refused(tmp_path, scene, lambda: workflow.segment(labelmap, "model.pt"), "'mask' is a label map")


def test_checkpoint_with_other_classes(tmp_path):
    scene, volume, segmentation, workflow = setup(tmp_path)
    path = checkpoint(tmp_path / "kidney.pt", ["kidney"])
    message = refused(tmp_path, scene, lambda: workflow.finetune([(volume, segmentation)], pretrained=path),
                      r"segments \['kidney'\], the selected segments are \['liver', 'spleen'\]")
    assert "kidney.pt" in message
    # selecting the matching segments is fine up to the (absent) process start
    with pytest.raises(AssertionError, match="no process may start"):
        workflow.finetune([(volume, segmentation)], pretrained=checkpoint(tmp_path / "liver.pt", ["liver"]),
                          segments=["liver"])


def test_segment_names_differ_between_pairs(tmp_path):
    scene, volume, segmentation, workflow = setup(tmp_path)
    second = add_volume(scene, np.ones(SHAPE, np.float32), "scan C")
    label = np.zeros(SHAPE, np.uint8)
    label[1:3, 2:6, 2:6] = 1
    other = add_segmentation(scene, second, label, {1: "liver"}, name="scan C labels")
    refused(tmp_path, scene, lambda: workflow.finetune([(volume, segmentation), (second, other)]),
            "'scan C labels' has no segment 'spleen'")


def test_model_path_that_cannot_hold_a_model(tmp_path):
    scene, volume, segmentation, workflow = setup(tmp_path)
    folder = tmp_path / "a folder.pt"
    folder.mkdir()
    for path, match in ((folder, "is a folder"), (tmp_path / "model.pth", "ends in .pt"),
                        (tmp_path / "nowhere" / "model.pt", "not a writable folder")):
        message = refused(tmp_path, scene, lambda: workflow.finetune([(volume, segmentation)], model_path=str(path)),
                          match)
        assert str(path.name) in message or str(path.parent) in message
    assert folder.is_dir() and not any(folder.iterdir())


def test_settings_the_library_refuses_are_refused_before_export(tmp_path):
    from dataclasses import replace
    from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig
    scene, volume, segmentation, workflow = setup(tmp_path)
    for call, match in (
            (lambda: workflow.finetune([(volume, segmentation)], settings=replace(FinetuneConfig(), iterations=0)),
             "--iterations 0"),
            (lambda: workflow.finetune([(volume, segmentation)], preprocess=replace(PreprocessConfig(), crop_size=40)),
             "--crop-size 40 must be a multiple of 32"),
            (lambda: workflow.finetune([(volume, segmentation)], pretrain=[replace(p, strategy="LR")
                                                                          for p in default_pretraining()]),
             "--strategy LR is not a global strategy")):
        refused(tmp_path, scene, call, match)


def test_segment_with_a_pretraining_checkpoint_or_missing_file(tmp_path):
    scene, volume, _, workflow = setup(tmp_path)
    pretrained = tmp_path / "global.pt"
    save_checkpoint(Checkpoint({"w": torch.zeros(1)}, {"stage": "pretrain-global"}), pretrained)
    refused(tmp_path, scene, lambda: workflow.segment(volume, str(pretrained)), "is not a fine-tuned model")
    refused(tmp_path, scene, lambda: workflow.segment([], str(pretrained)), "select at least one volume")
    refused(tmp_path, scene, lambda: workflow.segment(volume, str(tmp_path / "nope.pt")), "does not exist")


def test_pretraining_without_unlabeled_data_and_conflicting_choices(tmp_path):
    scene, volume, segmentation, workflow = setup(tmp_path)
    refused(tmp_path, scene, lambda: workflow.pretrain([]), "needs unlabeled volumes")
    path = checkpoint(tmp_path / "x.pt", ["liver", "spleen"])
    refused(tmp_path, scene, lambda: workflow.finetune([(volume, segmentation)], pretrained=path,
                                                       pretrain=default_pretraining()), "not both")


def test_review_and_training_set_without_their_nodes(tmp_path):
    scene, volume, segmentation, workflow = setup(tmp_path)
    refused(tmp_path, scene, lambda: workflow.compare(segmentation, None, volume), "select a reference segmentation")
    refused(tmp_path, scene, lambda: workflow.compare(None, segmentation, volume), "select a prediction")
    refused(tmp_path, scene, lambda: workflow.add_to_training_set([], volume, None), "select a volume and its")
    refused(tmp_path, scene, lambda: workflow.finetune([(None, segmentation)]), "lost its volume")
