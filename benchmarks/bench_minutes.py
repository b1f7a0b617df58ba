"""Dice against minutes: the Slicer panel's default fine-tuning on a CPU, within a time budget of a few minutes.

    python benchmarks/bench_minutes.py [--datasets brain-offline,phantom] [--labeled 1,2] [--seeds 3]
        [--budgets 2m,5m,10m,20m] [--inits random,background] [--out bench_output/minutes] [--threads N] [--smoke]

For every dataset, |X_L|, seed, initialisation and budget, one job at a time: the ``contrastseg finetune`` command
the panel builds from its default parameters (``ContrastSegParameters`` over an empty parameter node; budget and
argv from ``finetune_settings`` and ``finetune_arguments``, which ``ContrastSegWorkflow.finetune`` calls), started
as the panel starts it (``contrastseg_command``, ``library_environment``). Measured: its wall time from process
start to exit (the checkpoint is written just before) as a share of the budget (target 95–100 %), its steps and
seconds per step (the checkpoint's ``step`` and ``result.seconds``); then ``contrastseg predict`` on the dataset's
fixed test volumes, scored by ``benchmark.pipeline.score_cases``: the mean Dice and the Dice of each structure.

Unlike a panel job: the labeled volumes are the dataset's files in a manifest (the panel exports scene nodes); the
fine-tuning seed is the run's (the panel's is 0); the device is ``cpu`` (the panel's "auto" without a GPU, pinned
so that a GPU machine still measures its CPU); the budget is the run's (the panel's default, 10 minutes, is one of
the defaults). Torch threads: the machine's default, or ``--threads N`` (OMP_NUM_THREADS=N for every job).

Data: brain-offline (``ensure_brain_offline``, 20 labeled subjects) and ``PHANTOM_SUBJECTS`` phantoms (family 0,
in OUT/data); per dataset ``TEST_VOLUMES`` test volumes fixed by ``make_split`` (seed 0), each seed's labeled
volumes drawn from the rest by ``labeled_draw`` (nested in |X_L|). ``--inits``: ``random`` (the panel's "no
pre-training") and ``background`` (its "pre-train in the background while I annotate": the checkpoint its background
chain keeps after ``--annotation-minutes`` per labeled volume on the pool's images, ``annotation_pretraining.py``;
that time is the user's annotating and is not in the budget).

``--smoke`` checks that the script works in well under a minute, its numbers meaningless: phantoms only (4
subjects, 2 of them for testing), |X_L| 1, one seed, budgets 5s and 10s, 10 s of annotation per labeled volume and,
overriding the panel's defaults as the real mode never does, channels 8,16 and crop 32 (the iterations stay the
panel's: the budget ends the run).

Output in OUT, each file written atomically: runs/<run>/run.json per finished run (a later call skips it; a killed
run is redone) beside its manifest, model, predictions and logs; results.csv (a row per run), results.md (mean ±
std over seeds, lowest structure Dice, budget share; Dice per structure) and dice_vs_minutes.png
(``minutes_report.py``). The default grid
takes about 7.5 hours: 2 datasets × 2 |X_L| × 3 seeds × 37 minutes of budgets, plus prediction.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ContrastSegLib.benchmark.pipeline import score_cases
from ContrastSegLib.benchmark.report import structure_key
from ContrastSegLib.benchmark.split_files import FixedSplit, labeled_draw
from ContrastSegLib.benchmark.timing import machine_with_plans
from ContrastSegLib.data.brain_offline import DEFAULT_ROOT, ensure_brain_offline
from ContrastSegLib.data.discovery import Case, Dataset, discover
from ContrastSegLib.data.phantom import write_phantom_dataset
from ContrastSegLib.data.splits import make_split
from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.evaluation import summarise
from ContrastSegLib.io import write_text
from ContrastSegLib.runtime.budget import format_duration, parse_duration
from ContrastSegLib.runtime.checkpoint import load_checkpoint
from ContrastSegLib.settings import DEFAULT_CHANNELS

MODULE_DIR = Path(__file__).resolve().parent.parent / "ContrastSeg"  # the Slicer module's Qt-free logic
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from ContrastSegLogic.parameters import ContrastSegParameters  # noqa: E402
from ContrastSegLogic.process import contrastseg_command, library_environment  # noqa: E402
from ContrastSegLogic.workflow import finetune_arguments, finetune_settings  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from annotation_pretraining import ANNOTATION_MINUTES, annotation_checkpoint, annotation_stages  # noqa: E402
from minutes_report import write_outputs  # noqa: E402

DEVICE = "cpu"
TEST_VOLUMES, PHANTOM_SUBJECTS = 6, 20
SMOKE = {"datasets": "phantom", "labeled": "1", "seeds": 1, "budgets": "5s,10s"}
SMOKE_TEST_VOLUMES, SMOKE_PHANTOM_SUBJECTS, SMOKE_CHANNELS, SMOKE_CROP = 2, 4, (8, 16), 32  # a pool of 2: G^D compares volumes
SMOKE_ANNOTATION_SHARE = 1 / 120  # of the annotation minutes: 10 s per labeled volume


@dataclass(frozen=True)
class Run:
    """One fine-tuning job and its scoring."""

    dataset: str
    labeled: int
    seed: int
    init: str
    budget_s: float

    @property
    def name(self) -> str:
        return f"{self.dataset}_labeled{self.labeled}_seed{self.seed}_{self.init}_{format_duration(self.budget_s)}"


@dataclass(frozen=True)
class BenchData:
    """A dataset with its fixed test volumes, the pool the labeled volumes are drawn from, and its structures."""

    dataset: Dataset
    split: FixedSplit
    structures: dict[int, str]

    def cases(self, ids) -> list[Case]:
        wanted = set(ids)
        return [case for case in self.dataset.labeled if case.id in wanted]


class ParameterNode(dict):
    """The text parameters of the module's ``vtkMRMLScriptedModuleNode``: all that ``ContrastSegParameters``' values
    use."""

    def GetParameter(self, name: str) -> str:
        return self.get(name, "")

    def SetParameter(self, name: str, text: str) -> None:
        self[name] = text


# name -> the panel's parameter values that choose it, given the checkpoint made beforehand (``start``)
INITIALISATIONS = {"random": lambda start: {"initialisation": "random"},
                   "background": lambda start: {"initialisation": "pretrained-file", "pretrainedPath": start}}


def panel_parameters(run: Run, start: str | None = None) -> ContrastSegParameters:
    """The panel's defaults with the initialisation of ``run`` (``start``: its checkpoint, for a pre-trained one)."""
    parameters = ContrastSegParameters(ParameterNode())
    for key, value in INITIALISATIONS[run.init](start).items():
        parameters.set(key, value)
    if parameters.pretraining() is not None:
        raise ContrastSegError(f"--inits {run.init}: pre-training now is a chain of jobs, not one fine-tuning job")
    return parameters


def panel_grid(parameters: ContrastSegParameters, smoke: bool) -> tuple:
    """(preprocessing, UNet widths) of the panel's jobs (smoke: smaller UNet and crop)."""
    preprocess, channels = parameters.preprocess_config(), DEFAULT_CHANNELS  # the panel passes no channels
    return (replace(preprocess, crop_size=SMOKE_CROP), SMOKE_CHANNELS) if smoke else (preprocess, channels)


def panel_command(run: Run, manifest: Path, model: Path, smoke: bool, start: str | None = None) -> list[str]:
    """The ``contrastseg finetune`` arguments the panel builds for ``run``, from ``start`` when pre-trained."""
    parameters = panel_parameters(run, start)
    preprocess, channels = panel_grid(parameters, smoke)
    settings = finetune_settings(replace(parameters.finetune_config(), seed=run.seed), DEVICE, run.budget_s)
    return finetune_arguments(manifest, model, settings, preprocess, channels, parameters.pretrained_path())


def phantom_dataset(data: Path, smoke: bool) -> Dataset:
    folder = data / "phantom"
    if not (folder / "dataset.json").is_file():
        write_phantom_dataset(folder, SMOKE_PHANTOM_SUBJECTS if smoke else PHANTOM_SUBJECTS, seed=0, overwrite=True)
    return discover(folder)


def brain_dataset(data: Path, smoke: bool) -> Dataset:
    return discover(ensure_brain_offline(DEFAULT_ROOT))


DATASETS = {"brain-offline": brain_dataset, "phantom": phantom_dataset}


def bench_data(name: str, data: Path, smoke: bool) -> BenchData:
    dataset = DATASETS[name](data, smoke)
    test = make_split(dataset, n_labeled=0, n_test=SMOKE_TEST_VOLUMES if smoke else TEST_VOLUMES,
                      seed=0).groups["test"]
    pool = tuple(sorted(case.id for case in dataset.labeled if case.id not in test))
    structures = {value: name for value, name in (dataset.label_names or {}).items() if value != 0}
    return BenchData(dataset, FixedSplit(tuple(test), pool, pool), structures)


def write_manifest(path: Path, cases: list[Case], dataset: Dataset) -> Path:
    """A ContrastSeg manifest of ``cases`` with the dataset's label names and colours, as the panel writes one."""
    record: dict = {"cases": [{"id": c.id, "image": str(c.image.resolve()), "label": str(c.label.resolve())}
                              for c in cases]}
    if dataset.label_names:
        record["labels"] = {str(value): name for value, name in dataset.label_names.items()}
    if dataset.label_colors:
        record["colors"] = {str(value): list(rgb) for value, rgb in dataset.label_colors.items()}
    return write_text(json.dumps(record, indent=2) + "\n", path)


def timed_job(command: list[str], log: Path, env: dict[str, str]) -> float:
    """Run ``command`` to its end, output into ``log``; its wall seconds from start to exit."""
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as handle:
        status = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, stdout=handle,
                                stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started
    if status:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise ContrastSegError(f"{command[3]} failed (exit {status}), see {log}: " + " / ".join(tail))
    return seconds


def execute(run: Run, data: BenchData, out: Path, folder: Path, smoke: bool, env: dict[str, str]) -> dict:
    """Fine-tune, predict and score ``run`` in the new ``folder``; its record."""
    labeled = labeled_draw(data.split, run.labeled, run.seed)
    manifest = write_manifest(folder / "labeled.json", data.cases(labeled), data.dataset)
    model = folder / "model.pt"
    start, annotation_s = background_start(run, data, out, smoke, env) if run.init == "background" else (None, 0.0)
    arguments = panel_command(run, manifest, model, smoke, start)
    wall_s = timed_job(contrastseg_command(*arguments), folder / "finetune.log", env)
    metadata = load_checkpoint(model).metadata
    test = data.cases(data.split.test)
    predictions = folder / "predictions"
    predict_s = timed_job(contrastseg_command("predict", "--model", str(model), "--input",
                                              *(str(c.image) for c in test), "--output", str(predictions),
                                              "--device", DEVICE), folder / "predict.log", env)
    summary = {row["structure"]: row["dice_mean"] for row in summarise(score_cases(test, predictions,
                                                                                   data.structures))}
    steps, training_s = int(metadata["step"]), float(metadata["result"]["seconds"])
    row = {"dataset": run.dataset, "labeled": run.labeled, "seed": run.seed, "init": run.init,
           "budget_s": run.budget_s, "wall_s": round(wall_s, 2), "share_of_budget": round(wall_s / run.budget_s, 4),
           "steps": steps, "seconds_per_step": round(training_s / steps, 4) if steps else math.nan,
           "training_s": round(training_s, 2), "predict_s": round(predict_s, 2), "mean_dice": summary["mean"],
           **{f"dice_{structure_key(name)}": summary[name] for name in data.structures.values()},
           "threads": job_threads(env), "labeled_cases": " ".join(labeled),
           "pretraining_s": round(annotation_s, 1)}
    return {"row": row, "structures": list(data.structures.values()), "test_cases": list(data.split.test),
            "command": ["contrastseg", *arguments]}


def background_start(run: Run, data: BenchData, out: Path, smoke: bool, env: dict[str, str]) -> tuple[str, float]:
    """The checkpoint the panel's background pre-training keeps while ``run.labeled`` volumes are annotated (one
    chain per dataset, on its pool's images, going on from one |X_L| to the next), and the seconds it ran."""
    parameters = ContrastSegParameters(ParameterNode())
    preprocess, channels = panel_grid(parameters, smoke)
    pool = data.cases(data.split.pool)
    stages = annotation_stages(parameters.pretraining_stages(), DEVICE, len(pool), channels)
    path, seconds = annotation_checkpoint(out / "annotation" / run.dataset, [case.image for case in pool],
                                          run.labeled, ANNOTATION_MINUTES * (SMOKE_ANNOTATION_SHARE if smoke else 1),
                                          stages, preprocess, channels, env)
    return str(path), seconds


def finished_or_run(run: Run, data: BenchData, out: Path, smoke: bool, env: dict[str, str]) -> tuple[dict, bool]:
    """The record of ``run`` (from its run.json when it finished before) and whether it ran now."""
    folder = out / "runs" / run.name
    record = folder / "run.json"
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8")), False
    shutil.rmtree(folder, ignore_errors=True)  # what a killed run left
    folder.mkdir(parents=True)
    result = execute(run, data, out, folder, smoke, env)
    write_text(json.dumps(result, indent=2) + "\n", record)
    return result, True


# ---- command line ----------------------------------------------------------------------------------------------

def words(text: str) -> list[str]:
    return [word.strip() for word in text.split(",") if word.strip()]


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="brain-offline,phantom", help=f"of {', '.join(DATASETS)}")
    parser.add_argument("--labeled", default="1,2", help="comma-separated |X_L| values")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budgets", default="2m,5m,10m,20m", help="comma-separated durations: 90s, 2m, 1h")
    parser.add_argument("--inits", default="random", help=f"of {', '.join(INITIALISATIONS)}")
    parser.add_argument("--out", type=Path, default=Path("bench_output/minutes"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads of every job (default: torch's)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks that the script works")
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    try:
        args.budgets = [parse_duration(word) for word in words(args.budgets)]
        args.labeled = [int(word) for word in words(args.labeled)]
    except ValueError as error:
        parser.error(str(error))
    args.datasets, args.inits = words(args.datasets), words(args.inits)
    if not (args.datasets and args.labeled and args.budgets and args.inits and args.seeds >= 1):
        parser.error("every run needs a dataset, an |X_L|, a seed, a budget and an initialisation")
    for option, names, known in (("--datasets", args.datasets, DATASETS), ("--inits", args.inits, INITIALISATIONS)):
        if not set(names) <= set(known):
            parser.error(f"{option}: choose from {', '.join(known)}")
    return args


def job_threads(env: dict[str, str]) -> int:
    return int(env.get("OMP_NUM_THREADS") or torch.get_num_threads())


def job_environment(threads: int | None) -> dict[str, str]:
    """The panel's job environment; with ``threads``, that many torch threads."""
    env = library_environment()
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)  # the machine line and the scoring alike
    return env


def check_same_settings(out: Path, settings: dict) -> None:
    """A later call into ``out`` must measure the same way as the first (bench.json)."""
    saved = out / "bench.json"
    if not saved.is_file():
        write_text(json.dumps(settings, indent=2) + "\n", saved)
    elif json.loads(saved.read_text(encoding="utf-8")) != settings:
        raise ContrastSegError(f"{out} holds runs made with {saved.read_text(encoding='utf-8').strip()}; repeat "
                               "those options or choose another --out")


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    out = args.out
    env = job_environment(args.threads)
    runs = [Run(dataset, labeled, seed, init, budget) for dataset in args.datasets for labeled in args.labeled
            for seed in range(args.seeds) for init in args.inits for budget in args.budgets]
    header = f"{machine_with_plans(DEVICE)}; every fine-tuning job on the CPU" + (" (smoke sizes)" * args.smoke)
    try:
        out.mkdir(parents=True, exist_ok=True)
        check_same_settings(out, {"smoke": args.smoke, "threads": job_threads(env)})
        data = {name: bench_data(name, out / "data", args.smoke) for name in args.datasets}
        records = []
        for number, run in enumerate(runs, 1):
            record, ran = finished_or_run(run, data[run.dataset], out, args.smoke, env)
            records.append(record)
            row = record["row"]
            print(f"[{number}/{len(runs)}] {run.name}: mean Dice {row['mean_dice']:.3f}, "
                  f"{row['share_of_budget']:.0%} of the budget, {row['steps']} steps"
                  + ("" if ran else " (done before)"), flush=True)
            if ran or number == len(runs):
                write_outputs(out, records, header)
    except ContrastSegError as error:
        print(f"bench_minutes: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {out / 'results.csv'}, {out / 'results.md'}, {out / 'dice_vs_minutes.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
