"""The qMRML widgets of the ContrastSeg panel over a real MRML scene (slicer-core): ``qMRMLWidget``,
``qMRMLNodeComboBox`` and ``qMRMLCheckableNodeComboBox``.

They mirror Slicer 5.8.1's ``Libs/MRML/Widgets/qMRMLWidget.h``, ``qMRMLNodeComboBox.h/.cxx`` and
``qMRMLCheckableNodeComboBox.h``: the same properties (nodeTypes, showChildNodeTypes, showHidden, noneEnabled, ...),
methods (currentNode, setCurrentNode, nodeCount, nodeFromIndex, checkedNodes, setCheckState, ...) and signals
(currentNodeChanged(vtkMRMLNode*), currentNodeIDChanged(QString), checkedNodesChanged(), mrmlSceneChanged(...)), and
the behaviour a module relies on: nodes of the listed classes (subclasses only with showChildNodeTypes; nodes hidden
from editors only with showHidden) in scene order; the first node selected when None is not offered and the list was
empty (QComboBox selects the first row inserted into an empty list); set to None without a None row, the box stays
blank (``qMRMLNodeComboBox.cxx`` v5.8.1 :915-947, v5.6.2 :874-906: ``setCurrentIndex(-1)``), also when nodes are
added later; a removed current node replaced by the row that takes its place, with currentNodeChanged emitted; the
list kept in step with the scene's NodeAdded / NodeRemoved events and refreshed once after a batch (scene import or
close). The C++ argument types of the ``object`` signals are in ``cpp_signal_types`` (``qMRMLNodeComboBox.h``
:328-361, ``qMRMLWidget.h``:66), so that ``connect("currentNodeChanged(vtkMRMLNode*)", ...)`` matches in full.
"""

from __future__ import annotations

import qt
import vtk
from PyQt5 import QtCore, QtWidgets


@qt.register_custom_widget
class qMRMLWidget(QtWidgets.QWidget):
    """``qMRMLWidget.h``: holds a scene; ``setMRMLScene`` emits ``mrmlSceneChanged(vtkMRMLScene*)``."""

    mrmlSceneChanged = QtCore.pyqtSignal(object)
    cpp_signal_types = {"mrmlSceneChanged": ("vtkMRMLScene*",)}

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene = None

    @QtCore.pyqtSlot(object)
    def setMRMLScene(self, scene) -> None:
        if scene is not self._scene:
            self._scene = scene
            self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene


@qt.register_custom_widget
class qMRMLNodeComboBox(QtWidgets.QWidget):
    """``qMRMLNodeComboBox.h``: one node of the listed classes; None offered when ``noneEnabled``."""

    currentNodeChanged = QtCore.pyqtSignal([object], [bool])
    currentNodeIDChanged = QtCore.pyqtSignal(str)
    nodeAdded = QtCore.pyqtSignal(object)
    nodeAboutToBeRemoved = QtCore.pyqtSignal(object)
    mrmlSceneChanged = QtCore.pyqtSignal(object)
    cpp_signal_types = {"currentNodeChanged": ("vtkMRMLNode*",), "nodeAdded": ("vtkMRMLNode*",),
                        "nodeAboutToBeRemoved": ("vtkMRMLNode*",), "mrmlSceneChanged": ("vtkMRMLScene*",)}

    def __init__(self, parent=None):
        super().__init__(parent)
        self._scene, self._observations = None, []
        self._node_types: list[str] = []
        self._none_enabled = self._show_hidden = False
        self._add_enabled = self._remove_enabled = True
        self._show_child_types = True
        self._current_id = ""
        self._combo = qt.internal(QtWidgets.QComboBox(self))
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._combo)
        self._combo.currentIndexChanged.connect(self._on_index)

    # ---- properties (as the .ui and the module set them) ------------------------------------------------------------

    def getNodeTypes(self):
        return list(self._node_types)

    def setNodeTypes(self, types) -> None:
        self._node_types = list(types)
        self._refresh()

    nodeTypes = QtCore.pyqtProperty("QStringList", getNodeTypes, setNodeTypes)

    def _flag(name):  # noqa: N805 - a property factory used in the class body
        attribute = f"_{name}"

        def getter(self):
            return getattr(self, attribute)

        def setter(self, value):
            setattr(self, attribute, bool(value))
            self._refresh()
        return QtCore.pyqtProperty(bool, getter, setter)

    noneEnabled = _flag("none_enabled")
    addEnabled = _flag("add_enabled")
    removeEnabled = _flag("remove_enabled")
    showHidden = _flag("show_hidden")
    showChildNodeTypes = _flag("show_child_types")
    del _flag

    def setNoneEnabled(self, value):
        self.noneEnabled = value

    def setAddEnabled(self, value):
        self.addEnabled = value

    def setRemoveEnabled(self, value):
        self.removeEnabled = value

    def setShowHidden(self, value):
        self.showHidden = value

    def setShowChildNodeTypes(self, value):
        self.showChildNodeTypes = value

    def getCurrentNodeID(self) -> str:
        return self._current_id

    currentNodeID = QtCore.pyqtProperty(str, getCurrentNodeID, lambda self, node_id: self.setCurrentNodeID(node_id))

    # ---- scene ---------------------------------------------------------------------------------------------------

    @QtCore.pyqtSlot(object)
    def setMRMLScene(self, scene) -> None:
        if scene is self._scene:
            return
        for observed, tag in self._observations:
            observed.RemoveObserver(tag)
        self._scene, self._observations = scene, []
        if scene is not None:
            for event in ("NodeAddedEvent", "NodeRemovedEvent", "EndBatchProcessEvent", "EndCloseEvent",
                          "EndImportEvent"):
                self._observations.append((scene, scene.AddObserver(getattr(scene, event), self._on_scene_event)))
            self._observations.append((scene, scene.AddObserver(scene.NodeAboutToBeRemovedEvent,
                                                                self._node_leaving_callback(), -10.0)))
        self._refresh()
        self.mrmlSceneChanged.emit(scene)

    def mrmlScene(self):
        return self._scene

    def _node_leaving_callback(self):
        """The row of a node leaves at NodeAboutToBeRemovedEvent (priority -10), while the node is still in the
        scene, as ``qMRMLSceneModel.cxx`` v5.8.1 :366, :1222-1275 removes it."""
        @vtk.calldata_type(vtk.VTK_OBJECT)
        def leaving(caller, event, node) -> None:
            if not caller.IsBatchProcessing() and not caller.IsClosing():
                self._refresh(leaving=node.GetID())
        return leaving

    def _on_scene_event(self, caller, event) -> None:
        if caller.IsBatchProcessing() and event in ("NodeAddedEvent", "NodeRemovedEvent"):
            return  # qMRMLSceneModel updates once the batch ends
        self._refresh()

    def _listed(self, node) -> bool:
        if node.GetHideFromEditors() and not self._show_hidden:
            return False
        for class_name in self._node_types:
            if node.GetClassName() == class_name or (self._show_child_types and node.IsA(class_name)):
                return True
        return False

    def _nodes(self, leaving: str = "") -> list:
        if self._scene is None:
            return []
        nodes = [self._scene.GetNthNode(i) for i in range(self._scene.GetNumberOfNodes())]
        return [n for n in nodes if n is not None and n.GetID() != leaving and self._listed(n)]

    def _refresh(self, leaving: str = "") -> None:
        """Rebuild the rows from the scene; keep the current node, else take the row that replaces it (QComboBox
        ``_q_rowsRemoved``); a blank box stays blank unless it had no rows (``_q_rowsInserted`` selects row 0)."""
        previous_id, previous_index = self._current_id, self._combo.currentIndex()
        was_empty = self._combo.count() == 0
        self._combo.blockSignals(True)
        self._combo.clear()
        if self._none_enabled:
            self._combo.addItem("None", "")
        for node in self._nodes(leaving):
            self._combo.addItem(node.GetName(), node.GetID())
        self._refresh_checks()
        if previous_id:
            index = self._combo.findData(previous_id)
            if index < 0 and self._combo.count():
                index = min(max(previous_index, 0), self._combo.count() - 1)
        else:
            index = 0 if self._none_enabled or (was_empty and self._combo.count()) else -1
        self._combo.setCurrentIndex(index)
        self._combo.blockSignals(False)
        self._on_index(self._combo.currentIndex())

    def _refresh_checks(self) -> None:
        """Subclasses restore check marks here."""

    def _on_index(self, index: int) -> None:
        node_id = self._combo.itemData(index) or "" if index >= 0 else ""
        if node_id != self._current_id:
            self._current_id = node_id
            node = self.currentNode()
            self.currentNodeChanged[object].emit(node)
            self.currentNodeChanged[bool].emit(node is not None)
            self.currentNodeIDChanged.emit(node_id)

    # ---- the node API --------------------------------------------------------------------------------------------

    def currentNode(self):
        return self._scene.GetNodeByID(self._current_id) if self._scene is not None and self._current_id else None

    @QtCore.pyqtSlot(object)
    def setCurrentNode(self, node) -> None:
        self.setCurrentNodeID(node.GetID() if node is not None else "")

    @QtCore.pyqtSlot(str)
    def setCurrentNodeID(self, node_id: str) -> None:
        index = self._combo.findData(node_id) if node_id else -1
        self._combo.setCurrentIndex(0 if index < 0 and self._none_enabled else index)

    def nodeCount(self) -> int:
        return self._combo.count() - (1 if self._none_enabled else 0)

    def nodeFromIndex(self, index: int):
        row = index + (1 if self._none_enabled else 0)
        node_id = self._combo.itemData(row)
        return self._scene.GetNodeByID(node_id) if node_id else None


@qt.register_custom_widget
class qMRMLCheckableNodeComboBox(qMRMLNodeComboBox):
    """``qMRMLCheckableNodeComboBox.h``: every listed node has a check box (unchecked when it appears);
    ``checkedNodes()``, ``uncheckedNodes()``, ``checkState(node)``, ``setCheckState(node, state)``; signal
    ``checkedNodesChanged()`` when a check changes, and not when a checked node leaves the scene: the real signal is
    ctkCheckableComboBox's ``checkedIndexesChanged``, emitted from ``onDataChanged`` only
    (``qMRMLCheckableNodeComboBox.cxx``:95 at v5.6.2 and v5.8.1; CTK ``82cae578``
    ``Libs/Widgets/ctkCheckableComboBox.cpp``:157-168, 300-313, 371-377), never on rows removed. Shows the checked
    nodes' names, as ctkCheckableComboBox does."""

    checkedNodesChanged = QtCore.pyqtSignal()

    def __init__(self, parent=None):
        self._checked: set[str] = set()
        super().__init__(parent)
        self._combo.setEditable(True)
        self._combo.lineEdit().setReadOnly(True)

    def _refresh_checks(self) -> None:
        self._checked &= {self._combo.itemData(i) for i in range(self._combo.count())}
        for row in range(self._combo.count()):
            item = self._combo.model().item(row)
            if item is not None and self._combo.itemData(row):
                item.setCheckable(True)
                item.setCheckState(QtCore.Qt.Checked if self._combo.itemData(row) in self._checked
                                   else QtCore.Qt.Unchecked)

    def _on_index(self, index: int) -> None:
        super()._on_index(index)
        self._combo.lineEdit().setText(", ".join(n.GetName() for n in self.checkedNodes()) or "None")

    def _listed_nodes(self) -> list:
        ids = [self._combo.itemData(row) for row in range(self._combo.count())]
        return [self._scene.GetNodeByID(node_id) for node_id in ids if node_id]

    def checkedNodes(self) -> list:
        return [n for n in self._listed_nodes() if n.GetID() in self._checked]

    def uncheckedNodes(self) -> list:
        return [n for n in self._listed_nodes() if n.GetID() not in self._checked]

    def checkState(self, node) -> int:
        return QtCore.Qt.Checked if node is not None and node.GetID() in self._checked else QtCore.Qt.Unchecked

    def setCheckState(self, node, state) -> None:
        if node is None:
            return
        before = set(self._checked)
        if state == QtCore.Qt.Checked:
            self._checked.add(node.GetID())
        else:
            self._checked.discard(node.GetID())
        if before != self._checked:
            self._refresh_checks()
            self._on_index(self._combo.currentIndex())
            self.checkedNodesChanged.emit()


# What Python code sees (``slicer.qMRMLNodeComboBox`` etc.): the PythonQt faces.
PYTHONQT_CLASSES = {name: qt.pythonqt_class(globals()[name])
                    for name in ("qMRMLWidget", "qMRMLNodeComboBox", "qMRMLCheckableNodeComboBox")}
