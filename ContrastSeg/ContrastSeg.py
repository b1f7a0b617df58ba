"""ContrastSeg: segment 3-D scans from 2–3 annotated ones. Contrastive pre-training on the unlabeled volumes, fine-tuning
on the labeled pairs, prediction into new segmentation nodes, review against a reference.

This file is the thin Slicer part (module description, Qt widget, module test). All logic lives in the Qt-free
``ContrastSegLogic`` package beside it, and the machine learning in ``ContrastSegLib``; both run without Slicer's GUI.
"""

import os

import slicer
from slicer.util import VTKObservationMixin

from ContrastSegLogic import ContrastSegWorkflow, JobFailedError, SceneInputError
from ContrastSegLogic.dependencies import TORCH_REQUIREMENT, ensure_dependencies
from ContrastSegLogic.parameters import ContrastSegParameters

try:  # Slicer's Qt layer; absent under the slicer-core wheel, where only ContrastSegLogic is usable
    import qt
    from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                               ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
except ImportError:
    qt = None

    class ScriptedLoadableModule:  # noqa: D101 - stand-ins so the module imports; only the logic works here
        pass

    class ScriptedLoadableModuleWidget:  # noqa: D101
        pass

    class ScriptedLoadableModuleTest:  # noqa: D101
        pass

    ScriptedLoadableModuleLogic = None

POLL_MS = 200
STRATEGIES = {"global": ("GD", "GD-", "GR"), "local": ("LR", "LD", "none")}


class ContrastSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "ContrastSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["ContrastSeg contributors"]
        self.parent.helpText = (
            "Segment many scans after annotating two or three: pre-train a 2-D UNet on your unlabeled volumes with "
            "contrastive learning, fine-tune it on the labeled ones, and segment the rest into new segmentation "
            "nodes. See <a href='https://github.com/contrastseg/SlicerContrastSeg'>the documentation</a>.")
        self.parent.acknowledgementText = (
            "Methods: Chaitanya et al., NeurIPS 2020 (global/local contrastive pre-training); Hu et al., MICCAI 2021 "
            "(semi-supervised local contrastive loss).")


_SLICER_LOGIC_BASES = (ScriptedLoadableModuleLogic,) if ScriptedLoadableModuleLogic else ()


class ContrastSegLogic(*_SLICER_LOGIC_BASES, ContrastSegWorkflow):
    """Usable from scripts without the GUI::

        logic = ContrastSegLogic()
        model = logic.finetune(labeled=[(volume, segmentation)], pretrained="pretrained.pt", wait=True)
        result = logic.segment(other_volume, model)   # a new "<volume> ContrastSeg" segmentation node
    """

    def __init__(self, scene=None, launcher=None, jobs_dir=None):
        if ScriptedLoadableModuleLogic is not None:
            ScriptedLoadableModuleLogic.__init__(self)
        if jobs_dir is None and hasattr(slicer, "app"):
            jobs_dir = os.path.join(slicer.app.temporaryPath, "ContrastSeg-jobs")
        ContrastSegWorkflow.__init__(self, scene or slicer.mrmlScene, launcher, jobs_dir)

    def ensure_dependencies(self):
        """torch from the PyTorch extension, the other packages by pip — only inside Slicer, at first use."""
        if not hasattr(slicer, "app"):
            return []

        def torch_available():
            import importlib.util
            return importlib.util.find_spec("torch") is not None

        def install_torch():
            try:
                import PyTorchUtils
            except ImportError:
                raise RuntimeError("install the PyTorch extension from the Extensions Manager, then restart Slicer")
            return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True,
                                                                  torchVersionRequirement=TORCH_REQUIREMENT) is not None

        return ensure_dependencies(slicer.util.pip_install, install_torch, torch_available)

    def pretrain(self, *args, **kwargs):
        self.ensure_dependencies()
        return ContrastSegWorkflow.pretrain(self, *args, **kwargs)

    def finetune(self, *args, **kwargs):
        self.ensure_dependencies()
        return ContrastSegWorkflow.finetune(self, *args, **kwargs)

    def segment(self, *args, **kwargs):
        self.ensure_dependencies()
        return ContrastSegWorkflow.segment(self, *args, **kwargs)


class ContrastSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Data, Model, Fine-tune, Segment and Review sections; every field mirrors the parameter node."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self.parameters = self.job = None
        self.timer = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        panel = slicer.util.loadUI(self.resourcePath("UI/ContrastSeg.ui"))
        self.layout.addWidget(panel)
        self.ui = slicer.util.childWidgetVariables(panel)
        panel.setMRMLScene(slicer.mrmlScene)
        self.logic = ContrastSegLogic()
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.connect("timeout()", self.onPoll)
        self.ui.globalStrategyCombo.addItems(list(STRATEGIES["global"]))
        self.ui.localStrategyCombo.addItems(list(STRATEGIES["local"]))
        self.ui.deviceCombo.addItems(["auto", "cuda", "cpu"])
        for button, handler in ((self.ui.addPairButton, self.onAddPair), (self.ui.removePairButton, self.onRemovePair),
                                (self.ui.finetuneButton, self.onFinetune), (self.ui.segmentButton, self.onSegment),
                                (self.ui.compareButton, self.onCompare),
                                (self.ui.addToTrainingButton, self.onAddToTraining)):
            button.connect("clicked()", handler)
        for widget in self._value_widgets():
            widget.connect(_change_signal(widget), self.updateParameters)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        if self.job is not None and not self.job.done:
            self.job.cancel()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def onSceneStartClose(self, caller, event):
        if self.job is not None and not self.job.done:
            self.job.cancel()
        self.parameters = None

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.parameters = ContrastSegParameters(self.logic.getParameterNode())
        p = self.parameters
        self.ui.pretrainedPath.currentPath = p.get("pretrainedPath")
        self.ui.unlabeledFolderPath.currentPath = p.get("unlabeledFolder")
        self.ui.modelOutputPath.currentPath = p.get("modelPath")
        self.ui.segmentModelPath.currentPath = p.get("segmentModelPath")
        {"pretrained-file": self.ui.pretrainedFileRadio, "pretrain-now": self.ui.pretrainNowRadio,
         "random": self.ui.randomInitRadio}[p.get("initialisation")].checked = True
        self.ui.globalStrategyCombo.currentText = p.get("globalStrategy")
        self.ui.localStrategyCombo.currentText = p.get("localStrategy") or "none"
        self.ui.pretrainIterationsSpin.value = p.get_int("pretrainIterations")
        self.ui.deviceCombo.currentText = p.get("device")
        self.ui.iterationsSpin.value = p.get_int("iterations")
        self.ui.batchSizeSpin.value = p.get_int("batchSize")
        self.ui.cropSizeSpin.value = p.get_int("cropSize")
        self.ui.mixupCheck.checked = p.get_bool("mixup")
        self.ui.selfTrainingSpin.value = p.get_int("selfTrainingRounds")
        self.ui.uncertaintyCheck.checked = p.get_bool("uncertainty")
        _check_nodes(self.ui.unlabeledVolumesSelector, p.nodes("unlabeledVolume"))
        _check_nodes(self.ui.segmentVolumesSelector, p.nodes("segmentVolume"))
        self._show_pairs()

    def updateParameters(self, *unused):
        p = self.parameters
        if p is None:
            return
        p.set("pretrainedPath", self.ui.pretrainedPath.currentPath)
        p.set("unlabeledFolder", self.ui.unlabeledFolderPath.currentPath)
        p.set("modelPath", self.ui.modelOutputPath.currentPath)
        p.set("segmentModelPath", self.ui.segmentModelPath.currentPath)
        p.set("initialisation", "pretrain-now" if self.ui.pretrainNowRadio.checked else
              "random" if self.ui.randomInitRadio.checked else "pretrained-file")
        p.set("globalStrategy", self.ui.globalStrategyCombo.currentText)
        p.set("localStrategy", self.ui.localStrategyCombo.currentText)
        p.set("pretrainIterations", self.ui.pretrainIterationsSpin.value)
        p.set("device", self.ui.deviceCombo.currentText)
        p.set("iterations", self.ui.iterationsSpin.value)
        p.set("batchSize", self.ui.batchSizeSpin.value)
        p.set("cropSize", self.ui.cropSizeSpin.value)
        p.set("mixup", self.ui.mixupCheck.checked)
        p.set("selfTrainingRounds", self.ui.selfTrainingSpin.value)
        p.set("uncertainty", self.ui.uncertaintyCheck.checked)
        p.set_nodes("unlabeledVolume", self.ui.unlabeledVolumesSelector.checkedNodes())
        p.set_nodes("segmentVolume", self.ui.segmentVolumesSelector.checkedNodes())

    # ---- Data / Review: the training set -------------------------------------------------------------------------

    def onAddPair(self):
        self._add_pair(self.ui.labeledVolumeSelector.currentNode(), self.ui.labeledSegmentationSelector.currentNode())

    def onAddToTraining(self):
        self._add_pair(self.ui.reviewVolumeSelector.currentNode(), self.ui.reviewPredictionSelector.currentNode())

    def onRemovePair(self):
        row = self.ui.labeledPairsTable.currentRow()
        pairs = self.parameters.labeled_pairs()
        if 0 <= row < len(pairs):
            self.parameters.set_labeled_pairs(pairs[:row] + pairs[row + 1:])
            self._show_pairs()

    def _add_pair(self, volume, segmentation):
        with _user_errors():
            self.parameters.set_labeled_pairs(
                self.logic.add_to_training_set(self.parameters.labeled_pairs(), volume, segmentation))
            self._show_pairs()

    def _show_pairs(self):
        table, pairs = self.ui.labeledPairsTable, self.parameters.labeled_pairs()
        table.setRowCount(len(pairs))
        for row, (volume, segmentation) in enumerate(pairs):
            for column, node in enumerate((volume, segmentation)):
                table.setItem(row, column, qt.QTableWidgetItem(node.GetName() if node else "(missing)"))

    # ---- Fine-tune and Segment: background jobs ----------------------------------------------------------------

    def onFinetune(self):
        if self._cancel_running(self.ui.finetuneButton):
            return
        p = self.parameters
        folder = p.get("unlabeledFolder")
        with _user_errors():
            self._start(self.ui.finetuneButton, "Fine-tune", lambda: self.logic.finetune(
                p.labeled_pairs(), pretrained=p.pretrained_path(), unlabeled=p.nodes("unlabeledVolume"),
                folders=[folder] if folder else [], pretrain=p.pretrain_settings(), settings=p.finetune_settings(),
                model_path=p.get("modelPath") or None, wait=False), self._finetuned)

    def onSegment(self):
        if self._cancel_running(self.ui.segmentButton):
            return
        p = self.parameters
        with _user_errors():
            self._start(self.ui.segmentButton, "Segment", lambda: self.logic.segment(
                p.nodes("segmentVolume"), p.get("segmentModelPath"), uncertainty=p.get_bool("uncertainty"),
                device=p.get("device"), wait=False), self._segmented)

    def _start(self, button, label, launch, on_success):
        """Start a job (``launch()`` returns it); the timer then polls it on the main thread."""
        self.ui.progressBar.value = 0
        self.job = launch()
        self.job.label, self.job.button, self.job.on_done = label, button, on_success
        button.text = "Cancel"
        self.ui.statusLabel.text = self.logic.last_device_message or f"{label}: started"
        self.timer.start()

    def _cancel_running(self, button):
        if self.job is None or self.job.done or self.job.button is not button:
            return False
        self.job.cancel()
        self.onPoll()
        return True

    def onPoll(self):
        job = self.job
        job.poll()
        self.ui.progressBar.value = int(100 * job.progress.fraction)
        self.ui.statusLabel.text = job.progress.text()
        if not job.done:
            return
        self.timer.stop()
        job.button.text = job.label
        if job.state == "succeeded":
            self.ui.progressBar.value = 100
            job.on_done(job.result)
        else:
            self.ui.statusLabel.text = job.error
            if job.state == "failed":
                slicer.util.errorDisplay(job.error, windowTitle="ContrastSeg")

    def _finetuned(self, model):
        self.parameters.set("segmentModelPath", model)
        self.ui.segmentModelPath.currentPath = model
        self.ui.statusLabel.text = f"Model saved: {model}"

    def _segmented(self, nodes):
        segmentations = [n for n in nodes if n.IsA("vtkMRMLSegmentationNode")]
        self.ui.statusLabel.text = f"Created {', '.join(n.GetName() for n in segmentations)}"
        if segmentations:
            volume = self.parameters.nodes("segmentVolume")[0]
            slicer.util.setSliceViewerLayers(background=volume, fit=True)
            self.ui.reviewVolumeSelector.setCurrentNode(volume)
            self.ui.reviewPredictionSelector.setCurrentNode(segmentations[0])

    # ---- Review ----------------------------------------------------------------------------------------------------

    def onCompare(self):
        with _user_errors():
            rows = self.logic.compare(self.ui.reviewPredictionSelector.currentNode(),
                                      self.ui.reviewReferenceSelector.currentNode(),
                                      self.ui.reviewVolumeSelector.currentNode())
            table = self.ui.diceTable
            table.setRowCount(len(rows))
            for r, row in enumerate(rows):
                for c, text in enumerate((row["structure"], f"{row['dice']:.3f}", f"{row['hd95_mm']:.1f}")):
                    table.setItem(r, c, qt.QTableWidgetItem(text))

    def _value_widgets(self):
        ui = self.ui
        return (ui.pretrainedPath, ui.unlabeledFolderPath, ui.modelOutputPath, ui.segmentModelPath,
                ui.pretrainedFileRadio, ui.pretrainNowRadio, ui.randomInitRadio, ui.globalStrategyCombo,
                ui.localStrategyCombo, ui.pretrainIterationsSpin, ui.deviceCombo, ui.iterationsSpin, ui.batchSizeSpin,
                ui.cropSizeSpin, ui.mixupCheck, ui.selfTrainingSpin, ui.uncertaintyCheck,
                ui.unlabeledVolumesSelector, ui.segmentVolumesSelector)


class _user_errors:
    """Show a bad-input error as one message box line instead of a traceback."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, (SceneInputError, JobFailedError, RuntimeError)):
            slicer.util.errorDisplay(str(error), windowTitle="ContrastSeg")
            return True
        return False


def _change_signal(widget):
    name = widget.className()
    if name == "ctkPathLineEdit":
        return "currentPathChanged(QString)"
    if name in ("QRadioButton", "QCheckBox"):
        return "toggled(bool)"
    if name == "QComboBox":
        return "currentIndexChanged(int)"
    if name == "qMRMLCheckableNodeComboBox":
        return "checkedNodesChanged()"
    return "valueChanged(int)"


def _check_nodes(selector, nodes):
    ids = {node.GetID() for node in nodes if node is not None}
    for index in range(selector.nodeCount()):
        node = selector.nodeFromIndex(index)
        selector.setCheckState(node, qt.Qt.Checked if node.GetID() in ids else qt.Qt.Unchecked)


class ContrastSegTest(ScriptedLoadableModuleTest):
    """In Slicer: a tiny fine-tune on a synthetic labeled volume, then segmentation of a second one."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_finetune_and_segment()

    def test_finetune_and_segment(self):
        import numpy as np
        from ContrastSegLogic import FinetuneSettings
        rng = np.random.default_rng(0)
        volumes, label = [], np.zeros((6, 48, 48), np.uint8)
        label[1:5, 12:30, 14:34] = 1
        for index in range(2):
            image = (rng.normal(100, 10, label.shape) + 200 * label).astype(np.float32)
            volumes.append(slicer.util.addVolumeFromArray(image, name=f"scan {index}"))
        labelmap = slicer.util.addVolumeFromArray(label, name="labels", nodeClassName="vtkMRMLLabelMapVolumeNode")
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "scan 0 labels")
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volumes[0])
        slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segmentation)
        slicer.mrmlScene.RemoveNode(labelmap)
        logic = ContrastSegLogic()
        settings = FinetuneSettings(iterations=20, batch_size=4, crop_size=32, channels=(8, 16), device="cpu")
        model = logic.finetune([(volumes[0], segmentation)], settings=settings, wait=True)
        result = logic.segment(volumes[1], model)
        self.assertEqual(result.GetName(), "scan 1 ContrastSeg")
        self.assertEqual(result.GetSegmentation().GetNumberOfSegments(), 1)
        self.delayDisplay("ContrastSeg test passed")
