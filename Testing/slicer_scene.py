"""A real MRML scene without Slicer's GUI (the ``slicer-core`` wheel), set up like Slicer's application: colour,
volumes and segmentations logics registered, ``slicer.mrmlScene`` and ``slicer.modules.<name>.logic()`` available.

CI must run these tests: with ``CI`` set, a missing ``slicer-core`` is an error, not a skip.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

MODULE_DIR = Path(__file__).resolve().parent.parent / "ContrastSeg"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

if os.environ.get("CI"):
    import slicer  # noqa: F401  (CI installs slicer-core: fail loudly if it is missing)
slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install slicer-core)")
vtk = pytest.importorskip("vtk")


from ContrastSegLogic.headless import new_scene  # noqa: E402,F401  (after the module folder joined sys.path)


def ijk_to_ras(spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), rotation_deg: float = 0.0):
    """A vtkMatrix4x4 with ``spacing`` along axes rotated by ``rotation_deg`` about the S axis (non-axis-aligned when
    not a multiple of 90), then ``origin``."""
    angle = np.deg2rad(rotation_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    columns = rotation @ np.diag(spacing)
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, float(columns[r, c]))
        matrix.SetElement(r, 3, float(origin[r]))
    return matrix


def add_volume(scene, array: np.ndarray, name: str, matrix=None, labelmap: bool = False):
    """A volume node holding ``array`` (K, J, I)."""
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", name)
    node.SetIJKToRASMatrix(matrix if matrix is not None else ijk_to_ras())
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.CreateDefaultDisplayNodes()
    return node


def add_segmentation(scene, volume, label: np.ndarray, names: dict[int, str], colors: dict[int, tuple] | None = None,
                     name: str = "segmentation"):
    """A segmentation node on ``volume``'s grid with one segment per value of ``names`` (in value order)."""
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    segmentation = node.GetSegmentation()
    for value, segment_name in sorted(names.items()):
        color = (colors or {}).get(value, (0.2 * value % 1, 0.5, 0.3))
        segment_id = segmentation.AddEmptySegment("", segment_name, list(color))
        mask = (label == value).astype(np.uint8)
        if mask.any():
            slicer.util.updateSegmentBinaryLabelmapFromArray(mask, node, segment_id, volume)
    return node


def phantom_node(scene, index: int, name: str, seed: int = 3):
    """Phantom ``index`` as a scene volume (ITK's LPS geometry turned into Slicer's RAS) and its label array."""
    from ContrastSegLib.data.phantom import make_phantom
    image, label = make_phantom(index, seed=seed)
    columns = np.diag([-1.0, -1.0, 1.0]) @ np.reshape(image.direction, (3, 3)) @ np.diag(image.spacing)
    matrix = vtk.vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, columns[r, c])
        matrix.SetElement(r, 3, (-1, -1, 1)[r] * image.origin[r])
    return add_volume(scene, image.array, name, matrix), label.array


def phantom_segments() -> dict[int, str]:
    from ContrastSegLib.data.phantom import LABEL_NAMES
    return {value: name for value, name in LABEL_NAMES.items() if value}


def segment_array(node, name: str, volume) -> np.ndarray:
    """The (K, J, I) mask of segment ``name`` on ``volume``'s grid."""
    segment_id = node.GetSegmentation().GetSegmentIdBySegmentName(name)
    return slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, volume)
