"""``contrastseg compare``: did pre-training help on *my* data? Leave-one-out over the user's 2–3 (or more) labeled
volumes: for each, every method trains on the others and is scored on the one left out; a paired verdict table,
the recommended method and the commands that train it on all labeled volumes.

Layout of ``OUT`` (a new folder)::

    pretrained/<chain>.pt                    unsupervised stages, on the unlabeled volumes only, shared by folds
                                             (none for the method "pretrained": the ``--init`` checkpoint)
    folds/<case>/train.csv                   the fold's training pairs (every labeled case but <case>)
    folds/<case>/<method>/model.pt, <case>_seg.nii.gz, pretrained/ (supervised-local stages of that fold)
    compare.csv, report.md, verdict.json (the recommendation, read by the Slicer module)

The left-out volume never enters a stage of its fold: the unsupervised stages read only ``--unlabeled``, and an
``--init`` checkpoint must be pre-trained without labels (a fine-tuned model has seen labeled volumes).
"""

from __future__ import annotations

import json
import math
import shlex
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from ..data.discovery import Case, discover
from ..data.pools import unlabeled_cases
from ..errors import ContrastSegError
from ..evaluation import structure_metrics
from ..evaluation.report import csv_text
from ..inference.predict_job import run_predict
from ..io import atomic_path, check_output_path, read_image, read_label, write_text
from ..preprocess import inherited_preprocessing, resolve_preprocessing
from ..runtime.budget import format_duration
from ..runtime.checkpoint import load_checkpoint
from ..runtime.progress import ProgressReporter
from ..runtime.stop import end_if_stopped
from ..settings import (DEFAULT_CHANNELS, ExecutionConfig, FinetuneConfig, PreprocessConfig, PretrainConfig, Stage,
                        command_arguments)
from ..training.finetune_job import run_finetune
from ..training.methods import Method
from ..training.pretrain_job import run_pretrain
from .cells import check_methods, method_of
from .pipeline import pretraining_steps
from .report import dice_table, random_comparison_table
from .verdict import DEFAULT_COMPARE_METHODS, VERDICT_FILE, verdict_record



@dataclass(frozen=True)
class CompareRequest:
    """What ``contrastseg compare`` was asked. ``time_budget``: seconds for everything, shared out equally over the
    runs (each pre-training stage, each fine-tuning), each capped by its iterations."""

    labeled: Path
    unlabeled: tuple[Path, ...]
    out: Path
    methods: tuple[str, ...] = DEFAULT_COMPARE_METHODS
    time_budget: float | None = None
    pretrain_iterations: int = PretrainConfig.iterations
    finetune_iterations: int = FinetuneConfig.iterations
    preprocess: PreprocessConfig = PreprocessConfig()
    channels: tuple[int, ...] = DEFAULT_CHANNELS
    execution: ExecutionConfig = ExecutionConfig()
    seed: int = 0
    volumes_per_batch: int = PretrainConfig.volumes_per_batch  # at most the unlabeled volumes there are
    init: Path | None = None  # a pre-trained checkpoint, compared as the method "pretrained"


PRETRAINED = "pretrained"  # the method "fine-tuned from --init"
UNSUPERVISED_STAGES = tuple(f"pretrain-{stage.value}" for stage in (Stage.GLOBAL, Stage.LOCAL, Stage.MASKED))


def _method(name: str) -> Method:
    """The recipe of a compared method: "pretrained" has no stage to run (its weights are ``--init``)."""
    return Method(PRETRAINED) if name == PRETRAINED else method_of(name)


def _with_init(request: CompareRequest) -> CompareRequest:
    """``request`` with the ``--init`` checkpoint's widths and the preprocessing it passes on
    (``inherited_preprocessing``; what the request leaves unset), so every method runs on the same grid; a
    checkpoint that saw labels is refused."""
    metadata = load_checkpoint(request.init).metadata
    stages = [step.get("stage") for step in metadata.get("lineage", [])] + [metadata.get("stage")]
    labeled = [stage for stage in stages if stage not in UNSUPERVISED_STAGES]
    if labeled:
        raise ContrastSegError(f"--init {request.init}: made by a {labeled[0]} stage, which learned from labeled "
                               "volumes, so a fold would be scored on a volume it trained on; choose a checkpoint of "
                               "contrastseg pretrain on unlabeled volumes (global, local or masked stages)")
    inherited = inherited_preprocessing(metadata)
    given = {k: v for k, v in request.preprocess.to_json().items() if v != getattr(PreprocessConfig(), k)}
    channels = tuple(metadata["architecture"]["channels"])
    return replace(request, preprocess=replace(inherited, **given), channels=channels)


def run_compare(request: CompareRequest) -> dict:
    """Run every fold of every method; write compare.csv and report.md. Returns {"rows", "recommended",
    "commands", "report"}."""
    methods = check_methods(tuple(m for m in request.methods if m != PRETRAINED) or ("random",))
    if "random" not in methods:
        methods = ("random",) + methods  # the verdict is against random initialisation
    if request.init is not None:
        request, methods = _with_init(request), ("random", PRETRAINED) + methods[1:]
    elif PRETRAINED in request.methods:
        raise ContrastSegError(f"--methods {PRETRAINED}: give the pre-trained checkpoint with --init PATH")
    out = check_output_path(request.out, overwrite=False, kind="folder")
    dataset = discover(request.labeled)
    cases = sorted(dataset.labeled, key=lambda c: c.id)
    if len(cases) < 2:
        raise ContrastSegError(f"{request.labeled}: {len(cases)} labeled volume(s); leave-one-out needs at least 2 "
                               "(train on the others, test on the one left out) — annotate one more")
    if not request.unlabeled and any(_method(m).pretraining for m in methods):
        raise ContrastSegError("--unlabeled: pre-training methods learn from unlabeled volumes; pass --unlabeled DIR "
                               "or compare --methods random only")
    preprocess = _fixed_preprocessing(request, cases)
    pool = len(unlabeled_cases(request.unlabeled)) if request.unlabeled else 0
    domain = [m for m in methods for s in pretraining_steps(_method(m))
              if _stage_config(s, request, None).uses_domain]
    if domain and pool < 2:
        raise ContrastSegError(f"--unlabeled: {pool} unlabeled volume(s); {domain[0]} contrasts slices of different "
                               "volumes and needs at least 2 — add unlabeled volumes or leave it out of --methods")
    request = replace(request, volumes_per_batch=max(1, min(request.volumes_per_batch, pool)))
    for name in methods:  # every stage's settings checked before anything trains
        for step in pretraining_steps(_method(name)):
            _stage_config(step, request, None).check().check_model(request.channels, preprocess.crop_size)
    runs = _count_runs(methods, len(cases))
    share = None if request.time_budget is None else request.time_budget / runs
    with atomic_path(out) as staging:  # all or nothing: a stopped or failed comparison leaves no OUT
        staging.mkdir(parents=True)
        result = _run_folds(request, methods, cases, dataset, preprocess, share, staging)
    return result


def _run_folds(request: CompareRequest, methods: Sequence[str], cases: Sequence[Case], dataset,
               preprocess: PreprocessConfig, share: float | None, out: Path) -> dict:
    reporter = ProgressReporter("compare", len(cases) * len(methods))
    pretrained: dict[str, Path] = {}
    rows, done = [], 0
    for fold, case in enumerate(cases):
        folder = out / "folds" / case.id
        folder.mkdir(parents=True)
        train = _fold_manifest(folder / "train.csv", [c for c in cases if c is not case])
        for name in methods:
            method = _method(name)
            init = (request.init if name == PRETRAINED else
                    _pretrain_chain(method, request, preprocess, share, train, out, folder / name, pretrained))
            model, _ = run_finetune(train, folder / name / "model.pt", _finetune_config(request, method, share),
                                    preprocess, channels=request.channels, init=init)
            end_if_stopped()
            rows.append({"case": case.id, "fold": fold, "method": name, "labeled": len(cases) - 1,
                         "seed": fold, "dice_mean": _score(model, case, folder / name, request, dataset)})
            done += 1
            reporter.update(done)
    result = _verdict(rows, methods, request, preprocess)
    _write_outputs(out, rows, result)
    return result


def _fixed_preprocessing(request: CompareRequest, cases: Sequence[Case]) -> PreprocessConfig:
    """One preprocessing for every run, so the methods differ only in how they start: what is not given comes from
    the labeled volumes (``resolve_preprocessing``)."""
    if request.preprocess.target_spacing is not None and request.preprocess.crop_size is not None:
        return request.preprocess.check(request.channels)
    volumes = [read_image(c.image, channel=c.channel) for c in cases]
    return resolve_preprocessing(request.preprocess, volumes, request.channels)


def _count_runs(methods: Sequence[str], folds: int) -> int:
    """Training runs the budget is shared by: one fine-tuning per fold and method, each unsupervised stage once,
    each supervised-local stage once per fold."""
    stages: set[str] = set()
    supervised = 0
    for name in methods:
        for step in pretraining_steps(_method(name)):
            if step.supervised:
                supervised += folds
            else:
                stages.add(step.chain)
    return folds * len(methods) + len(stages) + supervised


def _fold_manifest(path: Path, cases: Sequence[Case]) -> Path:
    rows = [{"image": str(c.image.absolute()), "label": str(c.label.absolute())} for c in cases]
    write_text(csv_text(rows, ["image", "label"]), path)
    return path


def _pretrain_chain(method: Method, request: CompareRequest, preprocess: PreprocessConfig, share: float | None,
                    train: Path, out: Path, folder: Path, pretrained: dict[str, Path]) -> Path | None:
    """The method's stages in order (unsupervised ones made once and reused); the last checkpoint, or None."""
    init = None
    for step in pretraining_steps(method):
        config = _stage_config(step, request, share)
        if step.supervised:
            path = folder / "pretrained" / f"{step.chain}.pt"
            run_pretrain([], path, config, None if init else preprocess, channels=request.channels, init=init,
                         labeled=train)
        elif step.chain in pretrained:
            path = pretrained[step.chain]
        else:
            path = out / "pretrained" / f"{step.chain}.pt"
            run_pretrain(list(request.unlabeled), path, config, None if init else preprocess,
                         channels=request.channels, init=init)
            pretrained[step.chain] = path
        end_if_stopped()
        init = path
    return init


def _stage_config(step, request: CompareRequest, share: float | None) -> PretrainConfig:
    """A stage of the comparison: its iterations and budget share, as many decoder blocks as the UNet has (up to
    the default), a batch the unlabeled pool can fill."""
    return replace(PretrainConfig(stage=step.stage, strategy=step.strategy), iterations=request.pretrain_iterations,
                   time_budget=share, seed=request.seed, volumes_per_batch=request.volumes_per_batch,
                   decoder_blocks=min(PretrainConfig.decoder_blocks, len(request.channels) - 1),
                   **request.execution.to_json())


def _finetune_config(request: CompareRequest, method: Method, share: float | None) -> FinetuneConfig:
    return replace(FinetuneConfig(), iterations=request.finetune_iterations, time_budget=share, seed=request.seed,
                   mixup=method.mixup, self_training_rounds=0, **request.execution.to_json()).check()


def _score(model: Path, case: Case, folder: Path, request: CompareRequest, dataset) -> float:
    """Mean foreground Dice of the left-out case (over the structures of the dataset's labels, else the values
    present in its reference or prediction)."""
    [written] = run_predict(model, [case.image], folder / f"{case.id}_seg.nii.gz", device=request.execution.device,
                            precision=request.execution.precision, channel=case.channel,
                            channels_last=request.execution.channels_last)
    image = read_image(case.image, channel=case.channel)
    reference, prediction = read_label(case.label, image=image), read_label(written, image=image)
    names = {v: n for v, n in (dataset.label_names or {}).items() if v} or None
    return float(statistics.fmean(row["dice"] for row in structure_metrics(prediction, reference, names)))


def _verdict(rows: list[dict], methods: Sequence[str], request: CompareRequest,
             preprocess: PreprocessConfig) -> dict:
    """The recommendation: the highest mean Dice among the methods higher than random on more than half of the
    folds; random when none is."""
    by = {(r["method"], r["fold"]): r["dice_mean"] for r in rows}
    folds = sorted({r["fold"] for r in rows})
    means = {m: statistics.fmean(by[(m, f)] for f in folds) for m in methods}
    higher = {m: sum(by[(m, f)] > by[("random", f)] for f in folds) for m in methods if m != "random"}
    helping = [m for m, count in higher.items() if count * 2 > len(folds)]
    best = max(helping, key=lambda m: means[m]) if helping else "random"
    commands = training_commands(best, request, preprocess)
    table = dice_table(rows, list(methods)) + "\n" + random_comparison_table(rows, list(methods), "folds")
    reason = (f"higher than random initialisation on most of the {len(folds)} folds, mean Dice {means[best]:.3f} "
              f"against {means['random']:.3f}" if best != "random" else
              "no pre-training method beat random initialisation on most folds: pre-training did not help here")
    report = "\n\n".join([
        "# Did pre-training help on my data?",
        f"Leave-one-out over {len(folds)} labeled volumes: each column trains on {len(folds) - 1} of them and "
        "scores mean foreground Dice on the one left out (rows of `compare.csv`)."
        + (f" Time budget {format_duration(request.time_budget)} in all." if request.time_budget else ""),
        table.strip(), f"**Recommended: {best}** — {reason}.",
        "Train it on all labeled volumes:\n\n```\n" + "\n".join(commands) + "\n```"]) + "\n"
    paired = {m: {"difference": round(statistics.fmean(by[(m, f)] - by[("random", f)] for f in folds), 4),
                  "higher_on": higher[m]} for m in higher}
    record = verdict_record(best, {m: round(v, 4) for m, v in means.items()}, paired, commands, len(folds))
    return {**record, "rows": rows, "report": report}


def training_commands(name: str, request: CompareRequest, preprocess: PreprocessConfig) -> list[str]:
    """The shell commands that train method ``name`` on all of ``request.labeled`` (and its unlabeled volumes)."""
    lines, init = [], None
    unlabeled = [str(p) for p in request.unlabeled]
    channels = ["--channels", ",".join(map(str, request.channels))]
    for step in pretraining_steps(_method(name)):
        out = f"{step.chain}.pt"
        config = _stage_config(step, request, None)
        words = ["contrastseg", "pretrain", *(["--labeled", str(request.labeled)] if step.supervised
                                              else ["--unlabeled", *unlabeled]), "--out", out,
                 *_stage_flags(config)]
        words += ["--init", init] if init else [*command_arguments(preprocess), *channels]
        lines.append(shlex.join(words))
        init = out
    finetune = ["contrastseg", "finetune", "--labeled", str(request.labeled), "--out", "model.pt",
                "--iterations", str(request.finetune_iterations), "--seed", str(request.seed)]
    if name == PRETRAINED:
        finetune += ["--init", str(request.init), *command_arguments(preprocess)]
    else:
        finetune += ["--init", init] if init else [*command_arguments(preprocess), *channels]
    lines.append(shlex.join(finetune + (["--mixup"] if _method(name).mixup else [])))
    return lines


def _stage_flags(config: PretrainConfig) -> list[str]:
    flags = ["--stage", config.stage, "--iterations", str(config.iterations), "--seed", str(config.seed),
             "--volumes-per-batch", str(config.volumes_per_batch), "--decoder-blocks", str(config.decoder_blocks)]
    return flags + (["--strategy", config.strategy] if config.stage != Stage.MASKED else [])


def _write_outputs(out: Path, rows: list[dict], result: dict) -> None:
    table = [{**r, "dice_mean": f"{r['dice_mean']:.4f}" if math.isfinite(r["dice_mean"]) else ""} for r in rows]
    write_text(csv_text(table, ["case", "fold", "method", "labeled", "dice_mean"]), out / "compare.csv")
    write_text(result["report"], out / "report.md")
    write_text(json.dumps({k: v for k, v in result.items() if k not in ("rows", "report")}, indent=2) + "\n",
               out / VERDICT_FILE)
