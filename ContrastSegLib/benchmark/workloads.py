"""What the speed benchmarks run on: the paper UNet freshly initialised, preprocessed phantoms, a ready-made
segmentation batch, a 256×256 phantom volume to predict and a Predictor for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.labels import LabelSet
from ..data.phantom import LABEL_COLORS, LABEL_NAMES, make_phantom
from ..inference.predictor import Predictor
from ..io import Volume
from ..models import UNet2D, UNetConfig
from ..preprocess import PreparedVolume, preprocess_volume
from ..preprocess.geometry import resample_planes
from ..runtime.checkpoint import Checkpoint, save_checkpoint
from ..runtime.precision import ExecutionPlan, plan_execution
from ..settings import DEFAULT_CHANNELS, FinetuneConfig, PreprocessConfig

NUM_CLASSES = len(LABEL_NAMES)
CLASS_VALUES = tuple(sorted(LABEL_NAMES))


def paper_unet(plan: ExecutionPlan, seed: int, channels: tuple[int, ...] = DEFAULT_CHANNELS) -> UNet2D:
    """A freshly initialised paper UNet (16-32-64-128-128-128, 4 classes; smaller ``channels`` for quick checks), in
    training mode, laid out for ``plan``."""
    torch.manual_seed(seed)
    model = UNet2D(UNetConfig(num_classes=NUM_CLASSES, channels=tuple(channels))).to(plan.device).train()
    if plan.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def phantom_volumes(count: int, crop: int, seed: int) -> list[PreparedVolume]:
    """Phantoms 0..count-1 of family ``seed`` with their labels, preprocessed at 1 mm into (S, crop, crop) slices."""
    config = PreprocessConfig(target_spacing=1.0, crop_size=crop)
    prepared = []
    for index in range(count):
        image, label = make_phantom(index, seed)
        prepared.append(preprocess_volume(image, config, label, CLASS_VALUES))
    return prepared


def fixed_batch(batch: int, crop: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One ready batch: random images (B, 1, P, P) and one-hot targets (B, C, P, P)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 1, crop, crop, generator=generator)
    labels = torch.randint(NUM_CLASSES, (batch, crop, crop), generator=generator)
    targets = F.one_hot(labels, NUM_CLASSES).permute(0, 3, 1, 2).float()
    return images.to(device), targets.to(device)


def prediction_volume(slices: int, seed: int, shape_ji: tuple[int, int] = (256, 256),
                      pixel_mm: float = 1.0) -> Volume:
    """Phantom 0 of family ``seed`` resampled to ``pixel_mm`` in plane, stretched to ``slices`` slices of 8 mm and
    centred on a ``shape_ji`` grid of zeros: array (slices, J, I)."""
    image, _ = make_phantom(0, seed)
    rows, cols = (round(n * s / pixel_mm) for n, s in zip(image.array.shape[1:], image.spacing[1::-1]))
    plane = resample_planes(torch.from_numpy(image.array).unsqueeze(1), (rows, cols))[:, 0].numpy()
    picks = np.linspace(0, plane.shape[0] - 1, slices).round().astype(int)
    array = np.zeros((slices,) + shape_ji, dtype=np.float32)
    top, left = (shape_ji[0] - rows) // 2, (shape_ji[1] - cols) // 2
    array[:, top:top + rows, left:left + cols] = plane[picks]
    return Volume(array, (pixel_mm, pixel_mm, 8.0), (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0),
                  source="prediction phantom")


def fresh_predictor(crop: int, batch: int, device: str, folder: Path, seed: int) -> Predictor:
    """A Predictor (automatic precision on ``device``) loaded from a checkpoint written to ``folder``: a freshly
    initialised paper UNet with the metadata of a fine-tuned one (target spacing 1.5 mm, crop ``crop``)."""
    plan = plan_execution(device, "auto")
    torch.manual_seed(seed)
    model = UNet2D(UNetConfig(num_classes=NUM_CLASSES))
    metadata = {
        "stage": "finetune",
        "architecture": model.config.to_json(),
        "labels": LabelSet.build(CLASS_VALUES, LABEL_NAMES, LABEL_COLORS).to_json(),
        "preprocessing": PreprocessConfig(target_spacing=1.5, crop_size=crop).to_json(),
        "config": FinetuneConfig(batch_size=batch).to_json(),
        "step": 0,
    }
    path = save_checkpoint(Checkpoint(model.state_dict(), metadata), Path(folder) / "fresh.pt")
    return Predictor.from_file(path, plan=plan)
