"""The panel against the widgets as Slicer's own sources define them: CTK's path field (its validator decides when
``currentPathChanged`` fires; ``setCurrentPath`` always calls ``setText``), the qMRML node boxes (None stays blank; a
checked node leaving the scene emits nothing) and PythonQt's connections by full signature. Each test names the
source line it rests on; the stand-ins in ``Testing/pythonqt/`` follow those lines."""

from __future__ import annotations

import os

import pytest

if os.environ.get("CI"):
    import PyQt5  # noqa: F401
pytest.importorskip("PyQt5", reason="PyQt5 is not installed (pip install -e .[slicer])")

from slicer_scene import slicer  # noqa: E402

import slicer_app  # noqa: E402
from slicer_app import qt  # noqa: E402

from test_slicer_gui import load_scans, session  # noqa: E402,F401 (session: the panel's fixture)


def line_edit(path_field):
    """The line edit a user types into (CTK: the history combo box's, ``ctkPathLineEdit.cpp``:351-362)."""
    combo = path_field.comboBox()
    return combo.lineEdit() if combo is not None else path_field.findChild(qt.QtWidgets.QLineEdit)


def type_keys(path_field, *keys) -> None:
    from PyQt5.QtTest import QTest
    edit = line_edit(path_field)
    for key in keys:
        if isinstance(key, str):
            QTest.keyClicks(edit, key)
        else:
            QTest.keyClick(edit, key)
        qt.QApplication.processEvents()


# ---- the stand-ins follow the sources ------------------------------------------------------------------------------

def test_path_field_signals_only_for_text_its_validator_accepts(session):
    """CTK ``82cae578`` ``ctkPathLineEdit.cpp``:819-838 (``currentPathChanged`` only if ``hasAcceptableInput``) and
    ``ctkUtils.cpp``:142-186 (no name filter: ``.+``; ``*.pt``: ``.*\\.pt?$``)."""
    import ctk
    field, seen, valid = ctk.ctkPathLineEdit(), [], []
    field.connect("currentPathChanged(QString)", seen.append)
    field.connect("validInputChanged(bool)", valid.append)
    field.currentPath = "/data"
    field.currentPath = "/"
    field.currentPath = ""
    assert seen == ["/data", "/"] and valid == [True, False]
    field.nameFilters = ["ContrastSeg checkpoint (*.pt)"]
    seen.clear()
    for text in ("/m/model.pt", "/m/model.p", "/m/model.", "/m/model"):
        field.currentPath = text
    assert seen == ["/m/model.pt", "/m/model.p"]


def test_set_current_path_moves_the_cursor_even_for_the_same_text(session):
    """``ctkPathLineEdit.cpp``:798-801: ``setCurrentPath`` is ``LineEdit->setText`` with no equality check."""
    import ctk
    field = ctk.ctkPathLineEdit()
    field.currentPath = "/data/scans"
    line_edit(field).setCursorPosition(3)
    field.setCurrentPath("/data/scans")
    assert line_edit(field).cursorPosition() == len("/data/scans")


def test_node_box_set_to_none_stays_blank_when_nodes_arrive(session):
    """Slicer v5.8.1 ``qMRMLNodeComboBox.cxx``:915-947 (v5.6.2 :874-906): an empty ID sets index -1 without a None
    row; QComboBox selects a row only when the list was empty before."""
    ui, panel = session.widget.panel.ui, session.widget.panel
    (scan0, _), = load_scans(1)
    assert ui.labeledVolumeSelector.currentNode() is scan0  # the first node of an empty list
    ui.labeledVolumeSelector.setCurrentNode(None)
    load_scans(2)
    assert ui.labeledVolumeSelector.currentNode() is None and panel.parameters.single("labeledVolume") is None


def test_removing_a_checked_node_emits_nothing_and_the_parameter_follows(session):
    """``qMRMLCheckableNodeComboBox.cxx``:95 forwards CTK ``ctkCheckableComboBox.cpp``:157-168 / 371-377
    (``checkedIndexesChanged`` from ``dataChanged`` only): a node leaving the scene emits nothing; the parameter
    node loses its reference by MRML itself and the box shows what is left."""
    ui, panel = session.widget.panel.ui, session.widget.panel
    (scan0, _), (scan1, _) = load_scans(2)
    for volume in (scan0, scan1):
        ui.unlabeledVolumesSelector.setCheckState(volume, qt.Qt.Checked)
    emitted = []
    ui.unlabeledVolumesSelector.connect("checkedNodesChanged()", lambda: emitted.append(1))
    slicer.mrmlScene.RemoveNode(scan0)
    qt.QApplication.processEvents()
    assert emitted == []
    assert panel.parameters.nodes("unlabeledVolume") == [scan1]
    assert ui.unlabeledVolumesSelector.checkedNodes() == [scan1]


def test_connections_match_the_full_signature(session):
    """PythonQt ``db525aff`` ``PythonQtSignalReceiver.cpp``:253-261 (``indexOfSignal`` of the normalized
    signature) and ``PythonQtStdDecorators.cpp``:50-72 (unknown: False, nothing connected)."""
    ui = session.widget.panel.ui
    assert getattr(qt, "CONNECT_FAILURES", []) == [], "the module connected a signal its widget does not have"
    assert ui.modelOutputPath.connect("currentPathChanged(int)", print) is False
    assert ui.iterationsSpin.connect("valueChanged(double)", print) is False
    assert ui.labeledVolumeSelector.connect("currentNodeChanged(vtkMRMLScene*)", print) is False
    qt.CONNECT_FAILURES.clear()
    texts, flags = [], []
    assert ui.iterationsSpin.connect("valueChanged(QString)", texts.append)
    assert ui.labeledVolumeSelector.connect("currentNodeChanged(bool)", flags.append)
    assert ui.labeledVolumeSelector.connect("currentNodeChanged( vtkMRMLNode * )", lambda node: None)
    ui.iterationsSpin.value = 42
    load_scans(1)
    assert texts == ["42"] and flags == [True]


# ---- defects 4 and 5: the path fields ------------------------------------------------------------------------------

@pytest.mark.parametrize("field, parameter", [("unlabeledFolderPath", "unlabeledFolder"),
                                              ("modelOutputPath", "modelPath"),
                                              ("segmentModelPath", "segmentModelPath")])
def test_clearing_a_path_field_clears_its_parameter(session, tmp_path, field, parameter):
    """Defect 4. ``ctkPathLineEdit.cpp``:819-838: no ``currentPathChanged`` for empty (or, with a name filter,
    unfinished) text; the parameter must follow what the field shows all the same."""
    ui, panel = session.widget.panel.ui, session.widget.panel
    path_field = getattr(ui, field)
    path_field.currentPath = str(tmp_path / "model.pt")
    assert panel.parameters.get(parameter) == str(tmp_path / "model.pt")
    path_field.currentPath = ""
    assert panel.parameters.get(parameter) == ""
    path_field.currentPath = "/a"
    type_keys(path_field, qt.Qt.Key_End, qt.Qt.Key_Backspace)
    assert panel.parameters.get(parameter) == "/"
    stored = []
    panel.parameters.node.AddObserver("ModifiedEvent", lambda *a: stored.append(panel.parameters.get(parameter)))
    type_keys(path_field, qt.Qt.Key_Backspace)
    assert path_field.currentPath == "" and panel.parameters.get(parameter) == "" and stored[-1:] == [""]


def test_typing_inside_a_path_keeps_the_cursor_where_it_is(session):
    """Defect 5. ``ctkPathLineEdit.cpp``:798-801 (``setText`` moves the cursor to the end): the GUI refresh that
    follows each edit must not set the same path again."""
    ui = session.widget.panel.ui
    ui.unlabeledFolderPath.currentPath = "/data/scans"
    edit = line_edit(ui.unlabeledFolderPath)
    edit.setCursorPosition(len("/data"))
    type_keys(ui.unlabeledFolderPath, "2")
    assert ui.unlabeledFolderPath.currentPath == "/data2/scans"
    assert edit.cursorPosition() == len("/data2")
    assert session.widget.panel.parameters.get("unlabeledFolder") == "/data2/scans"


def test_a_path_field_without_history_combo_box_still_binds(session, tmp_path):
    """``showHistoryButton`` false: a plain QLineEdit and ``comboBox()`` None (``ctkPathLineEdit.cpp``:351-392,
    886-889); the binding then follows ``currentPathChanged`` and ``validInputChanged``."""
    from ContrastSegGui.bindings import GuiBinding
    import ctk
    panel = session.widget.panel
    field = ctk.ctkPathLineEdit()
    field.showHistoryButton = False
    assert field.comboBox() is None
    binding = GuiBinding({"unlabeledFolder": field})
    binding.connect(panel.parameters)
    field.currentPath = str(tmp_path)
    assert panel.parameters.get("unlabeledFolder") == str(tmp_path)
    field.currentPath = ""
    assert panel.parameters.get("unlabeledFolder") == ""


# ---- defect 6: the folder the browse button picks exists -----------------------------------------------------------

def test_an_existing_output_folder_gets_a_new_sub_folder(tmp_path):
    """Defect 6 (the job itself: ``test_slicer_gui.py::test_segment_a_folder_to_files``)."""
    from ContrastSegLogic.errors import SceneInputError
    from ContrastSegLogic.workflow import segmentation_folder
    scans, chosen = tmp_path / "scans", tmp_path / "out"
    scans.mkdir()
    assert segmentation_folder(scans, chosen) == chosen  # a new folder is used as it is
    chosen.mkdir()
    assert segmentation_folder(scans, chosen) == chosen / "scans segmentations"
    (chosen / "scans segmentations").mkdir()
    assert segmentation_folder(scans, chosen) == chosen / "scans segmentations-2"
    with pytest.raises(SceneInputError, match="inside the folder of scans"):
        segmentation_folder(scans, scans)
    with pytest.raises(SceneInputError, match="does not exist"):
        segmentation_folder(scans, tmp_path / "missing" / "out")
