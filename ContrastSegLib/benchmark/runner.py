"""``contrastseg benchmark``: every (method, |X_L|, seed) cell on a dataset's fixed split, resumable, with results.csv
and report.md.

Layout of ``OUT``::

    benchmark.json                  settings of the run (a later run must repeat them)
    data/manifest.json              the test and pool cases every stage reads (data/phantom: generated phantoms)
    splits/pretraining.json         pool only: the unsupervised pre-training stages of every seed read it
    splits/labeled<n>_seed<s>.json  a cell's split: seeded labeled draw, rest of the pool unlabeled, test kept out
    selection/seed<s>.json          --select suggest: the labeled pool in the order seed s's G^D model suggests it
    pretrained/seed<s>/<chain>.pt   pre-training stages, shared by every |X_L| and method with that chain and seed;
    pretrained/seed<s>/labeled<n>/  ... except chains with the supervised-local stage (SLC), which reads the labels
                                    (suggested volumes: pretrained/seed<s>/suggest_labeled<n>/)
    cells/<method>/labeled<n>_seed<s>/  result.json, model.pt, predictions/ (+ review.csv), overlay PNG: complete or
                                    absent (suggested volumes: cells/<method>/suggest_labeled<n>_seed<s>/)
    results.csv, report.md, plots/  rewritten from the finished cells at the end of every run

A finished cell is never recomputed; a stopped run continues where it stopped when the same command runs again.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..choices import DEFAULT_SELECTIONS, Selection
from ..data.splits import check_not_test, load_split, save_split
from ..errors import ContrastSegError
from ..evaluation import summarise
from ..io import atomic_path, write_text
from ..models import UNetConfig
from ..runtime.precision import resolve_device
from ..runtime.progress import ProgressReporter
from ..selection import SliceEmbedder, SuggestConfig, suggest_among
from ..settings import ExecutionConfig, GlobalStrategy, PreprocessConfig, Stage, config_from_args
from ..triage import spearman
from .cells import FULL, Cell, check_counts, check_methods, check_selections, method_of, plan_cells
from .datasets import FOLDER_PREFIX, PreparedDataset, check_dataset_option, prepare_dataset
from .environment import describe_environment
from .pipeline import (PretrainStep, RunSettings, finetune_method, predict_cases, pretrain_stage, pretraining_steps,
                       score_cases, triage_of)
from .profiles import Profile, get_profile
from .report import result_row, write_outputs
from .settings import check_settings, record_settings
from .split_files import labeled_draw, library_split


@dataclass(frozen=True)
class BenchmarkRequest:
    """What ``contrastseg benchmark`` was asked; None fields take the profile's defaults. ``spacing``/``crop``
    override the dataset's conventions, ``pretrain_iterations``/``finetune_iterations`` the profile's;
    ``performance`` None: on for the cpu and paper profiles."""

    dataset: str
    out: Path
    profile: str = "smoke"
    data: str | None = None
    labeled: tuple[int, ...] | None = None
    methods: tuple[str, ...] | None = None
    seeds: int | None = None
    spacing: float | None = None
    crop: int | None = None
    pretrain_iterations: int | None = None
    finetune_iterations: int | None = None
    device: str = ExecutionConfig.device
    precision: str = ExecutionConfig.precision
    channels_last: str = ExecutionConfig.channels_last
    performance: bool | None = None
    finetune_recipe: dict = field(default_factory=dict)
    time_budget: float | None = None
    select: tuple[str, ...] = DEFAULT_SELECTIONS
    command: str | None = None


def run_benchmark(request: BenchmarkRequest) -> list[dict]:
    """Run the missing cells of ``request`` and write results.csv, report.md and the plots; returns the rows of
    results.csv (one per cell asked for)."""
    profile = _with_iterations(get_profile(request.profile), request)
    methods = check_methods(profile.methods if request.methods is None else tuple(request.methods))
    seeds = profile.seeds if request.seeds is None else request.seeds
    labeled = check_counts(profile.labeled if request.labeled is None else tuple(request.labeled), seeds)
    selections = check_selections(tuple(request.select))
    check_dataset_option(request.dataset, request.data)
    _check_preprocessing(request, profile.channels)
    device = str(resolve_device(request.device))
    out = Path(request.out).expanduser().absolute()
    settings = {"dataset": _absolute_folder(request.dataset), "data": str(Path(request.data).expanduser().absolute())
                if request.data else None, "profile": profile.name, "profile_settings": profile.to_json(),
                "spacing": request.spacing, "crop": request.crop, "device": device, "precision": request.precision,
                "channels_last": request.channels_last, "finetune_recipe": dict(request.finetune_recipe),
                "time_budget": request.time_budget}
    recorded = check_settings(out, settings)
    prepared = prepare_dataset(request.dataset, request.data, out / "data", profile, request.spacing, request.crop,
                               check_pool=lambda size: plan_cells(methods, labeled, seeds, size, request.dataset))
    cells = plan_cells(methods, labeled, seeds, len(prepared.split.labeled_pool), request.dataset, selections)
    environment = describe_environment(request.device, request.precision, request.channels_last, request.command)
    if not recorded:
        record_settings(out, settings, environment)
    runner = _CellRunner(out, prepared, profile, request)
    reporter = ProgressReporter("benchmark", len(cells))
    if reporter.json_lines:
        reporter.started(cells=len(cells), dataset=request.dataset, profile=profile.name)
    results = []
    for done, cell in enumerate(cells, start=1):
        result, computed = runner.result(cell)
        results.append(result)
        _announce(reporter, done, len(cells), f"{cell.describe()}: {_summary_text(result)}"
                  + ("" if computed else " (finished earlier, kept)"))
    rows = [result_row(request.dataset, r) for r in results]
    performance = request.performance if request.performance is not None else profile.performance
    write_outputs(out, rows, results, prepared, profile, environment, _performance(performance, profile.name, device))
    if reporter.json_lines:
        reporter.finished(results=str(out / "results.csv"), report=str(out / "report.md"))
    print(f"results: {out / 'results.csv'}  report: {out / 'report.md'}", flush=True)
    return rows


class _CellRunner:
    """Computes (or reads back) cells, reusing pre-training checkpoints between them."""

    def __init__(self, out: Path, prepared: PreparedDataset, profile: Profile, request: BenchmarkRequest):
        self.out, self.prepared, self.profile, self.request = out, prepared, profile, request
        self.preprocess = PreprocessConfig(target_spacing=prepared.spacing_mm, crop_size=prepared.crop)

    def settings(self, seed: int) -> RunSettings:
        p = self.profile
        return RunSettings(pretrain_iterations=p.pretrain_iterations, finetune_iterations=p.finetune_iterations,
                           seed=seed, batch_size=p.batch_size,
                           volumes_per_batch=min(p.volumes_per_batch, len(self.prepared.split.pool)),
                           channels=p.channels, finetune_recipe=tuple(sorted(self.request.finetune_recipe.items())),
                           time_budget=self.request.time_budget,
                           **config_from_args(ExecutionConfig, self.request).to_json())

    def result(self, cell: Cell) -> tuple[dict, bool]:
        """(the cell's result.json content, whether it was computed now)."""
        folder = self.out / "cells" / cell.folder
        if (folder / "result.json").is_file():
            return json.loads((folder / "result.json").read_text(encoding="utf-8")), False
        _remove_staging_of(folder)
        with atomic_path(folder) as staging:
            staging.mkdir()
            result = _json_ready(self._compute(cell, staging))
            write_text(json.dumps(result, indent=2) + "\n", staging / "result.json")
        return result, True

    def _compute(self, cell: Cell, staging: Path) -> dict:
        method, settings, data = method_of(cell.method), self.settings(cell.seed), self.prepared.manifest
        if cell.select == Selection.RANDOM:
            draw = labeled_draw(self.prepared.split, cell.labeled, cell.seed)
        else:
            draw = tuple(sorted(self._suggested(cell.seed, settings)[:cell.labeled]))
        split = self._save_split(cell.folder.name, draw, cell.seed, "fine-tuning")
        init, pretrain_seconds = None, 0.0
        for step in pretraining_steps(method):
            folder = self.out / "pretrained" / f"seed{cell.seed}"
            folder = folder / cell.folder.name.split("_seed")[0] if "+SLC" in step.chain else folder
            stage_split = split if step.supervised else self._save_split("pretraining", (), 0, "pre-training")
            path, seconds = self._pretrained(step, stage_split, folder / f"{step.chain}.pt", init, settings)
            init, pretrain_seconds = path, pretrain_seconds + seconds
        if cell.method == FULL:  # a ceiling: trained until the loss stops falling, longer with more volumes
            settings = replace(settings, finetune_iterations=full_iterations(settings.finetune_iterations,
                                                                             cell.labeled), plateau_stop=True)
        started = time.perf_counter()
        model, _ = finetune_method(method, data, split, staging / "model.pt", self.preprocess if init is None else None,
                                   init, settings, pretrain_seconds)
        finetune_seconds = time.perf_counter() - started
        test_cases = self.prepared.dataset.subset(self.prepared.split.test).cases
        started = time.perf_counter()
        predict_cases(model, test_cases, staging / "predictions", settings)
        predict_seconds = time.perf_counter() - started
        rows = score_cases(test_cases, staging / "predictions", self.prepared.structures, overlays=staging,
                           overlay_count=1, colors=self.prepared.colors, title=f"{cell.describe()}: ")
        triage = triage_of(staging / "predictions", test_cases, rows)
        return {"method": cell.method, "labeled": cell.labeled, "seed": cell.seed, "select": cell.select,
                "labeled_cases": list(draw), "triage": triage,
                "triage_spearman": spearman([t["score"] for t in triage], [t["dice"] for t in triage]),
                "test_cases": [c.id for c in test_cases], "pretrain_seconds": round(pretrain_seconds, 3),
                "finetune_seconds": round(finetune_seconds, 3), "predict_seconds": round(predict_seconds, 3),
                "rows": rows, "summary": summarise(rows), "overlay": f"{test_cases[0].id}.png"}

    def _suggested(self, seed: int, settings: RunSettings) -> tuple[str, ...]:
        """The labeled pool in the order ``contrastseg suggest`` picks it with seed ``seed``'s G^D checkpoint (the
        first stage of G^D + L^R, shared with those cells): its first n are the n volumes to label."""
        record = self.out / "selection" / f"seed{seed}.json"
        if record.is_file():
            return tuple(json.loads(record.read_text(encoding="utf-8"))["order"])
        step = PretrainStep(Stage.GLOBAL, GlobalStrategy.GD, GlobalStrategy.GD.value)
        model, _ = self._pretrained(step, self._save_split("pretraining", (), 0, "pre-training"),
                                    self.out / "pretrained" / f"seed{seed}" / f"{step.chain}.pt", None, settings)
        cases = list(self.prepared.dataset.subset(self.prepared.split.labeled_pool).cases)
        embedder = SliceEmbedder.from_file(model, settings.device, settings.precision, settings.channels_last)
        picks, _ = suggest_among(embedder, cases, config=SuggestConfig(count=len(cases)))
        order = [cases[pick.volume].id for pick in picks]
        with atomic_path(record) as temporary:
            temporary.write_text(json.dumps({"model": str(model), "order": order}, indent=2) + "\n")
        return tuple(order)

    def _save_split(self, name: str, train_labeled: tuple[str, ...], seed: int, stage: str) -> Path:
        """The library split ``splits/<name>.json`` (rewritten only when it differs); ``library_split`` refuses
        test ids among its training cases."""
        split = library_split(self.prepared.dataset, self.prepared.split, train_labeled, seed, stage)
        path = self.out / "splits" / f"{name}.json"
        if not path.is_file() or json.loads(path.read_text(encoding="utf-8")) != split.to_json():
            save_split(split, path, overwrite=True)
        return path

    def _pretrained(self, step, split: Path, path: Path, init: Path | None, settings: RunSettings
                    ) -> tuple[Path, float]:
        """The stage's checkpoint and the seconds it took (read back when an earlier cell made it). A stage counts
        as done when its ``.json`` timing record exists; an interrupted stage resumes from its resume file."""
        record = path.with_suffix(".json")
        if record.is_file():
            return path, float(json.loads(record.read_text(encoding="utf-8"))["seconds"])
        loaded = load_split(split)
        inputs = loaded.groups["train_labeled"] + (() if step.supervised else loaded.groups["train_unlabeled"])
        check_not_test(loaded, inputs, f"pre-training {step.chain}")
        path.unlink(missing_ok=True)  # finished, but its time was not recorded: run it again to measure it
        _remove_staging_of(path)
        started = time.perf_counter()
        pretrain_stage(step, self.prepared.manifest, split, path, self.preprocess if init is None else None, init,
                       settings)
        seconds = time.perf_counter() - started
        with atomic_path(record) as temporary:
            temporary.write_text(json.dumps({"chain": step.chain, "seconds": round(seconds, 3)}) + "\n")
        return path, seconds


FULL_SCALE_LIMIT = 8


def full_iterations(iterations: int, labeled: int) -> int:
    """Fine-tuning steps of ``full`` on ``labeled`` volumes: ``iterations`` per two volumes (at most
    ``FULL_SCALE_LIMIT`` times as many), ended earlier by the plateau rule."""
    return iterations * min(FULL_SCALE_LIMIT, max(1, labeled // 2))


def _absolute_folder(dataset: str) -> str:
    """``folder:PATH`` with PATH absolute (the record must not depend on the working directory)."""
    if dataset.startswith(FOLDER_PREFIX):
        return FOLDER_PREFIX + str(Path(dataset[len(FOLDER_PREFIX):]).expanduser().absolute())
    return dataset


def _remove_staging_of(path: Path) -> None:
    """Delete the hidden staging folders a killed run left beside ``path`` (``.<name>.partial-*``)."""
    for leftover in path.parent.glob(f".{path.name}.partial-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _check_preprocessing(request: BenchmarkRequest, channels: tuple[int, ...]) -> None:
    divisor = UNetConfig(channels=channels).divisor
    crop = request.crop
    if crop is not None and (crop < divisor or crop % divisor):
        raise ContrastSegError(f"--crop-size {crop}: must be a multiple of {divisor} for this profile's UNet; try "
                               f"{max(divisor, round(crop / divisor) * divisor)}")
    if request.spacing is not None and not request.spacing > 0:
        raise ContrastSegError(f"--spacing {request.spacing}: give a positive in-plane spacing in mm")


def _with_iterations(profile: Profile, request: BenchmarkRequest) -> Profile:
    """``profile`` with the iteration counts the request overrides (each ≥ 1)."""
    changes = {name: value for name in ("pretrain_iterations", "finetune_iterations")
               if (value := getattr(request, name)) is not None}
    for name, value in changes.items():
        if type(value) is not int or value < 1:
            raise ContrastSegError(f"--{name.replace('_', '-')} {value}: give a whole number ≥ 1")
    return replace(profile, **changes)


def _performance(enabled: bool, profile: str, device: str) -> str | None:
    if not enabled:
        return None
    from .performance import performance_table

    return performance_table(profile, device)


def _json_ready(value):
    """NaN (an HD95 without a surface) as null, so result.json is standard JSON."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def _summary_text(result: dict) -> str:
    mean = next(row for row in result["summary"] if row["structure"] == "mean")
    train = result["pretrain_seconds"] + result["finetune_seconds"]
    hd95 = "—" if mean["hd95_mm_mean"] is None else f"{mean['hd95_mm_mean']:.1f} mm"
    return (f"mean Dice {mean['dice_mean']:.3f}, HD95 {hd95} "
            f"(train {train:.0f} s, predict {result['predict_seconds']:.1f} s)")


def _announce(reporter: ProgressReporter, done: int, total: int, message: str) -> None:
    """One line per cell: a ``log`` + ``progress`` event on a non-terminal stdout, plain text on a terminal."""
    if reporter.json_lines:
        reporter.log(f"[{done}/{total}] {message}")
        reporter.update(done)
    else:
        print(f"[{done}/{total}] {message}", flush=True)
