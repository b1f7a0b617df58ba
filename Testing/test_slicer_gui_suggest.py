"""The panel's "Suggest volumes to annotate", clicked through in the real Qt event loop with real ``contrastseg``
subprocess jobs at tiny sizes (see ``test_slicer_gui`` for the harness): pre-training first when there is no model,
the table of suggestions, a click that opens the Segment Editor on the suggested volume (a folder scan is loaded),
and the refusal, in one line, when there is no model and no pre-training to run."""

from __future__ import annotations

import pytest

pytest.importorskip("PyQt5", reason="PyQt5 is not installed (pip install -e .[slicer])")

from test_slicer_gui import add_pair, load_scans, qt, run_job, screenshot, session, tiny_settings  # noqa: E402,F401

import module_selector  # noqa: E402
from slicer_app import click, shown_background, user  # noqa: E402
from slicer_scene import slicer  # noqa: E402

from ContrastSegLogic.scene_io import scene_node_ids  # noqa: E402


@pytest.fixture
def editor(session):
    """The main window's module selector, knowing the Segment Editor: (selector, Segment Editor)."""
    return module_selector.install(session.window)


def click_row(table, row: int) -> None:
    """A user's mouse click on the first cell of ``row``."""
    from PyQt5.QtTest import QTest
    item = table.item(row, 0)
    table.scrollToItem(item)
    user(lambda: QTest.mouseClick(table.viewport(), qt.Qt.LeftButton, qt.Qt.NoModifier,
                                  table.visualItemRect(item).center()))


def table_rows(table):
    return [[table.item(r, c).text() for c in range(table.columnCount)] for r in range(table.rowCount)]


def extra_scan_folder(tmp_path):
    from ContrastSegLib.data.phantom import make_phantom
    from ContrastSegLib.io import write_volume
    folder = tmp_path / "more scans"
    folder.mkdir()
    write_volume(make_phantom(7, seed=3)[0], folder / "extra_scan.nii.gz")
    return folder


def test_suggest_pretrains_first_then_a_click_opens_the_segment_editor(session, editor, tmp_path):
    ui, panel = session.widget.panel.ui, session.widget.panel
    selector, segment_editor = editor
    scans = load_scans(4)
    for volume, segmentation in scans[:2]:
        add_pair(ui, volume, segmentation)
    for volume, _ in scans:  # scan0 and scan1 are annotated already: never suggested
        ui.unlabeledVolumesSelector.setCheckState(volume, qt.Qt.Checked)
    ui.unlabeledFolderPath.currentPath = str(extra_scan_folder(tmp_path))
    tiny_settings(ui)
    ui.suggestCountSpin.value = 3
    click(ui.pretrainNowRadio)  # no pre-training is the default; this suggestion pre-trains first
    assert ui.pretrainNowRadio.checked and panel.parameters.suggestion_model() is None

    statuses = run_job(session, ui.suggestButton, "pre-training, then suggesting")
    assert "There is no model to suggest volumes with yet" in session.dialogs.seen[0]  # asked first
    assert session.dialogs.errors == []
    for step in ("Pre-training (global GD) (1/3)", "Pre-training (local LR) (2/3)",
                 "Suggesting volumes to annotate (3/3)"):
        assert any(s.startswith(step) for s in statuses), (step, sorted(set(statuses))[:20])
    rows = table_rows(ui.suggestionsTable)
    assert [ui.suggestionsTable.horizontalHeaderItem(c).text() for c in range(4)] == ["rank", "volume", "score",
                                                                                      "reason"]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert {r[1] for r in rows} == {"scan2", "scan3", "extra_scan.nii.gz"}
    assert all(0 <= float(r[2]) <= 1 and r[3] for r in rows)
    kept = panel.parameters.get("pretrainedPath")  # kept, and fine-tuning now starts from it
    assert kept.startswith(session.widget.logic.models_folder()) and ui.pretrainedFileRadio.checked
    assert "Suggested 3 volume(s)" in ui.statusLabel.text
    screenshot(session, tmp_path, "ContrastSeg-panel-suggest.png")

    # a click on the folder scan: loaded, shown, and the Segment Editor opened on it with a segmentation to paint
    file_row = [r[1] for r in rows].index("extra_scan.nii.gz")
    click_row(ui.suggestionsTable, file_row)
    volume = slicer.mrmlScene.GetFirstNodeByName("extra_scan")
    assert volume is not None and shown_background(slicer.mrmlScene) is volume
    assert selector.selected == ["SegmentEditor"]
    segmentation, source = segment_editor.shown[-1]
    assert source is volume and segmentation.GetName() == "extra_scan segmentation"
    names = [segmentation.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
    assert names == ["LV", "myocardium", "RV"]  # the training set's segments, empty, to paint
    assert ui.labeledVolumeSelector.currentNode() is volume
    assert ui.labeledSegmentationSelector.currentNode() is segmentation
    before = scene_node_ids(slicer.mrmlScene)
    click_row(ui.suggestionsTable, file_row)  # again: nothing loaded or made twice
    assert scene_node_ids(slicer.mrmlScene) == before and segment_editor.shown[-1] == (segmentation, volume)

    # "Annotate this one" on a scene volume's row
    scene_row = [r[1] for r in rows].index("scan2")
    ui.suggestionsTable.setCurrentCell(scene_row, 0)
    click(ui.annotateButton)
    assert shown_background(slicer.mrmlScene) is scans[2][0] and segment_editor.shown[-1][1] is scans[2][0]
    assert selector.selected == ["SegmentEditor"] * 3

    # suggesting again uses the kept checkpoint: nothing asked, nothing pre-trained
    ui.suggestCountSpin.value = 2
    statuses = run_job(session, ui.suggestButton, "suggesting with the kept checkpoint")
    assert len(session.dialogs.seen) == 1 and session.dialogs.errors == []
    assert any(s.startswith("Suggesting volumes to annotate (1/1)") for s in statuses)
    assert ui.suggestionsTable.rowCount == 2


def test_suggesting_without_a_model_is_one_error_and_starts_no_job(session, editor):
    ui, panel = session.widget.panel.ui, session.widget.panel
    scans = load_scans(3)
    ui.unlabeledVolumesSelector.setCheckState(scans[2][0], qt.Qt.Checked)
    click(ui.randomInitRadio)
    before = scene_node_ids(slicer.mrmlScene)
    click(ui.suggestButton)
    assert panel.jobs.job is None and ui.suggestButton.text == "Suggest volumes to annotate"
    assert len(session.dialogs.seen) == 1 and len(session.dialogs.errors) == 1  # no question, one error
    message = session.dialogs.errors[0].splitlines()[-1]
    assert message.startswith("suggesting needs a model") and "Pre-train now" in message
    assert scene_node_ids(slicer.mrmlScene) == before and ui.suggestionsTable.rowCount == 0
    click(ui.annotateButton)  # nothing suggested yet: one message, nothing opened
    assert len(session.dialogs.errors) == 2 and "select a suggested volume" in session.dialogs.errors[1]
    assert editor[0].selected == []
