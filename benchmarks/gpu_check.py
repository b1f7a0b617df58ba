"""The GPU path in one short run: stage speeds against the card's bf16 peak, the data pipeline's pace, the panel's
chain extrapolated to its full iterations, prediction from file to file, peak memory against the module's memory
planner, torchrun/DDP, torch.compile and fp16 against bf16.

    .venv/bin/python benchmarks/gpu_check.py [--out bench_output/gpu_check] [--parts peak,stages,...]
    .venv/bin/python benchmarks/gpu_check.py --smoke --out /tmp/gpu_check   # the CPU, tiny sizes: checks it works

Under 8 minutes on one H100-class GPU (each part has a time limit, ``LIMITS_S``, all within ``FULL.total_s``).
Parts, in order (``PARTS``):

- peak: GFLOP/s of a bf16 matmul (``peak_share.matmul_peak_gflops``), the reference of the stages' shares;
- stages: images/s of each training step at the paper profile (crop 192, m = 4 volumes × S = 4 partitions, batch
  16; G^D, L^R, supervised-local, masked, fine-tuning), model-only and with the data pipeline
  (``stage_speed``), counted FLOPs per step as a share of that peak (the smoke run counts the fine-tuning step's);
- chain: the panel's chain as the panel runs it (``gpu_check_chain``), a few hundred steps per job, extrapolated
  (the smoke run builds every job's command and runs the fine-tuning job alone, a few steps);
- predict: ``contrastseg predict`` on 256 × 256 × 100 volumes, file to file, volumes per minute;
- memory: peak memory of a fine-tuning step at crop 192 for doubling batches up to the largest that fits
  (``step_memory``) against ``training_memory_bytes`` (the module's planner);
- ddp: ``Testing/ddp_worker.py`` under torchrun (NCCL on CUDA: two processes where two GPUs, else one; on the
  CPU two gloo processes, one in the smoke run: ``Testing/test_pretrain.py`` checks two) against the same step in
  this process;
- precision: fp16 with gradient scaling and bf16, the same short fine-tuning on phantoms, Dice within 0.01
  (``precision_agreement``; on the CPU, where fp16 is refused, fp32 and bf16);
- compile: ``torch.compile`` against eager, step and prediction forward (``compile_speed``; the CPU: the "eager"
  backend, which captures the graphs without a compiler).

A part that fails, or runs out of its time, is recorded as such and the next one runs. Each part's record has its
wall and CPU seconds (this process and the jobs it waited for). The table is printed and written to
OUT/gpu_check.md, the numbers to OUT/gpu_check.json (rewritten after every part). The smoke run costs about 40 CPU
seconds with one thread, two thirds of it its three job processes (chain, predict, torchrun).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ContrastSegLib.benchmark.compile_speed import compile_speeds
from ContrastSegLib.benchmark.job_pace import run_job
from ContrastSegLib.benchmark.peak_share import matmul_peak_gflops, share_of_peak
from ContrastSegLib.benchmark.precision_agreement import precision_agreement
from ContrastSegLib.benchmark.stage_speed import (CONTRASTIVE_STAGES, MASKED_STAGE, StageSizes, contrastive_speed,
                                                  finetune_speed)
from ContrastSegLib.benchmark.step_memory import memory_sweep
from ContrastSegLib.benchmark.timing import machine_with_plans
from ContrastSegLib.benchmark.workloads import fresh_predictor, phantom_volumes, prediction_volume
from ContrastSegLib.io import write_volume
from ContrastSegLib.runtime.precision import plan_execution
from ContrastSegLib.settings import FinetuneConfig
from ContrastSegLib.training.distributed import DistributedContext

ROOT = Path(__file__).resolve().parent.parent
TESTING, MODULE_DIR = ROOT / "Testing", ROOT / "ContrastSeg"  # ddp_worker.py; the Slicer module's Qt-free logic
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

import gpu_check_chain  # noqa: E402
from ContrastSegLogic.memory import training_memory_bytes  # noqa: E402
from ContrastSegLogic.process import contrastseg_command, library_environment  # noqa: E402
from gpu_check_table import markdown_report  # noqa: E402

PARTS = ("peak", "stages", "chain", "predict", "memory", "ddp", "precision", "compile")
LIMITS_S = {"peak": 15, "stages": 70, "chain": 105, "predict": 55, "memory": 45, "ddp": 30, "precision": 45,
            "compile": 85}  # seconds, 450 in all
PLANNER_WITHIN = 0.25  # the bound on the planner's error


@dataclass(frozen=True)
class CheckSizes:
    """How big each part is (``FULL`` on a GPU, ``SMOKE`` on the CPU); the UNet's widths are ``stages.channels``
    in every part (the paper's, or a smaller UNet for the smoke run), except prediction's (the paper's)."""

    stages: StageSizes
    peak_side: int
    peak_calls: int
    chain_steps: int
    chain_phantoms: int
    predict_volumes: int
    predict_slices: int
    predict_side: int
    predict_pixel_mm: float
    memory_batches: tuple[int, int]  # first, largest
    compile_batch: int
    compile_rounds: int
    precision_iterations: int
    precision_crop: int
    precision_batch: int
    precision_volumes: tuple[int, int]  # train, test
    flops_every_stage: bool = True  # else the fine-tuning step's FLOPs alone
    chain_pretraining: bool = True  # else the chain's pre-training jobs are built, not run
    ddp_cpu_processes: int = 2  # torchrun's gloo processes where there is no CUDA
    total_s: float = 450  # every part's limit ends by then: with start-up, under 8 minutes
    part_limit_s: float | None = None  # the same limit for every part instead of ``LIMITS_S``


FULL = CheckSizes(StageSizes(crop=192, volumes_per_batch=4, partitions=4, finetune_batch=16, warmup=2, rounds=5,
                             steps_per_round=10, phantoms=6),
                  peak_side=8192, peak_calls=20, chain_steps=300, chain_phantoms=8,
                  predict_volumes=8, predict_slices=100, predict_side=256, predict_pixel_mm=1.0,
                  memory_batches=(4, 4096), compile_batch=16, compile_rounds=10, precision_iterations=300,
                  precision_crop=128, precision_batch=16, precision_volumes=(2, 4))
SMOKE = CheckSizes(StageSizes(crop=32, volumes_per_batch=2, partitions=2, finetune_batch=2, warmup=0, rounds=1,
                              steps_per_round=1, phantoms=2, channels=(8, 16, 16, 32)),
                   peak_side=128, peak_calls=2, chain_steps=4, chain_phantoms=3,
                   predict_volumes=2, predict_slices=3, predict_side=64, predict_pixel_mm=3.0,
                   memory_batches=(2, 4), compile_batch=2, compile_rounds=1, precision_iterations=3,
                   precision_crop=32, precision_batch=2, precision_volumes=(1, 1), flops_every_stage=False,
                   chain_pretraining=False, ddp_cpu_processes=1, total_s=540,
                   part_limit_s=150)  # a job takes seconds; generous for a busy CI machine


def cpu_seconds() -> float:
    """CPU seconds of this process and of the child processes it has waited for (those of torchrun included)."""
    if os.name != "posix":
        return time.process_time()
    import resource
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class PartTimeout(Exception):
    """A part ran past its time limit."""


@contextmanager
def time_limit(seconds: float):
    """Raise ``PartTimeout`` in this (main) thread after ``seconds``; no limit where there is no SIGALRM."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum, frame):
        raise PartTimeout(f"ran past its limit of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Check:
    """What the parts share: sizes, device, plan, output folder, the job environment and the results so far."""

    def __init__(self, sizes: CheckSizes, device: str, out: Path):
        self.sizes, self.out = sizes, out
        self.plan = plan_execution(device, "auto")
        self.device, self.cuda = str(self.plan.device), self.plan.device.type == "cuda"
        self.env = library_environment()
        if not self.cuda:
            self.env["CUDA_VISIBLE_DEVICES"] = ""  # the jobs run where this process does
        self.results: dict[str, dict] = {}
        self.deadline = time.monotonic() + sizes.total_s

    def limit_s(self, part: str) -> float:
        own = self.sizes.part_limit_s or LIMITS_S[part]
        return min(own, self.deadline - time.monotonic())

    def run(self, part: str) -> None:
        """Run ``part`` under its time limit; its record in ``results``: status, seconds (wall and CPU), limit and
        its figures or the error."""
        limit, started, cpu_started = self.limit_s(part), time.perf_counter(), cpu_seconds()
        record: dict = {"limit_s": round(limit, 1)}
        try:
            if limit <= 0:
                raise PartTimeout("no time left of the whole check")
            with time_limit(limit):
                record.update(status="ok", **PART_FUNCTIONS[part](self))
        except PartTimeout as error:
            record.update(status="timed out", error=str(error))
        except Exception as error:  # noqa: BLE001  (one part's failure must not stop the others)
            record.update(status="failed", error=f"{type(error).__name__}: {error}",
                          traceback=traceback.format_exc(limit=-4))
        finally:
            if self.cuda:
                torch.cuda.empty_cache()
        record["seconds"] = round(time.perf_counter() - started, 2)
        record["cpu_seconds"] = round(cpu_seconds() - cpu_started, 2)
        self.results[part] = record


# ---- the parts: each returns its figures, with a note where the CPU runs an equivalent --------------------------

def check_peak(check: Check) -> dict:
    sizes = check.sizes
    gflops = matmul_peak_gflops(sizes.peak_side, torch.bfloat16, check.plan.device, warmup=1,
                                rounds=3 if check.cuda else 1, calls_per_round=sizes.peak_calls)
    return {"bf16_gflops": gflops, "side": sizes.peak_side}


def check_stages(check: Check) -> dict:
    sizes, every = check.sizes.stages, check.sizes.flops_every_stage
    volumes = phantom_volumes(sizes.phantoms, sizes.crop, sizes.seed)
    speeds = [contrastive_speed(stage, strategy, name, sizes, check.plan, volumes, count_flops=every)
              for stage, strategy, name in (*CONTRASTIVE_STAGES, MASKED_STAGE)]
    speeds.append(finetune_speed(sizes, check.plan, volumes, count_flops=True))
    peak = check.results.get("peak", {}).get("bf16_gflops")
    rows = [{**asdict(speed), "pipeline_over_model_only": speed.ratio,
             "share_of_bf16_peak": share_of_peak(speed.flops, speed.images / speed.model_only, peak)}
            for speed in speeds]
    return {"plan": check.plan.describe(), "sizes": asdict(sizes), "rows": rows,
            "slowest_pipeline_ratio": min(row["pipeline_over_model_only"] for row in rows),
            **({} if every else {"note": "FLOPs counted on the fine-tuning step alone (smoke)"})}


def check_chain(check: Check) -> dict:
    sizes = check.sizes
    folder = check.out / "chain"
    return gpu_check_chain.run_chain(folder, sizes.chain_phantoms, check.device, sizes.stages.crop,
                                     sizes.stages.channels, sizes.chain_steps, check.limit_s("chain"),
                                     run_pretraining=sizes.chain_pretraining)


def check_predict(check: Check) -> dict:
    sizes, folder = check.sizes, check.out / "predict"
    (folder / "volumes").mkdir(parents=True, exist_ok=True)
    shape = (sizes.predict_side, sizes.predict_side)
    paths = [str(write_volume(prediction_volume(sizes.predict_slices, index, shape, sizes.predict_pixel_mm),
                              folder / "volumes" / f"volume{index:03d}.nii.gz", overwrite=True))
             for index in range(sizes.predict_volumes)]
    fresh_predictor(sizes.stages.crop, sizes.stages.finetune_batch, check.device, folder, seed=0)
    job = run_job(contrastseg_command("predict", "--model", str(folder / "fresh.pt"), "--input", *paths,
                                      "--output", str(folder / "labels"), "--device", check.device, "--overwrite"),
                  check.env, check.limit_s("predict"))
    started, finished = job.moments("started")[0][0], job.moments("finished")[0][0]
    return {"volumes": len(paths), "shape_ijk": [*shape, sizes.predict_slices], "wall_s": job.wall_s,
            "start_up_s": started, "volumes_per_minute": 60 * len(paths) / job.wall_s,
            "volumes_per_minute_after_start_up": 60 * len(paths) / (finished - started)}


def check_memory(check: Check) -> dict:
    crop, channels, (first, largest) = check.sizes.stages.crop, check.sizes.stages.channels, check.sizes.memory_batches
    rows = []
    for row in memory_sweep(check.plan, crop, first, largest, channels):
        predicted = training_memory_bytes(row.batch, crop, channels)
        error = None if row.process is None else predicted / row.process - 1
        rows.append({**asdict(row), "planner_bytes": predicted, "planner_error": error,
                     "planner_within": None if error is None else abs(error) <= PLANNER_WITHIN})
    fitting = [row["batch"] for row in rows if row["fits"]]
    return {"crop": crop, "plan": check.plan.describe(), "rows": rows, "largest_fitting_batch": max(fitting),
            "measured": check.cuda, **({} if check.cuda else {"note": "not measured: peak memory is CUDA's"})}


def check_ddp(check: Check) -> dict:
    sys.path.insert(0, str(TESTING))
    try:
        import ddp_worker
    finally:
        sys.path.remove(str(TESTING))
    device = "cuda" if check.cuda else "cpu"
    processes = min(2, torch.cuda.device_count()) if check.cuda else check.sizes.ddp_cpu_processes
    single_loss, single_grads = ddp_worker.step(DistributedContext(), device)
    out = check.out / "ddp.pt"
    out.unlink(missing_ok=True)
    env = {**check.env, "OMP_NUM_THREADS": "1"}
    run_job([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
             str(TESTING / "ddp_worker.py"), str(out), device], env, check.limit_s("ddp"))
    result = torch.load(out, weights_only=True)
    tolerance = (1e-5, 1e-3) if check.cuda else (1e-6, 1e-5)  # (atol, rtol); TF32 convolutions on CUDA
    equal = result["grads"].keys() == single_grads.keys() and all(
        torch.allclose(result["grads"][name], grad, atol=tolerance[0], rtol=tolerance[1])
        for name, grad in single_grads.items())
    backend = "nccl" if check.cuda else "gloo"
    return {"processes": processes, "backend": backend if processes > 1 else "none: one process joins no group",
            "loss_difference": abs(float(result["loss"]) - single_loss),
            "largest_gradient_difference": max(float((result["grads"][n] - g).abs().max())
                                               for n, g in single_grads.items()),
            "equivalent": bool(equal), "tolerance": {"atol": tolerance[0], "rtol": tolerance[1]},
            **({} if processes > 1 else {"note": "two processes need two GPUs (on the CPU, Testing/test_pretrain.py "
                                                 "checks two gloo processes)"})}


def check_precision(check: Check) -> dict:
    sizes = check.sizes
    names = ("fp16", "bf16") if check.cuda else ("fp32", "bf16")
    plans = [plan_execution(check.device, name) for name in names]
    config = FinetuneConfig(iterations=sizes.precision_iterations, batch_size=sizes.precision_batch)
    result = precision_agreement(plans, config, sizes.precision_crop, *sizes.precision_volumes,
                                 channels=sizes.stages.channels)
    note = {} if check.cuda else {"note": "fp16: skipped: no CUDA (fp16 is for CUDA GPUs); fp32 against bf16"}
    return {"precisions": list(names), "iterations": config.iterations, **result, **note}


def check_compile(check: Check) -> dict:
    sizes = check.sizes
    backend = "inductor" if check.cuda else "eager"
    speeds = compile_speeds(check.plan, sizes.stages.crop, sizes.compile_batch, warmup=1,
                            rounds=sizes.compile_rounds, backend=backend, channels=sizes.stages.channels)
    return {"backend": backend, "plan": check.plan.describe(),
            "rows": [{**asdict(speed), "speedup": speed.speedup} for speed in speeds],
            **({} if check.cuda else {"note": "no CUDA: the graphs captured, not compiled (backend eager)"})}


PART_FUNCTIONS = {"peak": check_peak, "stages": check_stages, "chain": check_chain, "predict": check_predict,
                  "memory": check_memory, "ddp": check_ddp, "precision": check_precision, "compile": check_compile}


# ---- command line ----------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench_output/gpu_check"))
    parser.add_argument("--device", default="auto", help="auto (cuda > cpu), cuda, cuda:N or cpu")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks that the script works")
    args = parser.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown or not args.parts:
        parser.error(f"--parts: choose from {', '.join(PARTS)}")
    if args.smoke:
        args.device = "cpu"
    return args


def write_record(check: Check, args: argparse.Namespace, started: float) -> dict:
    record = {"machine": machine_with_plans(check.device), "device": check.device,
              "gpu": torch.cuda.get_device_name(check.plan.device) if check.cuda else None,
              "smoke": args.smoke, "threads": torch.get_num_threads(), "sizes": asdict(check.sizes),
              "command": " ".join(["python", "benchmarks/gpu_check.py", *sys.argv[1:]]),
              "total_seconds": round(time.perf_counter() - started, 1), "parts": check.results}
    (check.out / "gpu_check.json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    check = Check(SMOKE if args.smoke else FULL, args.device, args.out)
    if not check.cuda and not args.smoke:
        print("gpu_check: no CUDA device; the full sizes on the CPU take long (use --smoke to check the script)",
              file=sys.stderr)
    for part in args.parts:
        check.run(part)
        print(f"{part}: {check.results[part]['status']} in {check.results[part]['seconds']:.1f} s", flush=True)
        record = write_record(check, args, started)
    markdown = markdown_report(record)
    (args.out / "gpu_check.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0 if all(result["status"] == "ok" for result in check.results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
