"""The GUI <-> parameter node mapping, made once: each parameter is bound to one widget, an edit writes that
parameter only, and a parameter node change (a scene load, another script) refills the GUI with a guard so that
filling it never writes half-filled values back — what Slicer's ``parameterNodeWrapper.connectGui`` does, here also
for the widgets it has no connector for (radio buttons, checkable node lists, a checkable segment list).

    binding = GuiBinding({"iterations": ui.iterationsSpin, "initialisation": RadioChoice({...})})
    binding.connect(parameters)      # after which the widgets and the node stay in step
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import qt

from ContrastSegLogic.parameters import FIELDS, NODE_LISTS, SINGLE_NODES


class Adapter(NamedTuple):
    """How a widget class is watched (``watch(widget, callback)``), read and written."""

    watch: Callable[[Any, Callable], None]
    read: Callable[[Any], Any]
    write: Callable[[Any, Any], None]


def _on(signal: str) -> Callable[[Any, Callable], None]:
    """Watch a widget through one signal (its PythonQt signature)."""
    return lambda widget, callback: widget.connect(signal, lambda *unused: callback())


def _watch_path(path_edit, callback) -> None:
    """Every change of the text shown. ``currentPathChanged`` fires only for text the name filters accept, never
    for empty text (CTK ``ctkPathLineEdit::updateHasValidInput``), so it cannot tell that a field was cleared; the
    text of the history combo box (``comboBox()``) can. Without that combo box: the path, and the loss of a valid
    one."""
    combo = path_edit.comboBox()
    if combo is not None:
        combo.connect("editTextChanged(QString)", lambda text: callback())
    else:
        path_edit.connect("currentPathChanged(QString)", lambda path: callback())
        path_edit.connect("validInputChanged(bool)", lambda valid: callback())


def _set_path(path_edit, path) -> None:
    """Only a different path: ``setCurrentPath`` always calls ``setText``, which moves the cursor to the end."""
    if path_edit.currentPath != str(path):
        path_edit.setCurrentPath(str(path))


def _set_combo(combo, text: str) -> None:
    index = combo.findText(text)
    if index >= 0:
        combo.setCurrentIndex(index)


def _check_nodes(selector, nodes) -> None:
    wanted = {node.GetID() for node in nodes}
    for index in range(selector.nodeCount()):
        node = selector.nodeFromIndex(index)
        if node is not None:
            selector.setCheckState(node, qt.Qt.Checked if node.GetID() in wanted else qt.Qt.Unchecked)


ADAPTERS = {
    "QSpinBox": Adapter(_on("valueChanged(int)"), lambda w: w.value, lambda w, v: w.setValue(int(v))),
    "QCheckBox": Adapter(_on("toggled(bool)"), lambda w: w.checked, lambda w, v: w.setChecked(bool(v))),
    "QComboBox": Adapter(_on("currentIndexChanged(int)"), lambda w: w.currentText, _set_combo),
    "ctkPathLineEdit": Adapter(_watch_path, lambda w: w.currentPath, _set_path),
    "qMRMLNodeComboBox": Adapter(_on("currentNodeChanged(vtkMRMLNode*)"), lambda w: w.currentNode(),
                                 lambda w, node: w.setCurrentNode(node)),
    "qMRMLCheckableNodeComboBox": Adapter(_on("checkedNodesChanged()"), lambda w: w.checkedNodes(), _check_nodes),
}


class RadioChoice:
    """A text parameter shown as radio buttons, one per value."""

    def __init__(self, buttons: dict[str, Any]):
        self.buttons = buttons

    def className(self) -> str:
        return "RadioChoice"

    def connect(self, signal: str, callback) -> None:
        for button in self.buttons.values():
            button.connect("toggled(bool)", lambda checked: checked and callback())

    def read(self) -> str:
        return next(value for value, button in self.buttons.items() if button.checked)

    def write(self, value: str) -> None:
        self.buttons[value].setChecked(True)


class CheckableNames:
    """A comma-separated list of names (empty: all) shown as the checkable items of a QListWidget."""

    def __init__(self, widget):
        self.widget = widget

    def className(self) -> str:
        return "CheckableNames"

    def connect(self, signal: str, callback) -> None:
        self.widget.connect("itemChanged(QListWidgetItem*)", lambda item: callback())

    def items(self) -> list:
        return [self.widget.item(i) for i in range(self.widget.count)]

    def read(self) -> str:
        items = self.items()
        checked = [i.text() for i in items if i.checkState() == qt.Qt.Checked]
        return "" if len(checked) == len(items) else ",".join(checked)

    def write(self, value: str) -> None:
        """Tick the named items; all of them when none is named (or none of the names is listed)."""
        items = self.items()
        names = {n.strip() for n in value.split(",") if n.strip()} & {item.text() for item in items}
        for item in items:
            item.setCheckState(qt.Qt.Checked if not names or item.text() in names else qt.Qt.Unchecked)


class GuiBinding:
    """Parameter name -> widget (or RadioChoice / CheckableNames), for the parameters of ``ContrastSegParameters``:
    text values (``FIELDS``), node lists (``NODE_LISTS``) and single nodes (``SINGLE_NODES``)."""

    def __init__(self, widgets: dict[str, Any]):
        unknown = set(widgets) - set(FIELDS) - set(NODE_LISTS) - set(SINGLE_NODES)
        if unknown:
            raise ValueError(f"no such parameters: {sorted(unknown)}")
        self.widgets = widgets
        self.parameters = None
        self.updating = False  # filling the GUI from the node: widget signals are not written back
        self.suspended = False  # the scene is loading or closing: node combo boxes are in flux
        for name, widget in widgets.items():
            write = lambda name=name: self._write_parameter(name)  # noqa: E731
            adapter = ADAPTERS.get(widget.className())
            if adapter:
                adapter.watch(widget, write)
            else:
                widget.connect("changed", write)

    def connect(self, parameters) -> None:
        """Show ``parameters`` (a ``ContrastSegParameters``) in the GUI; later edits go there."""
        self.parameters = parameters
        self.update_gui()

    def update_gui(self) -> None:
        if self.parameters is None or self.updating:
            return
        self.updating = True
        try:
            for name, widget in self.widgets.items():
                self._write(widget, self._value(name))
        finally:
            self.updating = False

    def _value(self, name: str):
        p = self.parameters
        return p.nodes(name) if name in NODE_LISTS else p.single(name) if name in SINGLE_NODES else p.get(name)

    def _write_parameter(self, name: str) -> None:
        if self.parameters is None or self.updating or self.suspended:
            return
        value = self._read(self.widgets[name])
        if name in NODE_LISTS:
            self.parameters.set_nodes(name, value)
        elif name in SINGLE_NODES:
            self.parameters.set_single(name, value)
        else:
            self.parameters.set(name, value)

    @staticmethod
    def _read(widget):
        adapter = ADAPTERS.get(widget.className())
        return adapter.read(widget) if adapter else widget.read()

    @staticmethod
    def _write(widget, value) -> None:
        adapter = ADAPTERS.get(widget.className())
        if adapter:
            adapter.write(widget, value)
        else:
            widget.write(value)
