"""The preprocessing a training run uses: the asked-for settings, checked, with the target spacing and the training
side filled in from the volumes it trains on.

The training side (``crop_size`` None): no compute on padding. It is the smallest side the UNet accepts (a multiple
of ``unet_divisor``) that covers the largest resampled in-plane extent of the training volumes, at most
``MAX_AUTO_CROP`` (the papers' crop: a side from the data never costs more per step than it). Slices larger than the
side are cut into patches of it by fine-tuning (``sampling.labeled``) and covered whole by prediction.

    >>> covering_side([(101, 132), (96, 119)], divisor=32)
    160
    >>> covering_side([(400, 512)], divisor=32), covering_side([(20, 30)], divisor=32)
    (192, 32)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Sequence

import numpy as np

from ..io.volume import Volume
from ..settings import DEFAULT_CHANNELS, MAX_AUTO_CROP, PreprocessConfig, unet_divisor
from .geometry import MAX_SIDE, choose_slice_axis, plane_spacing, resampled_shape
from .orientation import canonical_orientation, canonical_spacing


def median_plane_spacing(spacings: Iterable[Sequence[float]], slice_axis: int | None = None) -> float:
    """The median over volumes (given by their canonical (i, j, k) voxel spacings, ``canonical_spacing``) of each
    one's finest in-plane spacing, in mm."""
    return round(float(np.median([min(plane_spacing(s, choose_slice_axis(s, slice_axis))) for s in spacings])), 4)


def resampled_plane_shape(volume: Volume, target_spacing: float, slice_axis: int | None) -> tuple[int, int]:
    """(rows, cols) of ``volume``'s slices once resampled to ``target_spacing`` mm (as ``preprocess_volume`` cuts
    them: canonical orientation, the slice axis chosen from the spacing unless given)."""
    orientation = canonical_orientation(volume.direction)
    spacing_ijk = orientation.spacing(volume.spacing)
    axis = choose_slice_axis(spacing_ijk, slice_axis)
    shape_kji = list(orientation.shape(volume.array.shape))
    del shape_kji[axis]
    return resampled_shape(tuple(shape_kji), plane_spacing(spacing_ijk, axis), target_spacing, volume.name)


def covering_side(plane_shapes: Iterable[Sequence[int]], divisor: int, largest: int = MAX_AUTO_CROP) -> int:
    """The smallest multiple of ``divisor`` that covers every (rows, cols) of ``plane_shapes``, at most ``largest``
    (rounded down to a multiple of ``divisor``), at least ``divisor``."""
    extent = max(max(shape) for shape in plane_shapes)
    cap = max(divisor, largest // divisor * divisor)
    return int(min(cap, max(divisor, -(-extent // divisor) * divisor)))


CROP_FROM_DATA = "crop_from_data"  # checkpoint metadata: the side was chosen from the data, not asked for


def inherited_preprocessing(metadata: dict) -> PreprocessConfig:
    """The preprocessing of a run that starts from a checkpoint with this ``metadata`` and is given none: the
    checkpoint's spacing, percentiles and axis (its encoder's scale), and its side only where that was asked for.
    A side the checkpoint chose from its own volumes (``CROP_FROM_DATA``; a fine-tuned model's ``whole_slices``)
    is chosen again from the new run's volumes, so a model started from pre-trained weights trains and predicts on
    whole slices as one started from random weights does: a pre-training side kept as a centre window hides every
    structure outside it (nothing is learned or predicted there)."""
    config = PreprocessConfig.from_json(metadata.get("preprocessing") or {})
    chosen = metadata.get(CROP_FROM_DATA, metadata.get("whole_slices", False))
    return replace(config, crop_size=None) if chosen else config


def whole_slice_side(volumes: Sequence[Volume], config: PreprocessConfig, channels: Sequence[int]) -> int:
    """The side that holds every slice of ``volumes`` whole under the resolved ``config``: at least its crop (what
    prediction and the training banks of a model trained in patches use)."""
    shapes = [resampled_plane_shape(v, config.target_spacing, config.slice_axis) for v in volumes]
    return max(config.crop_size, covering_side(shapes, unet_divisor(channels), largest=MAX_SIDE))


def resolve_preprocessing(config: PreprocessConfig, volumes: Sequence[Volume],
                          channels: Sequence[int] = DEFAULT_CHANNELS) -> PreprocessConfig:
    """``config`` checked for a UNet of encoder widths ``channels``; an unset ``target_spacing`` becomes the
    :func:`median_plane_spacing` of the ``volumes`` the run trains on, an unset ``crop_size`` their
    :func:`covering_side`."""
    config.check(channels)
    if config.target_spacing is None:
        spacing = median_plane_spacing([canonical_spacing(v) for v in volumes], config.slice_axis)
        config = replace(config, target_spacing=spacing)
    if config.crop_size is None:
        shapes = [resampled_plane_shape(v, config.target_spacing, config.slice_axis) for v in volumes]
        config = replace(config, crop_size=covering_side(shapes, unet_divisor(channels)))
    return config
