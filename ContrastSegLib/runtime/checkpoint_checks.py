"""Checks of a loaded checkpoint's metadata against its weights and the settings' ranges, in one place.

Every checkpoint read goes through :func:`check_checkpoint` (called by ``load_checkpoint``): the architecture within
the bounds of ``--channels`` and its tensors the shapes that architecture has (so the model built from it costs no
more memory than the file holds), the label list one value per class of the segmentation head, each value one the
label-map writer can store, and the preprocessing within its options' ranges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..data.labels import MAX_CLASSES, LabelSet
from ..errors import ContrastSegError
from ..models import UNet2D, UNetConfig
from ..settings import MAX_BLOCKS, MAX_WIDTH, PreprocessConfig

MAX_LABEL_VALUE = 65535  # label maps are written as uint8 or uint16 (io.volume.smallest_label_dtype)
HEAD = "segmentation_head.weight"  # (classes, width, 1, 1)
HEADS = "heads."  # projection heads of the pre-training stages: not part of the UNet's own layout
RETRAIN = "train it again with contrastseg, or use a checkpoint it wrote"


def check_checkpoint(path: Path, metadata: dict[str, Any], model: dict[str, Any]) -> None:
    """Refuse metadata that disagrees with the tensors of ``model`` or lies out of range (one line naming
    ``path`` and the fix)."""
    architecture = metadata.get("architecture")
    if architecture is None:
        return
    config = _architecture(path, architecture)
    _check_tensors(path, config, model, complete=metadata.get("stage") == "finetune")
    if "labels" in metadata:  # a pre-training stage records the classes of its data, not of a head it keeps
        _check_labels(path, metadata["labels"], config.num_classes if HEAD in model else None)
    if "preprocessing" in metadata:
        try:
            preprocessing = PreprocessConfig.from_json(metadata["preprocessing"]).check(config.channels)
        except ContrastSegError as error:
            raise ContrastSegError(f"{path}: the checkpoint's preprocessing is out of range ({error}); "
                                   f"{RETRAIN}") from None
        except (TypeError, AttributeError) as error:
            raise _damaged(path, f"preprocessing: {error}") from None
        if preprocessing.crop_size is None or preprocessing.target_spacing is None:
            raise _damaged(path, "preprocessing: no crop size or spacing")


def _architecture(path: Path, data: Any) -> UNetConfig:
    try:
        config = UNetConfig.from_json(data)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise _damaged(path, f"architecture: {error}") from None
    widths = config.channels
    if not (1 <= config.in_channels <= 16 and 2 <= config.num_classes <= MAX_CLASSES
            and 2 <= len(widths) <= MAX_BLOCKS and all(1 <= w <= MAX_WIDTH for w in widths)):
        raise ContrastSegError(
            f"{path}: the checkpoint's architecture (in_channels {config.in_channels}, num_classes "
            f"{config.num_classes}, channels {list(widths)}) lies outside what contrastseg builds (2..{MAX_BLOCKS} "
            f"encoder widths in 1..{MAX_WIDTH}); {RETRAIN}")
    return config


def _check_tensors(path: Path, config: UNetConfig, model: dict[str, Any], complete: bool) -> None:
    """Each tensor of the UNet's own layout has the shape ``config`` gives it; ``complete``: none is missing."""
    with torch.device("meta"):  # shapes only: nothing is allocated
        expected = {k: tuple(v.shape) for k, v in UNet2D(config).state_dict().items()}
    for key, tensor in model.items():
        if not isinstance(tensor, torch.Tensor):
            raise _damaged(path, f"weight {key!r} is not a tensor")
        if key.startswith(HEADS):
            continue
        if key not in expected or tuple(tensor.shape) != expected[key]:
            raise ContrastSegError(
                f"{path}: weight {key} (shape {tuple(tensor.shape)}) does not fit the architecture the checkpoint "
                f"records (channels {list(config.channels)}, {config.num_classes} classes: "
                f"{expected.get(key, 'no such weight')}); {RETRAIN}")
    missing = sorted(set(expected) - set(model)) if complete else []
    if missing:
        raise ContrastSegError(f"{path}: the checkpoint lacks {len(missing)} weight(s) of its UNet (e.g. "
                               f"{missing[0]}); {RETRAIN}")


def _check_labels(path: Path, data: Any, num_classes: int | None) -> None:
    """Values 0 < ... increasing, each at most :data:`MAX_LABEL_VALUE`, as many names and colours, and with
    ``num_classes`` (the segmentation head's) one per class."""
    labels = LabelSet.from_json(data, str(path))
    values = labels.values
    if len({len(values), len(labels.names), len(labels.colors), num_classes or len(values)}) != 1:
        raise ContrastSegError(
            f"{path}: the checkpoint lists {len(values)} label values, {len(labels.names)} names and "
            f"{len(labels.colors)} colours for a segmentation head of {num_classes or len(values)} classes; {RETRAIN}")
    if not values or values[0] != 0 or any(b <= a for a, b in zip(values, values[1:])) or values[-1] > MAX_LABEL_VALUE:
        raise ContrastSegError(
            f"{path}: the checkpoint's label values {list(values)[:8]}{'…' if len(values) > 8 else ''} must start "
            f"at 0 (background), increase and stay ≤ {MAX_LABEL_VALUE} (what a label map can hold); {RETRAIN}")
    if any(len(c) != 3 or not all(0 <= x <= 255 for x in c) for c in labels.colors):
        raise ContrastSegError(f"{path}: the checkpoint's label colours must be [R, G, B] in 0..255; {RETRAIN}")


def _damaged(path: Path, detail: str) -> ContrastSegError:
    text = " ".join(detail.split())
    return ContrastSegError(f"{path}: checkpoint metadata is damaged ({text[:160]}); {RETRAIN}")
