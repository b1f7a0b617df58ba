"""The demo on the embedded default data: phantoms -> seeded split -> for each method (random init, G^D + L^R
pre-training, ...) fine-tune on 2 labeled volumes -> predict the held-out test volumes -> Dice/HD95 table per
method, overlays and a short report.

The whole report folder appears at once when the demo has finished (it is built in a hidden folder beside it).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .benchmark.pipeline import (RunSettings, finetune_method, predict_cases, pretrain_stage, pretraining_steps,
                                 score_cases)
from .data.discovery import discover
from .data.phantom import LABEL_NAMES, write_phantom_dataset
from .data.splits import make_split, save_split
from .evaluation import CASE_COLUMNS, SUMMARY_COLUMNS, format_table, summarise, write_rows
from .io import atomic_path, write_text
from .settings import ExecutionConfig, PreprocessConfig, PretrainConfig, config_from_args
from .training.methods import Method, parse_method


@dataclass(frozen=True)
class DemoConfig(ExecutionConfig):
    """subjects: phantoms made; labeled: fine-tuning volumes; test: held-out volumes; the rest stay unlabeled and
    feed pre-training. methods: compared initialisations (see ``training.methods``); device, precision and
    channels_last as for every job."""

    subjects: int = 10
    labeled: int = 2
    test: int = 4
    iterations: int = 600
    pretrain_iterations: int = 300
    methods: tuple[str, ...] = ("random", "GD+LR")
    seed: int = 0
    crop_size: int = 64
    spacing: float = 2.0
    time_budget: float | None = None  # seconds of each method's chain (``runtime.budget``), None: the iterations


def run_demo(out: str | os.PathLike, config: DemoConfig = DemoConfig(), overwrite: bool = False) -> list[dict]:
    """Run the demo into the folder ``out``; returns one summary row per method and structure."""
    out = Path(out)
    methods = [parse_method(name) for name in config.methods]
    with atomic_path(out, overwrite, kind="folder") as staging:
        staging.mkdir()
        data = write_phantom_dataset(staging / "phantoms", config.subjects, seed=config.seed)
        dataset = discover(data)
        split = make_split(dataset, n_labeled=config.labeled, n_test=config.test, seed=config.seed)
        save_split(split, staging / "split.json")
        test_cases = dataset.subset(split.groups["test"]).cases
        rows, seconds = [], {}
        for method in methods:
            started = time.perf_counter()
            model = _train(method, data, staging, config, pool=config.subjects - config.test)
            seconds[method.name] = time.perf_counter() - started
            rows += _evaluate(method.name, model, test_cases, staging, config, dataset.label_colors)
        summary = [{"method": m.name, **row} for m in methods
                   for row in summarise([r for r in rows if r["method"] == m.name])]
        write_rows(rows, staging / "metrics.csv")
        write_rows(summary, staging / "summary.csv")
        tables = (format_table(rows, ["method"] + CASE_COLUMNS, title="per test volume") + "\n\n" +
                  format_table(summary, ["method"] + SUMMARY_COLUMNS,
                               title=f"test Dice / HD95 on {len(test_cases)} held-out volumes, "
                                     f"{config.labeled} labeled volume(s) for fine-tuning"))
        write_text(_report(config, split, seconds, tables), staging / "report.md")
    print(tables)
    print(f"\nreport: {out / 'report.md'}  overlays: {out / 'overlays'}")
    return summary


def _train(method: Method, data: Path, staging: Path, config: DemoConfig, pool: int) -> Path:
    """Pre-train on the ``pool`` training volumes (stages shared between methods run once) and fine-tune; returns
    the checkpoint."""
    preprocess = PreprocessConfig(target_spacing=config.spacing, crop_size=config.crop_size)
    settings = _run_settings(config, pool)
    split, init = staging / "split.json", None
    for step in pretraining_steps(method):
        path = staging / "pretrained" / f"{step.chain}.pt"
        if not path.exists():
            pretrain_stage(step, data, split, path, preprocess if init is None else None, init, settings)
        init = path
    model, _ = finetune_method(method, data, split, staging / "models" / f"{method.name}.pt",
                               preprocess if init is None else None, init, settings)
    return model


def _evaluate(name: str, model: Path, test_cases, staging: Path, config: DemoConfig, colors) -> list[dict]:
    """Predict the test volumes with ``model``; per-structure rows, and one overlay PNG per volume."""
    structures = {v: n for v, n in LABEL_NAMES.items() if v}
    predictions = staging / "predictions" / name
    predict_cases(model, test_cases, predictions, _run_settings(config, pool=1))
    rows = score_cases(test_cases, predictions, structures, overlays=staging / "overlays" / name, colors=colors,
                       title=f"{name}: ")
    return [{"method": name, **row} for row in rows]


def _run_settings(config: DemoConfig, pool: int) -> RunSettings:
    return RunSettings(pretrain_iterations=config.pretrain_iterations, finetune_iterations=config.iterations,
                       seed=config.seed, volumes_per_batch=min(PretrainConfig.volumes_per_batch, pool),
                       time_budget=config.time_budget, **config_from_args(ExecutionConfig, config).to_json())


def _report(config: DemoConfig, split, seconds: dict[str, float], tables: str) -> str:
    groups = "\n".join(f"- {group}: {', '.join(ids) or '—'}" for group, ids in split.groups.items())
    timing = "\n".join(f"- {name}: {value:.0f} s (pre-training shared with earlier methods not counted again)"
                        for name, value in seconds.items())
    return f"""# ContrastSeg demo

Procedural cardiac-like phantoms (LV, myocardium, RV), {config.subjects} subjects (seed {config.seed}). Each method
initialises a 2-D UNet (random, or contrastive pre-training for {config.pretrain_iterations} iterations per stage on the
training volumes of the split, labels unused), fine-tunes it on {config.labeled} labeled volume(s) for
{config.iterations} iterations, and segments the held-out test volumes on their original grids.

## Split (split.json)
{groups}

## Results
```
{tables}
```
Time per method:
{timing}

Overlays of each test volume (image | reference | prediction) are in `overlays/<method>/`.

## Reproduce
`contrastseg demo --out DIR --subjects {config.subjects} --labeled {config.labeled} --iterations {config.iterations} \
--pretrain-iterations {config.pretrain_iterations} --methods {",".join(config.methods)} --seed {config.seed}`

contrastseg {__version__}, torch {torch.__version__}, Python {sys.version.split()[0]}, {platform.platform()}
"""
