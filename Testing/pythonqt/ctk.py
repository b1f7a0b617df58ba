"""``ctk``: the CTK widgets the ContrastSeg panel uses, as Qt widgets with CTK's properties, signals and enums.

Each class mirrors the public interface (Q_PROPERTY, signals, slots) of its CTK header at the CTK revision Slicer
5.8.1 builds (``commontk/CTK``, ``Libs/Widgets/``); the drawing is plain Qt. They are registered with ``qt.QUiLoader``
as Slicer's designer plugins are.
"""

from __future__ import annotations

import fnmatch
import os
import re

import qt
from PyQt5 import QtCore, QtWidgets


def _show_children(widget, visible: bool) -> None:
    for child in widget.findChildren(QtWidgets.QWidget, options=QtCore.Qt.FindDirectChildrenOnly):
        child.setVisible(visible)


@qt.register_custom_widget
class ctkCollapsibleButton(QtWidgets.QGroupBox):
    """``ctkCollapsibleButton.h``: a button whose contents (its children) hide when ``collapsed``; properties
    ``text``, ``collapsed``; signal ``contentsCollapsed(bool)``. Drawn as a checkable group box title."""

    contentsCollapsed = QtCore.pyqtSignal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._collapsed = False

    def getText(self) -> str:
        return QtWidgets.QGroupBox.title(self)

    def setText(self, text: str) -> None:
        QtWidgets.QGroupBox.setTitle(self, text)

    text = QtCore.pyqtProperty(str, getText, setText)

    def isCollapsed(self) -> bool:
        return self._collapsed

    def setCollapsed(self, collapsed: bool) -> None:
        if collapsed == self._collapsed:
            return
        self._collapsed = bool(collapsed)
        _show_children(self, not self._collapsed)
        self.contentsCollapsed.emit(self._collapsed)

    def childEvent(self, event) -> None:
        """Contents added while collapsed stay hidden, as CTK's collapse() keeps them."""
        super().childEvent(event)
        if event.type() == QtCore.QEvent.ChildAdded and self._collapsed:
            QtCore.QTimer.singleShot(0, lambda: _show_children(self, not self._collapsed))

    collapsed = QtCore.pyqtProperty(bool, isCollapsed, setCollapsed)


@qt.register_custom_widget
class ctkCollapsibleGroupBox(QtWidgets.QGroupBox):
    """``ctkCollapsibleGroupBox.h``: a checkable QGroupBox; ``collapsed`` is ``not checked`` and hides the
    contents (no signal of its own: QGroupBox's ``toggled(bool)``)."""


    def __init__(self, parent=None):
        super().__init__(parent)
        QtWidgets.QGroupBox.setCheckable(self, True)
        QtWidgets.QGroupBox.setChecked(self, True)
        self.toggled.connect(self._show_contents)

    def _show_contents(self, checked: bool) -> None:
        _show_children(self, checked)

    def childEvent(self, event) -> None:
        super().childEvent(event)
        if event.type() == QtCore.QEvent.ChildAdded and self.isCollapsed():
            QtCore.QTimer.singleShot(0, lambda: _show_children(self, not self.isCollapsed()))

    def isCollapsed(self) -> bool:
        return not QtWidgets.QGroupBox.isChecked(self)

    def setCollapsed(self, collapsed: bool) -> None:
        QtWidgets.QGroupBox.setChecked(self, not collapsed)

    collapsed = QtCore.pyqtProperty(bool, isCollapsed, setCollapsed)


@qt.register_custom_widget
class ctkPathLineEdit(QtWidgets.QWidget):
    """``ctkPathLineEdit.h``: a line edit and a browse button for a file or folder path. Properties
    ``currentPath``, ``filters`` (``ctkPathLineEdit::Filter`` flags, the values of ``QDir::Filter``),
    ``nameFilters``, ``label``; signals ``currentPathChanged(QString)`` — only for text its name filters accept (the
    path need not exist) — and ``validInputChanged(bool)`` when validity changes; slot ``setCurrentPath``. The browse
    dialog and the history are not emulated (a user types or pastes the path)."""

    Dirs, Files, Drives, NoSymLinks = 0x001, 0x002, 0x004, 0x008
    AllEntries, TypeMask = Dirs | Files | Drives, 0x00F
    Readable, Writable, Executable, PermissionMask = 0x010, 0x020, 0x040, 0x070
    Modified, Hidden, System, AccessMask = 0x080, 0x100, 0x200, 0x3F0
    AllDirs, CaseSensitive, NoDotAndDotDot, NoFilter = 0x400, 0x800, 0x1000, -1

    currentPathChanged = QtCore.pyqtSignal(str)
    validInputChanged = QtCore.pyqtSignal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._filters = self.AllEntries | self.NoDotAndDotDot | self.Readable | self.Executable
        self._valid = False
        self._name_filters: list[str] = []
        self._label = ""
        self._edit = qt.internal(QtWidgets.QLineEdit(self))
        self._browse = qt.internal(QtWidgets.QToolButton(self))
        self._browse.setText("...")
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._edit)
        layout.addWidget(self._browse)
        self._edit.textChanged.connect(self._on_text)

    def _on_text(self, text: str) -> None:
        patterns = [p for f in self._name_filters for p in re.findall(r"\(([^)]*)\)", f) or [f] for p in p.split()]
        if not patterns or any(fnmatch.fnmatch(os.path.basename(text), p) for p in patterns):
            self.currentPathChanged.emit(text)
        if self.isValid() != self._valid:
            self._valid = not self._valid
            self.validInputChanged.emit(self._valid)

    def getCurrentPath(self) -> str:
        return self._edit.text()

    @QtCore.pyqtSlot(str)
    def setCurrentPath(self, path: str) -> None:
        if path != self._edit.text():
            self._edit.setText(path)

    currentPath = QtCore.pyqtProperty(str, getCurrentPath, setCurrentPath)

    def getFilters(self) -> int:
        return self._filters

    def setFilters(self, filters) -> None:
        self._filters = int(filters)

    filters = QtCore.pyqtProperty(int, getFilters, setFilters)

    def getNameFilters(self) -> list:
        return list(self._name_filters)

    def setNameFilters(self, filters) -> None:
        self._name_filters = list(filters)

    nameFilters = QtCore.pyqtProperty("QStringList", getNameFilters, setNameFilters)

    def getLabel(self) -> str:
        return self._label

    def setLabel(self, label: str) -> None:
        self._label = label

    label = QtCore.pyqtProperty(str, getLabel, setLabel)

    def isValid(self) -> bool:
        """As CTK: an existing path of the filtered type (Writable: a new file in an existing folder counts)."""
        path = self._edit.text()
        if not path:
            return False
        if self._filters & self.Writable and not os.path.exists(path):
            return os.path.isdir(os.path.dirname(path) or ".")
        if os.path.isdir(path):
            return bool(self._filters & self.Dirs)
        return os.path.isfile(path) and bool(self._filters & self.Files)


class ctkMessageBox(QtWidgets.QMessageBox):
    """``ctkMessageBox.h``: a QMessageBox with a "don't show again" option (not emulated); ``slicer.util``'s
    message functions create one, set ``text``/``windowTitle``/``detailedText`` as attributes and ``exec_()`` it."""


    def __init__(self, parent=None):
        super().__init__(parent)

    def getText(self) -> str:
        return QtWidgets.QMessageBox.text(self)

    def setText(self, text: str) -> None:
        QtWidgets.QMessageBox.setText(self, text)

    text = QtCore.pyqtProperty(str, getText, setText)

    def getDetailedText(self) -> str:
        return QtWidgets.QMessageBox.detailedText(self)

    def setDetailedText(self, text: str) -> None:
        QtWidgets.QMessageBox.setDetailedText(self, text)

    detailedText = QtCore.pyqtProperty(str, getDetailedText, setDetailedText)


# What Python code sees (``ctk.ctkPathLineEdit`` etc.): the PythonQt faces.
for _name in ("ctkCollapsibleButton", "ctkCollapsibleGroupBox", "ctkPathLineEdit", "ctkMessageBox"):
    globals()[_name] = qt.pythonqt_class(globals()[_name])
