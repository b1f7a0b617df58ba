"""Run under ``torchrun``: one global-stage step of a tiny UNet on a fixed global batch, split over the ranks.

    torchrun --nproc_per_node=2 Testing/ddp_worker.py OUT.pt [cpu|cuda]   # gloo on the CPU (default), NCCL on CUDA

Rank 0 writes the loss and the gradients (after DDP's all-reduce) to the file named on the command line; the test
(and ``benchmarks/gpu_check.py`` on CUDA) compares them with the same step in a single process.
"""

import sys

import torch
from torch.nn.parallel import DistributedDataParallel

from ContrastSegLib.losses import global_contrastive_loss
from ContrastSegLib.models import UNet2D, UNetConfig
from ContrastSegLib.runtime.precision import plan_execution
from ContrastSegLib.settings import PretrainConfig
from ContrastSegLib.training import distributed
from ContrastSegLib.training.pretrain import ContrastiveObjective, StageNetwork, attach_heads

CONFIG = PretrainConfig(stage="global", strategy="GD", partitions=2, volumes_per_batch=2, temperature=0.1)


def fixed_global_batch():
    """8 images = 2 volumes × 2 partitions × 2 views, with their (image, volume, partition) ids."""
    generator = torch.Generator().manual_seed(11)
    images = torch.rand(8, 1, 16, 16, generator=generator)
    image_ids = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    volume_ids = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    partition_ids = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    return images, image_ids, volume_ids, partition_ids


def step(context: distributed.DistributedContext, device: str = "cpu") -> tuple[float, dict[str, torch.Tensor]]:
    """Loss of the global batch and the gradients of every trainable parameter (on the CPU), computed in fp32 on
    ``device`` ("cpu", "cuda" or "cuda:N")."""
    torch.manual_seed(0)
    model = UNet2D(UNetConfig(num_classes=2, channels=(4, 8, 16)))
    attach_heads(model, CONFIG, crop_size=16)
    model.to(device).eval()  # BatchNorm with running statistics: per-image, so independent of how the batch is split
    network = StageNetwork(model, CONFIG)
    if context.enabled:
        index = torch.device(device).index
        network = DistributedDataParallel(network, device_ids=None if index is None else [index])
    objective = ContrastiveObjective(network, CONFIG, plan_execution(device, "fp32"), context)
    images, image_ids, volume_ids, partition_ids = (t.to(device) for t in fixed_global_batch())
    loss = global_contrastive_loss(objective.embed(images), image_ids, volume_ids, partition_ids, "GD", 0.1)
    (loss * context.world_size).backward()
    grads = {name: p.grad.cpu().clone() for name, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


if __name__ == "__main__":
    requested = sys.argv[2] if len(sys.argv) > 2 else "cpu"
    context = distributed.start(requested)
    loss, grads = step(context, distributed.local_device(context, requested))
    if context.is_main:
        torch.save({"loss": torch.tensor(loss), "grads": grads}, sys.argv[1])
    distributed.stop(context)
