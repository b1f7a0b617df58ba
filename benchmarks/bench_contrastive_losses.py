"""Benchmark of the contrastive losses: the vectorised ``global_contrastive_loss`` / ``local_contrastive_loss`` against
the loops written straight from their definitions (``naive_*`` of ``Testing/test_contrastive_losses.py``, imported
from there so that the test and the benchmark measure the same code).

    python benchmarks/bench_contrastive_losses.py [--quick] [--device auto|cpu|cuda] [--threads 1] [--pairs N]

Sizes of the paper: global N = 16 slices × 3 views (4 volumes × 4 partitions), D = 128; local B = 16 images of
48×48×64 features, 3×3 regions (R = 256); ``--quick`` shrinks the local maps to 24×24×16. Each timed call is
forward + backward; the variants run interleaved (vectorised, loops, vectorised, ...) after a warm-up round and the
median is reported. When 2p (p = ``--pairs``) is fewer than all (anchor, positive) pairs, the loops are run on their
first p and on their first 2p pairs only; every pair of these batches sums over the same number of negatives, so
their time and memory are extrapolated to all pairs along the line through those two points (marked "≈"), which
counts the fixed start-up work (the unit vectors) once.
Memory: on CUDA the peak of ``torch.cuda.max_memory_allocated`` above the memory held before the call; on CPU the
bytes of the distinct storages saved for backward (``torch.autograd.graph.saved_tensors_hooks``), measured in a
separate untimed call; tensor data only, so the per-node bookkeeping of the loops' autograd graph is not counted.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing"))

from test_contrastive_losses import naive_global_contrastive, naive_local_contrastive  # noqa: E402

from ContrastSegLib.benchmark.kernel_cost import tag_ids  # noqa: E402
from ContrastSegLib.losses import global_contrastive_loss, local_contrastive_loss  # noqa: E402
from timing import interleaved_medians, synchronize, machine_description  # noqa: E402

VOLUMES, PARTITIONS, VIEWS, EMBEDDING = 4, 4, 3, 128
REGION, TEMPERATURE = 3, 0.1
FEATURES = {"full": (48, 64), "quick": (24, 16)}  # local feature maps: side, channels


@dataclass
class Case:
    """One loss configuration: how to call both versions on the same leaves, and how many pairs it has."""

    name: str
    leaves: list[torch.Tensor]
    vectorised: Callable[[], torch.Tensor]
    loops: Callable[[int | None], torch.Tensor]  # argument: pairs to evaluate (None: all)
    pairs: int


def batch_ids(device: torch.device, views: int) -> tuple[torch.Tensor, ...]:
    """Image, volume and partition ids of VOLUMES × PARTITIONS slices, each repeated ``views`` times."""
    return tag_ids(VOLUMES, PARTITIONS, views, device)


def make_cases(device: torch.device, side: int, channels: int) -> list[Case]:
    generator = torch.Generator().manual_seed(0)
    slices = VOLUMES * PARTITIONS
    z = torch.randn(slices * VIEWS, EMBEDDING, generator=generator).to(device).requires_grad_(True)
    image, volume, partition = batch_ids(device, VIEWS)
    cases = []
    for strategy in ("GR", "GD-", "GD"):
        positives_per_anchor = VOLUMES * VIEWS - 1 if strategy == "GD" else VIEWS - 1
        cases.append(Case(
            f"global {strategy} (N = {len(z)}, D = {EMBEDDING})", [z],
            lambda s=strategy: global_contrastive_loss(z, image, volume, partition, s, TEMPERATURE),
            lambda limit, s=strategy: naive_global_contrastive(z, image, volume, partition, s, TEMPERATURE, limit),
            len(z) * positives_per_anchor))
    f1, f2 = (torch.randn(slices, channels, side, side, generator=generator).to(device).requires_grad_(True)
              for _ in range(2))
    _, image_volume, image_partition = batch_ids(device, 1)
    regions = (side // REGION) ** 2
    for strategy in ("LR", "LD"):
        positives_per_anchor = 1 + 2 * (VOLUMES - 1) if strategy == "LD" else 1
        cases.append(Case(
            f"local {strategy} (B = {slices}, {side}×{side}×{channels}, K = {REGION})", [f1, f2],
            lambda s=strategy: local_contrastive_loss(f1, f2, REGION, TEMPERATURE, s, image_volume, image_partition),
            lambda limit, s=strategy: naive_local_contrastive(f1, f2, REGION, TEMPERATURE, s, image_volume,
                                                              image_partition, limit),
            2 * slices * regions * positives_per_anchor))
    return cases


def forward_backward(loss: Callable[[], torch.Tensor], leaves: list[torch.Tensor]) -> None:
    for leaf in leaves:
        leaf.grad = None
    loss().backward()


def memory_bytes(run: Callable[[], None], device: torch.device) -> int:
    """CUDA: peak allocated above the starting point; CPU: bytes of distinct storages saved for backward."""
    if device.type == "cuda":
        synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(storages.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="24×24×16 local features, few pairs for the loops, 3 rounds: a few seconds")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--pairs", type=int, default=None,
                        help="pairs the loops evaluate before extrapolating (default 64, --quick 4)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5, --quick 3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads, 0 for torch's default (default 1: the loops use one core whatever "
                             "the setting, and spinning threads distort times on a busy machine)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    pairs = args.pairs or (4 if args.quick else 64)
    rounds = args.rounds or (3 if args.quick else 5)
    memory_method = ("peak torch.cuda.max_memory_allocated above the start" if device.type == "cuda" else
                     "bytes of distinct storages saved for backward (saved_tensors_hooks; tensor data only, not the "
                     "bookkeeping of the loops' many autograd nodes)")

    rows = []
    for case in make_cases(device, *FEATURES["quick" if args.quick else "full"]):
        # Loops on all pairs when 2p covers them; else on p and 2p pairs, extrapolated along the line through both.
        limits = [None] if 2 * pairs >= case.pairs else [pairs, 2 * pairs]
        variants = {"vectorised": lambda c=case: forward_backward(c.vectorised, c.leaves)}
        for n in limits:
            variants[f"loops {n}"] = lambda c=case, n=n: forward_backward(lambda: c.loops(n), c.leaves)
        seconds = interleaved_medians(variants, warmup=1, rounds=rounds, device=device)
        memory = {name: memory_bytes(run, device) for name, run in variants.items()}
        if limits == [None]:
            loops_seconds, loops_memory, run_by_loops, approx = (seconds["loops None"], memory["loops None"],
                                                                 f"all {case.pairs}", "")
        else:
            steps = (case.pairs - 2 * pairs) / pairs
            low, high = f"loops {pairs}", f"loops {2 * pairs}"
            loops_seconds = seconds[high] + steps * (seconds[high] - seconds[low])
            loops_memory = memory[high] + steps * (memory[high] - memory[low])
            run_by_loops, approx = f"{pairs} and {2 * pairs} of {case.pairs}", "≈ "
        rows.append([case.name, f"{seconds['vectorised'] * 1e3:.2f}", f"{approx}{loops_seconds * 1e3:.0f}",
                     run_by_loops, f"{approx}{loops_seconds / seconds['vectorised']:.0f}×",
                     f"{memory['vectorised'] / 2 ** 20:.2f}", f"{approx}{loops_memory / 2 ** 20:.2f}",
                     f"{approx}{loops_memory / memory['vectorised']:.1f}×"])

    header = ["loss", "vectorised ms", "loops ms", "pairs run by the loops", "time loops ÷ vectorised",
              "vectorised MiB", "loops MiB", "memory loops ÷ vectorised"]
    print(f"### Contrastive losses, forward + backward ({'quick' if args.quick else 'full'} run, median of {rounds} "
          f"interleaved rounds after 1 warm-up, τ = {TEMPERATURE})\n")
    print(machine_description(device) + "\n")
    print(f"Memory: {memory_method}. \"≈\": the loops ran on their first p and 2p (anchor, positive) pairs only; "
          "their time and memory are extrapolated to all pairs along the line through those two points (every pair "
          "of these batches sums over the same number of negatives).\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
