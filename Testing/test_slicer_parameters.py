"""The module's parameter node: typed values with the library's defaults, node lists in order, labeled pairs kept as
units (a deleted node drops its own pair only), all through a scene save/load."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from slicer_scene import add_segmentation, add_volume, new_scene

from ContrastSegLogic.parameters import FIELDS, ContrastSegParameters
from ContrastSegLib.settings import DEFAULT_STRATEGY, FinetuneConfig, PreprocessConfig, PretrainConfig


def scene_with_pairs():
    scene = new_scene()
    volumes = [add_volume(scene, np.full((3, 8, 8), i, np.float32), f"scan {i}") for i in range(3)]
    label = np.zeros((3, 8, 8), np.uint8)
    label[1, 2:5, 2:5] = 1
    segmentations = [add_segmentation(scene, v, label, {1: "lesion"}, name=f"labels {i}")
                     for i, v in enumerate(volumes[:2])]
    parameters = ContrastSegParameters(scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "ContrastSeg"))
    return scene, volumes, segmentations, parameters


def test_defaults_are_the_librarys():
    _, _, _, parameters = scene_with_pairs()
    assert parameters.finetune_config() == FinetuneConfig()
    assert parameters.preprocess_config() == PreprocessConfig()
    assert parameters.get("initialisation") == "random" and parameters.pretraining() is None
    parameters.set("initialisation", "pretrain-now")
    stages = parameters.pretraining()
    assert [s.stage for s in stages] == ["global", "local"]
    assert [s.strategy for s in stages] == [DEFAULT_STRATEGY["global"], DEFAULT_STRATEGY["local"]]
    assert all(s.iterations == PretrainConfig().iterations for s in stages)
    with pytest.raises(ValueError, match="globalStrategy must be one of GR, GD-, GD"):
        parameters.set("globalStrategy", "XX")
    parameters.node.SetParameter("iterations", "many")  # a hand-edited scene falls back to the default
    assert parameters.get("iterations") == FIELDS["iterations"].default


def test_parameters_survive_scene_save_and_reload():
    scene, volumes, segmentations, parameters = scene_with_pairs()
    parameters.set_labeled_pairs(list(zip(volumes[:2], segmentations)))
    parameters.set_nodes("unlabeledVolume", [volumes[2]])
    parameters.set("initialisation", "pretrain-now")
    parameters.set("localStrategy", "LD")
    parameters.set("iterations", 55)
    parameters.set("mixup", True)
    parameters.set("segments", "lesion")

    scene.SetSaveToXMLString(1)
    scene.Commit()
    reloaded = new_scene()
    reloaded.SetLoadFromXMLString(1)
    reloaded.SetSceneXMLString(scene.GetSceneXMLString())
    assert reloaded.Import()
    again = ContrastSegParameters(reloaded.GetFirstNodeByName("ContrastSeg"))
    assert [(v.GetName(), s.GetName()) for v, s in again.labeled_pairs()] == [("scan 0", "labels 0"),
                                                                             ("scan 1", "labels 1")]
    assert [v.GetName() for v in again.nodes("unlabeledVolume")] == ["scan 2"]
    assert [s.strategy for s in again.pretraining()] == [DEFAULT_STRATEGY["global"], "LD"]
    assert again.finetune_config() == replace(FinetuneConfig(), iterations=55, mixup=True)
    assert again.segment_names() == ["lesion"] and again.pretrained_path() is None


def test_deleting_a_node_drops_its_own_pair_and_never_re_pairs():
    scene, volumes, segmentations, parameters = scene_with_pairs()
    parameters.set_labeled_pairs(list(zip(volumes[:2], segmentations)))
    scene.RemoveNode(segmentations[0])
    pairs = parameters.labeled_pairs()
    assert pairs[0] == (volumes[0], None) and pairs[1] == (volumes[1], segmentations[1])
    parameters.set_labeled_pairs(pairs[1:])
    assert parameters.labeled_pairs() == [(volumes[1], segmentations[1])]
