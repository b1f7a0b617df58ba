"""The panel's "Evaluate on my labeled volumes" and time budget, clicked through in the real Qt event loop with a
real ``contrastseg compare`` job at tiny sizes (see ``test_slicer_gui`` for the harness)."""

from __future__ import annotations

import pytest

pytest.importorskip("PyQt5", reason="PyQt5 is not installed (pip install -e .[slicer])")

from test_slicer_gui import (add_pair, load_scans, qt, run_job, session, tiny_settings,  # noqa: E402,F401
                             two_pairs)  # (session: the fixture)

from ContrastSegLogic.parameters import CPU_TIME_BUDGET_MINUTES  # noqa: E402


def test_evaluate_on_my_labeled_volumes_shows_the_verdict(session):
    ui = session.widget.panel.ui
    scans = load_scans(4)
    for volume, segmentation in scans[:2]:
        add_pair(ui, volume, segmentation)
    for volume, _ in scans[2:]:  # G^D draws slices of two volumes at least
        ui.unlabeledVolumesSelector.setCheckState(volume, qt.Qt.Checked)
    tiny_settings(ui)
    parameters = session.widget.panel.parameters
    assert ui.timeBudgetSpin.value == CPU_TIME_BUDGET_MINUTES and parameters.cpu_time_budget() == 600
    ui.timeBudgetSpin.value = 0  # tiny iterations: no budget needed
    assert parameters.get("timeBudgetMinutes") == 0 and parameters.cpu_time_budget() is None
    run_job(session, ui.evaluateButton, "the leave-one-out evaluation")
    table = ui.evaluationTable
    rows = [[table.item(r, c).text() for c in range(table.columnCount)] for r in range(table.rowCount)]
    assert [row[0] for row in rows] == ["random", "GD+LR", "MIM"]
    assert all(0 <= float(row[1]) <= 1 for row in rows)
    assert rows[1][3].endswith("/2 folds") and rows[0][2] == ""  # random is the reference, not compared to itself
    recommended = ui.evaluationLabel.text.split("Recommended: ")[1].split(".")[0]
    assert recommended in ("random", "GD+LR", "MIM")
    assert "contrastseg finetune" in ui.evaluationLabel.text
    assert "Evaluated 3 methods on 2 folds" in ui.statusLabel.text
    assert session.dialogs.errors == []


def test_evaluating_with_one_pair_is_one_error_and_starts_nothing(session):
    ui = session.widget.panel.ui
    scans = two_pairs(ui)
    ui.labeledPairsTable.setCurrentCell(1, 0)
    from slicer_app import click
    click(ui.removePairButton)
    ui.unlabeledVolumesSelector.setCheckState(scans[2][0], qt.Qt.Checked)
    click(ui.evaluateButton)
    assert session.widget.panel.jobs.job is None
    assert len(session.dialogs.errors) == 1 and "at least 2 labeled pairs" in session.dialogs.errors[0]
