"""Pre-training while the user annotates, as ``bench_minutes.py --inits background`` replays it: the panel's
background chain (the stages of its Advanced defaults, ``PretrainingCache``'s commands) runs on the pool's unlabeled
images for the minutes that annotating takes, ``ANNOTATION_MINUTES`` per labeled volume, then is stopped as the
panel's Fine-tune stops it (the stop file: the running stage writes the weights it reached). The checkpoint kept
then is the fine-tune's start. From one |X_L| to the next the chain goes on (``--continue``), as the panel's does
while the user annotates one more volume; so |X_L| = 2 starts from 2 × ``ANNOTATION_MINUTES`` of pre-training.

This time is the user's annotating, not the fine-tuning budget: it is recorded beside the checkpoint
(``spent_s.json``), and the fine-tuning job is timed alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.io import write_text
from ContrastSegLib.runtime.stop import STOP_FILE_VARIABLE
from ContrastSegLib.settings import PreprocessConfig, PretrainConfig

from ContrastSegLogic.pretraining_cache import PretrainingCache

ANNOTATION_MINUTES = 20.0  # per labeled volume: 2-3 volumes take a radiologist 20-60 minutes


def annotation_stages(stages: Sequence[PretrainConfig], device: str, pool_size: int,
                      channels: Sequence[int]) -> list[PretrainConfig]:
    """The panel's stages as its workflow checks them: on ``device``, no more volumes per batch than the pool
    holds, no more local decoder blocks than the UNet of ``channels`` has."""
    blocks = len(channels) - 1
    return [replace(stage, device=device, volumes_per_batch=min(stage.volumes_per_batch, pool_size),
                    decoder_blocks=min(stage.decoder_blocks, blocks)) for stage in stages]


def annotation_checkpoint(folder: Path, images: Sequence[Path], labeled: int, minutes: float,
                          stages: Sequence[PretrainConfig], preprocess: PreprocessConfig, channels: Sequence[int],
                          env: Mapping[str, str]) -> tuple[Path, float]:
    """(the checkpoint kept after ``labeled`` × ``minutes`` of pre-training on ``images``, the seconds it ran);
    runs what is missing of that time (earlier |X_L| went on from), and keeps its snapshot in ``folder``."""
    snapshot = folder / f"after-{labeled}-labeled.pt"
    spent_file = folder / "spent_s.json"
    spent = json.loads(spent_file.read_text(encoding="utf-8")) if spent_file.is_file() else {}
    if snapshot.is_file() and str(labeled) in spent:
        return snapshot, float(spent[str(labeled)])
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "pool.json"
    if not manifest.is_file():
        cases = [{"id": f"pool{index:03d}", "image": str(Path(image).resolve())} for index, image in enumerate(images)]
        write_text(json.dumps({"cases": cases}, indent=2) + "\n", manifest)
    cache = PretrainingCache.of(folder / "cache", [], [str(manifest)], stages, preprocess, channels)
    total = float(spent.get("total", 0.0))
    deadline = labeled * minutes * 60
    for step in cache.steps():
        if total >= deadline:
            break
        total += run_until(step.command, deadline - total, folder / "pretrain.log", env)
        write_text(json.dumps({**spent, "total": total}) + "\n", spent_file, overwrite=True)
    checkpoint = cache.checkpoint()
    if checkpoint is None:
        raise ContrastSegError(f"{folder}: the background pre-training kept no checkpoint; see pretrain.log")
    staging = snapshot.with_name(f".{snapshot.name}.partial")
    shutil.copyfile(checkpoint, staging)
    os.replace(staging, snapshot)
    write_text(json.dumps({**spent, "total": total, str(labeled): total}) + "\n", spent_file, overwrite=True)
    return snapshot, total


def run_until(command: Sequence[str], seconds: float, log: Path, env: Mapping[str, str]) -> float:
    """Run ``command`` until it ends or ``seconds`` have passed, then stop it as the panel does (it writes the
    weights reached); its wall seconds."""
    stop_file = log.parent / "stop-requested"
    stop_file.unlink(missing_ok=True)
    started = time.perf_counter()
    with log.open("a", encoding="utf-8") as handle:
        process = subprocess.Popen(list(command), env={**env, STOP_FILE_VARIABLE: str(stop_file)},
                                   stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=max(seconds, 0.0))
        except subprocess.TimeoutExpired:
            stop_file.touch()
            process.wait()
    stop_file.unlink(missing_ok=True)
    if process.returncode:
        raise ContrastSegError(f"{command[3]} failed (exit {process.returncode}), see {log}")
    return time.perf_counter() - started
