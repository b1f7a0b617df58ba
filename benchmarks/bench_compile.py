"""Is ``torch.compile`` (inductor) worth adopting? The fine-tuning training step and the prediction forward pass,
eager against compiled, side by side in one run.

    python benchmarks/bench_compile.py [--device auto|cpu|cuda] [--crop 128] [--batch 16] [--rounds 8]

Both variants use the automatic precision plan (CPU with AMX: bf16 autocast + channels_last) on the paper UNet
(4 classes), each with its own freshly initialised model; rounds are interleaved (``interleaved_medians``). The
compile time (the first call of each compiled function) is reported apart. The project adopts compilation where
the compiled step is at least 1.3× the eager one (and the Dice equal); it prints whether that holds.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from timing import interleaved_medians, machine_with_plans, synchronize

from ContrastSegLib.models import UNet2D, UNetConfig
from ContrastSegLib.runtime.precision import plan_execution, resolve_device
from ContrastSegLib.training.finetune import TrainingStep

ADOPT_AT = 1.3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    plan = plan_execution(str(device), "auto")
    images = torch.rand(args.batch, 1, args.crop, args.crop, device=device)
    targets = F.one_hot(torch.randint(0, 4, (args.batch, args.crop, args.crop), device=device), 4)
    targets = targets.permute(0, 3, 1, 2).float()

    def model() -> UNet2D:
        torch.manual_seed(0)
        network = UNet2D(UNetConfig(num_classes=4)).to(device)
        return network.to(memory_format=torch.channels_last) if plan.channels_last else network

    eager_step, compiled_step = TrainingStep(model(), plan, 1e-3), TrainingStep(model(), plan, 1e-3)
    compiled_step.model = torch.compile(compiled_step.model)
    eager_net, compiled_net = model().eval(), model().eval()
    compiled_forward = torch.compile(compiled_net)
    inputs = images.contiguous(memory_format=torch.channels_last) if plan.channels_last else images

    def forward(network):
        def run():
            with torch.no_grad(), plan.autocast():
                network(inputs)
        return run

    compile_seconds = {}
    for name, run in (("training step", lambda: compiled_step(images, targets)),
                      ("prediction forward", forward(compiled_forward))):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        compile_seconds[name] = time.perf_counter() - start
    train = interleaved_medians({"eager": lambda: eager_step(images, targets),
                                 "compiled": lambda: compiled_step(images, targets)}, 2, args.rounds, device)
    predict = interleaved_medians({"eager": forward(eager_net), "compiled": forward(compiled_forward)}, 2,
                                  args.rounds, device)
    print(f"{machine_with_plans(str(device))}; crop {args.crop}, batch {args.batch}, {args.rounds} rounds\n")
    print("| step | eager s | compiled s | speed-up | compile s | adopt (≥ 1.3×) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, times in (("training step", train), ("prediction forward", predict)):
        ratio = times["eager"] / times["compiled"]
        print(f"| {name} | {times['eager']:.3f} | {times['compiled']:.3f} | {ratio:.2f}× | "
              f"{compile_seconds[name]:.0f} | {'yes' if ratio >= ADOPT_AT else 'no'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
