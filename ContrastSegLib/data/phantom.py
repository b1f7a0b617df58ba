"""Procedural cardiac short-axis phantom: the embedded default data of the demo and the tests.

Each subject is an MR-like stack of short-axis slices from base to apex: a bright left-ventricle cavity (label 1)
inside a dark myocardial ring (label 2) with a bright right-ventricle crescent (label 3) at its septal side, set in a
body with fat, lungs, liver and aorta. Geometry, grid, tissue intensities, bias field, noise and blur vary per
subject; everything is computed from ``(seed, index)``, so no data files are shipped. A *dark-blood* subject is the
same anatomy acquired with another contrast (blood dark, myocardium brighter than the body's soft tissue), the kind
of change between sequences or sites a model trained on one contrast does not survive. A *thin-structure* subject
adds a fourth label: an oesophagus-like tube (label 4, ~6 × 4 mm across, through every slice, behind the heart and
the aorta, half as bright as soft tissue), about 1–2 % of the labeled voxels beside the three large structures: the
small structure a model can leave out without its mean Dice showing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import ContrastSegError
from ..io.volume import Volume
from ..io.write import atomic_path, write_volume
from ..io.write_file import write_text

LABEL_NAMES: dict[int, str] = {0: "background", 1: "LV", 2: "myocardium", 3: "RV"}
LABEL_COLORS: dict[int, tuple[int, int, int]] = {
    0: (0, 0, 0),
    1: (220, 50, 47),
    2: (60, 180, 75),
    3: (50, 110, 230),
}
THIN_LABEL, THIN_NAME, THIN_COLOR = 4, "oesophagus", (230, 160, 40)  # the thin structure, when asked for

# Mean tissue intensities (MR-like bright-blood scale); each is scaled per subject.
TISSUE_INTENSITY = {
    "air": 5.0, "soft_tissue": 260.0, "fat": 720.0, "lung": 35.0, "liver": 420.0,
    "blood": 820.0, "myocardium": 210.0,
}
DARK_BLOOD_INTENSITY = {**TISSUE_INTENSITY, "blood": 60.0, "myocardium": 480.0}
RV_DIRECTION_DEG = 200.0  # the RV lies left of the LV and slightly anterior (up) in the image


def make_phantom(index: int, seed: int = 0, dark_blood: bool = False,
                 thin_structure: bool = False) -> tuple[Volume, Volume]:
    """(image float32, label uint8) of subject ``index`` of the phantom family ``seed``, with the dark-blood
    contrast when asked (same anatomy and noise draws), with the thin structure (label 4) when asked (the same
    anatomy besides it); identical for identical args. Both arrays are (K slices, J rows, I cols), slice 0 at the
    base, slice K-1 at the apex."""
    if int(index) < 0 or int(seed) < 0:
        raise ContrastSegError(f"phantom: index {index} and seed {seed} must be non-negative integers")
    rng = np.random.default_rng([int(seed), int(index)])
    n_slices, n_rows, n_cols = int(rng.integers(8, 13)), int(rng.integers(72, 89)), int(rng.integers(72, 89))
    pixel_mm = round(float(rng.uniform(1.6, 2.0)), 3)
    slice_mm = round(float(rng.uniform(8.0, 10.0)), 3)
    spacing = (pixel_mm, pixel_mm, slice_mm)
    origin = tuple(round(float(v), 1) for v in (
        -0.5 * n_cols * pixel_mm + rng.uniform(-20, 20),
        -0.5 * n_rows * pixel_mm + rng.uniform(-20, 20),
        rng.uniform(-60, 20),
    ))

    # Physical in-plane coordinates (mm) relative to the field-of-view centre, x along columns, y along rows (down).
    x = ((np.arange(n_cols) - 0.5 * (n_cols - 1)) * pixel_mm)[None, None, :]
    y = ((np.arange(n_rows) - 0.5 * (n_rows - 1)) * pixel_mm)[None, :, None]
    depth = np.linspace(0.0, 1.0, n_slices)[:, None, None]  # 0 base .. 1 apex, shape (K, 1, 1)

    tissue, label = _anatomy(rng, x, y, depth, DARK_BLOOD_INTENSITY if dark_blood else TISSUE_INTENSITY,
                             thin_structure)
    image = _acquire(rng, tissue, depth, x, y)
    geometry = dict(spacing=spacing, origin=origin, direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    name = f"phantom_{index:03d} (seed {seed})"
    return (Volume(image.astype(np.float32), source=name, **geometry),
            Volume(label.astype(np.uint8), source=name + " label", **geometry))


def _anatomy(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, depth: np.ndarray,
             intensity: dict[str, float], thin_structure: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free intensities and labels, both (K, J, I), from subject parameters drawn from ``rng`` (the thin
    structure's draws come last, so the rest of the anatomy is the same with or without it)."""
    shape = np.broadcast_shapes(x.shape, y.shape, depth.shape)
    level = {name: value * rng.uniform(0.8, 1.2) for name, value in intensity.items()}
    gain = rng.uniform(0.75, 1.15)
    tissue = np.full(shape, level["air"], dtype=np.float64)
    label = np.zeros(shape, dtype=np.uint8)

    def paint(mask: np.ndarray, value: float) -> None:
        tissue[np.broadcast_to(mask, shape)] = value

    # Body, subcutaneous fat, lungs, liver (inferior slices) and descending aorta.
    body_x, body_y = rng.uniform(-5, 5, size=2)
    body_a, body_b = 54.0 * rng.uniform(0.92, 1.08), 42.0 * rng.uniform(0.92, 1.08)
    body_radius = _ellipse_radius(x - body_x, y - body_y, body_a, body_b)
    paint(body_radius < 1.0, level["fat"])
    paint(body_radius < rng.uniform(0.86, 0.92), level["soft_tissue"])

    def organ(centre_x: float, centre_y: float, semi_a: float, semi_b: float, jitter: float = 3.0) -> np.ndarray:
        dx, dy = rng.uniform(-jitter, jitter, size=2)
        scale = rng.uniform(0.9, 1.1)
        return _ellipse_radius(x - body_x - centre_x - dx, y - body_y - centre_y - dy, semi_a * scale, semi_b * scale)

    for lung in (organ(-33.0, -8.0, 14.0, 22.0), organ(36.0, -6.0, 10.0, 20.0)):
        paint(lung < 1.0, level["lung"])
    liver_extent = np.clip((depth - 0.25) / 0.75, 0.0, 1.0) ** 0.5  # absent at the base, largest at the apex
    paint(organ(-18.0, 26.0, 30.0, 14.0) < liver_extent, level["liver"])
    paint(organ(4.0, 28.0, 6.0, 6.0, jitter=1.5) < 1.0, level["blood"])

    # Heart in its own rotated frame (u towards the RV, v across), centre drifting slightly from base to apex.
    size = rng.uniform(0.85, 1.15)
    cavity_mm, wall_mm, rv_depth_mm = 17.0 * size, 7.0 * size * rng.uniform(0.8, 1.2), 13.0 * size
    ellipticity = rng.uniform(-0.12, 0.12)
    rv_end = rng.uniform(0.7, 0.8)  # relative depth at which the RV has vanished
    angle = np.deg2rad(RV_DIRECTION_DEG + rng.uniform(-20, 20))
    fat_angle, fat_mm = rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 3.5)
    centre_x = body_x + 10.0 + rng.uniform(-4, 4) + depth * rng.uniform(-4, 4)
    centre_y = body_y - 4.0 + rng.uniform(-4, 4) + depth * rng.uniform(-4, 4)
    u = (x - centre_x) * np.cos(angle) + (y - centre_y) * np.sin(angle)
    v = -(x - centre_x) * np.sin(angle) + (y - centre_y) * np.cos(angle)
    lv_radius = np.hypot(u / (1.0 + ellipticity), v / (1.0 - ellipticity))

    cavity = cavity_mm * np.clip(1.0 - depth, 0.0, 1.0) ** 0.5  # (K, 1, 1), zero at the apex
    epicardium = cavity + wall_mm * (1.0 - 0.35 * depth)
    rv_depth = rv_depth_mm * np.clip(1.0 - depth / rv_end, 0.0, 1.0) ** 0.5
    rv_half_length = 0.75 * (epicardium + rv_depth)  # along u, towards the RV
    rv_half_width = 0.8 * epicardium + rv_depth  # along v
    rv_centre = epicardium + rv_depth - rv_half_length
    rv_wall_mm = 2.5
    rv_radius = _ellipse_radius(u - rv_centre, v, rv_half_length, rv_half_width)
    rv_outer = _ellipse_radius(u - rv_centre, v, rv_half_length + rv_wall_mm, rv_half_width + rv_wall_mm)
    has_rv = rv_depth > 0.5
    outside_lv = lv_radius >= epicardium + 0.5
    rv_wall = (rv_outer < 1.0) & outside_lv & has_rv
    rv = (rv_radius < 1.0) & outside_lv & has_rv
    myocardium = lv_radius < epicardium
    lv = lv_radius < cavity
    epicardial_fat = lv_radius < epicardium + fat_mm
    fat_weight = 0.45 + 0.35 * np.cos(np.arctan2(v, u) - fat_angle)  # uneven fat around the heart

    tissue[...] = np.where(np.broadcast_to(epicardial_fat, shape), fat_weight * level["fat"]
                           + (1.0 - fat_weight) * level["soft_tissue"], tissue)
    paint(rv_wall, level["myocardium"])
    paint(rv, 0.9 * level["blood"])
    paint(myocardium, level["myocardium"])
    paint(lv, level["blood"])
    for mask, value in ((rv, 3), (myocardium, 2), (lv, 1)):
        label[np.broadcast_to(mask, shape)] = value
    if thin_structure:  # behind the heart, left of the aorta; drifting a little from base to apex
        drift_x, drift_y = rng.uniform(-2, 2, size=2)
        tube = _ellipse_radius(x - body_x + 10.0 - rng.uniform(-1, 1) - depth * drift_x,
                               y - body_y - 32.0 - rng.uniform(-1, 1) - depth * drift_y,
                               3.2 * rng.uniform(0.85, 1.15), 2.2 * rng.uniform(0.85, 1.15)) < 1.0
        tube = np.broadcast_to(tube, shape) & (label == 0)  # never over the heart
        paint(tube, 0.5 * level["soft_tissue"])
        label[np.broadcast_to(tube, shape)] = THIN_LABEL
    return tissue * gain, label


def _acquire(rng: np.random.Generator, tissue: np.ndarray, depth: np.ndarray, x: np.ndarray, y: np.ndarray
             ) -> np.ndarray:
    """Apply a smooth multiplicative bias field, in-plane blur and Rician noise to ``tissue`` (K, J, I)."""
    unit_x, unit_y, unit_z = x / np.abs(x).max(), y / np.abs(y).max(), 2.0 * depth - 1.0
    terms = [unit_x, unit_y, unit_z, unit_x ** 2, unit_y ** 2, unit_x * unit_y, unit_x * unit_z, unit_y * unit_z]
    coefficients = rng.normal(size=len(terms))
    polynomial = sum(c * term for c, term in zip(coefficients, terms))
    polynomial = polynomial - polynomial.mean()
    bias = 1.0 + rng.uniform(0.1, 0.2) * polynomial / np.abs(polynomial).max()
    blurred = _blur_in_plane(tissue * bias, sigma_voxels=rng.uniform(0.5, 0.9))
    noise_sigma = rng.uniform(8.0, 25.0)
    real = blurred + rng.normal(scale=noise_sigma, size=blurred.shape)
    imaginary = rng.normal(scale=noise_sigma, size=blurred.shape)
    return np.hypot(real, imaginary)


def _blur_in_plane(array: np.ndarray, sigma_voxels: float) -> np.ndarray:
    """Separable Gaussian blur along rows and columns of ``array`` (K, J, I), edges replicated."""
    reach = int(np.ceil(3.0 * sigma_voxels))
    offsets = np.arange(-reach, reach + 1)
    weights = np.exp(-0.5 * (offsets / sigma_voxels) ** 2)
    weights /= weights.sum()
    for axis in (1, 2):
        padding = [(0, 0)] * array.ndim
        padding[axis] = (reach, reach)
        padded = np.pad(array, padding, mode="edge")
        length = array.shape[axis]
        array = sum(w * np.take(padded, np.arange(o + reach, o + reach + length), axis=axis)
                    for o, w in zip(offsets, weights))
    return array


def _ellipse_radius(dx: np.ndarray, dy: np.ndarray, semi_x, semi_y) -> np.ndarray:
    """Normalised elliptical radius: < 1 inside the axis-aligned ellipse with semi-axes ``semi_x``, ``semi_y``."""
    return np.hypot(dx / semi_x, dy / semi_y)


def write_phantom_dataset(out_dir: str | os.PathLike, n: int, seed: int = 0, overwrite: bool = False,
                          dark_blood_every: int = 0, thin_structure: bool = False) -> Path:
    """Write n subjects as a Medical Segmentation Decathlon folder; return out_dir. ``dark_blood_every`` k > 0:
    subjects k−1, 2k−1, ... have the dark-blood contrast (listed in dataset.json under ``contrastseg_dark_blood``);
    ``thin_structure``: every subject has the thin structure (label 4).

    Layout: ``dataset.json``, ``imagesTr/phantom_NNN.nii.gz`` (float32), ``labelsTr/phantom_NNN.nii.gz`` (uint8).
    The folder is built in a hidden temporary folder beside ``out_dir`` and renamed into place as a whole.
    """
    out_dir = Path(out_dir)
    if int(n) < 1:
        raise ContrastSegError(f"{out_dir}: phantom dataset needs at least 1 subject (got n={n}); pass n >= 1")
    if out_dir.exists() and not out_dir.is_dir():
        raise ContrastSegError(f"{out_dir}: exists and is not a folder; choose another output folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ContrastSegError(f"{out_dir}: output folder is not empty; pass --overwrite or choose another folder")
    cases = [f"phantom_{index:03d}" for index in range(int(n))]
    every = int(dark_blood_every)
    dark = [index for index in range(int(n)) if every > 0 and index % every == every - 1]
    names = {**LABEL_NAMES, THIN_LABEL: THIN_NAME} if thin_structure else LABEL_NAMES
    colors = {**LABEL_COLORS, THIN_LABEL: THIN_COLOR} if thin_structure else LABEL_COLORS
    with atomic_path(out_dir, overwrite=True) as staging:
        staging.mkdir()
        for index, case in enumerate(cases):
            image, label = make_phantom(index, seed, dark_blood=index in dark, thin_structure=thin_structure)
            write_volume(image, staging / "imagesTr" / f"{case}.nii.gz")
            write_volume(label, staging / "labelsTr" / f"{case}.nii.gz", label=True)
        description = {
            "name": "ContrastSeg phantom",
            "description": "Procedural cardiac short-axis MR-like phantom: LV cavity, myocardium and RV cavity "
                           "in a body with fat, lungs, liver and aorta; per-subject geometry, intensities, "
                           "bias field, blur and Rician noise.",
            "reference": f"procedural, seed {seed}",
            "licence": "CC0",
            "tensorImageSize": "3D",
            "modality": {"0": "MR"},
            "labels": {str(value): name for value, name in names.items()},
            "contrastseg_colors": {str(value): list(rgb) for value, rgb in colors.items() if value != 0},
            "contrastseg_dark_blood": [cases[index] for index in dark],
            "numTraining": len(cases),
            "numTest": 0,
            "training": [{"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"}
                         for case in cases],
            "test": [],
        }
        write_text(json.dumps(description, indent=2) + "\n", staging / "dataset.json")
    return out_dir
