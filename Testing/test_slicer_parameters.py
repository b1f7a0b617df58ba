"""The module's parameter node: typed values with defaults, node lists in order, kept through a scene save/load."""

from __future__ import annotations

import numpy as np

from slicer_scene import add_segmentation, add_volume, new_scene

from ContrastSegLogic import FinetuneSettings, PretrainSettings
from ContrastSegLogic.parameters import ContrastSegParameters


def test_parameters_survive_scene_save_and_reload():
    scene = new_scene()
    volumes = [add_volume(scene, np.full((3, 8, 8), i, np.float32), f"scan {i}") for i in range(3)]
    label = np.zeros((3, 8, 8), np.uint8)
    label[1, 2:5, 2:5] = 1
    segmentations = [add_segmentation(scene, v, label, {1: "lesion"}, name=f"labels {i}")
                     for i, v in enumerate(volumes[:2])]
    parameters = ContrastSegParameters(scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "ContrastSeg"))
    assert parameters.finetune_settings() == FinetuneSettings()
    assert parameters.pretrain_settings() is None
    parameters.set_labeled_pairs(list(zip(volumes[:2], segmentations)))
    parameters.set_nodes("unlabeledVolume", [volumes[2]])
    parameters.set("initialisation", "pretrain-now")
    parameters.set("localStrategy", "LD")
    parameters.set("iterations", 55)
    parameters.set("mixup", True)

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
    assert again.pretrain_settings() == PretrainSettings(local_strategy="LD")
    assert again.finetune_settings() == FinetuneSettings(iterations=55, mixup=True)
    assert again.pretrained_path() is None
