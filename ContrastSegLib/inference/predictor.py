"""A trained checkpoint applied to whole volumes: label map (and optionally class probabilities and an uncertainty
map) on the volume's own grid, with its exact geometry."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch

from ..data.labels import LabelSet
from ..errors import ContrastSegError
from ..io import Volume
from ..models import UNet2D, UNetConfig
from ..preprocess import preprocess_volume, restore_planes, to_volume_order, whole_slice_side
from ..runtime.checkpoint import Checkpoint, load_checkpoint
from ..runtime.precision import ExecutionPlan, plan_execution
from ..settings import Flips, PreprocessConfig
from ..triage.volumes import VolumeNorms
from .slices import NO_FLIPS, TRAINING_FLIPS, batched_probabilities, normalised_entropy


@dataclass(frozen=True)
class Prediction:
    """label: label values on the input grid; probabilities: (C, K, J, I) float32 or None;
    uncertainty: entropy / log C of the probabilities (averaged over the test-time flips the model was trained
    with), in [0, 1], or None."""

    label: Volume
    probabilities: np.ndarray | None = None
    uncertainty: Volume | None = None

    def probability_image(self) -> sitk.Image:
        """The probabilities as a C-component SimpleITK image on the label's grid (for NIfTI/NRRD output)."""
        if self.probabilities is None:
            raise ValueError("this prediction was made without probabilities")
        image = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(self.probabilities, 0, -1)), isVector=True)
        image.SetSpacing(self.label.spacing)
        image.SetOrigin(self.label.origin)
        image.SetDirection(self.label.direction)
        return image


class Predictor:
    """Load once, predict many volumes: ``Predictor.from_file("model.pt").predict(volume)``."""

    def __init__(self, checkpoint: Checkpoint, source: str = "checkpoint", device: str = "auto",
                 precision: str = "auto", batch_size: int = 32, plan: ExecutionPlan | None = None,
                 channels_last: str = "auto"):
        meta = checkpoint.metadata
        if meta.get("stage") != "finetune" or "labels" not in meta:
            raise ContrastSegError(
                f"{source}: this is a '{meta.get('stage')}' checkpoint without a segmentation head; "
                "fine-tune it first (contrastseg finetune --init ...) and predict with the result"
            )
        try:
            self.labels = LabelSet.from_json(meta["labels"], source)
            self.preprocess_config = PreprocessConfig.from_json(meta["preprocessing"])
            self.model = UNet2D(UNetConfig.from_json(meta["architecture"]))
            self.model.load_state_dict(checkpoint.model)
        except (KeyError, TypeError, RuntimeError) as error:
            raise ContrastSegError(f"{source}: checkpoint does not match its architecture ({error})") from None
        self.plan = plan or plan_execution(device, precision, channels_last)
        self.model.to(self.plan.device).eval()
        if self.plan.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.batch_size = batch_size
        self.source = source
        # checkpoints without the setting were trained with both flips, the setting's former default
        self.flips = TRAINING_FLIPS.get((meta.get("config") or {}).get("flips", Flips.BOTH.value), NO_FLIPS)
        self.volume_norms = VolumeNorms.from_metadata(meta, source)  # the training labels' volumes (None: older)
        self.whole_slices = bool(meta.get("whole_slices"))  # older checkpoints: the centre crop they trained on

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs) -> "Predictor":
        return cls(load_checkpoint(path), source=str(path), **kwargs)

    def predict(self, image: Volume, probabilities: bool = False, uncertainty: bool = False,
                entropy_map: bool = False) -> Prediction:
        """Segment ``image``; with ``uncertainty`` the prediction averages the test-time flips of the model's
        training (none: one pass) and the entropy map is returned too. ``entropy_map`` alone returns the entropy of
        the plain pass (the label map unchanged; what a folder's review table reads)."""
        side = (whole_slice_side([image], self.preprocess_config, self.model.config.channels) if self.whole_slices
                else None)
        prepared = preprocess_volume(image, self.preprocess_config, side=side)
        record, classes = prepared.record, len(self.labels.values)
        values = torch.as_tensor(self.labels.values, device=self.plan.device)
        stack = record.stack_shape  # (S, R, C')
        indices = np.empty(stack, dtype=np.uint8 if max(self.labels.values) < 256 else np.uint16)
        entropy = np.empty(stack, dtype=np.float32) if uncertainty or entropy_map else None
        restored = np.empty((stack[0], classes) + stack[1:], dtype=np.float32) if probabilities else None
        # One batch of slices at a time: the full-resolution probabilities of a whole volume never exist at once.
        for start, batch in batched_probabilities(self.model, prepared.image, self.plan, self.batch_size,
                                                  flips=self.flips if uncertainty else NO_FLIPS):
            planes = restore_planes(batch, record)  # (B, C, R, C') on the device
            rows = slice(start, start + planes.shape[0])
            indices[rows] = values[planes.max(1).indices].cpu().numpy()  # max(): far faster than argmax on CPU
            if entropy is not None:
                entropy[rows] = normalised_entropy(planes).cpu().numpy()
            if restored is not None:
                restored[rows] = planes.cpu().numpy()
        label = image.with_array(to_volume_order(indices, record), source=f"{image.name} (prediction)")
        uncertainty_volume = None if entropy is None else image.with_array(
            to_volume_order(entropy, record), source=f"{image.name} (uncertainty)")
        return Prediction(label, None if restored is None else to_volume_order(restored, record), uncertainty_volume)
