"""Wall time and pace of a ``contrastseg`` job run as its own process: every JSON progress line (``runtime.progress``)
stamped with the moment it arrived, so the steady seconds per step can be told apart from the start-up (imports,
CUDA, reading and preprocessing the data) and a short run extrapolated to its full iterations.

    job = run_job(contrastseg_command("finetune", ...), env, timeout_s=120)
    job.extrapolated_s(3000)   # start-up + 3000 steps at the steady pace
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..errors import ContrastSegError

WARMUP_EVENTS = 1  # progress events left out of the pace: the first steps run while kernels are chosen


@dataclass
class JobRun:
    """wall_s: process start to exit; events: (seconds after the start, the JSON event) in arrival order; log: every
    line the job wrote (stdout and stderr)."""

    command: list[str]
    wall_s: float = 0.0
    events: list[tuple[float, dict]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def moments(self, event: str) -> list[tuple[float, dict]]:
        return [(moment, record) for moment, record in self.events if record.get("event") == event]

    @property
    def steps(self) -> int:
        """Steps of the last progress event (0 without one)."""
        progress = self.moments("progress")
        return int(progress[-1][1]["step"]) if progress else 0

    def pace_is_steady(self) -> bool:
        """Whether enough progress events came for a pace after the warm-up (events come at most every 0.5 s)."""
        progress = self.moments("progress")[WARMUP_EVENTS:]
        return len(progress) >= 2 and progress[-1][1]["step"] > progress[0][1]["step"]

    def pace_s(self) -> float | None:
        """Seconds per step: between the first progress event after ``WARMUP_EVENTS`` and the last; where too few
        events came (a short run), from the ``started`` event (data read, model built) to the last, warm-up
        included; None without either."""
        progress = self.moments("progress")
        if self.pace_is_steady():
            (first_s, first), (last_s, last) = progress[WARMUP_EVENTS], progress[-1]
            return (last_s - first_s) / (last["step"] - first["step"])
        started = self.moments("started")
        if not progress or not started or self.steps <= int(started[0][1].get("step", 0)):
            return None
        return (progress[-1][0] - started[0][0]) / (self.steps - int(started[0][1].get("step", 0)))

    def extrapolated_s(self, full_steps: int) -> float | None:
        """This job's wall time had it run ``full_steps`` steps at the steady pace (None without a pace)."""
        pace = self.pace_s()
        return None if pace is None else self.wall_s + (full_steps - self.steps) * pace


def run_job(command: Sequence[str], env: Mapping[str, str] | None = None, timeout_s: float | None = None) -> JobRun:
    """Run ``command`` to its end in a process group of its own, stamping each output line; a failure or a timeout
    is a ``ContrastSegError`` naming the last lines. Any exception (a time limit of the caller) ends the group."""
    job = JobRun(list(command))
    started = time.perf_counter()
    process = subprocess.Popen(job.command, env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                               start_new_session=os.name == "posix")
    timer = threading.Timer(timeout_s, _end_group, (process,)) if timeout_s else None
    try:
        if timer:
            timer.start()
        for line in process.stdout:
            job.log.append(line.rstrip("\n"))
            record = _event(line)
            if record is not None:
                job.events.append((time.perf_counter() - started, record))
        status = process.wait()
    finally:
        if timer:
            timer.cancel()
        _end_group(process)
        process.stdout.close()
    job.wall_s = time.perf_counter() - started
    if status:
        reason = f"timed out after {timeout_s:.0f} s" if timeout_s and job.wall_s >= timeout_s else f"exit {status}"
        raise ContrastSegError(f"{' '.join(job.command[:4])} failed ({reason}): " + " / ".join(job.log[-3:]))
    return job


def _event(line: str) -> dict | None:
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "event" in record else None


def _end_group(process: subprocess.Popen) -> None:
    """Kill the job and whatever it started (torchrun's workers), if still running."""
    if process.poll() is not None:
        return
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
