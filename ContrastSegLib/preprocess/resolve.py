"""The preprocessing a training run uses: the asked-for settings, checked, with the target spacing filled in."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Sequence

import numpy as np

from ..settings import DEFAULT_CHANNELS, PreprocessConfig
from .geometry import choose_slice_axis, plane_spacing


def median_plane_spacing(spacings: Iterable[Sequence[float]], slice_axis: int | None = None) -> float:
    """The median over volumes (given by their canonical (i, j, k) voxel spacings, ``canonical_spacing``) of each
    one's finest in-plane spacing, in mm."""
    return round(float(np.median([min(plane_spacing(s, choose_slice_axis(s, slice_axis))) for s in spacings])), 4)


def resolve_preprocessing(config: PreprocessConfig, spacings: Iterable[Sequence[float]],
                          channels: Sequence[int] = DEFAULT_CHANNELS) -> PreprocessConfig:
    """``config`` checked for a UNet of encoder widths ``channels``; an unset ``target_spacing`` becomes the
    :func:`median_plane_spacing` of the volumes the run trains on (``spacings``: their canonical voxel spacings)."""
    config.check(channels)
    if config.target_spacing is not None:
        return config
    return replace(config, target_spacing=median_plane_spacing(spacings, config.slice_axis))
