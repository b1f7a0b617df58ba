"""Brain pseudo-subjects and the brain-offline dataset builder, on a small synthetic template (no network)."""

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ContrastSegLib.data import brain_offline
from ContrastSegLib.data.brain_offline import (ATLAS_MEMBER, ATLAS_NAMES_MEMBER, MNI_MEMBER, PROVENANCE,
                                               TEMPLATE_MEMBER, build_brain_offline, ensure_brain_offline,
                                               fetch_packages)
from ContrastSegLib.data.discovery import discover
from ContrastSegLib.data.pseudo_subjects import PseudoSubjectConfig, make_pseudo_subject, subject_transform
from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.io import Volume, read_image, read_label

FLIPPED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # like the CAT12 template: i towards right, j anterior
CONFIG = PseudoSubjectConfig(spacing=(2.0, 2.0, 2.5))
STILL = PseudoSubjectConfig(spacing=(2.0, 2.0, 2.5), rotation_deg=0.0, scale=0.0, anisotropy=0.0, translation_mm=0.0)

# (atlas value, atlas name, class of the dataset, centre x y z mm (LPS), radius mm, template intensity)
BLOBS = (
    (47, "Right Hippocampus", 1, (-18, 6, -12), 6, 0.6), (48, "Left Hippocampus", 1, (18, 6, -12), 6, 0.6),
    (59, "Right Thalamus Proper", 2, (-7, 2, 4), 7, 0.65), (60, "Left Thalamus Proper", 2, (7, 2, 4), 7, 0.65),
    (36, "Right Caudate", 3, (-11, -15, 12), 5, 0.6), (37, "Left Caudate", 3, (11, -15, 12), 5, 0.6),
    (57, "Right Putamen", 4, (-22, -6, 2), 5, 0.7), (58, "Left Putamen", 4, (22, -6, 2), 5, 0.7),
    (51, "Right Lateral Ventricle", 5, (-5, -6, 18), 5, 0.2), (52, "Left Lateral Ventricle", 5, (5, -6, 18), 5, 0.2),
    (35, "Brain Stem", 0, (0, 12, -26), 6, 0.8),
)


def _points(shape_ijk, spacing, origin, direction):
    """Physical x, y, z (each (K, J, I)) of the voxels of a grid."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape_ijk[::-1]), indexing="ij")
    index = np.stack([i, j, k], -1) * np.asarray(spacing)
    xyz = np.asarray(origin) + index @ np.asarray(direction).reshape(3, 3).T
    return xyz[..., 0], xyz[..., 1], xyz[..., 2]


def _centred_origin(shape_ijk, spacing, direction):
    extent = (np.asarray(shape_ijk) - 1) * np.asarray(spacing)
    return tuple(-(np.asarray(direction).reshape(3, 3) @ extent) / 2)


def synthetic_brain(shape_ijk=(40, 40, 40), spacing=(2.0, 2.0, 2.0), direction=FLIPPED, values="atlas",
                    semi_axes=(34, 37, 32)):
    """(image, label) of an ellipsoid "brain" with bright rim, grey blobs and dark ventricles, painted in physical
    space so that grids of any geometry agree. ``values``: "atlas" (atlas values) or "class" (class values)."""
    origin = _centred_origin(shape_ijk, spacing, direction)
    x, y, z = _points(shape_ijk, spacing, origin, direction)
    radius = np.sqrt((x / semi_axes[0]) ** 2 + (y / semi_axes[1]) ** 2 + (z / semi_axes[2]) ** 2)
    image = np.where(radius < 1, np.where(radius > 0.85, 0.55, 0.9), 0.0)
    label = np.zeros(image.shape, np.uint8)
    for atlas_value, _, class_value, centre, size, level in BLOBS:
        inside = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 < size ** 2
        image[inside] = level
        label[inside] = atlas_value if values == "atlas" else class_value
    geometry = dict(spacing=tuple(float(s) for s in spacing), origin=tuple(float(o) for o in origin),
                    direction=direction)
    return Volume(image.astype(np.float32), source="synthetic template", **geometry), \
        Volume(label, source="synthetic atlas", **geometry)


@pytest.fixture(scope="module")
def template():
    return synthetic_brain(values="class")


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


def _on_grid(label: Volume, reference: Volume) -> np.ndarray:
    moved = sitk.Resample(label.to_sitk(), reference.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(moved)


# --- pseudo-subjects -------------------------------------------------------------------------------------------


def test_identical_seed_and_index_give_identical_subjects_and_other_indices_differ(template):
    image, label = template
    first = make_pseudo_subject(image, label, 3, seed=5, config=CONFIG)
    again = make_pseudo_subject(image, label, 3, seed=5, config=CONFIG)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.array, b.array)
        assert (a.spacing, a.origin, a.direction) == (b.spacing, b.origin, b.direction)
    for other in (make_pseudo_subject(image, label, 4, seed=5, config=CONFIG),
                  make_pseudo_subject(image, label, 3, seed=6, config=CONFIG)):
        assert other[0].array.shape != first[0].array.shape or not np.allclose(other[0].array, first[0].array)
        assert other[0].origin != first[0].origin


def test_subject_is_a_finite_float_image_with_an_integer_label_of_the_input_values_on_one_grid(template):
    image, label = template
    out_image, out_label = make_pseudo_subject(image, label, 0, seed=0, config=CONFIG)
    assert out_image.array.dtype == np.float32 and out_label.array.dtype == label.array.dtype
    assert np.isfinite(out_image.array).all() and out_image.array.min() >= 0
    assert out_image.same_grid(out_label)
    assert out_image.spacing == CONFIG.spacing and out_image.direction == (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    assert set(np.unique(out_label.array)) == set(np.unique(label.array))  # every structure kept whole
    brain = out_label.array == 2
    assert np.median(out_image.array[out_label.array == 5]) < 0.6 * np.median(out_image.array[brain])


def test_deformation_is_smooth_and_moderate(template):
    image, _ = template
    for index in range(4):
        transform, _, _ = subject_transform(image, index, seed=1, config=CONFIG)
        spacing = (2.0, 2.0, 2.0)
        shape = tuple(int(n) for n in np.floor((transform.box_high - transform.box_low) / 2.0)[::-1] + 1)
        mapped = transform.mapped_grid(transform.box_low, spacing, shape)  # (3, K, J, I) template x, y, z
        derivatives = np.stack([np.stack(np.gradient(mapped[row], 2.0)[::-1]) for row in range(3)])  # d/dx,dy,dz
        determinant = np.linalg.det(np.moveaxis(derivatives, (0, 1), (-2, -1)))
        assert determinant.min() > 0.5 and determinant.max() < 1.7, "folding or an extreme local volume change"
        points = _grid_points(transform.box_low, spacing, shape)
        affine = (transform.centre + transform.translation)[:, None, None, None] + np.einsum(
            "rc,c...->r...", transform.matrix, points - transform.centre[:, None, None, None])
        smooth = np.linalg.norm(mapped - affine, axis=0)
        assert 0.5 < smooth.max() < 4 * CONFIG.deform_mm, "the smooth part moves points by a few mm"


def _grid_points(origin, spacing, shape_kji):
    axes = [origin[a] + spacing[a] * np.arange(shape_kji[2 - a]) for a in range(3)]
    k, j, i = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return np.stack([i, j, k], 0)


def test_labels_follow_a_moderate_deformation_and_volumes_change_by_a_bounded_amount(template):
    image, label = template
    for index in range(4):
        _, still_label = make_pseudo_subject(image, label, index, seed=2, config=STILL)
        reference = _on_grid(label, still_label)
        dice = [_dice(still_label.array == value, reference == value) for value in range(1, 6)]
        assert min(dice) > 0.55 and max(dice) < 0.995, dice
        _, moved = make_pseudo_subject(image, label, index, seed=2, config=CONFIG)
        voxel = np.prod(moved.spacing)
        for value in range(1, 6):
            ratio = (moved.array == value).sum() * voxel / ((label.array == value).sum() * np.prod(label.spacing))
            assert 0.6 < ratio < 1.6, (value, ratio)


def test_field_of_view_and_intensity_vary_between_subjects(template):
    image, label = template
    subjects = [make_pseudo_subject(image, label, index, seed=0, config=CONFIG) for index in range(6)]
    assert len({volume.array.shape for volume, _ in subjects}) >= 4
    assert len({volume.array.shape[0] for volume, _ in subjects}) >= 3, "the slice range must vary"
    levels = [float(np.median(volume.array[seg.array == 2])) for volume, seg in subjects]
    assert max(levels) > 1.15 * min(levels)


def test_unlabeled_template_gives_an_image_and_no_label(template):
    image, _ = template
    out_image, out_label = make_pseudo_subject(image, None, 7, seed=0, config=CONFIG)
    assert out_label is None and np.isfinite(out_image.array).all() and out_image.array.max() > 0


def test_bad_inputs_are_refused_with_one_line_errors(template):
    image, label = template
    with pytest.raises(ContrastSegError, match="grid"):
        make_pseudo_subject(image, Volume(label.array, (1.0, 1.0, 1.0), label.origin, label.direction), 0, 0)
    with pytest.raises(ContrastSegError, match="integer"):
        make_pseudo_subject(image, label.with_array(label.array.astype(np.float32)), 0, 0)
    with pytest.raises(ContrastSegError, match="whole numbers"):
        make_pseudo_subject(image, label, -1, 0)
    with pytest.raises(ContrastSegError, match="spacing"):
        PseudoSubjectConfig(spacing=(1.0, 0.0, 1.0))


# --- the dataset builder, against fake wheels ------------------------------------------------------------------


def _write_nifti(volume: Volume, path: Path) -> None:
    sitk.WriteImage(volume.to_sitk(), str(path), useCompression=True)


@pytest.fixture(scope="module")
def wheel_cache(tmp_path_factory) -> Path:
    """A cache holding fake deepmriprep and nilearn wheels with the real internal paths: a template on one grid, an
    atlas on another (other spacing and direction), the atlas CSV and a second, unlabeled brain."""
    folder = tmp_path_factory.mktemp("wheels")
    cache = folder / "cache"
    cache.mkdir()
    template, _ = synthetic_brain((50, 58, 48), (1.6, 1.6, 1.6), FLIPPED)
    _, atlas = synthetic_brain((40, 46, 38), (2.0, 2.0, 2.0), (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    other, _ = synthetic_brain((42, 48, 40), (2.0, 2.0, 2.0), FLIPPED, semi_axes=(31, 39, 30))
    for volume, name in ((template, "template.nii.gz"), (atlas, "atlas.nii.gz"), (other, "mni.nii.gz")):
        _write_nifti(volume, folder / name)
    rows = [";ROIid;ROIname;Vgm;Vwm;Vcsf"] + [f"{n};{value};{name};1;0;0" for n, (value, name, *_) in
                                              enumerate(BLOBS)] + ["99;170;Left PHG parahippocampal gyrus;1;0;0"]
    with zipfile.ZipFile(cache / "deepmriprep-0.3.0-py3-none-any.whl", "w") as archive:
        archive.write(folder / "template.nii.gz", TEMPLATE_MEMBER)
        archive.write(folder / "atlas.nii.gz", ATLAS_MEMBER)
        archive.writestr(ATLAS_NAMES_MEMBER, "\n".join(rows) + "\n")
    with zipfile.ZipFile(cache / "nilearn-0.14.1-py3-none-any.whl", "w") as archive:
        archive.write(folder / "mni.nii.gz", MNI_MEMBER)
    return cache


@pytest.fixture
def no_pip(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pip must not run when the wheels are in the cache")
    monkeypatch.setattr(brain_offline.subprocess, "run", refuse)


def test_build_writes_a_discoverable_msd_folder_that_says_it_derives_from_one_template(tmp_path, wheel_cache, no_pip):
    out = build_brain_offline(tmp_path / "brain", subjects=3, seed=1, cache=wheel_cache, unlabeled=1, config=CONFIG)
    dataset = discover(out)
    assert dataset.layout == "msd"
    assert [case.id for case in dataset.labeled] == ["brain_000", "brain_001", "brain_002"]
    assert sorted(case.id for case in dataset.unlabeled) == ["mni152_pseudo_000", "mni152_t1"]
    assert dataset.label_names == {0: "background", 1: "hippocampus", 2: "thalamus", 3: "caudate", 4: "putamen",
                                   5: "lateral ventricles"}
    assert set(dataset.label_colors) == {1, 2, 3, 4, 5}
    for case in dataset.labeled:
        image = read_image(case.image)
        label = read_label(case.label, image=image, allowed=set(dataset.label_names))
        assert set(np.unique(label.array)) == {0, 1, 2, 3, 4, 5}  # left and right merged, brain stem dropped
        assert image.spacing == CONFIG.spacing
    for case in dataset.unlabeled:
        assert np.isfinite(read_image(case.image).array).all()
    provenance = json.loads((out / PROVENANCE).read_text(encoding="utf-8"))
    assert "derive from ONE template" in provenance["statement"]
    assert "derive from ONE template" in (out / "README.md").read_text(encoding="utf-8")
    assert "ONE template" in json.loads((out / "dataset.json").read_text(encoding="utf-8"))["description"]
    assert provenance["structures"]["1"]["atlas_names"] == ["Right Hippocampus", "Left Hippocampus"]
    assert provenance["structures"]["5"]["atlas_values"] == [51, 52]
    assert [p["name"] for p in provenance["packages"]] == ["deepmriprep", "nilearn"]
    assert all(p["licence"] and len(p["sha256"]) == 64 for p in provenance["packages"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder left behind"


def test_ensure_reuses_a_matching_folder_and_rebuilds_on_other_parameters(tmp_path, wheel_cache, no_pip, monkeypatch):
    root = tmp_path / "brain"
    ensure_brain_offline(root, subjects=2, seed=0, cache=wheel_cache, unlabeled=0, config=CONFIG)
    stamp = (root / PROVENANCE).stat().st_mtime_ns

    def no_build(*args, **kwargs):
        raise AssertionError("a matching folder must be reused")
    with monkeypatch.context() as patch:
        patch.setattr(brain_offline, "build_brain_offline", no_build)
        assert ensure_brain_offline(root, subjects=2, seed=0, cache=wheel_cache, unlabeled=0, config=CONFIG) == root
    assert (root / PROVENANCE).stat().st_mtime_ns == stamp

    ensure_brain_offline(root, subjects=3, seed=0, cache=wheel_cache, unlabeled=0, config=CONFIG)
    assert len(discover(root).labeled) == 3
    assert json.loads((root / PROVENANCE).read_text(encoding="utf-8"))["parameters"]["subjects"] == 3

    (root / "imagesTr" / "brain_001.nii.gz").unlink()  # incomplete: rebuilt
    ensure_brain_offline(root, subjects=3, seed=0, cache=wheel_cache, unlabeled=0, config=CONFIG)
    assert (root / "imagesTr" / "brain_001.nii.gz").is_file()


def test_ensure_refuses_a_folder_it_did_not_build(tmp_path, wheel_cache, no_pip):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ContrastSegError, match="not a brain-offline folder"):
        ensure_brain_offline(foreign, subjects=2, cache=wheel_cache, config=CONFIG)
    assert (foreign / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_pip_failure_gives_one_line_error_and_writes_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_pip(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, "", "Looking in indexes: https://pypi.org/simple\nERROR: "
                                           "No matching distribution found for deepmriprep==0.3.0\n")
    monkeypatch.setattr(brain_offline.subprocess, "run", failing_pip)
    out, cache = tmp_path / "brain", tmp_path / "cache"
    with pytest.raises(ContrastSegError) as caught:
        build_brain_offline(out, subjects=2, cache=cache)
    message = str(caught.value)
    assert "\n" not in message and "deepmriprep==0.3.0" in message and "No matching distribution" in message
    assert "copy deepmriprep-0.3.0-" in message and str(cache) in message
    assert calls and calls[0][1:4] == ["-m", "pip", "download"] and "--no-deps" in calls[0]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not list(cache.iterdir()), "no download leftovers in the cache"


def test_fetch_moves_a_downloaded_wheel_into_the_cache_and_skips_cached_ones(tmp_path, wheel_cache, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "nilearn-0.14.1-py3-none-any.whl").write_bytes((wheel_cache / "nilearn-0.14.1-py3-none-any.whl")
                                                           .read_bytes())
    downloaded = []

    def fake_pip(command, **kwargs):
        downloaded.append(command[-1])
        destination = Path(command[command.index("-d") + 1])
        (destination / "deepmriprep-0.3.0-py3-none-any.whl").write_bytes(
            (wheel_cache / "deepmriprep-0.3.0-py3-none-any.whl").read_bytes())
        return subprocess.CompletedProcess(command, 0, "Saved", "")
    monkeypatch.setattr(brain_offline.subprocess, "run", fake_pip)
    wheels = fetch_packages(cache)
    assert downloaded == ["deepmriprep==0.3.0"]
    assert wheels == {"deepmriprep": cache / "deepmriprep-0.3.0-py3-none-any.whl",
                      "nilearn": cache / "nilearn-0.14.1-py3-none-any.whl"}
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in wheels.values())


def test_a_wheel_without_the_expected_files_is_named_in_the_error(tmp_path, no_pip):
    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("deepmriprep-0.3.0-py3-none-any.whl", "nilearn-0.14.1-py3-none-any.whl"):
        with zipfile.ZipFile(cache / name, "w") as archive:
            archive.writestr("README", "empty")
    with pytest.raises(ContrastSegError, match="deepmriprep-0.3.0-py3-none-any.whl: has no "):
        build_brain_offline(tmp_path / "brain", subjects=1, cache=cache)
    assert not (tmp_path / "brain").exists()
