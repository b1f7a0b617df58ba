"""``ctk``: the CTK widgets the ContrastSeg panel uses, as Qt widgets with CTK's properties, signals and enums.

Each class mirrors the public interface (Q_PROPERTY, signals, slots) of its CTK header at the CTK revision Slicer
5.8.1 builds (``commontk/CTK``, ``Libs/Widgets/``); the drawing is plain Qt. They are registered with ``qt.QUiLoader``
as Slicer's designer plugins are.
"""

from __future__ import annotations

import re

import qt
from PyQt5 import QtCore, QtGui, QtWidgets


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


def name_filters_to_regexp(name_filters) -> str:
    """The pattern ``ctk::nameFiltersToRegExp`` makes of name filters (CTK ``Libs/Core/ctkUtils.cpp:103-186``):
    each ``*.ext`` of "Label (*.a *.b)" or a bare wildcard becomes ``.*\\.ex(t)?$``; none at all: ``.+``."""
    alternatives = []
    for name_filter in name_filters:
        match = re.match(r"^(.*)\(([a-zA-Z0-9_.*? +;#\-\[\]@{}/!<>$%&=^~:|]*)\)$", name_filter)
        if match:
            extensions = match.group(2).split()
        else:
            extensions = [name_filter] if re.match(r"^[\w\s.*_~$\[\]]+$", name_filter) else []
        for extension in extensions:
            suffix = re.search(r"\*\.(\w+)", extension)
            if suffix:
                alternatives.append(".*\\." + suffix.group(1) + "?$")
    return "(" + "|".join(alternatives) + ")" if alternatives else ".+"


@qt.register_custom_widget
class ctkPathLineEdit(QtWidgets.QWidget):
    """``ctkPathLineEdit.h`` / ``.cpp`` at CTK ``82cae578`` (Slicer 5.8.1; Slicer 5.6.2's ``f53820a4`` differs in
    whitespace only): an editable, non-inserting QComboBox (``comboBox()``, Q_INVOKABLE) whose line edit holds the
    path, with a QRegExpValidator made of the name filters (``.cpp:328,373``, :func:`name_filters_to_regexp`), and a
    browse button. Every text change runs ``updateHasValidInput`` (``.cpp:388-391,819-845``): ``currentPathChanged``
    only while the validator accepts the text — never for empty text, and for "/" when there is no name filter —
    and ``validInputChanged(bool)`` when that changes. ``setCurrentPath`` always calls ``QLineEdit::setText``
    (``.cpp:798-801``), which moves the cursor to the end even for the same text. ``browse()`` opens
    ``getSaveFileName`` (Files|Writable), ``getOpenFileName`` (Files) or ``getExistingDirectory`` (``.cpp:636-690``).
    ``showHistoryButton`` false: a plain QLineEdit, ``comboBox()`` None (``.cpp:351-392,886-889``). The history
    (QSettings) and the completer are not emulated."""

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
        self._validator = qt.internal(QtGui.QRegExpValidator(QtCore.QRegExp(".+"), self))
        self._combo, self._edit = None, None
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self._browse = qt.internal(QtWidgets.QToolButton(self))
        self._browse.setText("...")
        self._browse.clicked.connect(self.browse)
        layout.addWidget(self._browse)
        self._make_editor(True)

    def _make_editor(self, use_combo_box: bool) -> None:
        path = self._edit.text() if self._edit is not None else ""
        old = self._combo if self._combo is not None else self._edit
        if use_combo_box:
            self._combo = qt.internal(QtWidgets.QComboBox(self))
            self._combo.setEditable(True)
            self._combo.setInsertPolicy(QtWidgets.QComboBox.NoInsert)
            self._edit = qt.internal(self._combo.lineEdit())
        else:
            self._combo, self._edit = None, qt.internal(QtWidgets.QLineEdit(self))
        self._edit.setValidator(self._validator)
        if old is not None:
            old.deleteLater()
        self.layout().insertWidget(0, self._combo if self._combo is not None else self._edit)
        self._edit.setText(path)
        self._edit.textChanged.connect(self._update_has_valid_input)

    def _update_has_valid_input(self, text: str = "") -> None:
        was_valid, self._valid = self._valid, self._edit.hasAcceptableInput()
        if self._valid:
            self.currentPathChanged.emit(self._edit.text())
        if self._valid != was_valid:
            self.validInputChanged.emit(self._valid)

    @QtCore.pyqtSlot(result=QtCore.QObject)
    def comboBox(self):
        return self._combo

    def getCurrentPath(self) -> str:
        return self._edit.text()

    @QtCore.pyqtSlot(str)
    def setCurrentPath(self, path: str) -> None:
        self._edit.setText(path)

    currentPath = QtCore.pyqtProperty(str, getCurrentPath, setCurrentPath)

    @QtCore.pyqtSlot()
    def browse(self) -> None:
        start = self._edit.text()
        if self._filters & self.Files and self._filters & self.Writable:
            path = QtWidgets.QFileDialog.getSaveFileName(self, "Select a file to save ", start,
                                                         ";;".join(self._name_filters))[0]
        elif self._filters & self.Files:
            path = QtWidgets.QFileDialog.getOpenFileName(self, "Open a file", start, ";;".join(self._name_filters))[0]
        else:
            path = QtWidgets.QFileDialog.getExistingDirectory(self, "Select a directory...", start)
        if path:
            self.setCurrentPath(path)

    def getShowHistoryButton(self) -> bool:
        return self._combo is not None

    def setShowHistoryButton(self, visible: bool) -> None:
        self._make_editor(bool(visible))

    showHistoryButton = QtCore.pyqtProperty(bool, getShowHistoryButton, setShowHistoryButton)

    def getFilters(self) -> int:
        return self._filters

    def setFilters(self, filters) -> None:
        self._filters = int(filters)

    filters = QtCore.pyqtProperty(int, getFilters, setFilters)

    def getNameFilters(self) -> list:
        return list(self._name_filters)

    def setNameFilters(self, filters) -> None:
        self._name_filters = list(filters)
        self._validator.setRegExp(QtCore.QRegExp(name_filters_to_regexp(self._name_filters)))

    nameFilters = QtCore.pyqtProperty("QStringList", getNameFilters, setNameFilters)

    def getLabel(self) -> str:
        return self._label

    def setLabel(self, label: str) -> None:
        self._label = label

    label = QtCore.pyqtProperty(str, getLabel, setLabel)


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
