"""Slice embeddings from a checkpoint's encoder, to compare scans (and, with a fine-tuned model, how unsure it is).

Shape: a preprocessed volume's slices (S, P, P) -> embeddings (S, D), unit length: the global stage's g1 output
(D = 128) when the checkpoint holds that head, else the bottleneck features averaged over the plane
(D = the last encoder width). A fine-tuned checkpoint's same pass also yields the class probabilities, whose
entropy inside the predicted structures and their border (``triage.uncertainty``) is the volume's uncertainty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ContrastSegError
from ..inference.slices import normalised_entropy
from ..models import UNet2D, UNetConfig, evaluating, global_head
from ..preprocess import PreparedVolume
from ..runtime.checkpoint import Checkpoint, load_checkpoint
from ..runtime.precision import ExecutionPlan, plan_execution
from ..settings import PreprocessConfig, Stage
from ..triage.uncertainty import foreground_uncertainty

ENCODER_TRAINING_STAGES = ("finetune",) + tuple(f"pretrain-{stage}" for stage in
                                                 (Stage.GLOBAL, Stage.MASKED, Stage.SUPERVISED_LOCAL))


@dataclass(frozen=True)
class VolumeEmbedding:
    """slices: (S, D) float32 unit vectors; uncertainty: the volume's mean entropy in its predicted structures and
    their border (fine-tuned models only; NaN when nothing was predicted), else None."""

    slices: np.ndarray
    uncertainty: float | None = None


def _encoder_was_trained(metadata: dict) -> bool:
    """Whether this checkpoint or one it descends from trained the encoder (the local stage keeps it frozen)."""
    lineage = metadata.get("lineage")
    lineage = lineage if isinstance(lineage, list) else []
    stages = [metadata.get("stage")] + [entry.get("stage") for entry in lineage if isinstance(entry, dict)]
    return any(stage in ENCODER_TRAINING_STAGES for stage in stages)


class SliceEmbedder:
    """Load once, embed many volumes: ``SliceEmbedder.from_file("model.pt").embed(prepared)``."""

    def __init__(self, checkpoint: Checkpoint, source: str = "checkpoint", plan: ExecutionPlan | None = None,
                 batch_size: int = 32):
        meta = checkpoint.metadata
        if "architecture" not in meta or "preprocessing" not in meta:
            raise ContrastSegError(f"{source}: this checkpoint records no architecture or preprocessing; pass a "
                                   "checkpoint written by contrastseg pretrain or finetune")
        try:
            self.model = UNet2D(UNetConfig.from_json(meta["architecture"]))
            self.preprocess_config = PreprocessConfig.from_json(meta["preprocessing"])
        except (KeyError, TypeError, ValueError) as error:
            raise ContrastSegError(f"{source}: checkpoint metadata is damaged ({error}); train it again") from None
        encoder = {k for k in checkpoint.model if k.startswith("encoder.")}
        if encoder != {k for k in self.model.state_dict() if k.startswith("encoder.")}:
            raise ContrastSegError(f"{source}: the checkpoint holds no complete encoder to embed slices with; pass "
                                   "a pre-trained (global or masked stage) or fine-tuned checkpoint")
        if not _encoder_was_trained(meta):
            raise ContrastSegError(f"{source}: its encoder was never trained (a local stage keeps the encoder it "
                                   "starts from, here a random one); pass the global or masked stage's checkpoint, "
                                   "a chain built on one, or a fine-tuned model")
        self.fine_tuned = meta.get("stage") == "finetune" and "labels" in meta
        own = self.model.state_dict()
        g1 = {k[len("heads.g1."):]: v for k, v in checkpoint.model.items() if k.startswith("heads.g1.")}
        try:  # a fine-tuned model's decoder and head make its uncertainty: all of it must be there
            self.model.load_state_dict({k: v for k, v in checkpoint.model.items() if k in own},
                                       strict=self.fine_tuned)
        except RuntimeError as error:
            raise ContrastSegError(f"{source}: checkpoint does not match its architecture ({error}); train it "
                                   "again") from None
        self.head = None
        if g1 and not self.fine_tuned:
            self.head = global_head(self.model, self.preprocess_config.crop_size)
            try:
                self.head.load_state_dict(g1)
            except RuntimeError:
                self.head = None  # a head for another crop: the bottleneck features instead
        self.plan = plan or plan_execution()
        layout = torch.channels_last if self.plan.channels_last else torch.contiguous_format
        self.model.to(self.plan.device, memory_format=layout)
        if self.head is not None:
            self.head.to(self.plan.device)
        self.batch_size, self.source = batch_size, source

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str = "auto", precision: str = "auto",
                  channels_last: str = "auto") -> "SliceEmbedder":
        return cls(load_checkpoint(path), source=str(path), plan=plan_execution(device, precision, channels_last))

    @property
    def describes(self) -> str:
        return "the g1 head" if self.head is not None else "pooled bottleneck features"

    def embed(self, prepared: PreparedVolume) -> VolumeEmbedding:
        """Embed every slice of ``prepared`` (made with ``self.preprocess_config``)."""
        vectors, indices, entropy = [], [], []
        with evaluating(self.model), torch.no_grad():
            for start in range(0, prepared.image.shape[0], self.batch_size):
                batch = torch.from_numpy(prepared.image[start:start + self.batch_size]).unsqueeze(1)
                batch = batch.to(self.plan.device, memory_format=torch.channels_last if self.plan.channels_last
                                 else torch.contiguous_format)
                with self.plan.autocast():
                    features = self.model.encode(batch)
                    bottom = features[-1]
                    vector = self.head(bottom) if self.head is not None else bottom.mean((2, 3))
                    logits = self.model.segmentation_head(self.model.decode(features)) if self.fine_tuned else None
                vectors.append(F.normalize(vector.float(), dim=1).cpu())
                if logits is not None:
                    probabilities = torch.softmax(logits.float(), 1)
                    entropy.append(normalised_entropy(probabilities).cpu())
                    indices.append(probabilities.argmax(1).cpu())
        uncertainty = None
        if self.fine_tuned:
            uncertainty = foreground_uncertainty(torch.cat(indices).numpy(), torch.cat(entropy).numpy())
        return VolumeEmbedding(torch.cat(vectors).numpy(), uncertainty)
