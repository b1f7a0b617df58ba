"""Volume -> normalised, equally sized slices, and predictions back onto the volume's own grid.

Steps (each recorded so that :func:`restore_probabilities` can invert them): canonical orientation (see
``orientation``), optional N4, slice axis, in-plane resampling to the target spacing, 1–99 % percentile
normalisation, centre crop/pad to ``crop_size`` (or to a larger ``side``: the whole slice, see ``resolve``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..errors import ContrastSegError
from ..io.volume import Volume
from ..settings import PreprocessConfig
from . import geometry
from .intensity import n4_correct, normalise, percentile_range
from .orientation import canonical_orientation, reorient
from .record import PreprocessRecord


@dataclass(frozen=True)
class PreparedVolume:
    """image: (S, P, P) float32 in [0, 1]; label: (S, P, P) uint8 class indices or None; record: how to invert."""

    image: np.ndarray
    label: np.ndarray | None
    record: PreprocessRecord
    source: str = ""


def preprocess_volume(
    image: Volume,
    config: PreprocessConfig,
    label: Volume | None = None,
    class_values: Sequence[int] | None = None,
    side: int | None = None,
) -> PreparedVolume:
    """Slices of ``image`` (and of ``label``, on the image's grid, as indices into ``class_values``) ready for the
    network, ``side`` × ``side`` (default ``config.crop_size``); the slices are cut from the canonically oriented
    volume, whatever its storage order."""
    side = config.crop_size if side is None else side
    original_shape = tuple(image.array.shape)
    orientation = canonical_orientation(image.direction)
    image = reorient(image, orientation)
    if config.n4:
        image = n4_correct(image)
    axis = geometry.choose_slice_axis(image.spacing, config.slice_axis)
    stack = geometry.to_slice_stack(image.array, axis)
    spacing = geometry.plane_spacing(image.spacing, axis)
    out_shape = geometry.resampled_shape(stack.shape[1:], spacing, config.target_spacing, image.name, stack.shape[0])
    planes = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32)).unsqueeze(1)
    resampled = geometry.resample_planes(planes, out_shape)[:, 0].numpy()
    intensity_range = percentile_range(resampled, config.percentiles, image.name)
    offset = geometry.centre_offset(out_shape, side)
    slices = geometry.crop_or_pad(normalise(resampled, intensity_range), offset, side)
    record = PreprocessRecord(
        original_shape=original_shape,
        slice_axis=axis,
        plane_shape=tuple(stack.shape[1:]),
        plane_spacing=spacing,
        resampled_shape=tuple(out_shape),
        crop_offset=tuple(offset),
        crop_size=side,
        intensity_range=intensity_range,
        orientation=orientation,
    )
    indices = None
    if label is not None:
        indices = _label_to_slices(label, record, class_values)
    return PreparedVolume(slices, indices, record, image.source)


def restore_planes(probabilities: torch.Tensor, record: PreprocessRecord) -> torch.Tensor:
    """(S, C, P, P) class probabilities of the slices -> (S, C, R, C') on the original in-plane grid, on the
    tensor's device. Outside the crop window the background class (index 0) gets probability 1."""
    planes = geometry.uncrop_probabilities(probabilities, record.crop_offset, record.resampled_shape)
    return geometry.resample_planes(planes, record.plane_shape)


def to_volume_order(planes: np.ndarray, record: PreprocessRecord) -> np.ndarray:
    """(S, R, C') or (S, C, R, C') slice-stack arrays -> (K, J, I) or (C, K, J, I) in the input's stored order."""
    stack = np.moveaxis(planes, 1, 0) if planes.ndim == 4 else planes
    return record.orientation.invert(geometry.from_slice_stack(stack, record.slice_axis))


def restore_probabilities(probabilities: np.ndarray | torch.Tensor, record: PreprocessRecord) -> np.ndarray:
    """(S, C, P, P) class probabilities of the slices -> (C, K, J, I) numpy array on the original grid."""
    planes = restore_planes(torch.as_tensor(probabilities), record)
    return to_volume_order(planes.cpu().numpy(), record)


def labels_to_indices(array: np.ndarray, class_values: Sequence[int], source: str) -> np.ndarray:
    """Label values -> class indices (uint8 up to 256 classes, else uint16; same shape); a value not in
    ``class_values`` is refused. The lookup marks unknown values with -1, which no class index can be."""
    known = np.asarray(class_values, dtype=np.int64)
    lookup = np.full(int(max(array.max(initial=0), known.max())) + 1, -1, dtype=np.int32)
    lookup[known] = np.arange(len(known), dtype=np.int32)
    negative = array.size and array.min(initial=0) < 0  # would index the lookup from its end
    indices = lookup[np.clip(array, 0, None) if negative else array]
    if negative or (indices < 0).any():
        unknown = sorted(set(np.unique(array).tolist()) - set(class_values))
        raise ContrastSegError(
            f"{source}: label values {unknown} are not among the model's classes {list(class_values)}; "
            "fix the label map or train with these labels"
        )
    return indices.astype(np.uint8 if len(known) <= 256 else np.uint16)


def _label_to_slices(label: Volume, record: PreprocessRecord, class_values: Sequence[int] | None) -> np.ndarray:
    """Label map -> (S, P, P) class indices on the preprocessed grid (one-hot resampled linearly, then argmax)."""
    values = sorted(set(np.unique(label.array).tolist()) | {0}) if class_values is None else list(class_values)
    canonical = record.orientation.apply(labels_to_indices(label.array, values, label.name))
    indices = np.ascontiguousarray(geometry.to_slice_stack(canonical, record.slice_axis))
    if record.resampled:
        one_hot = torch.nn.functional.one_hot(torch.from_numpy(indices).long(), len(values))
        planes = one_hot.permute(0, 3, 1, 2).float()  # (S, classes, R, C)
        indices = geometry.resample_planes(planes, record.resampled_shape).argmax(1).to(torch.uint8).numpy()
    return geometry.crop_or_pad(indices, record.crop_offset, record.crop_size, fill=0)
