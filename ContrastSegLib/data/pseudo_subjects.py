"""Labeled pseudo-subjects from one template: random smooth deformation plus acquisition effects.

One brain template with its atlas labels becomes many "subjects" only through what is simulated here, so every such
subject shares the template's anatomy up to a moderate deformation; say so wherever results on them are reported.

Subject ``index`` of family ``seed`` (everything below is drawn from ``numpy.random.default_rng([seed, index])``):

1. a small random affine (rotation about each axis, isotropic and per-axis scale, translation) about the centre of
   the template's foreground, composed with a smooth random deformation: a cubic B-spline free-form deformation whose
   control points (``deform_spacing_mm`` apart) move by Gaussian offsets of ``deform_mm``;
2. resampling of the image (linear) and of the label map (nearest neighbour) with that one mapping onto an axial
   grid with identity direction and ``spacing`` (default 1.5 × 1.5 mm in plane, 2 mm between slices);
3. a varying field of view: random in-plane margins around the brain, and a random cut of the slice range between
   the labeled structures (always kept whole) and the brain's top and bottom, so subjects differ in shape;
4. intensities: gamma, a smooth multiplicative bias field, a random global scale, Gaussian blur and Rician noise.

Pure NumPy + SimpleITK, no file or network access; about 1.5 s per subject on one core at the default size
(the CAT12 template on its 1 mm atlas grid, output 1.5 × 1.5 × 2 mm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import SimpleITK as sitk

from ..errors import ContrastSegError
from ..io.volume import Volume

IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class PseudoSubjectConfig:
    """How far pseudo-subjects stray from the template. Lengths in mm, ranges as (low, high)."""

    spacing: tuple[float, float, float] = (1.5, 1.5, 2.0)  # (i, j, k) of the output grid; axial slices along k
    rotation_deg: float = 8.0  # rotation about each axis drawn from ±rotation_deg
    scale: float = 0.06  # isotropic scale drawn from 1 ± scale
    anisotropy: float = 0.04  # extra scale per axis drawn from 1 ± anisotropy
    translation_mm: float = 5.0  # per axis, ± this
    deform_spacing_mm: float = 30.0  # control-point spacing of the smooth deformation
    deform_mm: float = 2.5  # standard deviation of each control-point offset component
    gamma: tuple[float, float] = (0.8, 1.25)  # intensity ** gamma (contrast)
    bias: float = 0.15  # standard deviation of the log bias field's control values
    bias_spacing_mm: float = 70.0
    intensity: tuple[float, float] = (600.0, 1400.0)  # level of the template's bright tissue (99th percentile)
    blur_mm: tuple[float, float] = (0.0, 0.8)  # Gaussian sigma in plane; through plane scaled by the slice ratio
    noise: tuple[float, float] = (0.01, 0.04)  # Rician sigma as a fraction of the intensity level
    fov_margin_mm: tuple[float, float] = (-4.0, 20.0)  # in-plane margin beyond the brain on each side
    fov_cut: float = 0.5  # up to this fraction of the reach from the labels to the brain's top/bottom is cut away
    foreground: float = 0.05  # foreground = intensity above this fraction of the template's 99th percentile

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            values = value if isinstance(value, tuple) else (value,)
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise ContrastSegError(f"pseudo-subject config: {field.name}={value!r} must hold finite numbers")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ContrastSegError(f"pseudo-subject config: spacing {self.spacing} must be 3 positive mm values")
        if self.deform_spacing_mm <= 0 or self.bias_spacing_mm <= 0:
            raise ContrastSegError("pseudo-subject config: deform_spacing_mm and bias_spacing_mm must be > 0")
        ranges = ("gamma", "intensity", "blur_mm", "noise", "fov_margin_mm")
        for name in ranges:
            low, high = getattr(self, name)
            if low > high:
                raise ContrastSegError(f"pseudo-subject config: {name} range {(low, high)} has low > high")
        if self.gamma[0] <= 0 or self.intensity[0] <= 0 or self.blur_mm[0] < 0 or self.noise[0] < 0:
            raise ContrastSegError("pseudo-subject config: gamma and intensity must be > 0, blur_mm and noise ≥ 0")
        negative = [name for name in ("rotation_deg", "scale", "anisotropy", "translation_mm", "deform_mm", "bias")
                    if getattr(self, name) < 0]
        if negative or not 0 <= self.fov_cut <= 1 or not 0 < self.foreground < 1 or self.scale + self.anisotropy >= 1:
            raise ContrastSegError(f"pseudo-subject config: {', '.join(negative) or 'a value'} out of range "
                                   "(amplitudes ≥ 0, fov_cut in 0..1, foreground in (0, 1), scale + anisotropy < 1)")


DEFAULT_CONFIG = PseudoSubjectConfig()


@dataclass(frozen=True)
class SubjectTransform:
    """Output point p (mm, LPS) -> template point ``centre + matrix @ (p - centre) + translation + D(p)``.

    ``D`` is a cubic B-spline displacement with control points on an axis-aligned grid starting at
    ``control_origin`` (x, y, z), ``control_spacing`` mm apart; ``coefficients`` has shape (3, nz, ny, nx).
    ``box_low``/``box_high`` bound the output-space region (x, y, z mm) that holds the deformed template."""

    centre: np.ndarray
    matrix: np.ndarray
    translation: np.ndarray
    control_origin: np.ndarray
    control_spacing: float
    coefficients: np.ndarray
    box_low: np.ndarray
    box_high: np.ndarray

    def mapped_grid(self, origin, spacing, shape_kji) -> np.ndarray:
        """Template points (3, K, J, I) of the identity-direction grid ``origin``/``spacing`` (i, j, k) and shape."""
        axes = [origin[a] + spacing[a] * np.arange(shape_kji[2 - a]) for a in range(3)]  # x, y, z coordinates
        points = np.empty((3,) + tuple(shape_kji))
        smooth = bspline_on_grid(self.coefficients, self.control_origin, self.control_spacing, axes)
        relative = [axes[a] - self.centre[a] for a in range(3)]
        shaped = [relative[0][None, None, :], relative[1][None, :, None], relative[2][:, None, None]]
        for row in range(3):
            points[row] = (self.centre[row] + self.translation[row] + smooth[row]
                           + sum(self.matrix[row, col] * shaped[col] for col in range(3)))
        return points


def bspline_on_grid(coefficients: np.ndarray, control_origin, control_spacing: float, axes) -> np.ndarray:
    """Cubic B-spline sum of ``coefficients`` (C, nz, ny, nx) at the grid of coordinates ``axes`` (x, y, z arrays);
    returns (C, len(z), len(y), len(x)). Separable: three small matrix products."""
    weights = [_bspline_weights(axes[a], control_origin[a], control_spacing, coefficients.shape[3 - a])
               for a in range(3)]
    out = np.einsum("cabd,xd->cabx", coefficients, weights[0])
    out = np.einsum("cabx,yb->cayx", out, weights[1])
    return np.einsum("cayx,za->czyx", out, weights[2])


def _bspline_weights(coordinates: np.ndarray, start: float, step: float, count: int) -> np.ndarray:
    u = (np.asarray(coordinates, dtype=np.float64) - start) / step
    base = np.floor(u).astype(int)
    t = u - base
    basis = np.stack([(1 - t) ** 3, 3 * t ** 3 - 6 * t ** 2 + 4, -3 * t ** 3 + 3 * t ** 2 + 3 * t + 1, t ** 3]) / 6
    matrix = np.zeros((u.size, count))
    for offset in range(4):
        columns = base - 1 + offset
        if columns.min() < 0 or columns.max() >= count:
            raise ValueError("grid point outside the B-spline control grid")
        matrix[np.arange(u.size), columns] = basis[offset]
    return matrix


def _control_grid(low: np.ndarray, high: np.ndarray, step: float) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Origin (x, y, z) and (nz, ny, nx) of a control grid whose cubic support covers the box [low, high]."""
    counts = [int(math.floor((high[a] - low[a]) / step)) + 6 for a in range(3)]  # one spare point per side
    return low - 2 * step, (counts[2], counts[1], counts[0])


def _rotation(angles: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    about_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    about_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return about_z @ about_y @ about_x


def _physical_box(volume: Volume, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) x, y, z mm of the box around the voxels of ``mask`` (all 8 index-box corners mapped)."""
    found = np.argwhere(mask)
    low, high = found.min(0)[::-1], found.max(0)[::-1]  # i, j, k
    corners = np.array([[(low, high)[bit >> a & 1][a] for a in range(3)] for bit in range(8)], dtype=np.float64)
    direction = np.asarray(volume.direction).reshape(3, 3)
    points = np.asarray(volume.origin) + (corners * np.asarray(volume.spacing)) @ direction.T
    return points.min(0), points.max(0)


def _check_inputs(image: Volume, label: Volume | None, index: int, seed: int) -> None:
    if isinstance(index, bool) or isinstance(seed, bool) or int(index) != index or int(seed) != seed \
            or index < 0 or seed < 0:
        raise ContrastSegError(f"pseudo-subject: index {index!r} and seed {seed!r} must be whole numbers ≥ 0")
    if image.array.ndim != 3 or min(image.array.shape) < 2:
        raise ContrastSegError(f"{image.name}: a template must be a 3-D volume, got shape {image.array.shape}")
    if not np.isfinite(image.array).all():
        raise ContrastSegError(f"{image.name}: template holds NaN or Inf voxels; replace them and retry")
    if label is not None:
        if not label.same_grid(image):
            raise ContrastSegError(f"{label.name}: the label map is not on the template's grid; resample it onto "
                                   f"{image.name} first")
        if not (np.issubdtype(label.array.dtype, np.integer) or label.array.dtype == bool):
            raise ContrastSegError(f"{label.name}: a label map needs an integer voxel type, got {label.array.dtype}")


def subject_transform(image: Volume, index: int, seed: int, config: PseudoSubjectConfig = DEFAULT_CONFIG
                      ) -> tuple[SubjectTransform, np.random.Generator, float]:
    """The mapping of subject ``index`` (seed ``seed``), the generator positioned after drawing it (the intensity
    draws follow from it) and the template's reference intensity (99th percentile of its foreground)."""
    _check_inputs(image, None, index, seed)
    rng = np.random.default_rng([int(seed), int(index)])
    positive = image.array[image.array > 0]
    if positive.size == 0:
        raise ContrastSegError(f"{image.name}: template has no voxel above 0; pass a brain image")
    reference = float(np.percentile(positive, 99))
    low, high = _physical_box(image, image.array > config.foreground * reference)
    centre = 0.5 * (low + high)
    angles = np.radians(rng.uniform(-config.rotation_deg, config.rotation_deg, 3))
    scales = rng.uniform(1 - config.scale, 1 + config.scale) * rng.uniform(1 - config.anisotropy,
                                                                             1 + config.anisotropy, 3)
    matrix = _rotation(angles) @ np.diag(scales)
    translation = rng.uniform(-config.translation_mm, config.translation_mm, 3)
    box_low, box_high = _output_box(low, high, centre, matrix, translation, config)
    control_origin, counts = _control_grid(box_low, box_high + np.asarray(config.spacing), config.deform_spacing_mm)
    coefficients = rng.normal(0.0, config.deform_mm, (3,) + counts)
    transform = SubjectTransform(centre, matrix, translation, control_origin, float(config.deform_spacing_mm),
                                 coefficients, box_low, box_high)
    return transform, rng, reference


def _output_box(low, high, centre, matrix, translation, config) -> tuple[np.ndarray, np.ndarray]:
    """Output-space box (x, y, z mm) that holds the whole template foreground after the affine, with room for the
    smooth deformation and the widest field-of-view margin."""
    corners = np.array([[(low, high)[bit >> a & 1][a] for a in range(3)] for bit in range(8)])
    inverse = np.linalg.inv(matrix)
    mapped = centre + (corners - centre - translation) @ inverse.T
    pad = 3.0 * config.deform_mm + max(config.fov_margin_mm[1], 0.0) + 2.0 * max(config.spacing)
    return mapped.min(0) - pad, mapped.max(0) + pad


def make_pseudo_subject(image: Volume, label: Volume | None, index: int, seed: int,
                        config: PseudoSubjectConfig = DEFAULT_CONFIG) -> tuple[Volume, Volume | None]:
    """(image float32, label) of pseudo-subject ``index`` of family ``seed`` made from the template ``image`` and
    its ``label`` map (same grid, integer values; None for an unlabeled template, then None is returned as label).

    Identical arguments give identical volumes. The output grid has identity direction, ``config.spacing`` and a
    per-subject shape and origin; the label holds a subset of the input label values, with the input's dtype.
    """
    _check_inputs(image, label, index, seed)
    transform, rng, reference = subject_transform(image, index, seed, config)
    spacing = np.asarray(config.spacing, dtype=np.float64)
    box_low, box_high = transform.box_low, transform.box_high
    shape_ijk = np.floor((box_high - box_low) / spacing).astype(int) + 1
    shape_kji = tuple(int(n) for n in shape_ijk[::-1])
    mapped = transform.mapped_grid(box_low, spacing, shape_kji)
    grid = (tuple(float(s) for s in spacing), tuple(float(o) for o in box_low))
    warp = _displacement_transform(mapped, grid)
    del mapped
    warped = _resample(image.to_sitk(), warp, grid, shape_kji, sitk.sitkLinear, sitk.sitkFloat32)
    warped_label = None
    if label is not None:
        warped_label = _resample(label.with_array(label.array.astype(np.uint16)).to_sitk(), warp, grid, shape_kji,
                                 sitk.sitkNearestNeighbor, sitk.sitkUInt16)

    foreground = warped > config.foreground * reference
    if not foreground.any():
        raise ContrastSegError(f"{image.name}: subject {index} has no foreground after deformation; "
                               "reduce the deformation amplitudes")
    window = _field_of_view(rng, foreground, None if warped_label is None else warped_label > 0, spacing, config)
    cropped = _crop(warped, window)
    origin = tuple(float(o) for o in box_low + np.array([window[2][0], window[1][0], window[0][0]]) * spacing)

    intensities = _acquire(rng, np.clip(cropped / reference, 0.0, None), origin, spacing, config)
    name = f"pseudo-subject {index} (seed {seed}) of {image.name}"
    geometry = dict(spacing=grid[0], origin=origin, direction=IDENTITY_DIRECTION)
    out_image = Volume(intensities.astype(np.float32), source=name, **geometry)
    if warped_label is None:
        return out_image, None
    out_label = Volume(_crop(warped_label, window).astype(label.array.dtype), source=name + " label", **geometry)
    return out_image, out_label


def _displacement_transform(mapped: np.ndarray, grid) -> sitk.Transform:
    """The transform taking each point of the output grid to its template point in ``mapped`` (3, K, J, I)."""
    spacing, origin = grid
    shape = mapped.shape[1:]
    offsets = np.empty(shape + (3,), dtype=np.float64)
    axes = [origin[a] + spacing[a] * np.arange(shape[2 - a]) for a in range(3)]
    offsets[..., 0] = mapped[0] - axes[0][None, None, :]
    offsets[..., 1] = mapped[1] - axes[1][None, :, None]
    offsets[..., 2] = mapped[2] - axes[2][:, None, None]
    field = sitk.GetImageFromArray(offsets, isVector=True)
    field.SetSpacing(spacing)
    field.SetOrigin(origin)
    field.SetDirection(IDENTITY_DIRECTION)
    return sitk.DisplacementFieldTransform(field)


def _resample(image: sitk.Image, transform: sitk.Transform, grid, shape_kji, interpolator, pixel_type) -> np.ndarray:
    """``image`` resampled through ``transform`` onto the identity-direction ``grid`` (spacing, origin), (K, J, I)."""
    spacing, origin = grid
    size = [int(n) for n in shape_kji[::-1]]
    result = sitk.Resample(image, size, transform, interpolator, origin, spacing, IDENTITY_DIRECTION, 0.0, pixel_type)
    return sitk.GetArrayFromImage(result)


def _field_of_view(rng: np.random.Generator, foreground: np.ndarray, labeled: np.ndarray | None,
                   spacing: np.ndarray, config: PseudoSubjectConfig) -> list[tuple[int, int]]:
    """Inclusive (first, last) index per array axis (k, j, i); may reach outside the array (zero padding).

    In plane: the brain's extent plus a random margin per side (negative margins clip the brain's edge). Slices:
    from the labeled structures (kept whole) out towards the brain's top and bottom plus the widest margin, a random
    fraction in [1 - fov_cut, 1] of that reach. Without labels the middle third of the brain stands in for them."""
    spacing_kji = spacing[::-1]
    brain = _index_box(foreground)
    keep = _index_box(labeled) if labeled is not None and labeled.any() else None
    if keep is None:
        third = [(high - low) // 3 for low, high in brain]
        keep = [(low + t, high - t) for (low, high), t in zip(brain, third)]
    window = []
    for axis in range(3):
        (brain_low, brain_high), (keep_low, keep_high) = brain[axis], keep[axis]
        if axis == 0:
            reach = config.fov_margin_mm[1] / spacing_kji[0]
            low = keep_low - rng.uniform(1 - config.fov_cut, 1) * (keep_low - brain_low + reach)
            high = keep_high + rng.uniform(1 - config.fov_cut, 1) * (brain_high - keep_high + reach)
        else:
            low = brain_low - rng.uniform(*config.fov_margin_mm) / spacing_kji[axis]
            high = brain_high + rng.uniform(*config.fov_margin_mm) / spacing_kji[axis]
        low, high = min(int(round(low)), keep_low - 1), max(int(round(high)), keep_high + 1)
        window.append((low, high))
    return window


def _index_box(mask: np.ndarray) -> list[tuple[int, int]]:
    found = np.argwhere(mask)
    return [(int(low), int(high)) for low, high in zip(found.min(0), found.max(0))]


def _crop(array: np.ndarray, window: list[tuple[int, int]]) -> np.ndarray:
    """``array[window]`` with zeros where the window reaches outside the array."""
    out = np.zeros(tuple(high - low + 1 for low, high in window), dtype=array.dtype)
    source, target = [], []
    for (low, high), size in zip(window, array.shape):
        first, last = max(low, 0), min(high, size - 1)
        source.append(slice(first, last + 1))
        target.append(slice(first - low, last - low + 1))
    out[tuple(target)] = array[tuple(source)]
    return out


def _acquire(rng: np.random.Generator, tissue: np.ndarray, origin, spacing: np.ndarray,
             config: PseudoSubjectConfig) -> np.ndarray:
    """Gamma, smooth bias field, global level, blur and Rician noise on ``tissue`` (template units, 1 = bright)."""
    image = tissue ** rng.uniform(*config.gamma)
    shape_kji = image.shape
    axes = [origin[a] + spacing[a] * np.arange(shape_kji[2 - a]) for a in range(3)]
    low = np.array([axis[0] for axis in axes])
    high = np.array([axis[-1] for axis in axes])
    control_origin, counts = _control_grid(low, high, config.bias_spacing_mm)
    log_bias = rng.normal(0.0, config.bias, (1,) + counts)
    image = image * np.exp(bspline_on_grid(log_bias, control_origin, config.bias_spacing_mm, axes)[0])
    level = rng.uniform(*config.intensity)
    image *= level
    sigma_plane = rng.uniform(*config.blur_mm)
    sigma_mm = (sigma_plane * spacing[2] / spacing[0], sigma_plane, sigma_plane)  # k, j, i
    image = _gaussian_blur(image, [s / d for s, d in zip(sigma_mm, spacing[::-1])])
    sigma_noise = rng.uniform(*config.noise) * level
    real = image + rng.normal(0.0, sigma_noise, image.shape)
    imaginary = rng.normal(0.0, sigma_noise, image.shape)
    return np.sqrt(real * real + imaginary * imaginary)


def _gaussian_blur(array: np.ndarray, sigmas_voxels) -> np.ndarray:
    """Separable Gaussian blur (sigma per array axis, in voxels; tiny sigmas skipped), edges replicated."""
    for axis, sigma in enumerate(sigmas_voxels):
        if sigma < 0.2:
            continue
        radius = int(math.ceil(3 * sigma))
        offsets = np.arange(-radius, radius + 1)
        kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
        kernel /= kernel.sum()
        padding = [(0, 0)] * array.ndim
        padding[axis] = (radius, radius)
        padded = np.pad(array, padding, mode="edge")
        size = array.shape[axis]
        out = np.zeros_like(array)
        for weight, offset in zip(kernel, range(2 * radius + 1)):
            out += weight * np.take(padded, np.arange(offset, offset + size), axis=axis)
        array = out
    return array


def reslice(image: Volume, spacing=(1.5, 1.5, 2.0), margin_mm: float = 5.0, foreground: float = 0.05) -> Volume:
    """``image`` linearly resampled, without deformation, onto an identity-direction grid of ``spacing`` (i, j, k)
    that covers its foreground (voxels above ``foreground`` × its 99th percentile) plus ``margin_mm``."""
    positive = image.array[image.array > 0]
    if positive.size == 0:
        raise ContrastSegError(f"{image.name}: has no voxel above 0; nothing to reslice")
    low, high = _physical_box(image, image.array > foreground * float(np.percentile(positive, 99)))
    low, high = low - margin_mm, high + margin_mm
    spacing = tuple(float(s) for s in spacing)
    size = [int(n) for n in np.floor((high - low) / np.asarray(spacing)).astype(int) + 1]
    result = sitk.Resample(image.to_sitk(), size, sitk.Transform(), sitk.sitkLinear, tuple(float(v) for v in low),
                           spacing, IDENTITY_DIRECTION, 0.0, sitk.sitkFloat32)
    return Volume.from_sitk(result, source=f"{image.name} resliced")
