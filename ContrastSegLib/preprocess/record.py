"""What preprocessing did to one volume (the record used to invert it); what it is asked to do is
``settings.PreprocessConfig``."""

from __future__ import annotations

from dataclasses import dataclass

from .orientation import Orientation


@dataclass(frozen=True)
class PreprocessRecord:
    """The grid bookkeeping of one preprocessed volume; shapes are in array order.

    original_shape: (K, J, I) of the input as stored; orientation: how the stored array was reordered and flipped
    into canonical orientation (the default: not at all); slice_axis: the canonical array axis the slices were cut
    along; plane_shape / plane_spacing: (rows, cols) and their mm spacing before resampling; resampled_shape:
    (rows, cols) after resampling; crop_offset: top-left corner of the crop window in the resampled plane (negative
    where it was padded); crop_size: side of the output slices; intensity_range: the values mapped to 0 and 1.
    """

    original_shape: tuple[int, int, int]
    slice_axis: int
    plane_shape: tuple[int, int]
    plane_spacing: tuple[float, float]
    resampled_shape: tuple[int, int]
    crop_offset: tuple[int, int]
    crop_size: int
    intensity_range: tuple[float, float]
    orientation: Orientation = Orientation()

    @property
    def resampled(self) -> bool:
        return self.resampled_shape != self.plane_shape

    @property
    def stack_shape(self) -> tuple[int, int, int]:
        """(S, R, C'): the slice stack on the original in-plane grid, before resampling and cropping."""
        canonical = self.orientation.shape(self.original_shape)
        return (canonical[self.slice_axis],) + tuple(self.plane_shape)
