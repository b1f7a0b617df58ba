"""How long ``contrastseg suggest`` takes on a cohort: 100 volumes of 20 slices at 128² (1 mm), with a global-stage
checkpoint (g1 embedding) and with a fine-tuned one (bottleneck embedding + the decoder pass for uncertainty).

    python benchmarks/bench_suggest.py [--volumes 100] [--slices 20] [--side 128] [--count 10] [--device auto]

Both checkpoints hold the paper UNet (16-32-64-128-128-128) with freshly initialised weights, written with the
metadata of a trained one: the time of a forward pass does not depend on the weights. The volumes are smooth random
images written as NIfTI beforehand (not timed). Rows: the whole ``run_suggest`` call (read, preprocess, embed,
k-center, table), then its parts measured in a second pass over the same files: reading + preprocessing, the
network, the k-center choice.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from timing import machine_with_plans

from ContrastSegLib.data.labels import LabelSet
from ContrastSegLib.io import Volume, read_image, write_volume
from ContrastSegLib.models import UNet2D, UNetConfig, global_head
from ContrastSegLib.preprocess import preprocess_volume
from ContrastSegLib.runtime.checkpoint import Checkpoint, save_checkpoint
from ContrastSegLib.runtime.precision import resolve_device
from ContrastSegLib.selection import SliceEmbedder, SuggestConfig, choose, run_suggest
from ContrastSegLib.settings import PreprocessConfig


def write_cohort(folder: Path, volumes: int, slices: int, side: int) -> Path:
    rng = np.random.default_rng(0)
    for index in range(volumes):
        coarse = rng.normal(size=(slices, side // 16, side // 16)).astype(np.float32)
        array = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None], size=(side, side),
                                                mode="bilinear")[0].numpy() * 100 + 500
        write_volume(Volume(array.astype(np.float32), (1.0, 1.0, 3.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)),
                     folder / f"scan{index:03d}.nii.gz")
    return folder


def write_checkpoint(path: Path, side: int, fine_tuned: bool) -> Path:
    labels = LabelSet.build([0, 1, 2, 3])
    architecture = UNetConfig(num_classes=labels.num_classes)
    model = UNet2D(architecture)
    if not fine_tuned:
        model.heads["g1"] = global_head(model, side)
    metadata = {"stage": "finetune" if fine_tuned else "pretrain-global", "architecture": architecture.to_json(),
                "preprocessing": PreprocessConfig(target_spacing=1.0, crop_size=side).to_json(), "lineage": []}
    if fine_tuned:
        metadata["labels"] = labels.to_json()
    return save_checkpoint(Checkpoint(model.state_dict(), metadata), path)


def parts(model: Path, cohort: Path, config: SuggestConfig) -> dict[str, float]:
    embedder = SliceEmbedder.from_file(model, config.device, config.precision, config.channels_last)
    seconds = {"read + preprocess": 0.0, "network": 0.0}
    embedded = []
    for path in sorted(cohort.iterdir()):
        started = time.perf_counter()
        prepared = preprocess_volume(read_image(path), embedder.preprocess_config)
        middle = time.perf_counter()
        embedded.append(embedder.embed(prepared))
        seconds["read + preprocess"] += middle - started
        seconds["network"] += time.perf_counter() - middle
    started = time.perf_counter()
    choose(embedded, config)
    seconds["k-center"] = time.perf_counter() - started
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volumes", type=int, default=100)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = str(resolve_device(args.device))
    config = SuggestConfig(count=args.count, device=device)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cohort = write_cohort(root / "cohort", args.volumes, args.slices, args.side)
        print(f"{machine_with_plans(device)}; {args.volumes} volumes × {args.slices} slices at {args.side}²\n")
        print("| checkpoint | whole suggest s | read + preprocess s | network s | k-center s |")
        print("| --- | --- | --- | --- | --- |")
        for name, fine_tuned in (("global stage (g1 embedding)", False),
                                 ("fine-tuned (embedding + uncertainty)", True)):
            model = write_checkpoint(root / f"{fine_tuned}.pt", args.side, fine_tuned)
            started = time.perf_counter()
            run_suggest(model, [cohort], root / f"{fine_tuned}.csv", config)
            whole = time.perf_counter() - started
            split = parts(model, cohort, config)
            print(f"| {name} | {whole:.1f} | {split['read + preprocess']:.1f} | {split['network']:.1f} | "
                  f"{split['k-center']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
