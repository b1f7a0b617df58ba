"""Scene <-> job folder round trip on real MRML (slicer-core): arrays, geometry (non-axis-aligned included) and
segment names/colours survive volume + segmentation -> files -> ContrastSegLib -> files -> new nodes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slicer_scene import add_segmentation, add_volume, ijk_to_ras, new_scene, segment_array, vtk

from ContrastSegLogic import ContrastSegWorkflow, scene_io
from ContrastSegLogic.classes import classes_from_labels, classes_of, segment_ids
from ContrastSegLib.data.discovery import discover
from ContrastSegLib.io import read_image, read_label, write_volume
from ContrastSegLib.io.volume import Volume

NAMES = {1: "left ventricle", 2: "myocardium", 3: "right ventricle"}
COLORS = {1: (0.9, 0.1, 0.1), 2: (0.2, 0.8, 0.3), 3: (0.1, 0.3, 0.95)}
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def labeled_scene(rotation_deg: float):
    rng = np.random.default_rng(7)
    scene = new_scene()
    image = (rng.random((7, 24, 30)) * 500).astype(np.float32)
    label = np.zeros(image.shape, np.uint8)
    label[1:5, 4:12, 5:14] = 1
    label[2:6, 13:20, 6:12] = 2
    label[3:6, 3:9, 18:27] = 3
    matrix = ijk_to_ras((0.7, 0.9, 3.0), (12.5, -40.0, 7.25), rotation_deg)
    volume = add_volume(scene, image, "patient 1", matrix)
    segmentation = add_segmentation(scene, volume, label, NAMES, COLORS, name="patient 1 labels")
    return scene, volume, segmentation, image, label


def volume_geometry_lps(volume):
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    columns = np.array([[matrix.GetElement(r, c) for c in range(3)] for r in range(3)])
    spacing = np.linalg.norm(columns, axis=0)
    direction = RAS_TO_LPS @ (columns / spacing)
    origin = RAS_TO_LPS @ np.array([matrix.GetElement(r, 3) for r in range(3)])
    return spacing, origin, direction


@pytest.mark.parametrize("rotation_deg", [0.0, 27.0])
def test_labeled_pair_round_trip_through_files(tmp_path, rotation_deg):
    scene, volume, segmentation, image, label = labeled_scene(rotation_deg)
    workflow = ContrastSegWorkflow(scene, jobs_dir=tmp_path / "jobs", env={})
    pairs, classes = workflow.check_labeled([(volume, segmentation)])
    from ContrastSegLogic.job_folder import JobFolder
    folder = JobFolder.create(tmp_path / "jobs", "finetune")
    manifest = folder.write_manifest(workflow._export_labeled(folder, pairs), classes)

    # ContrastSegLib reads what the module wrote: same voxels, same geometry (ITK's LPS), names and colours.
    dataset = discover(manifest)
    case = dataset.cases[0]
    read = read_image(case.image)
    read_seg = read_label(case.label, image=read)
    np.testing.assert_array_equal(read.array, image)
    np.testing.assert_array_equal(read_seg.array, label)
    spacing, origin, direction = volume_geometry_lps(volume)
    np.testing.assert_allclose(read.spacing, spacing, atol=1e-9)
    np.testing.assert_allclose(read.origin, origin, atol=1e-9)
    np.testing.assert_allclose(np.reshape(read.direction, (3, 3)), direction, atol=1e-9)
    assert dataset.label_names == {0: "background", **NAMES}
    assert dataset.label_colors == {v: tuple(int(round(c * 255)) for c in rgb) for v, rgb in COLORS.items()}
    assert json.loads(manifest.read_text(encoding="utf-8"))["cases"][0]["id"] == "case000"

    # ... and a label map written by the library comes back as a NEW segmentation node on the volume's grid.
    predicted = folder.outputs / "prediction.nii.gz"
    write_volume(Volume(label, read.spacing, read.origin, read.direction), predicted)
    before = scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    labels = {"values": [0, 1, 2, 3], "names": ["background", *NAMES.values()],
              "colors": [[0, 0, 0]] + [[int(round(c * 255)) for c in COLORS[v]] for v in (1, 2, 3)]}
    node = scene_io.read_labelmap_as_segmentation(scene, predicted, volume, classes_from_labels(labels), "result")
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == before + 1
    assert node is not segmentation and node.GetName() == "result"
    back = classes_of(node, segment_ids(node))
    assert [c.name for c in back] == list(NAMES.values())
    for found, value in zip(back, (1, 2, 3)):
        np.testing.assert_allclose(found.color, COLORS[value], atol=1 / 255)
    for value, name in NAMES.items():
        np.testing.assert_array_equal(segment_array(node, name, volume), (label == value).astype(np.uint8))
    # the user's segmentation is untouched
    for value, name in NAMES.items():
        np.testing.assert_array_equal(segment_array(segmentation, name, volume), (label == value).astype(np.uint8))


def test_missing_class_becomes_an_empty_segment(tmp_path):
    scene, volume, _, image, label = labeled_scene(0.0)
    path = tmp_path / "only_lv.nrrd"
    only_lv = np.where(label == 1, 1, 0).astype(np.uint8)
    labelmap = add_volume(scene, only_lv, "lv", labelmap=True)
    volume.GetIJKToRASMatrix(matrix := vtk.vtkMatrix4x4())
    labelmap.SetIJKToRASMatrix(matrix)
    scene_io.write_volume(labelmap, path)
    classes = classes_from_labels({"values": [0, 1, 2], "names": ["background", "LV", "RV"],
                                   "colors": [[0, 0, 0], [255, 0, 0], [0, 0, 255]]})
    node = scene_io.read_labelmap_as_segmentation(scene, path, volume, classes, "partial")
    assert [c.name for c in classes_of(node, segment_ids(node))] == ["LV", "RV"]
    assert segment_array(node, "RV", volume).sum() == 0
    assert segment_array(node, "LV", volume).sum() == (label == 1).sum()


def test_overlapping_segments_later_one_wins_and_counts_are_reported(tmp_path):
    scene, volume, segmentation, _, label = labeled_scene(0.0)
    ids = segment_ids(segmentation)
    counts = scene_io.write_segments_as_labelmap(scene, segmentation, ids, volume, tmp_path / "l.nrrd")
    assert counts == {ids[i]: int((label == v).sum()) for i, v in enumerate((1, 2, 3))}
    nodes_before = scene_io.scene_node_ids(scene)
    scene_io.write_segments_as_labelmap(scene, segmentation, ids[:1], volume, tmp_path / "l1.nrrd")
    assert scene_io.scene_node_ids(scene) == nodes_before  # temporary nodes are gone
    assert np.array_equal(read_label(tmp_path / "l1.nrrd").array, (label == 1).astype(np.uint8))
