"""The main window's module selector and the Segment Editor module, as far as a module that opens the Segment Editor
on a volume relies on them.

``ModuleSelector`` mirrors ``qSlicerModuleSelectorToolBar`` (Slicer 5.8.1
``Base/QTGUI/qSlicerModuleSelectorToolBar.h``): the slot ``selectModule(QString)``, the signal
``moduleSelected(QString)`` and ``selectedModule()``; selecting a module enters it (``qSlicerModulePanel`` shows its
widget, whose ``enter()`` runs). ``slicer.util.selectModule`` reaches it through ``qSlicerMainWindow::moduleSelector()``
(``Base/QTGUI/qSlicerMainWindow.h``). Stricter than Slicer in one point: an unknown module name raises (Slicer logs
a warning and selects nothing), so that a misspelt name fails the test.

``SegmentEditorModule`` mirrors what ``SegmentEditorWidget.enter()`` does (Slicer 5.8.1
``Modules/Scripted/SegmentEditor/SegmentEditor.py``): ``selectParameterNode()`` takes the scene's singleton
``vtkMRMLSegmentEditorNode`` tagged "SegmentEditor" (made when absent), and ``updateWidgetFromMRML()`` shows that
node's segmentation and source volume; here each entry records what the editor would then show. Painting,
effects and views are not emulated.
"""

from __future__ import annotations

import qt
import slicer

SEGMENT_EDITOR_TAG = "SegmentEditor"


class SegmentEditorModule:
    """Entering records (segmentation node, source volume node) as the editor would show them."""

    def __init__(self):
        self.shown: list[tuple] = []

    def enter(self) -> None:
        scene = slicer.mrmlScene
        node = scene.GetSingletonNode(SEGMENT_EDITOR_TAG, "vtkMRMLSegmentEditorNode")
        if node is None:
            node = scene.CreateNodeByClass("vtkMRMLSegmentEditorNode")
            node.UnRegister(None)
            node.SetSingletonTag(SEGMENT_EDITOR_TAG)
            node = scene.AddNode(node)
        self.shown.append((node.GetSegmentationNode(), node.GetSourceVolumeNode()))


class ModuleSelector(qt.QObject):
    """``modules``: name -> an object with ``enter()`` (the module widgets this application has)."""

    moduleSelected = qt.Signal(str)

    def __init__(self, modules: dict):
        super().__init__()
        self.modules = modules
        self.selected: list[str] = []

    def selectModule(self, name: str) -> None:
        if name not in self.modules:
            raise RuntimeError(f"no module named {name!r}")
        self.selected.append(name)
        self.moduleSelected.emit(name)
        self.modules[name].enter()

    def selectedModule(self) -> str:
        return self.selected[-1] if self.selected else ""


def install(window) -> tuple[ModuleSelector, SegmentEditorModule]:
    """Give the main window ``window`` a module selector that knows the Segment Editor."""
    editor = SegmentEditorModule()
    selector = ModuleSelector({"SegmentEditor": editor})
    window.moduleSelector = lambda: selector
    return selector, editor
