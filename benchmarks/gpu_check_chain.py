"""The Slicer panel's training chain, run as the panel runs it and extrapolated to its full iterations (a part of
``gpu_check.py``).

The commands are the panel's own: its parameters over an empty parameter node (``ContrastSegParameters``), the
pre-training processes of ``ContrastSegWorkflow._pretrain_steps`` and the fine-tuning arguments of
``finetune_settings`` / ``finetune_arguments``, started with ``contrastseg_command`` and ``library_environment``.
"pretrain-now" with the panel's defaults is the papers' chain: G^D and L^R of 10 000 steps each, then 3 000
fine-tuning steps. The panel's default initialisation, "random", is that fine-tuning job alone (without ``--init``:
the same steps). Every job runs ``steps`` steps instead; its wall time is extrapolated to the full iterations at its
steady pace (``job_pace``).

Unlike a panel job: the data are phantoms written to disk (the panel exports scene nodes); the crop is the given
one (192: what the panel chooses from the data for slices of 192 pixels or more at the target spacing,
``MAX_AUTO_CROP``); no CPU time budget (a GPU runs the iterations in full; on the CPU the check runs the same
commands without the budget); m volumes per batch at most the phantoms written.

With ``run_pretraining`` off (the smoke run) the pre-training jobs are built but not run, and the fine-tuning job
runs as the panel's default chain runs it, without ``--init``: its figures and extrapolation are real, the papers'
chain total is not.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

from ContrastSegLib.benchmark.job_pace import JobRun, run_job
from ContrastSegLib.data.discovery import discover
from ContrastSegLib.data.phantom import write_phantom_dataset

MODULE_DIR = Path(__file__).resolve().parent.parent / "ContrastSeg"  # the Slicer module's Qt-free logic
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from bench_minutes import ParameterNode, write_manifest  # noqa: E402
from ContrastSegLogic.parameters import ContrastSegParameters  # noqa: E402
from ContrastSegLogic.process import contrastseg_command, library_environment  # noqa: E402
from ContrastSegLogic.workflow import ContrastSegWorkflow, finetune_arguments, finetune_settings  # noqa: E402

LABELED = 2  # labeled phantoms of the fine-tuning job


def panel_parameters(initialisation: str) -> ContrastSegParameters:
    """The panel's defaults with ``initialisation`` ("random", "pretrain-now")."""
    parameters = ContrastSegParameters(ParameterNode())
    parameters.set("initialisation", initialisation)
    return parameters


def chain_jobs(folder: Path, phantoms: int, device: str, crop: int, channels: Sequence[int], steps: int
               ) -> tuple[list[tuple[str, int, list[str]]], tuple[str, int, list[str]]]:
    """(stage name, full iterations, command of a ``steps``-step run) of each process of the panel's
    "pretrain-now" chain, and of its default ("random": the fine-tuning job alone, without ``--init``), on
    ``phantoms`` phantoms written to ``folder`` (emptied first)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    data = write_phantom_dataset(folder / "phantoms", phantoms, seed=0, overwrite=True)
    dataset = discover(data)
    manifest = write_manifest(folder / "labeled.json", dataset.labeled[:LABELED], dataset)
    parameters = panel_parameters("pretrain-now")
    preprocess = replace(parameters.preprocess_config(), crop_size=crop)
    stages = parameters.pretraining()
    short = [replace(stage, device=device, iterations=steps,
                     volumes_per_batch=min(stage.volumes_per_batch, phantoms)) for stage in stages]
    outputs = SimpleNamespace(outputs=folder)  # the job folder's outputs, all _pretrain_steps reads of it
    processes, init = ContrastSegWorkflow._pretrain_steps(None, outputs, [str(data)], short, preprocess, channels)
    jobs = [(f"{stage.stage} {stage.strategy}", stage.iterations, list(process.command))
            for stage, process in zip(stages, processes)]

    def finetuning(initialisation: str, start_from: Path | None) -> tuple[str, int, list[str]]:
        settings = panel_parameters(initialisation).finetune_config()
        short_settings = finetune_settings(replace(settings, iterations=steps), device, None)
        arguments = finetune_arguments(manifest, folder / f"model_{initialisation}.pt", short_settings, preprocess,
                                       channels, start_from)
        return "fine-tuning", settings.iterations, contrastseg_command(*arguments)

    return jobs + [finetuning("pretrain-now", init)], finetuning("random", None)


def job_row(name: str, full: int, command: list[str], job: JobRun | None) -> dict:
    """A job's figures (None where it did not run) and its command as ``contrastseg ...``."""
    pace = job.pace_s() if job else None
    return {"stage": name, "ran": job is not None, "steps_run": job.steps if job else 0,
            "wall_s": job.wall_s if job else None, "seconds_per_step": pace,
            "pace_after_warmup": job.pace_is_steady() if job else None, "full_iterations": full,
            "extrapolated_s": job.extrapolated_s(full) if job else None, "command": ["contrastseg", *command[3:]]}


def run_chain(folder: Path, phantoms: int, device: str, crop: int, channels: Sequence[int], steps: int,
              timeout_s: float, run_pretraining: bool = True) -> dict:
    """Run the jobs of ``chain_jobs`` (the papers' chain; with ``run_pretraining`` off, the panel's default job
    alone); per job its wall time, steps, pace and extrapolated wall time, and the extrapolated totals of the
    panel's default chain (fine-tuning alone: the same steps) and of the papers' chain (all jobs)."""
    env = library_environment()
    chain, default = chain_jobs(folder, phantoms, device, crop, channels, steps)
    if run_pretraining:
        rows = [job_row(*job, run_job(job[2], env, timeout_s)) for job in chain]
        panel = rows[-1]
    else:
        rows = [job_row(*job, None) for job in chain]
        panel = job_row(*default, run_job(default[2], env, timeout_s))
    totals = [row["extrapolated_s"] for row in rows]
    papers = {"initialisation": "pretrain-now", "stages": [row["stage"] for row in rows],
              "extrapolated_s": sum(totals) if all(total is not None for total in totals) else None}
    if not run_pretraining:
        papers["note"] = "built, not run (smoke): the fine-tuning job ran as the panel's default, without --init"
    return {"crop": crop, "channels": list(channels), "phantoms": phantoms, "jobs": rows,
            "panel_default_chain": {"initialisation": "random", "stages": ["fine-tuning"], "job": panel,
                                    "extrapolated_s": panel["extrapolated_s"]},
            "papers_chain": papers}
