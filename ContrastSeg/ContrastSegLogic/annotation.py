"""Opening a suggested volume for annotation: the scene volume (or its file, loaded through a storage node), a
segmentation to paint it in ("<volume> segmentation", found or made, with an empty segment per class of the
training set), and the Segment Editor's parameter node pointed at both.

Slicer's Segment Editor (``Modules/Scripted/SegmentEditor/SegmentEditor.py``, 5.6–5.8) keeps its state in the
scene's singleton ``vtkMRMLSegmentEditorNode`` tagged "SegmentEditor" and shows that node's segmentation and source
volume when the module is entered (``enter`` -> ``selectParameterNode`` -> ``updateWidgetFromMRML``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from . import scene_io
from .classes import SegmentClass
from .errors import SceneInputError

SEGMENT_EDITOR_TAG = "SegmentEditor"
SEGMENTATION_SUFFIX = " segmentation"


def prepare_annotation(scene, suggestion: dict, classes: Sequence[SegmentClass] = ()) -> tuple:
    """(volume, segmentation) for a row of ``suggest``: its scene volume, or its file loaded as a NEW volume (kept in
    the row as "volume", so a second call loads nothing); the segmentation made on first use."""
    volume, path = suggestion.get("volume"), suggestion.get("file")
    if volume is not None and volume.GetScene() is not scene:
        if not path:
            raise SceneInputError(f"volume '{suggestion['name']}' is no longer in the scene; suggest again")
        volume = None  # loaded from its file before and deleted since: load it again
    with scene_io.nodes_removed_on_error(scene):  # a failure leaves the scene as it was
        if volume is None:
            volume = scene_io.read_scalar_volume(scene, _readable_scan(path), scene.GenerateUniqueName(
                suggestion["case"]))
        segmentation = segmentation_for(scene, volume, classes)
        editor = segment_editor_node(scene)
    suggestion["volume"] = volume
    editor.SetAndObserveSegmentationNode(segmentation)
    set_source = getattr(editor, "SetAndObserveSourceVolumeNode", None) or editor.SetAndObserveMasterVolumeNode
    set_source(volume)  # "Master" before Slicer 5.4
    return volume, segmentation


def _readable_scan(path: str | None) -> str:
    """``path`` when it is a scan file this module loads itself; else one line with the fix."""
    if path and Path(path).is_dir():
        raise SceneInputError(f"{path}: the suggested scan is a DICOM series; load it with the DICOM module, then "
                              "tick it among the unlabeled volumes and suggest again")
    if not path or not Path(path).is_file():
        raise SceneInputError(f"{path}: the suggested scan is no longer there; suggest again")
    return path


def segmentation_for(scene, volume, classes: Sequence[SegmentClass] = ()):
    """The segmentation "<volume> segmentation" drawn on ``volume``'s grid: the one there is, else a NEW one with an
    empty segment per class (names and colours of the training set), under the volume's parent transform."""
    import slicer
    name = volume.GetName() + SEGMENTATION_SUFFIX
    role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSegmentationNode")
        if node.GetName() == name and node.GetNodeReferenceID(role) == volume.GetID():
            return node
    with scene_io.nodes_removed_on_error(scene):
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        for segment_class in classes:
            node.GetSegmentation().AddEmptySegment("", segment_class.name, list(segment_class.color))
        node.SetAndObserveTransformNodeID(volume.GetTransformNodeID())
    return node


def segment_editor_node(scene):
    """The Segment Editor's singleton parameter node, made as its ``selectParameterNode`` makes it when absent."""
    node = scene.GetSingletonNode(SEGMENT_EDITOR_TAG, "vtkMRMLSegmentEditorNode")
    if node is None:
        node = scene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
        node.UnRegister(None)
        node.SetSingletonTag(SEGMENT_EDITOR_TAG)
        node = scene.AddNode(node)
    return node
