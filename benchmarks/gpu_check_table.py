"""The markdown of ``gpu_check.py``'s JSON record: the machine, each part's status, then each part's table (a part
that did not finish shows its status only)."""

from __future__ import annotations

from typing import Callable

from ContrastSegLib.benchmark.markdown import MISSING, table_line

GIB = 1024 ** 3
PIPELINE_TARGET = 0.9  # training pipeline ÷ model-only step


def _number(value, digits: int = 1, scale: float = 1.0, suffix: str = "") -> str:
    return MISSING if value is None else f"{value * scale:.{digits}f}{suffix}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [table_line(header), table_line(["---"] * len(header)), *(table_line(row) for row in rows), ""]


def status_table(parts: dict) -> list[str]:
    rows = [[name, part["status"], _number(part["seconds"]), _number(part.get("cpu_seconds")),
             _number(part["limit_s"], 0), part.get("error", "").replace("|", "/")[:160]]
            for name, part in parts.items()]
    return _table(["part", "status", "s", "CPU s", "limit s", "error"], rows)


def peak_lines(part: dict) -> list[str]:
    return [f"bf16 matmul peak: {part['bf16_gflops']:.1f} GFLOP/s ({part['side']}² matmuls)", ""]


def stage_lines(part: dict) -> list[str]:
    def ratio(value: float) -> str:
        return f"{value:.3f} ({'yes' if value >= PIPELINE_TARGET else 'no'})"

    rows = [[row["name"], str(row["images"]), _number(row["model_only"]), _number(row["pipeline"]),
             ratio(row["pipeline_over_model_only"]), _number(row["flops"], 2, 1e-9),
             _number(row["share_of_bf16_peak"], 1, 100, " %")] for row in part["rows"]]
    note = f" ({part['note']})" if "note" in part else ""
    return [f"Stage steps, {part['plan']}, crop {part['sizes']['crop']}{note}:", "",
            *_table(["stage", "images/step", "model-only img/s", "pipeline img/s",
                     f"pipeline ÷ model-only (≥ {PIPELINE_TARGET})", "GFLOP/step", "share of bf16 peak"], rows)]


def chain_lines(part: dict) -> list[str]:
    def row(job: dict, name: str) -> list[str]:
        return [name, str(job["steps_run"]) if job["ran"] else "not run", _number(job["wall_s"]),
                _number(job["seconds_per_step"], 4), str(job["full_iterations"]),
                _number(job["extrapolated_s"], 1, 1 / 60)]

    panel, papers = part["panel_default_chain"], part["papers_chain"]
    rows = [row(job, job["stage"]) for job in part["jobs"]]
    if panel["job"]["command"] != part["jobs"][-1]["command"]:
        rows.append(row(panel["job"], "fine-tuning, without --init (the panel's default)"))
    note = f" ({papers['note']})" if "note" in papers else ""
    return [f"The panel's chain, crop {part['crop']}, each job a few steps:", "",
            *_table(["job", "steps run", "wall s", "s/step", "full iterations", "extrapolated min"], rows),
            f"Panel defaults (initialisation random: fine-tuning only): {_number(panel['extrapolated_s'], 1, 1 / 60)} "
            f"min; the papers' chain ({' + '.join(papers['stages'])}): {_number(papers['extrapolated_s'], 1, 1 / 60)} "
            f"min (extrapolated){note}.", ""]


def predict_lines(part: dict) -> list[str]:
    shape = " × ".join(map(str, part["shape_ijk"]))
    return [f"Prediction, `contrastseg predict`, {part['volumes']} volumes of {shape}, file to file: "
            f"{part['volumes_per_minute']:.1f} volumes/min end to end ({part['wall_s']:.1f} s, start-up "
            f"{part['start_up_s']:.1f} s); {part['volumes_per_minute_after_start_up']:.1f} volumes/min after it.", ""]


def memory_lines(part: dict) -> list[str]:
    rows = [[str(row["batch"]), "yes" if row["fits"] else "no (out of memory)",
             _number(row["allocated"], 2, 1 / GIB), _number(row["reserved"], 2, 1 / GIB),
             _number(row["process"], 2, 1 / GIB), _number(row["planner_bytes"], 2, 1 / GIB),
             _number(row["planner_error"], 0, 100, " %")] for row in part["rows"]]
    note = f" ({part['note']})" if "note" in part else ""
    return [f"Peak memory of a fine-tuning step, {part['plan']}, crop {part['crop']}; largest batch that fits: "
            f"{part['largest_fitting_batch']}{note}:", "",
            *_table(["batch", "fits", "allocated GiB", "reserved GiB", "process GiB", "planner GiB",
                     "planner error"], rows)]


def ddp_lines(part: dict) -> list[str]:
    note = f"; {part['note']}" if "note" in part else ""
    return [f"torchrun, {part['processes']} process(es), backend {part['backend']}: DDP equals one process: "
            f"{'yes' if part['equivalent'] else 'NO'} (loss difference {part['loss_difference']:.2e}, largest "
            f"gradient difference {part['largest_gradient_difference']:.2e}){note}.", ""]


def precision_lines(part: dict) -> list[str]:
    rows = [[row["plan"], f"{row['dice']:.4f}", f"{row['final_loss']:.4f}"] for row in part["rows"]]
    note = f" ({part['note']})" if "note" in part else ""
    return [f"Precision, {part['iterations']} fine-tuning steps on phantoms{note}: Dice difference "
            f"{part['largest_difference']:.4f}, within {part['within']}: {'yes' if part['agree'] else 'NO'}.", "",
            *_table(["plan", "Dice", "final loss"], rows)]


def compile_lines(part: dict) -> list[str]:
    rows = [[row["name"], _number(row["eager_s"], 2, 1e3), _number(row["compiled_s"], 2, 1e3),
             f"{row['speedup']:.2f}×", _number(row["compile_s"])] for row in part["rows"]]
    note = f" ({part['note']})" if "note" in part else ""
    return [f"torch.compile (backend {part['backend']}) against eager, {part['plan']}{note}:", "",
            *_table(["call", "eager ms", "compiled ms", "speed-up", "compile s"], rows)]


PART_LINES: dict[str, Callable[[dict], list[str]]] = {
    "peak": peak_lines, "stages": stage_lines, "chain": chain_lines, "predict": predict_lines,
    "memory": memory_lines, "ddp": ddp_lines, "precision": precision_lines, "compile": compile_lines}


def markdown_report(record: dict) -> str:
    card = record["gpu"] or "no GPU: the CPU" + (", smoke sizes (the numbers mean nothing)" if record["smoke"] else "")
    lines = [f"# GPU check: {card}", "", f"Machine: {record['machine']}.", "",
             f"Command: `{record['command']}`; {record['total_seconds']:.0f} s in all.", "",
             *status_table(record["parts"])]
    for name, part in record["parts"].items():
        if part["status"] == "ok":
            lines += PART_LINES[name](part)
    return "\n".join(lines)
