"""Soak of the panel's job runner (see ``test_slicer_gui`` for the harness): 50 fine-tuning jobs, real ``contrastseg``
subprocesses at the smallest sizes, each cancelled, stopped and kept, or run to its end by clicks, in a seeded random
order and at random moments (before training has started too). After every job: its process group gone, nothing of
the job left but its record and log, the scene as it was, a kept model loadable; at the end, no process of the test's
left and the harness's memory steady from round 10 to round 50."""

from __future__ import annotations

import gc
import os
import random
import time
from pathlib import Path

import pytest

pytest.importorskip("PyQt5", reason="PyQt5 is not installed (pip install -e .[slicer])")

from test_slicer_gui import add_pair, load_scans, session, tiny_settings  # noqa: E402,F401  (session: the fixture)

from slicer_app import click, wait_until  # noqa: E402
from slicer_scene import slicer  # noqa: E402

from ContrastSegLib.runtime.checkpoint import load_checkpoint  # noqa: E402
from ContrastSegLogic.scene_io import scene_node_ids  # noqa: E402

ROUNDS, SEED = 50, 20240601
KINDS = ("cancel", "stop and keep", "finish")
ENDLESS = 100000  # iterations of a job that a click ends
MOMENTS = ("at once", "while starting", "while training")  # when a cancel or a stop comes
RSS_GROWTH_LIMIT_MB = 200


def processes() -> dict[int, tuple[str, int, int]]:
    """Every process: pid -> (state, parent pid, session id), from ``/proc``."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
            table[int(entry.name)] = (fields[0], int(fields[1]), int(fields[3]))
    return table


def rss_mb() -> float:
    gc.collect()
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def wait_for(moment: str, ui, rng: random.Random) -> None:
    """Let the event loop run (the panel polls its job meanwhile) until ``moment``: the click right away, a random
    moment of the process's start (importing, reading the data), or once the status line shows training steps."""
    if moment == "while training":
        wait_until(lambda: "step" in ui.statusLabel.text, 120, "the first training step")
    elif moment == "while starting":
        until = time.monotonic() + rng.uniform(0.2, 3.0)
        wait_until(lambda: time.monotonic() >= until, 10, "a moment")


@pytest.mark.timeout(1200)  # about 4-6 minutes on two cores: each job starts a Python with torch
def test_start_cancel_stop_and_finish_jobs_50_times(session, monkeypatch, capsys):
    ui, panel, logic = session.widget.panel.ui, session.widget.panel, session.widget.logic
    workflow = logic.workflow
    workflow.env["OMP_NUM_THREADS"] = "1"
    finetune = workflow.finetune
    monkeypatch.setattr(workflow, "finetune", lambda *args, **kwargs: finetune(*args, **{**kwargs, "channels": (4, 8)}))
    (volume, segmentation), = load_scans(1)
    add_pair(ui, volume, segmentation)
    click(ui.randomInitRadio)
    tiny_settings(ui)
    ui.batchSizeSpin.value = 2
    scene_before = scene_node_ids(slicer.mrmlScene)
    rng = random.Random(SEED)
    kinds = [KINDS[index % len(KINDS)] for index in range(ROUNDS)]
    rng.shuffle(kinds)
    started, job_pids, kept, rss = time.monotonic(), set(), [], {}
    durations: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for number, kind in enumerate(kinds, 1):
        round_started = time.monotonic()
        ui.iterationsSpin.value = 1 if kind == "finish" else ENDLESS
        click(ui.finetuneButton)
        job = panel.jobs.job
        assert ui.finetuneButton.text == "Cancel" and job.state == "running", (number, ui.statusLabel.text)
        process = job._handle.process
        job_pids.add(process.pid)
        if kind != "finish":
            wait_for(rng.choice(MOMENTS), ui, rng)
            click(ui.finetuneButton if kind == "cancel" else ui.stopButton)
        wait_until(lambda: job.done and ui.finetuneButton.text == "Fine-tune", 120, f"round {number} ({kind})")
        assert job.state == ("cancelled" if kind == "cancel" else "succeeded"), (number, kind, job.error)
        assert process.poll() is not None, (number, kind)
        with pytest.raises(ProcessLookupError):  # nothing of its process group left
            os.killpg(process.pid, 0)
        assert sorted(p.name for p in job.folder.root.iterdir()) == ["job.json", "log.txt"], (number, kind)
        assert job.folder.record()["state"] == job.state, (number, kind)
        assert scene_node_ids(slicer.mrmlScene) == scene_before, (number, kind)
        if kind != "cancel":
            metadata = load_checkpoint(job.result).metadata
            assert ("stopped" in metadata) == (kind == "stop and keep"), (number, kind, metadata.get("step"))
            kept.append(job.result)
        durations[kind].append(time.monotonic() - round_started)
        if number in (10, ROUNDS):
            rss[number] = rss_mb()
    seconds = time.monotonic() - started
    assert session.dialogs.errors == []
    left = {pid: row for pid, row in processes().items() if row[1] == os.getpid() or row[2] in job_pids}
    assert left == {}, left  # no child of the test's, none of any job's session
    jobs = sorted(Path(workflow.jobs_dir).iterdir())
    assert len(jobs) == ROUNDS and all(sorted(p.name for p in j.iterdir()) == ["job.json", "log.txt"] for j in jobs)
    assert len(set(kept)) == len(kept) == kinds.count("stop and keep") + kinds.count("finish")
    for path in kept:  # every model kept is still whole at the end
        load_checkpoint(path)
    growth = rss[ROUNDS] - rss[10]
    with capsys.disabled():
        rounds = ", ".join(f"{len(durations[k])} {k} ({sum(durations[k]) / len(durations[k]):.1f} s each)"
                           for k in KINDS)
        print(f"\nsoak: {ROUNDS} rounds ({rounds}) in {seconds:.0f} s; "
              f"harness RSS {rss[10]:.0f} MB after round 10, {rss[ROUNDS]:.0f} MB after round {ROUNDS} "
              f"({growth:+.1f} MB)")
    assert growth < RSS_GROWTH_LIMIT_MB
