"""Scene <-> files through MRML storage nodes, so geometry (spacing, origin, direction) is written as Slicer sees it.

Only MRML is used (no Qt, no ``slicer.app``): the same code runs in Slicer and under the ``slicer-core`` wheel. Temporary
nodes needed by MRML's export are removed again, so a failure leaves the scene's nodes as they were.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .classes import SegmentClass
from .errors import SceneInputError

GEOMETRY_TOLERANCE = 1e-4  # mm and direction cosines


def check_scalar_volume(volume_node) -> None:
    """Refuse anything but a 3-D single-component scalar volume with voxels."""
    name = volume_node.GetName() if volume_node is not None else "None"
    if volume_node is None or not volume_node.IsA("vtkMRMLScalarVolumeNode"):
        raise SceneInputError(f"volume '{name}' is not a scalar volume; select a grey-level image volume")
    if volume_node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise SceneInputError(f"volume '{name}' is a label map; select the image it labels, and give the labels as a "
                              "segmentation")
    image = volume_node.GetImageData()
    if image is None or min(image.GetDimensions()) < 1:
        raise SceneInputError(f"volume '{name}' has no voxels; load the image data again")
    if image.GetNumberOfScalarComponents() != 1:
        raise SceneInputError(f"volume '{name}' has {image.GetNumberOfScalarComponents()} components (RGB or vector); "
                              "convert it to a scalar volume first (Vector to Scalar Volume module)")


def checked_scalar_volume(volume_node):
    """``volume_node`` after :func:`check_scalar_volume`."""
    check_scalar_volume(volume_node)
    return volume_node


def image_geometry(volume_node) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(IJK-to-RAS 4x4 matrix, dimensions (I, J, K)) of a volume node."""
    import vtk
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return _numpy_matrix(matrix), tuple(volume_node.GetImageData().GetDimensions())


def check_same_geometry(segmentation_node, volume_node) -> None:
    """Refuse a segmentation drawn on another grid than ``volume_node`` (its reference image geometry differs)."""
    import slicer
    import vtk
    segmentation = segmentation_node.GetSegmentation()
    serialized = segmentation.GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    if not serialized:
        return  # no reference grid recorded: the export resamples onto the volume
    reference = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(serialized, reference)
    matrix = vtk.vtkMatrix4x4()
    reference.GetImageToWorldMatrix(matrix)
    extent = reference.GetExtent()
    dims = (extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1)
    volume_matrix, volume_dims = image_geometry(volume_node)
    # The reference extent may start at a non-zero index: compare the physical position of voxel (0, 0, 0).
    reference_matrix = _numpy_matrix(matrix)
    reference_matrix[:3, 3] += reference_matrix[:3, :3] @ np.array(extent[0::2], dtype=float)
    if dims != volume_dims or not np.allclose(reference_matrix, volume_matrix, atol=GEOMETRY_TOLERANCE):
        raise SceneInputError(
            f"segmentation '{segmentation_node.GetName()}' was drawn on another grid than volume "
            f"'{volume_node.GetName()}' (size {dims} vs {volume_dims} or different spacing/origin/direction); pair it "
            "with the volume it was drawn on, or set its geometry from this volume (Segment Editor > Specify geometry)")


def write_volume(volume_node, path: str | os.PathLike) -> Path:
    """Write a volume node (scalar or label map) to ``path`` (.nrrd, .nii.gz, .mha) with its geometry."""
    path = Path(path)
    if not _storage(path).WriteData(volume_node):
        raise SceneInputError(f"could not write volume '{volume_node.GetName()}' to {path}; check free disk space and "
                              "that the folder is writable")
    return path


@contextmanager
def exported_labelmap(scene, segmentation_node, ids: Sequence[str], reference_volume) -> Iterator:
    """A temporary label-map node holding segments ``ids`` on ``reference_volume``'s grid (i-th segment -> value
    i+1, later segments drawn over earlier ones); it leaves the scene with the ``with`` block."""
    import slicer
    import vtk
    segment_list = vtk.vtkStringArray()
    for segment_id in ids:
        segment_list.InsertNextValue(segment_id)
    with temporary_node(scene, "vtkMRMLLabelMapVolumeNode") as labelmap:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentation_node, segment_list, labelmap, reference_volume):
            raise SceneInputError(f"segmentation '{segmentation_node.GetName()}' could not be exported on the grid of "
                                  f"'{reference_volume.GetName()}'; check that both are in the scene")
        yield labelmap


def labelmap_array(scene, segmentation_node, ids: Sequence[str], reference_volume) -> np.ndarray:
    """(K, J, I) label values of segments ``ids`` on ``reference_volume``'s grid (see ``exported_labelmap``)."""
    import slicer
    with exported_labelmap(scene, segmentation_node, ids, reference_volume) as labelmap:
        return slicer.util.arrayFromVolume(labelmap).copy()


def write_segments_as_labelmap(scene, segmentation_node, ids: Sequence[str], reference_volume,
                               path: str | os.PathLike) -> dict[str, int]:
    """Write segments ``ids`` as one label map (see ``exported_labelmap``); returns the voxel count of each
    segment's value. Empty segmentations are refused before anything is written."""
    import slicer
    name = segmentation_node.GetName()
    if not ids:
        raise SceneInputError(f"segmentation '{name}' has no segments; paint at least one structure in the Segment "
                              "Editor")
    with exported_labelmap(scene, segmentation_node, ids, reference_volume) as labelmap:
        array = slicer.util.arrayFromVolume(labelmap)
        counts = {segment_id: int(np.count_nonzero(array == value)) for value, segment_id in enumerate(ids, 1)}
        if not any(counts.values()):
            raise SceneInputError(f"segmentation '{name}' is empty on volume '{reference_volume.GetName()}'; paint "
                                  "the structures first (or pair it with the volume it was drawn on)")
        write_volume(labelmap, path)
    return counts


def read_labelmap_as_segmentation(scene, path: str | os.PathLike, reference_volume, classes: Sequence[SegmentClass],
                                  name: str):
    """A NEW segmentation node ``name`` on ``reference_volume``'s grid, under its parent transform, holding one
    segment per class of ``classes`` (named and coloured from them; empty when the class was not found)."""
    with nodes_removed_on_error(scene):
        node = _new_segmentation(scene, name)
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
        _import_labelmap_file(path, node, "could not read the predicted label map; run the segmentation again")
        _name_segments(node, classes)
        # Only now: importing into a transformed node would move the label map (given in the volume's own
        # coordinates) by the inverse transform.
        node.SetAndObserveTransformNodeID(reference_volume.GetTransformNodeID())
    return node


def read_scalar_volume(scene, path: str | os.PathLike, name: str, like=None):
    """A NEW scalar volume node ``name`` read from ``path`` (under the parent transform of the volume ``like``)."""
    with nodes_removed_on_error(scene):
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        if not _storage(path).ReadData(node):
            raise SceneInputError(f"{path}: could not read the volume")
        node.CreateDefaultDisplayNodes()
        if like is not None:
            node.SetAndObserveTransformNodeID(like.GetTransformNodeID())
    return node


def read_segmentation_file(scene, path: str | os.PathLike, name: str | None = None):
    """A NEW segmentation node from a ``.seg.nrrd`` (segment names and colours kept) or a label-map file (one
    segment per value)."""
    path = Path(path)
    with nodes_removed_on_error(scene):
        node = _new_segmentation(scene, name or _stem(path))
        if not path.name.lower().endswith(".seg.nrrd"):
            _import_labelmap_file(path, node, "not a readable label map; check the file")
        elif not _storage(path, segmentation=True).ReadData(node):
            raise SceneInputError(f"{path}: not a readable segmentation file; export it again from Slicer")
    return node


def write_segmentation_file(segmentation_node, path: str | os.PathLike) -> Path:
    """Write a segmentation node as ``.seg.nrrd`` (segment names, colours and geometry kept)."""
    path = Path(path)
    if not _storage(path, segmentation=True).WriteData(segmentation_node):
        raise SceneInputError(f"could not write segmentation '{segmentation_node.GetName()}' to {path}; check the "
                              "folder is writable")
    return path


def _storage(path: str | os.PathLike, segmentation: bool = False):
    """A storage node (outside any scene) for ``path``: segmentation (.seg.nrrd) or volume archetype, compressed."""
    import slicer
    storage = slicer.vtkMRMLSegmentationStorageNode() if segmentation else slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(True)
    return storage


def _new_segmentation(scene, name: str):
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    return node


def _import_labelmap_file(path, segmentation_node, problem: str) -> None:
    """One segment per label value of the label-map file ``path`` into ``segmentation_node``."""
    import slicer
    labelmap = slicer.vtkMRMLLabelMapVolumeNode()  # outside the scene: nothing to clean up
    if not _storage(path).ReadData(labelmap) or \
            not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node, ""):
        raise SceneInputError(f"{path}: {problem}")


@contextmanager
def temporary_node(scene, class_name: str) -> Iterator:
    """A node that exists in ``scene`` only inside the ``with`` block; every node added meanwhile (its display and
    storage nodes, the colour table an export makes) is removed with it."""
    before = scene_node_ids(scene)
    node = scene.AddNewNodeByClass(class_name, "ContrastSeg temporary")
    try:
        yield node
    finally:
        _remove_added(scene, before)


@contextmanager
def nodes_removed_on_error(scene) -> Iterator[None]:
    """If the block fails, every node it added to ``scene`` is removed again (all or nothing)."""
    before = scene_node_ids(scene)
    try:
        yield
    except BaseException:
        _remove_added(scene, before)
        raise


def scene_node_ids(scene) -> set[str]:
    """The ids of every node in ``scene`` (to check that a failed action left it unchanged)."""
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def _name_segments(node, classes: Sequence[SegmentClass]) -> None:
    segmentation = node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    by_value = {segmentation.GetSegment(i).GetLabelValue(): i for i in ids}
    for value in set(by_value) - {c.value for c in classes}:
        segmentation.RemoveSegment(by_value.pop(value))
    for index, segment_class in enumerate(classes):
        segment_id = by_value.get(segment_class.value)
        if segment_id is None:
            segment_id = segmentation.AddEmptySegment("", segment_class.name, list(segment_class.color))
        else:
            segment = segmentation.GetSegment(segment_id)
            segment.SetName(segment_class.name)
            segment.SetColor(*segment_class.color)
        segmentation.SetSegmentIndex(segment_id, index)  # segments in class order, whatever was found


def _remove_added(scene, before: set[str]) -> None:
    for node_id in scene_node_ids(scene) - before:
        node = scene.GetNodeByID(node_id)
        if node is not None:
            scene.RemoveNode(node)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".seg.nrrd", ".nii.gz", ".nrrd", ".nii", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _numpy_matrix(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
