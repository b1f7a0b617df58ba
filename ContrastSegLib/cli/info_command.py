"""``contrastseg info``: what a checkpoint is — stage, classes, preprocessing, training, data and lineage."""

from __future__ import annotations

import argparse
import json

from ..data.labels import LabelSet
from ..runtime.checkpoint import load_checkpoint
from ..training.structure_check import NOT_LEARNED_DICE, not_learned, quoted


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "info", help="describe a checkpoint (stage, classes, preprocessing, training settings, early stop, lineage)",
        description="Print what a checkpoint holds, read safely (tensors only), without running anything.")
    parser.add_argument("--model", required=True, help="checkpoint (.pt)")
    parser.add_argument("--json", action="store_true", help="print the whole metadata as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.model)
    meta = checkpoint.metadata
    if args.json:
        print(json.dumps(meta, indent=2, sort_keys=True))
        return 0
    parameters = sum(t.numel() for t in checkpoint.model.values() if t.is_floating_point())
    lines = [f"checkpoint    {args.model}", f"stage         {meta.get('stage', '?')}",
             f"created       {meta.get('created', '?')} (contrastseg {meta.get('library_version', '?')})",
             f"parameters    {parameters:,}"]
    if "architecture" in meta:
        arch = meta["architecture"]
        lines.append(f"UNet          widths {arch['channels']}, {arch['in_channels']} in, {arch['num_classes']} out")
    if "labels" in meta:
        labels = LabelSet.from_json(meta["labels"], args.model)  # names cleaned of control characters
        classes = ", ".join(f"{v}={n}" for v, n in zip(labels.values, labels.names))
        lines.append(f"classes       {classes}")
    if isinstance(meta.get("structures"), list):
        lines.append(f"structures    {_structures(meta['structures'])}")
    if "preprocessing" in meta:
        pre = meta["preprocessing"]
        lines.append(f"preprocessing spacing {pre.get('target_spacing')} mm, crop {pre.get('crop_size')}, "
                     f"slice axis {'auto' if pre.get('slice_axis') is None else pre['slice_axis']}, N4 {pre.get('n4')}")
    if "stopped" in meta:
        stopped = meta["stopped"]
        lines.append(f"stopped       early by {stopped.get('signal')} at step {stopped.get('step')} of "
                     f"{stopped.get('planned')} (the weights reached then" +
                     ("; the same pretrain command with --continue goes on)" if "resume" in meta else ")"))
    if "config" in meta:
        lines.append("training      " + ", ".join(f"{k}={v}" for k, v in meta["config"].items()))
    data = meta.get("data") or {}
    if data:
        lines.append(f"data          {data.get('source')}: train {data.get('train_cases')}, "
                     f"validation {data.get('validation_cases')}")
    for entry in meta.get("lineage", []):
        lines.append(f"from          {entry.get('path')} ({entry.get('stage')})")
    print("\n".join(lines))
    return 0


def _structures(structures: list) -> str:
    """Which structures the fine-tuning did not learn (its Dice on the training volumes), or that all were."""
    missed = not_learned(structures)
    if not missed:
        return f"all structures learned on the training volumes (Dice ≥ {NOT_LEARNED_DICE})"
    return (f"not learned on the training volumes (Dice < {NOT_LEARNED_DICE}): "
            + ", ".join(f"{s.get('value')} {quoted(str(s.get('name')))} (Dice {_dice(s.get('train_dice'))})"
                        for s in missed))


def _dice(value) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "?"
