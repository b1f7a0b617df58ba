"""ContrastSeg: segment 3-D scans from 2–3 annotated ones. Contrastive pre-training on the unlabeled volumes, fine-tuning
on the labeled pairs, prediction into new segmentation nodes, review against a reference.

This file is the thin Slicer part: the module description, the module widget (which hosts the panel of
``ContrastSegGui``), the logic (Slicer's part of it: dependency installation, the models and jobs folders, around the
Qt-free ``ContrastSegLogic`` workflow) and the module test. The machine learning is in ``ContrastSegLib``.
"""

import os

import qt
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from ContrastSegLogic import ContrastSegWorkflow
from ContrastSegLogic.annotation import prepare_annotation
from ContrastSegLogic.dependencies import TORCH_REQUIREMENT, ensure_dependencies, install_policy
from ContrastSegLogic.errors import SceneInputError

MODELS_FOLDER_KEY = "ContrastSeg/ModelsFolder"


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
            "nodes. It also suggests which volumes to annotate next, and lists the segmentations most likely wrong "
            "first. See <a href='https://github.com/contrastseg/SlicerContrastSeg'>the documentation</a>.")
        self.parent.acknowledgementText = (
            "Methods: Chaitanya et al., NeurIPS 2020 (global/local contrastive pre-training); Hu et al., MICCAI 2021 "
            "(semi-supervised local contrastive loss).")


def _with_packages(name: str):
    """The workflow's method ``name``, run once the Python packages it needs are installed."""
    def method(self, *args, **kwargs):
        self.ensure_dependencies()
        return getattr(self.workflow, name)(*args, **kwargs)
    method.__name__ = name
    method.__doc__ = f"``ContrastSegWorkflow.{name}`` after ``ensure_dependencies()``."
    return method


class ContrastSegLogic(ScriptedLoadableModuleLogic):
    """Usable from scripts without the GUI::

        logic = ContrastSegLogic()
        model = logic.finetune(labeled=[(volume, segmentation)], pretrained="pretrained.pt", wait=True)
        result = logic.segment(other_volume, model, wait=True)   # a new "<volume> ContrastSeg" segmentation node
        review = logic.segment([scan2, scan3], model, review=True)   # one row per volume, most likely wrong first
        rows = logic.suggest(unlabeled=[scan2, scan3], model=model, count=1, wait=True)  # what to annotate next
        logic.annotate(rows[0])                                  # its volume shown, the Segment Editor opened on it
        logic.pretrain_in_background(unlabeled=[scan2, scan3])   # returns at once: pre-trains while you annotate
        model = logic.finetune(labeled=pairs, pretrained=logic.workflow.background_checkpoint(unlabeled=[scan2, scan3]))

    Every job method first makes sure the Python packages are there (asking once before installing), then runs the
    workflow's method of the same name. ``wait=True`` keeps Slicer responsive while it waits. A script without the
    main window installs them with ``logic.ensure_dependencies(install=True)`` (or ``install_packages=True``, or the
    environment variable ``CONTRASTSEG_INSTALL_PACKAGES=1``); otherwise it gets an error naming them, never a
    question nobody can answer.
    """

    def __init__(self, scene=None, launcher=None, jobs_dir=None, models_dir=None, install_packages=None):
        ScriptedLoadableModuleLogic.__init__(self)
        self.workflow = ContrastSegWorkflow(
            scene or slicer.mrmlScene, launcher, jobs_dir or os.path.join(slicer.app.temporaryPath, "ContrastSeg-jobs"),
            models_dir=models_dir or self.models_folder(), process_events=slicer.app.processEvents)
        self.installing = False
        self.install_packages = install_packages  # None: ask (main window) or refuse (no window, testing mode)

    # ---- Slicer's part ---------------------------------------------------------------------------------------------

    @staticmethod
    def models_folder() -> str:
        """The folder chosen once for all models (application settings); default beside Slicer's settings file."""
        default = os.path.join(os.path.dirname(slicer.app.slicerUserSettingsFilePath), "ContrastSeg", "models")
        return slicer.util.settingsValue(MODELS_FOLDER_KEY, default)

    def set_models_folder(self, path: str) -> None:
        qt.QSettings().setValue(MODELS_FOLDER_KEY, path)
        self.workflow.models_dir = type(self.workflow.models_dir)(path)

    def ensure_dependencies(self, install=None) -> list:
        """torch from the PyTorch extension, the other packages by pip, after one question; one installation at a
        time. ``install`` True/False installs without asking / never (default: ``install_packages``, see
        ``install_policy``; Slicer's testing mode never installs)."""
        if self.installing:
            raise RuntimeError("an installation is already running; wait for it to finish")
        policy = install_policy(self.install_packages if install is None else install, slicer.app.testingEnabled(),
                                slicer.util.mainWindow() is not None)
        self.installing = True
        try:
            return ensure_dependencies(slicer.util.pip_install, _install_torch, slicer.util.confirmOkCancelDisplay,
                                       policy=policy)
        finally:
            self.installing = False

    @property
    def last_device_message(self) -> str:
        return self.workflow.last_device_message

    # ---- the workflow, with the packages it needs ------------------------------------------------------------------

    pretrain = _with_packages("pretrain")
    pretrain_in_background = _with_packages("pretrain_in_background")
    finetune = _with_packages("finetune")
    segment = _with_packages("segment")
    segment_folder = _with_packages("segment_folder")
    compare = _with_packages("compare")
    evaluate_methods = _with_packages("evaluate_methods")
    suggest = _with_packages("suggest")

    def add_to_training_set(self, *args, **kwargs):
        return self.workflow.add_to_training_set(*args, **kwargs)

    def annotate(self, suggestion: dict, classes=()) -> tuple:
        """Open a row of ``suggest`` for annotation: its volume (a file is loaded) in the slice views and a
        segmentation to paint ("<volume> segmentation", an empty segment per class of ``classes``), then the
        Segment Editor on both. Returns (volume, segmentation)."""
        volume, segmentation = prepare_annotation(self.workflow.scene, suggestion, classes)
        slicer.util.setSliceViewerLayers(background=volume, foreground=None, fit=True)
        if slicer.util.mainWindow() is not None:  # a script without the main window has no module to open
            slicer.util.selectModule("SegmentEditor")
        return volume, segmentation


def _install_torch() -> bool:
    """torch by the PyTorch extension, without its own question: ours was asked already."""
    try:
        import PyTorchUtils
    except ImportError:
        raise RuntimeError("ContrastSeg needs the PyTorch extension: install it from the Extensions Manager, then "
                           "restart Slicer") from None
    # SlicerPyTorch PyTorchUtils/PyTorchUtils.py (e1c85cc, 2024-04-22) line 194: installTorch(askConfirmation=False,
    # ...); line 207 asks only when askConfirmation is true and testing mode is off. It also installs torchvision
    # (line 240) and light-the-torch (line 247), which our question's size includes.
    return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                          torchVersionRequirement=TORCH_REQUIREMENT) is not None


class ContrastSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel (``ContrastSegGui.panel``), kept on the module's parameter node across scene close/load."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self.panel = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from ContrastSegGui.panel import ContrastSegPanel
        self.logic = ContrastSegLogic()
        self.panel = ContrastSegPanel(self.logic, self.resourcePath("UI/ContrastSeg.ui"))
        self.layout.addWidget(self.panel.widget)
        scene = slicer.mrmlScene
        for event, handler in ((scene.StartCloseEvent, self.onSceneStartClose),
                               (scene.EndCloseEvent, self.onSceneEndClose),
                               (scene.StartImportEvent, self.onSceneStartImport),
                               (scene.EndImportEvent, self.onSceneEndImport),
                               (scene.NodeRemovedEvent, self.onNodeRemoved)):
            self.addObserver(scene, event, handler)
        self.panel.show_parameters(self.logic.getParameterNode())

    def enter(self):
        self.panel.show_parameters(self.logic.getParameterNode())

    def cleanup(self):
        if self.panel is not None:
            self.panel.cleanup()
        self.removeObservers()

    def onSceneStartClose(self, caller, event):
        self.panel.jobs.cancel()  # its nodes are going: nothing may be imported into the next scene
        self.panel.background.pause()  # its weights are kept; the next scene's volumes decide what runs next
        self.panel.binding.suspended = True
        self.panel.forget_parameters()

    def onSceneEndClose(self, caller, event):
        self.panel.binding.suspended = False
        self.panel.background.resume()
        if self.parent.isEntered:
            self.panel.show_parameters(self.logic.getParameterNode())

    def onSceneStartImport(self, caller, event):
        self.panel.binding.suspended = True

    def onSceneEndImport(self, caller, event):
        self.panel.binding.suspended = False
        self.panel.show_parameters(self.logic.getParameterNode())

    def onNodeRemoved(self, caller, event):
        if self.panel.parameters is not None and not caller.IsClosing():
            self.panel.refresh()


class ContrastSegTest(ScriptedLoadableModuleTest):
    """In Slicer: a tiny fine-tune on a synthetic labeled volume, then segmentation of a second one. It installs
    nothing: where the packages are missing (Slicer's build machines) the jobs are skipped with a message."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_finetune_and_segment()

    def test_finetune_and_segment(self):
        import tempfile
        from dataclasses import replace

        import numpy as np
        from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig
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
        logic = ContrastSegLogic(models_dir=tempfile.mkdtemp(prefix="ContrastSegTest-"), install_packages=False)
        try:
            logic.ensure_dependencies()
        except SceneInputError as error:
            self.delayDisplay(f"ContrastSeg test: fine-tuning and segmentation skipped. {error}")
            return
        settings = replace(FinetuneConfig(), iterations=20, batch_size=4, device="cpu")
        model = logic.finetune([(volumes[0], segmentation)], settings=settings,
                               preprocess=replace(PreprocessConfig(), crop_size=32), channels=(8, 16), wait=True)
        result = logic.segment(volumes[1], model, wait=True)
        self.assertEqual(result.GetName(), "scan 1 ContrastSeg")
        self.assertEqual(result.GetSegmentation().GetNumberOfSegments(), 1)
        self.delayDisplay("ContrastSeg test passed")
