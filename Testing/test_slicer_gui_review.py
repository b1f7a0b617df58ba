"""The panel's review table after "Segment" on several volumes, clicked through in the real Qt event loop with a real
``contrastseg predict`` job (see ``test_slicer_gui`` for the harness): sorted worst first, a row click shows that
volume with its own prediction and uncertainty, and "Add to training set" takes the selected row."""

from __future__ import annotations

import pytest

pytest.importorskip("PyQt5", reason="PyQt5 is not installed (pip install -e .[slicer])")

from test_slicer_gui import load_scans, pair_rows, qt, run_job, screenshot, session  # noqa: E402,F401
from test_slicer_gui_suggest import click_row, table_rows  # noqa: E402
from test_slicer_suggest_review import phantom_model  # noqa: E402,F401  (the fixture)

from slicer_app import click, shown_background, slice_views  # noqa: E402
from slicer_scene import slicer  # noqa: E402


def test_review_table_worst_first_and_a_row_click_shows_that_volume(session, phantom_model, tmp_path):
    ui, panel = session.widget.panel.ui, session.widget.panel
    model, _ = phantom_model
    scans = [volume for volume, _ in load_scans(3)]
    ui.segmentModelPath.currentPath = str(model)
    ui.deviceCombo.currentText = "cpu"
    ui.uncertaintyCheck.checked = True
    for volume in scans:
        ui.segmentVolumesSelector.setCheckState(volume, qt.Qt.Checked)
    run_job(session, ui.segmentButton, "segmenting three volumes")
    assert session.dialogs.errors == [] and not ui.reviewSection.collapsed

    table = ui.reviewTable
    header = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount)]
    assert header == ["rank", "volume", "score", "LV z", "myocardium z", "RV z", "flags"]
    rows = table_rows(table)
    assert [r[0] for r in rows] == ["1", "2", "3"] and {r[1] for r in rows} == {"scan0", "scan1", "scan2"}
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    exact = [r["score"] for r in panel.review]
    assert exact == sorted(exact, reverse=True) and len(set(exact)) == 3  # no tie: ordered by the scores
    assert [r["volume"].GetName() for r in panel.review] == [r[1] for r in rows]

    for row in (2, 0):
        click_row(table, row)
        name = rows[row][1]
        volume = slicer.mrmlScene.GetFirstNodeByName(name)
        prediction = slicer.mrmlScene.GetFirstNodeByName(f"{name} ContrastSeg")
        uncertainty = slicer.mrmlScene.GetFirstNodeByName(f"{name} ContrastSeg uncertainty")
        assert shown_background(slicer.mrmlScene) is volume
        assert slice_views(slicer.mrmlScene)["Red"].GetForegroundVolumeID() == uncertainty.GetID()
        visible = {r["segmentation"].GetName() for r in panel.review
                   if r["segmentation"].GetDisplayNode().GetVisibility()}
        assert visible == {prediction.GetName()}  # its own prediction only
        assert ui.reviewVolumeSelector.currentNode() is volume
        assert ui.reviewPredictionSelector.currentNode() is prediction

    screenshot(session, tmp_path, "ContrastSeg-panel-review.png")
    click(ui.addToTrainingButton)  # the selected row (the worst) joins the training set
    assert pair_rows(ui) == [(rows[0][1], f"{rows[0][1]} ContrastSeg")]
    assert session.dialogs.errors == []

    slicer.mrmlScene.RemoveNode(slicer.mrmlScene.GetFirstNodeByName(f"{rows[1][1]} ContrastSeg"))
    click_row(table, 1)  # its prediction was deleted: one message, the views unchanged
    assert len(session.dialogs.errors) == 1 and "was deleted" in session.dialogs.errors[0]
    assert shown_background(slicer.mrmlScene).GetName() == rows[0][1]
