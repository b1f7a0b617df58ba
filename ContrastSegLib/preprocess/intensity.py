"""Intensity steps of preprocessing: optional N4 bias-field correction and percentile normalisation."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import ContrastSegError
from ..io.volume import Volume


def percentile_range(values: np.ndarray, percentiles: tuple[float, float], source: str) -> tuple[float, float]:
    """The intensities at the two percentiles of ``values``; a (near-)constant image is refused."""
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if not high > low:
        raise ContrastSegError(
            f"{source}: intensities between the {percentiles[0]}th and {percentiles[1]}th percentiles are constant "
            f"({low:g}); the image holds no contrast to segment — check it is the right file"
        )
    return low, high


def normalise(values: np.ndarray, intensity_range: tuple[float, float]) -> np.ndarray:
    """Map ``intensity_range`` to [0, 1] and clip (float32, any shape)."""
    low, high = intensity_range
    scaled = (values.astype(np.float32) - np.float32(low)) * np.float32(1.0 / (high - low))
    return np.clip(scaled, 0.0, 1.0, out=scaled)


def n4_correct(volume: Volume, shrink: int = 4, iterations: int = 30) -> Volume:
    """N4 bias-field correction (SimpleITK) inside an Otsu foreground mask; the field is fitted on a copy shrunk
    in-plane by ``shrink`` and applied at full resolution."""
    image = sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)
    shift = float(volume.array.min())
    positive = image - shift + 1.0  # N4 works on positive intensities
    mask = sitk.OtsuThreshold(positive, 0, 1, 200)
    factors = [shrink if n >= 4 * shrink else 1 for n in positive.GetSize()]
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations([iterations] * 3)
    corrector.Execute(sitk.Shrink(positive, factors), sitk.Shrink(mask, factors))
    log_field = corrector.GetLogBiasFieldAsImage(positive)
    corrected = positive / sitk.Exp(log_field) + shift - 1.0
    return volume.with_array(sitk.GetArrayFromImage(corrected).astype(np.float32))
