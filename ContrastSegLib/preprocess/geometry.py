"""Grid operations of preprocessing: slice axis, in-plane resampling and centre crop/pad.

Slices are stacked as (S, R, C): S slices of R rows and C columns. In-plane resampling keeps the physical extent of
the plane (edge-aligned grids), so resampling there and back is consistent; slices are never mixed. Resampling is
torch's bilinear interpolation, so that prediction inverts it on the GPU where the probabilities already are.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ContrastSegError
from ..io.read_checks import max_voxels

RESAMPLE_FACTORS = (1 / 64, 64.0)  # in-plane spacing / target spacing
MIN_SIDE, MAX_SIDE = 8, 4096  # px of a resampled side, unless the side was already outside; never < 2


def choose_slice_axis(spacing_ijk: tuple[float, float, float], requested: int | None) -> int:
    """Array axis (0 = k, 1 = j, 2 = i) of the canonically oriented volume of (i, j, k) spacing ``spacing_ijk`` to
    slice along: ``requested``, else the one with the largest spacing (k on ties, the usual through-plane axis)."""
    if requested is not None:
        if requested not in (0, 1, 2):
            raise ValueError(f"slice axis must be 0, 1 or 2, got {requested}")
        return requested
    spacing_kji = spacing_ijk[::-1]
    return int(np.argmax(np.round(spacing_kji, 6)))


def to_slice_stack(array: np.ndarray, axis: int) -> np.ndarray:
    """(K, J, I) -> (S, R, C) with the slice axis first and the other two in order."""
    return np.moveaxis(array, axis, 0)


def from_slice_stack(stack: np.ndarray, axis: int) -> np.ndarray:
    """Inverse of :func:`to_slice_stack`; a leading channel axis is kept: (C, S, R, C') -> (C, K, J, I)."""
    offset = stack.ndim - 3
    return np.moveaxis(stack, offset, offset + axis)


def plane_spacing(spacing_ijk: tuple[float, float, float], axis: int) -> tuple[float, float]:
    """(row, col) spacing of the slices cut along ``axis``."""
    spacing_kji = list(spacing_ijk[::-1])
    del spacing_kji[axis]
    return float(spacing_kji[0]), float(spacing_kji[1])


def resampled_shape(shape: tuple[int, int], spacing: tuple[float, float], target: float | None,
                    source: str = "", slices: int = 1) -> tuple[int, int]:
    """(rows, cols) covering the same extent at ``target`` mm (unchanged when ``target`` is None), refused when the
    scale factor leaves ``RESAMPLE_FACTORS``, a side would shrink below ``MIN_SIDE`` or grow past ``MAX_SIDE`` px,
    or ``slices`` such planes would exceed ``--max-voxels``; ``source`` names the volume in the message."""
    if target is None:
        return shape
    name = source or "the volume"
    if not (isinstance(target, (int, float)) and np.isfinite(target) and target > 0):
        raise ContrastSegError(f"{name}: target spacing {target} mm is not a number > 0; give --spacing in mm, "
                               "e.g. --spacing 1.0")
    out = tuple(max(1, int(round(n * s / target))) for n, s in zip(shape, spacing))
    low, high = RESAMPLE_FACTORS
    for n, s, m in zip(shape, spacing, out):
        if not low <= s / target <= high or m < 2 or m < MIN_SIDE <= n or m > max(MAX_SIDE, n):
            raise ContrastSegError(
                f"{name}: resampling its {s:g} mm in-plane spacing to {target:g} mm (--spacing) scales a side by "
                f"{s / target:.3g} ({n} -> {m} px); scale factors must lie in 1/{1 / low:g}..{high:g} and sides in "
                f"{MIN_SIDE}..{MAX_SIDE} px — choose a --spacing near the scan's own, or fix the spacing in its "
                "header")
    if slices * out[0] * out[1] > max_voxels():
        raise ContrastSegError(
            f"{name}: {slices} slices resampled to {out[0]}×{out[1]} px at {target:g} mm would hold "
            f"{slices * out[0] * out[1]:,} voxels, more than --max-voxels {max_voxels():,}; choose a coarser "
            "--spacing, or raise --max-voxels if memory allows")
    return out


def resample_planes(planes: torch.Tensor, out_shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear in-plane resampling of (S, C, R, C') ``planes`` to (S, C, rows, cols) = ``out_shape``.

    The grids are edge-aligned (``align_corners=False``): pixel centres sit at the same physical positions as with
    ITK's resampler over the same extent, so resampling there and back is consistent. Runs on the tensor's device.
    """
    if tuple(out_shape) == tuple(planes.shape[-2:]):
        return planes
    return F.interpolate(planes, size=tuple(int(n) for n in out_shape), mode="bilinear", align_corners=False)


def centre_offset(shape: tuple[int, int], crop: int) -> tuple[int, int]:
    """Top-left corner of a centred ``crop`` window in a plane of ``shape`` (negative: the window pads)."""
    return tuple((n - crop) // 2 for n in shape)


def crop_or_pad(stack: np.ndarray, offset: tuple[int, int], crop: int, fill: float = 0.0) -> np.ndarray:
    """Cut the (crop, crop) window at ``offset`` out of every plane of (S, R, C) ``stack``, padding with ``fill``
    where the window leaves the plane."""
    out = np.full((stack.shape[0], crop, crop), fill, dtype=stack.dtype)
    source, target = _overlap(stack.shape[1:3], offset, crop)
    out[(slice(None),) + target] = stack[(slice(None),) + source]
    return out


def uncrop_probabilities(window: torch.Tensor, offset: tuple[int, int], plane: tuple[int, int]) -> torch.Tensor:
    """Put (S, C, crop, crop) class probabilities back into (S, C, rows, cols) planes of shape ``plane``; outside
    the window the background class (channel 0) has probability 1."""
    crop = window.shape[-1]
    out = window.new_zeros(window.shape[:2] + tuple(plane))
    out[:, 0] = 1.0
    source, target = _overlap(plane, offset, crop)
    out[(slice(None), slice(None)) + source] = window[(slice(None), slice(None)) + target]
    return out


def _overlap(plane: tuple[int, int], offset: tuple[int, int], crop: int) -> tuple[tuple, tuple]:
    """Index slices of the overlap of the plane and the window, in plane and in window coordinates."""
    in_plane, in_window = [], []
    for size, start in zip(plane, offset):
        lo, hi = max(start, 0), min(start + crop, size)
        in_plane.append(slice(lo, hi))
        in_window.append(slice(lo - start, hi - start))
    return tuple(in_plane), tuple(in_window)
