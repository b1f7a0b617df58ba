"""The module's panel as a radiologist uses it: the module file itself (``ContrastSeg.py`` with its real ``.ui``) in
a real Qt event loop (``slicer_app``: PythonQt-like ``qt``, CTK and qMRML stand-ins over the real MRML scene, Slicer's
own ``slicer.util``), driven by button clicks and widget edits only, with real ``contrastseg`` subprocess jobs at
tiny sizes. Each step checks what the user would see, and that the scene holds exactly what it should."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

if os.environ.get("CI"):
    import PyQt5  # noqa: F401  (CI installs the slicer extra: fail loudly if Qt is missing)
pytest.importorskip("PyQt5", reason="PyQt5 is not installed (pip install -e .[slicer])")

from slicer_scene import add_segmentation, phantom_node, phantom_segments, segment_array, slicer  # noqa: E402

import slicer_app  # noqa: E402
from slicer_app import click, qt, shown_background, wait_until  # noqa: E402

from ContrastSegLogic.scene_io import scene_node_ids  # noqa: E402

SCREENSHOT_FOLDER = "CONTRASTSEG_SCREENSHOTS"  # set (e.g. to Screenshots/) to refresh the README's pictures


def screenshot(session, tmp_path, name: str) -> None:
    """The panel rendered to ``$CONTRASTSEG_SCREENSHOTS/name`` (else into the test's folder), checked to be a picture
    of the whole panel."""
    from PyQt5.QtGui import QImage
    path = Path(os.environ.get(SCREENSHOT_FOLDER) or tmp_path) / name
    session.screenshot(path)
    image = QImage(str(path))
    assert image.width() >= 400 and image.height() >= 1000, (image.width(), image.height())


@pytest.fixture
def session(tmp_path, one_torch_thread):
    session = slicer_app.start(tmp_path / "home")
    session.load_module()
    session.enter()
    session.dialogs = slicer_app.DialogWatcher()
    yield session
    session.dialogs.stop()
    session.quit()
    assert slicer_app.SLOT_ERRORS == [], "a handler let an exception escape to the console"


def tiny_settings(ui, pretrain_iterations=3, iterations=6):
    ui.deviceCombo.currentText = "cpu"
    ui.pretrainIterationsSpin.value = pretrain_iterations
    ui.iterationsSpin.value = iterations
    ui.batchSizeSpin.value = 4
    ui.cropSizeSpin.value = 32


def load_scans(count=3):
    """``count`` phantom scans with their segmentations, as a user would load them."""
    scene, scans = slicer.mrmlScene, []
    for index in range(count):
        volume, label = phantom_node(scene, index, f"scan{index}")
        scans.append((volume, add_segmentation(scene, volume, label, phantom_segments(), name=f"scan{index} labels")))
    return scans


def add_pair(ui, volume, segmentation):
    ui.labeledVolumeSelector.setCurrentNode(volume)
    ui.labeledSegmentationSelector.setCurrentNode(segmentation)
    click(ui.addPairButton)


def pair_rows(ui):
    table = ui.labeledPairsTable
    return [(table.item(r, 0).text(), table.item(r, 1).text()) for r in range(table.rowCount)]


def run_job(session, button, what, timeout_s=240):
    """Click ``button``, see the job run (Cancel shown, the other job buttons disabled), wait for its end; the
    status lines seen meanwhile."""
    ui, seen = session.widget.panel.ui, []
    click(button)
    assert button.text == "Cancel", ui.statusLabel.text
    others = [b for b in (ui.finetuneButton, ui.segmentButton, ui.segmentFolderButton) if b is not button]
    assert not any(b.enabled for b in others)

    def ended():
        seen.append(ui.statusLabel.text)
        return button.text != "Cancel"
    wait_until(ended, timeout_s, what)
    assert all(b.enabled for b in others)
    return seen


def test_the_whole_workflow_by_clicks(session, tmp_path):
    ui = session.widget.panel.ui
    (scan0, seg0), (scan1, seg1), (scan2, seg2) = load_scans(3)
    add_pair(ui, scan0, seg0)
    add_pair(ui, scan1, seg1)
    assert pair_rows(ui) == [("scan0", "scan0 labels"), ("scan1", "scan1 labels")]
    assert [ui.segmentsList.item(i).text() for i in range(ui.segmentsList.count)] == ["LV", "myocardium", "RV"]
    ui.unlabeledVolumesSelector.setCheckState(scan2, qt.Qt.Checked)
    click(ui.pretrainNowRadio)
    tiny_settings(ui)
    model_path = tmp_path / "my models" / "heart.pt"
    model_path.parent.mkdir()
    ui.modelOutputPath.currentPath = str(model_path)

    statuses = run_job(session, ui.finetuneButton, "pre-training and fine-tuning")
    assert ui.progressBar.value == 100 and "Model saved" in ui.statusLabel.text, ui.statusLabel.text
    for stage in ("Pre-training (global GD) (1/3)", "Pre-training (local LR) (2/3)", "Fine-tuning (3/3)"):
        assert any(s.startswith(stage) and "step" in s for s in statuses), (stage, sorted(set(statuses))[:20])
    assert any("loss" in s and "ETA" in s for s in statuses)
    assert model_path.is_file() and ui.segmentModelPath.currentPath == str(model_path)
    assert ui.modelClassesLabel.text.startswith("Segments LV, myocardium, RV"), ui.modelClassesLabel.text
    log = ui.logView.toPlainText()
    assert "finetune job started" in log and "finetune job finished" in log
    jobs = Path(slicer.app.temporaryPath) / "ContrastSeg-jobs"
    assert not list(jobs.glob("*/inputs")) and not list(jobs.glob("*/outputs"))  # no patient data left behind

    # Segment two volumes; the selection changes while it runs, the result shows the job's own volume
    for volume in (scan2, scan1):
        ui.segmentVolumesSelector.setCheckState(volume, qt.Qt.Checked)
    ui.uncertaintyCheck.checked = True
    before = scene_node_ids(slicer.mrmlScene)
    click(ui.segmentButton)
    for volume in (scan2, scan1):
        ui.segmentVolumesSelector.setCheckState(volume, qt.Qt.Unchecked)
    wait_until(lambda: ui.segmentButton.text == "Segment", 240, "segmentation")
    created = {slicer.mrmlScene.GetNodeByID(i).GetName() for i in scene_node_ids(slicer.mrmlScene) - before
               if not slicer.mrmlScene.GetNodeByID(i).IsA("vtkMRMLStorageNode")
               and not slicer.mrmlScene.GetNodeByID(i).IsA("vtkMRMLDisplayNode")}
    assert {"scan2 ContrastSeg", "scan1 ContrastSeg", "scan2 ContrastSeg uncertainty",
            "scan1 ContrastSeg uncertainty"} <= created, created
    assert shown_background(slicer.mrmlScene) is scan1  # the job's first volume (scene order), not the selection
    assert ui.reviewVolumeSelector.currentNode() is scan1
    prediction = ui.reviewPredictionSelector.currentNode()
    assert prediction.GetName() == "scan1 ContrastSeg"
    screenshot(session, tmp_path, "ContrastSeg-panel-after-segment.png")

    # Review against the reference, correct the prediction, add it to the training set
    ui.reviewVolumeSelector.setCurrentNode(scan2)
    prediction = slicer.mrmlScene.GetFirstNodeByName("scan2 ContrastSeg")
    ui.reviewPredictionSelector.setCurrentNode(prediction)
    ui.reviewReferenceSelector.setCurrentNode(seg2)
    click(ui.compareButton)
    table = ui.diceTable
    assert [table.item(r, 0).text() for r in range(table.rowCount)] == ["LV", "myocardium", "RV"]
    assert all(0.0 <= float(table.item(r, 1).text()) <= 1.0 for r in range(table.rowCount))
    corrected = segment_array(seg2, "LV", scan2)
    slicer.util.updateSegmentBinaryLabelmapFromArray(
        corrected, prediction, prediction.GetSegmentation().GetSegmentIdBySegmentName("LV"), scan2)
    click(ui.addToTrainingButton)
    assert pair_rows(ui)[-1] == ("scan2", "scan2 ContrastSeg")

    # Fine-tune again to the same model path: both models are kept
    click(ui.randomInitRadio)
    run_job(session, ui.finetuneButton, "second fine-tuning")
    second = model_path.with_name("heart-2.pt")
    assert model_path.is_file() and second.is_file() and ui.segmentModelPath.currentPath == str(second)

    # Save, close, reload: every field and the pairs come back
    binding = session.widget.panel.binding
    fields_before = {name: binding._read(widget) for name, widget in binding.widgets.items()}
    names = lambda value: [n.GetName() for n in value] if isinstance(value, list) else (
        value.GetName() if hasattr(value, "GetName") else value)
    fields_before = {k: names(v) for k, v in fields_before.items()}
    pairs_before = pair_rows(ui)
    scene_file = tmp_path / "saved" / "scene.mrml"
    scene_file.parent.mkdir()
    session.save_scene(scene_file)
    session.close_scene()
    assert pair_rows(ui) == [] and ui.iterationsSpin.value != 6
    session.load_scene(scene_file)
    fields_after = {k: names(binding._read(w)) for k, w in binding.widgets.items()}
    assert fields_after == fields_before
    assert pair_rows(ui) == pairs_before


def test_deleting_a_paired_segmentation_drops_only_its_pair(session):
    ui = session.widget.panel.ui
    (scan0, seg0), (scan1, seg1), _ = load_scans(3)
    add_pair(ui, scan0, seg0)
    add_pair(ui, scan1, seg1)
    slicer.mrmlScene.RemoveNode(seg0)
    assert pair_rows(ui) == [("scan0", "(deleted)"), ("scan1", "scan1 labels")]  # never (scan0, scan1 labels)
    before = scene_node_ids(slicer.mrmlScene)
    click(ui.finetuneButton)
    assert len(session.dialogs.seen) == 1 and "volume 'scan0' has no segmentation" in session.dialogs.seen[0]
    assert scene_node_ids(slicer.mrmlScene) == before and ui.finetuneButton.text == "Fine-tune"
    ui.labeledPairsTable.setCurrentCell(0, 0)
    click(ui.removePairButton)
    assert pair_rows(ui) == [("scan1", "scan1 labels")]


def two_pairs(ui):
    scans = load_scans(3)
    for volume, segmentation in scans[:2]:
        add_pair(ui, volume, segmentation)
    return scans


def test_cancel_mid_job_ends_the_process_group_and_leaves_the_scene(session):
    ui = session.widget.panel.ui
    two_pairs(ui)
    click(ui.randomInitRadio)
    tiny_settings(ui, iterations=100000)
    before = scene_node_ids(slicer.mrmlScene)
    click(ui.finetuneButton)
    wait_until(lambda: "step" in ui.statusLabel.text, 120, "the first training steps")
    job = session.widget.panel.jobs.job
    process = job._handle.process
    click(ui.finetuneButton)  # now labelled Cancel
    assert job.state == "cancelled" and ui.finetuneButton.text == "Fine-tune" and ui.segmentButton.enabled
    assert process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)
    assert scene_node_ids(slicer.mrmlScene) == before
    assert not job.folder.inputs.exists() and not job.folder.outputs.exists()
    assert not list(Path(session.widget.logic.models_folder()).glob("*.pt"))
    assert session.dialogs.errors == []


def test_stop_and_keep_delivers_the_weights_reached(session, tmp_path):
    from ContrastSegLib.runtime.checkpoint import load_checkpoint
    ui = session.widget.panel.ui
    two_pairs(ui)
    click(ui.randomInitRadio)
    tiny_settings(ui, iterations=5000)
    click(ui.finetuneButton)
    wait_until(lambda: "step" in ui.statusLabel.text and ui.progressBar.value >= 0 and ui.stopButton.enabled, 120,
               "the first training steps")
    wait_until(lambda: ui.progressBar.value > 0, 120, "the progress bar to move")
    screenshot(session, tmp_path, "ContrastSeg-panel-training.png")
    click(ui.stopButton)
    wait_until(lambda: ui.finetuneButton.text == "Fine-tune", 120, "the stopped job to deliver its model")
    model = ui.segmentModelPath.currentPath
    stopped = load_checkpoint(model).metadata["stopped"]
    # the panel's CPU budget re-plans from the pace: on a loaded machine fewer than the 5000 iterations are planned
    assert 0 < stopped["step"] < stopped["planned"] <= 5000
    assert "stopped early" in ui.logView.toPlainText() and "stopped early" in ui.modelClassesLabel.text
    assert session.dialogs.errors == []


def test_a_failing_installation_and_a_failing_job_each_show_one_error(session, tmp_path, monkeypatch):
    ui = session.widget.panel.ui
    two_pairs(ui)
    tiny_settings(ui)
    before = scene_node_ids(slicer.mrmlScene)

    def offline(arguments):
        raise subprocess.CalledProcessError(1, ["pip", "install", arguments], "no network")
    import ContrastSegLogic.dependencies as dependencies
    monkeypatch.setitem(dependencies.PACKAGES, "contrastseg_absent_package", ("contrastseg-absent>=1", 1.0))
    monkeypatch.setattr(slicer.util, "pip_install", offline)
    click(ui.finetuneButton)
    assert len(session.dialogs.seen) == 2 and "contrastseg-absent>=1" in session.dialogs.seen[0]  # asked first
    assert len(session.dialogs.errors) == 1 and "check the internet connection" in session.dialogs.errors[0]
    assert ui.finetuneButton.text == "Fine-tune" and ui.finetuneButton.enabled
    assert scene_node_ids(slicer.mrmlScene) == before
    monkeypatch.undo()

    broken = tmp_path / "more scans"
    broken.mkdir()
    (broken / "scan9.nii.gz").write_bytes(b"not an image at all")
    ui.unlabeledFolderPath.currentPath = str(broken)
    click(ui.pretrainNowRadio)
    run_job(session, ui.finetuneButton, "a job that fails")
    assert len(session.dialogs.errors) == 2 and "Pre-training (global GD) failed" in session.dialogs.errors[1]
    assert "scan9.nii.gz" in session.dialogs.errors[1]
    assert scene_node_ids(slicer.mrmlScene) == before


def test_module_self_test_runs_in_the_harness(session, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    slicer.selfTests["ContrastSeg"]()
    assert slicer.mrmlScene.GetFirstNodeByName("scan 1 ContrastSeg") is not None


def test_waiting_from_a_script_keeps_slicer_responsive(session):
    from dataclasses import replace
    from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig
    (volume, segmentation), *_ = load_scans(1)
    ticks = []
    timer = qt.QTimer()
    timer.setInterval(20)
    timer.connect("timeout()", lambda: ticks.append(1))
    timer.start()
    model = session.widget.logic.finetune([(volume, segmentation)], wait=True, channels=(8, 16),
                                          settings=replace(FinetuneConfig(), iterations=4, batch_size=2, device="cpu"),
                                          preprocess=replace(PreprocessConfig(), crop_size=32))
    timer.stop()
    assert Path(model).is_file() and len(ticks) > 20  # the event loop ran throughout the job


def test_scene_close_and_module_lifecycle(session):
    ui = session.widget.panel.ui
    models = Path(session.widget.logic.models_folder())
    assert models.parent.parent == Path(slicer.app.slicerUserSettingsFilePath).parent  # <settings>/ContrastSeg/models
    assert Path(slicer.app.temporaryPath) not in models.parents and ui.modelsFolderPath.currentPath == str(models)
    two_pairs(ui)
    ui.iterationsSpin.value = 77
    session.exit()
    session.enter()
    assert ui.iterationsSpin.value == 77 and len(pair_rows(ui)) == 2
    session.close_scene()
    assert pair_rows(ui) == [] and ui.labeledVolumeSelector.currentNode() is None
    assert ui.iterationsSpin.value == session.widget.panel.parameters.get("iterations") != 77
    (volume, segmentation), = load_scans(1)
    add_pair(ui, volume, segmentation)
    assert pair_rows(ui) == [("scan0", "scan0 labels")]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A fine-tuned phantom model from the real CLI, and a folder of two scans to segment."""
    from cli_helpers import phantom_model_subprocess
    model, data = phantom_model_subprocess(tmp_path_factory.mktemp("tiny-model"), 3, 20)
    root = model.parent
    scans = root / "to segment"
    scans.mkdir()
    for image in sorted((data / "imagesTr").glob("*.nii.gz"))[:2]:
        (scans / image.name).write_bytes(image.read_bytes())
    return model, scans


def test_segment_a_folder_to_files(session, tiny_model, tmp_path, monkeypatch):
    """Defect 6: the output picked with the browse button (``Dirs|Writable``: CTK ``ctkPathLineEdit.cpp``:675 opens
    ``getExistingDirectory``, so the folder exists) gets a new sub-folder; the user's files in it stay."""
    ui = session.widget.panel.ui
    model, scans = tiny_model
    ui.segmentModelPath.currentPath = str(model)
    assert ui.modelClassesLabel.text.startswith("Segments LV, myocardium, RV (fine-tuned, 20 steps")
    ui.segmentFolderPath.currentPath = str(scans)
    chosen = tmp_path / "segmentations"
    chosen.mkdir()
    (chosen / "notes.txt").write_text("the user's own file")
    dialogs = []
    monkeypatch.setattr(qt.QtWidgets.QFileDialog, "getExistingDirectory",
                        lambda *args, **kwargs: dialogs.append(args[1]) or str(chosen))
    ui.segmentFolderOutputPath.browse()
    assert dialogs == ["Select a directory..."] and ui.segmentFolderOutputPath.currentPath == str(chosen)
    ui.deviceCombo.currentText = "cpu"
    before = scene_node_ids(slicer.mrmlScene)
    run_job(session, ui.segmentFolderButton, "segmenting a folder")
    output = chosen / f"{scans.name} segmentations"
    written = sorted(p.name for p in output.iterdir())
    assert written == sorted([p.name.replace(".nii.gz", "_seg.nii.gz") for p in scans.iterdir()] + ["review.csv"])
    assert sorted(p.name for p in chosen.iterdir()) == sorted(["notes.txt", output.name])
    assert (chosen / "notes.txt").read_text() == "the user's own file"
    assert f"Wrote 2 segmentation(s) to {output}" in ui.statusLabel.text and scene_node_ids(slicer.mrmlScene) == before
    assert f"writing into its new sub-folder '{output.name}'" in ui.logView.toPlainText()
    assert session.dialogs.errors == []


def test_one_job_at_a_time_and_the_gui_follows_the_parameter_node(session, tiny_model):
    ui, panel = session.widget.panel.ui, session.widget.panel
    (scan0, seg0), (scan1, seg1) = load_scans(2)
    model, _ = tiny_model
    ui.segmentModelPath.currentPath = str(model)
    ui.deviceCombo.currentText = "cpu"
    ui.segmentVolumesSelector.setCheckState(scan1, qt.Qt.Checked)
    click(ui.segmentButton)
    job = panel.jobs.job
    assert not ui.finetuneButton.enabled
    panel.onFinetune()  # a script (or a queued click) while the job runs: refused, the running job kept
    assert panel.jobs.job is job and ui.segmentButton.text == "Cancel"
    wait_until(lambda: job.done and ui.segmentButton.text == "Segment", 240, "the segmentation")
    assert job.state == "succeeded" and slicer.mrmlScene.GetFirstNodeByName("scan1 ContrastSeg") is not None
    # another script (or a scene import) edits the parameter node: the GUI follows
    panel.parameters.set("iterations", 123)
    panel.parameters.set("initialisation", "random")
    panel.parameters.set_nodes("unlabeledVolume", [scan0])
    assert ui.iterationsSpin.value == 123 and ui.randomInitRadio.checked
    assert ui.unlabeledVolumesSelector.checkedNodes() == [scan0]
    # Review with nothing to compare against: one message, nothing changed
    ui.reviewReferenceSelector.setCurrentNode(None)
    before = scene_node_ids(slicer.mrmlScene)
    click(ui.compareButton)
    assert len(session.dialogs.errors) == 1 and "select a reference segmentation" in session.dialogs.errors[0]
    assert scene_node_ids(slicer.mrmlScene) == before


def test_choosing_the_segments_to_learn(session):
    ui = session.widget.panel.ui
    two_pairs(ui)
    items = [ui.segmentsList.item(i) for i in range(ui.segmentsList.count)]
    items[1].setCheckState(qt.Qt.Unchecked)  # myocardium left out
    assert session.widget.panel.parameters.segment_names() == ["LV", "RV"]
    click(ui.randomInitRadio)
    tiny_settings(ui, iterations=4)
    run_job(session, ui.finetuneButton, "fine-tuning two of three segments")
    assert ui.modelClassesLabel.text.startswith("Segments LV, RV (fine-tuned"), ui.modelClassesLabel.text
