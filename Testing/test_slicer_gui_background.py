"""The panel's "Pre-train in the background while I annotate", clicked through in the real Qt event loop with real
``contrastseg`` subprocess jobs at tiny sizes (see ``test_slicer_gui`` for the harness): ticking unlabeled volumes
starts pre-training in the background while the panel stays responsive and a labeled pair is added; Fine-tune stops
it first, starts from its kept weights with the whole time budget; pre-training goes on afterwards from where it
stopped, a second fine-tune on the same volumes starts from the same, further trained, checkpoint, and evaluating
compares random initialisation with that checkpoint without pre-training again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("PyQt5", reason="PyQt5 is not installed (pip install -e .[slicer])")

from test_slicer_gui import add_pair, load_scans, pair_rows, qt, run_job, session, tiny_settings  # noqa: E402,F401

from slicer_app import click, wait_until  # noqa: E402

from ContrastSegLogic.checkpoints import checkpoint_metadata  # noqa: E402
from ContrastSegLogic.pretraining_cache import CACHE_FOLDER  # noqa: E402


def background_step(panel, at_least: int):
    background = panel.logic.workflow.background
    return lambda: background.running and background.job.progress.step >= at_least


def let_settle(seconds: float = 2.0) -> None:
    """Run the event loop for longer than the panel waits for a choice to settle."""
    until = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() > until, seconds + 5, "the choice to settle")


def finetune_command(panel) -> list[str]:
    return list(panel.jobs.job.steps[-1].command)


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_pretraining_runs_while_annotating_and_fine_tuning_starts_from_it(session):
    panel = session.widget.panel
    ui, background = panel.ui, panel.logic.workflow.background
    (scan0, seg0), (scan1, seg1), (scan2, _) = load_scans(3)
    add_pair(ui, scan0, seg0)
    tiny_settings(ui, pretrain_iterations=100000)  # never ends by itself here
    click(ui.pretrainBackgroundRadio)
    let_settle()
    assert not background.running and not ui.backgroundStatusLabel.visible  # nothing to pre-train on yet

    for volume in (scan1, scan2):
        ui.unlabeledVolumesSelector.setCheckState(volume, qt.Qt.Checked)
    wait_until(background_step(panel, 2), 120, "pre-training in the background")
    assert ui.backgroundStatusLabel.visible and "Pre-training in the background" in ui.backgroundStatusLabel.text
    assert all(button.enabled for button in (ui.finetuneButton, ui.segmentButton, ui.suggestButton))

    # annotation goes on: the event loop is never held up while it runs, and a new pair is added meanwhile
    ticks: list[float] = []
    timer = qt.QTimer()
    timer.setInterval(20)
    timer.connect("timeout()", lambda: ticks.append(time.monotonic()))
    timer.start()
    wait_until(lambda: len(ticks) >= 60, 60, "the event loop")
    timer.stop()
    assert max(b - a for a, b in zip(ticks, ticks[1:])) < 0.5
    add_pair(ui, scan1, seg1)
    assert pair_rows(ui)[-1] == ("scan1", "scan1 labels") and background.running
    first_job = background.job

    run_job(session, ui.finetuneButton, "fine-tuning from the background pre-training")
    assert first_job.state == "succeeded"  # stopped before the fine-tune started, its weights kept
    command = finetune_command(panel)
    init = Path(option(command, "--init"))
    assert init.parent.parent.name == CACHE_FOLDER and init.name == "1-global-GD.pt"
    assert option(command, "--time-budget") == "10m"  # the whole budget: pre-training took none of it
    assert not any(step.title.startswith("Pre-training") for step in panel.jobs.job.steps)
    assert "from the background pre-training" in ui.logView.toPlainText()
    stopped_at = checkpoint_metadata(str(init))["stopped"]["step"]
    assert stopped_at >= 2 and "Model saved" in ui.statusLabel.text

    # it goes on where it stopped, and the second fine-tune starts from the same checkpoint, trained further
    wait_until(lambda: background.running and background.job is not first_job, 30, "pre-training going on")
    assert "--continue" in background.job.steps[0].command
    wait_until(background_step(panel, stopped_at + 2), 120, "pre-training further")
    run_job(session, ui.finetuneButton, "a second fine-tuning")
    assert Path(option(finetune_command(panel), "--init")) == init
    assert checkpoint_metadata(str(init))["stopped"]["step"] > stopped_at

    # evaluating compares random initialisation with the same checkpoint, pre-training nothing again
    wait_until(lambda: background.running, 30, "pre-training going on before evaluating")
    run_job(session, ui.evaluateButton, "evaluating from the background pre-training")
    command = finetune_command(panel)
    assert "compare" in command and Path(option(command, "--init")) == init
    assert "--unlabeled" not in command and option(command, "--methods") == "random"
    table = ui.evaluationTable
    assert [table.item(r, 0).text() for r in range(table.rowCount)] == ["random", "pretrained"]
    assert session.dialogs.errors == []

    # another initialisation: the background job stops (weights kept) and does not come back
    wait_until(lambda: background.running, 30, "pre-training going on again")
    click(ui.randomInitRadio)
    assert not background.running and not ui.backgroundStatusLabel.visible
    let_settle()
    assert not background.running


def test_suggest_uses_the_background_checkpoint_when_there_is_no_model(session):
    panel = session.widget.panel
    ui, background = panel.ui, panel.logic.workflow.background
    scans = load_scans(3)
    add_pair(ui, *scans[0])
    tiny_settings(ui, pretrain_iterations=100000)
    click(ui.pretrainBackgroundRadio)
    for volume, _ in scans:
        ui.unlabeledVolumesSelector.setCheckState(volume, qt.Qt.Checked)
    wait_until(background_step(panel, 2), 120, "pre-training in the background")
    ui.suggestCountSpin.value = 1
    run_job(session, ui.suggestButton, "suggesting with the background checkpoint")
    command = list(panel.jobs.job.steps[-1].command)
    assert Path(option(command, "--model")).parent.parent.name == CACHE_FOLDER
    assert ui.suggestionsTable.rowCount == 1 and not session.dialogs.seen  # no "pre-train first?" question
    wait_until(lambda: background.running, 30, "pre-training going on after the suggestion")
