"""A 3-D scalar volume with its geometry, and its checks.

Array order is SimpleITK's ``GetArrayFromImage`` order ``(k, j, i)`` (slices, rows, columns); spacing, origin and
direction are in SimpleITK's ``(i, j, k)`` / LPS order, so ``Volume.from_sitk(img).to_sitk()`` is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk

from ..errors import ContrastSegError

GEOMETRY_TOLERANCE = 1e-4  # mm for spacing/origin, unitless for direction cosines
VOXEL_SPACING_MM = (1e-4, 1e3)  # voxel sizes outside this range are header errors, not scans


@dataclass(frozen=True)
class Volume:
    """``array``: (K, J, I); ``spacing``/``origin``: (i, j, k) in mm; ``direction``: 9 cosines, row-major."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    source: str = ""

    @classmethod
    def from_sitk(cls, image: sitk.Image, source: str = "") -> "Volume":
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing=tuple(float(s) for s in image.GetSpacing()),
            origin=tuple(float(o) for o in image.GetOrigin()),
            direction=tuple(float(d) for d in image.GetDirection()),
            source=source,
        )

    def to_sitk(self) -> sitk.Image:
        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def with_array(self, array: np.ndarray, source: str | None = None) -> "Volume":
        """The same grid with other voxel values; ``array`` must have this volume's shape."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from the volume's {self.array.shape}")
        return replace(self, array=array, source=self.source if source is None else source)

    @property
    def name(self) -> str:
        return self.source or "<in-memory volume>"

    def same_grid(self, other: "Volume", tolerance: float = GEOMETRY_TOLERANCE) -> bool:
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing, other.spacing, atol=tolerance)
            and np.allclose(self.origin, other.origin, atol=tolerance)
            and np.allclose(self.direction, other.direction, atol=tolerance)
        )


def check_image(volume: Volume) -> Volume:
    """Refuse what no pipeline stage can use: a voxel size outside ``VOXEL_SPACING_MM``, a single slice, NaN/Inf
    intensities."""
    low, high = VOXEL_SPACING_MM
    if not all(np.isfinite(s) and low <= s <= high for s in volume.spacing):
        raise ContrastSegError(
            f"{volume.name}: voxel spacing {format_numbers(volume.spacing)} mm is outside {low:g}..{high:g} mm, "
            "so the header is wrong; set the true spacing in the header and retry")
    if min(volume.array.shape) < 2:
        raise ContrastSegError(
            f"{volume.name}: has shape {volume.array.shape[::-1]} (one slice); "
            "ContrastSeg needs a 3-D stack with at least 2 slices along every axis"
        )
    if np.issubdtype(volume.array.dtype, np.floating) and not np.isfinite(volume.array).all():
        raise non_finite_error(volume.name, int((~np.isfinite(volume.array)).sum()))
    return volume


def non_finite_error(name: str, count: int) -> ContrastSegError:
    """The one message for an image holding NaN or Inf voxels."""
    return ContrastSegError(f"{name}: {count} voxels are NaN or Inf; replace them (e.g. with the background value) "
                            "and retry")


def check_label(label: Volume, image: Volume | None = None, allowed: set[int] | None = None) -> Volume:
    """Return ``label`` with an integer array after checking values (and the grid, when ``image`` is given)."""
    array = label.array
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or not np.array_equal(array, np.round(array)):
            raise ContrastSegError(
                f"{label.name}: label map has non-integer values; save it with an integer voxel type "
                "(a label map, not a probability or intensity image)"
            )
    elif not np.issubdtype(array.dtype, np.integer) and array.dtype != bool:
        raise ContrastSegError(f"{label.name}: label voxel type {array.dtype} is not an integer type")
    values = np.unique(array)
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ContrastSegError(
            f"{label.name}: label values must be in 0..255 (found {values.min()}..{values.max()}); "
            "relabel the structures as small non-negative integers"
        )
    if allowed is not None:
        extra = sorted(set(int(v) for v in values) - set(allowed))
        if extra:
            raise ContrastSegError(
                f"{label.name}: label values {extra} are not among the declared labels {sorted(allowed)}; "
                "fix the label map or declare the labels (dataset.json 'labels' / manifest 'labels')"
            )
    if image is not None and not label.same_grid(image):
        raise ContrastSegError(
            f"{label.name}: label map geometry (shape {label.array.shape[::-1]}, spacing "
            f"{format_numbers(label.spacing)}, origin {format_numbers(label.origin)}) differs from its image "
            f"{image.name} (shape {image.array.shape[::-1]}, spacing {format_numbers(image.spacing)}, origin "
            f"{format_numbers(image.origin)}); resample the label map onto the image grid"
        )
    return label.with_array(array.astype(smallest_label_dtype(array)))


def smallest_label_dtype(array: np.ndarray) -> np.dtype:
    return np.dtype(np.uint8) if array.size == 0 or array.max() <= 255 else np.dtype(np.uint16)


def format_numbers(values) -> str:
    """``(0.7, 1.25, 3.1)`` with 4 significant digits."""
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
