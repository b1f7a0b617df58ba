"""Where a pre-training step's time goes: the global stage G^D, the supervised-local stage (stride 4, the default,
and stride 8, and half the batch), and the masked-image stage, side by side in one run.

    python benchmarks/bench_stage_cost.py [--device auto|cpu|cuda] [--crop 128] [--rounds 5]

Each variant is one full step (views or masks, forward, loss, backward, Adam) of ``ContrastiveObjective`` on a
freshly initialised paper UNet with its stage's head, drawing from a bank of 4 phantoms preprocessed at the crop
(batches: m = 4 volumes × S = 4 partitions = 16 slices, the defaults). For the supervised-local stage a second
row "network only" runs the same two views through encoder, decoder and head with the loss replaced by the mean
of the features, which splits its time between the network (a whole decoder at full resolution, twice) and the
loss. Times: median seconds per step over interleaved rounds (``interleaved_medians``).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
from timing import interleaved_medians, machine_with_plans

from ContrastSegLib.benchmark.workloads import paper_unet
from ContrastSegLib.data.phantom import make_phantom
from ContrastSegLib.preprocess import preprocess_volume
from ContrastSegLib.runtime.precision import plan_execution, resolve_device
from ContrastSegLib.sampling import LabeledSliceBank, PartitionSliceBank
from ContrastSegLib.settings import PreprocessConfig, PretrainConfig
from ContrastSegLib.training.pretrain import ContrastiveObjective, StageNetwork, attach_heads

VARIANTS = {
    "global G^D": PretrainConfig(stage="global", strategy="GD"),
    "supervised-local, stride 4 (default)": PretrainConfig(stage="supervised-local", strategy="stride", stride=4),
    "supervised-local, stride 8": PretrainConfig(stage="supervised-local", strategy="stride", stride=8),
    "supervised-local, stride 4, half batch": PretrainConfig(stage="supervised-local", strategy="stride",
                                                             volumes_per_batch=2),
    "masked-image MIM": PretrainConfig(stage="masked"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    plan = plan_execution(str(device), "auto")
    preprocess = PreprocessConfig(target_spacing=1.0, crop_size=args.crop)
    volumes = [preprocess_volume(*make_phantom(i)[:1], preprocess, make_phantom(i)[1], (0, 1, 2, 3)) for i in range(4)]
    labeled = LabeledSliceBank(volumes, device)
    unlabeled = PartitionSliceBank([v.image for v in volumes], 4, device)
    steps = {}
    for name, config in VARIANTS.items():
        steps[name] = one_step(config, plan, args.crop, labeled if config.stage == "supervised-local" else unlabeled)
    config = VARIANTS["supervised-local, stride 4 (default)"]
    steps["supervised-local: network only"] = one_step(config, plan, args.crop, labeled, network_only=True)
    seconds = interleaved_medians(steps, 1, args.rounds, device)
    base = seconds["global G^D"]
    print(f"{machine_with_plans(str(device))}; crop {args.crop}; {args.rounds} rounds\n")
    print("| stage | s per step | × the G^D step |")
    print("| --- | --- | --- |")
    for name, value in seconds.items():
        print(f"| {name} | {value:.3f} | {value / base:.2f} |")
    return 0


def one_step(config: PretrainConfig, plan, crop: int, bank, network_only: bool = False):
    """A callable doing one optimisation step of ``config``'s stage (a fresh model each)."""
    config = replace(config, precision="auto").check()
    model = paper_unet(plan, 0)
    trainable = attach_heads(model, config, crop)
    model.to(plan.device)
    if plan.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(trainable, lr=1e-3)
    objective = ContrastiveObjective(StageNetwork(model, config), config, plan)
    generator = torch.Generator(device=plan.device).manual_seed(0)

    def step() -> None:
        batch = objective.draw(bank, generator)
        if network_only:
            images = batch[0]
            loss = objective.embed(torch.cat([images, images])).mean()
        else:
            loss = objective.loss(batch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


if __name__ == "__main__":
    raise SystemExit(main())
