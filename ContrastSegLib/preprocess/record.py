"""What preprocessing is asked to do (config) and what it did to one volume (record, used to invert it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings shared by training and prediction; stored in every checkpoint.

    target_spacing: in-plane spacing in mm (None: keep each volume's own); crop_size: side of the square slices;
    slice_axis: array axis to slice along (0 = k, 1 = j, 2 = i; None: the axis with the largest spacing);
    percentiles: intensity range mapped to [0, 1]; n4: N4 bias-field correction first.
    """

    target_spacing: float | None = None
    crop_size: int = 128
    slice_axis: int | None = None
    percentiles: tuple[float, float] = (1.0, 99.0)
    n4: bool = False

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "PreprocessConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "percentiles" in values:
            values["percentiles"] = tuple(values["percentiles"])
        return cls(**values)


@dataclass(frozen=True)
class PreprocessRecord:
    """The grid bookkeeping of one preprocessed volume; shapes are in array order.

    original_shape: (K, J, I) of the input; slice_axis: the array axis the slices were cut along;
    plane_shape / plane_spacing: (rows, cols) and their mm spacing before resampling;
    resampled_shape: (rows, cols) after resampling; crop_offset: top-left corner of the crop window in the resampled
    plane (negative where it was padded); crop_size: side of the output slices; intensity_range: the values mapped
    to 0 and 1.
    """

    original_shape: tuple[int, int, int]
    slice_axis: int
    plane_shape: tuple[int, int]
    plane_spacing: tuple[float, float]
    resampled_shape: tuple[int, int]
    crop_offset: tuple[int, int]
    crop_size: int
    intensity_range: tuple[float, float]

    @property
    def resampled(self) -> bool:
        return self.resampled_shape != self.plane_shape
