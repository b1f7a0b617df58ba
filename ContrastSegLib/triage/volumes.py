"""Structure volumes in millilitres, and how far a predicted volume lies from those of the training labels.

The training labels' volumes are stored in a fine-tuned checkpoint (metadata ``training_volumes_ml``: {value:
[mL per labeled volume]}). A predicted volume V is compared on a log scale, where "3× larger" and "a third" are
equally far:

    z = (ln V − mean ln V_train) / max(sd ln V_train, SD_FLOOR)

sd is the sample standard deviation (0 with one labeled volume); SD_FLOOR = 0.2 (about ±22 %, the order of the
between-subject spread of an organ's volume) keeps one or two labeled volumes from making every difference huge.
A structure predicted nowhere counts as one voxel, so its z is finite and strongly negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..errors import ContrastSegError
from ..io.volume import Volume

SD_FLOOR = 0.2


def _is_volume(value) -> bool:
    """A finite number ≥ 0 (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def voxel_ml(volume: Volume) -> float:
    """Millilitres of one voxel of ``volume`` (spacing in mm)."""
    return float(np.prod(volume.spacing)) / 1000.0


def structure_volumes_ml(label: Volume, values: Sequence[int]) -> dict[int, float]:
    """{value: mL} of each structure in the label map ``label`` ((K, J, I) label values)."""
    return {int(v): float(np.count_nonzero(label.array == v)) * voxel_ml(label) for v in values}


@dataclass(frozen=True)
class VolumeNorms:
    """Per structure: mean and spread of the log training volumes (ln mL), and how many volumes gave them."""

    mean_log: dict[int, float]
    sd_log: dict[int, float]
    count: dict[int, int]

    @classmethod
    def from_training(cls, volumes: Mapping[int, Sequence[float]]) -> "VolumeNorms":
        """``volumes``: {value: [mL of each training label map]}; structures absent from every map are left out,
        and a map without the structure does not count towards its norm."""
        mean, sd, count = {}, {}, {}
        for value, items in volumes.items():
            logs = [math.log(v) for v in items if v > 0]
            if logs:
                mean[int(value)] = float(np.mean(logs))
                sd[int(value)] = float(np.std(logs, ddof=1)) if len(logs) > 1 else 0.0
                count[int(value)] = len(logs)
        return cls(mean, sd, count)

    @classmethod
    def from_metadata(cls, metadata: Mapping, source: str = "checkpoint") -> "VolumeNorms | None":
        """The norms of a checkpoint's metadata (None for a checkpoint written without them); a damaged record —
        not {label value: [finite mL ≥ 0, ...]} — is refused in one line naming ``source``."""
        stored = metadata.get("training_volumes_ml")
        if stored is None:
            return None
        damaged = ContrastSegError(f"{source}: its record of the training labels' volumes (training_volumes_ml) is "
                                   "damaged; fine-tune the model again")
        if not isinstance(stored, dict):
            raise damaged
        volumes = {}
        for key, items in stored.items():
            if not (isinstance(key, str) and key.isdigit() and isinstance(items, list)
                    and all(_is_volume(v) for v in items)):
                raise damaged
            volumes[int(key)] = [float(v) for v in items]
        return cls.from_training(volumes)

    def z_score(self, value: int, ml: float, one_voxel_ml: float) -> float | None:
        """z of a predicted ``ml`` of structure ``value`` (None when the training labels never held it)."""
        if value not in self.mean_log:
            return None
        return (math.log(max(ml, one_voxel_ml)) - self.mean_log[value]) / max(self.sd_log[value], SD_FLOOR)

    def ratio(self, value: int, ml: float) -> float | None:
        """``ml`` over the geometric mean of the training volumes."""
        return None if value not in self.mean_log else ml / math.exp(self.mean_log[value])
