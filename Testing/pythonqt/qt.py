"""``qt`` as Slicer's Python sees it (PythonQt 3.x over Qt 5.15, the Qt of Slicer 5.6 / 5.8), built on PyQt5.

What PythonQt does differently from PyQt5, and what this module therefore reproduces (PythonQt sources:
``src/PythonQtInstanceWrapper.cpp`` for attribute lookup, ``src/PythonQtSignalReceiver.cpp`` and
``PythonQtStdDecorators::connect`` for string-signature connections, as shipped with Slicer 5.8.1):

- every Qt property is a Python attribute (``button.text``, ``spin.value = 3``, ``table.rowCount``); it hides a getter
  method of the same name, so ``button.text()`` fails as it does in Slicer;
- ``obj.connect("clicked()", callable)`` / ``obj.disconnect(...)`` with C++ signal signatures, matched in full
  (name and argument types, normalized as ``QMetaObject::normalizedSignature``; PythonQt ``db525aff`` (patched-9,
  the revision CTK pins for Slicer 5.8.1) ``src/PythonQtSignalReceiver.cpp:253-261``,
  ``src/PythonQtStdDecorators.cpp:50-72``): an unknown signature connects nothing, prints a message and returns
  False; besides ``obj.clicked.connect(callable)``;
- ``obj.className()`` (the C++ class name) and ``obj.name`` (the object name) on every QObject;
- a wrapped object is true unless its C++ object is gone (``if not widget`` tests for null): PyQt5's ``__len__`` on
  containers (an empty QComboBox, QLayout, QListWidget) does not make it false;
- ``qt.QUiLoader`` (Slicer's loader knows the CTK and MRML designer plugins; here: the stand-ins registered with
  :func:`register_custom_widget`).

Widgets made by the loader get the attribute behaviour by having their class swapped to the matching subclass here.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET

from PyQt5 import QtCore, QtGui, QtWidgets, sip
from PyQt5 import uic
from PyQt5.uic.Loader.loader import DynamicUILoader
from PyQt5.uic.uiparser import UIParser

_SIGNATURE = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$")
_PYTHON_TYPES = {"int": int, "bool": bool, "double": float, "QString": str, "PyQt_PyObject": object}
_CUSTOM_WIDGETS: dict[str, type] = {}
CONNECT_FAILURES: list[str] = []  # the messages PythonQt prints for a signal the object does not have


def _normalized(signature: str) -> str:
    return bytes(QtCore.QMetaObject.normalizedSignature(signature)).decode()


def _cpp_signals(obj) -> dict:
    """C++ signature -> (name, PyQt argument types) of every signal of ``obj``'s class. PyQt lists an ``object``
    argument as ``PyQt_PyObject``; a stand-in names its C++ type in ``cpp_signal_types`` (signal name -> types)."""
    cls = type(obj)
    table = _SIGNALS.get(cls)
    if table is None:
        declared: dict = {}
        for klass in reversed(cls.__mro__):
            declared.update(vars(klass).get("cpp_signal_types", {}))
        meta, table = obj.metaObject(), {}
        for index in range(meta.methodCount()):
            method = meta.method(index)
            if method.methodType() != QtCore.QMetaMethod.Signal:
                continue
            name = bytes(method.name()).decode()
            types = [bytes(t).decode() for t in method.parameterTypes()]
            objects = iter(declared.get(name, ()))
            cpp = [next(objects, t) if t == "PyQt_PyObject" else t for t in types]
            table.setdefault(_normalized(f"{name}({','.join(cpp)})"), (name, types))
        _SIGNALS[cls] = table
    return table


_SIGNALS: dict[type, dict] = {}


def _python_type(cpp_type: str):
    name = cpp_type.rstrip("*&").strip()
    for module in (QtWidgets, QtGui, QtCore):
        if hasattr(module, name):
            return getattr(module, name)
    return _PYTHON_TYPES.get(cpp_type, cpp_type)


def _bound_signal(obj, signature: str, action: str = "connect"):
    """The PyQt signal of ``obj`` with exactly this C++ signature (normalized as Qt does), else None after printing
    what PythonQt prints (``PythonQtSignalReceiver::getSignalIndex`` looks the signature up with
    ``QMetaObject::indexOfSignal``; ``PythonQtStdDecorators::connect`` then returns false)."""
    table = _cpp_signals(obj)
    found = table.get(_normalized(signature)) if _SIGNATURE.match(signature) else None
    if found is None:
        message = (f"PythonQt: QObject::{action}() signal '{signature}' does not exist on "
                   f"{_cpp_class_name(type(obj))}")
        CONNECT_FAILURES.append(message)
        sys.stderr.write(message + "\n")
        return None
    name, types = found
    signal = getattr(obj, name)
    if types and sum(1 for other, _ in table.values() if other == name) > 1:
        key = tuple(_python_type(t) for t in types)
        try:
            return signal[key if len(key) > 1 else key[0]]
        except (KeyError, TypeError):
            pass
    return signal


def _connect(self, signal, receiver, slot=None):
    """PythonQt's ``connect("signal(args)", callable)`` (or ``connect("signal(args)", receiver, "slot(args)")``):
    False, and nothing connected, when the object has no signal of that signature."""
    bound = _bound_signal(self, signal)
    if bound is None:
        return False
    bound.connect(receiver if slot is None else getattr(receiver, _SIGNATURE.match(slot).group(1)))
    return True


def _disconnect(self, signal, receiver=None, slot=None):
    bound = _bound_signal(self, signal, "disconnect")
    if bound is None:
        return False
    try:
        if receiver is None:
            bound.disconnect()
        else:
            bound.disconnect(receiver if slot is None else getattr(receiver, _SIGNATURE.match(slot).group(1)))
    except TypeError:  # not connected: PythonQt returns False
        return False
    return True


QtCore.QObject.connect = _connect
QtCore.QObject.disconnect = _disconnect
QtCore.QObject.className = lambda self: _cpp_class_name(type(self))
QtCore.QObject.name = property(lambda self: QtCore.QObject.objectName(self),
                               lambda self, value: QtCore.QObject.setObjectName(self, value))


def _cpp_class_name(cls) -> str:
    """The C++ class a class stands for (a PythonQt wrapper carries the name of the class it wraps)."""
    return cls.__name__


def _qt_properties(cls) -> frozenset:
    """Names of the Qt properties of ``cls`` (inherited ones included) that PythonQt makes attributes; a stand-in's
    own ``pyqtProperty`` is an attribute already."""
    names = _PROPERTY_NAMES.get(cls)
    if names is None:
        meta = cls.staticMetaObject
        names = frozenset(meta.property(i).name() for i in range(meta.propertyCount())) - {
            name for klass in cls.__mro__ for name, value in vars(klass).items()
            if isinstance(value, QtCore.pyqtProperty)}
        _PROPERTY_NAMES[cls] = names
    return names


_PROPERTY_NAMES: dict[type, frozenset] = {}


def _getattribute(self, name: str):
    """Attribute lookup as PythonQt's: a Qt property's value before any method of that name. Done here rather than
    with per-name descriptors, which sip would take for Python overrides of virtual getters (QProgressBar.text)."""
    if name in _qt_properties(type(self)):
        return QtCore.QObject.property(self, name)
    return QtCore.QObject.__getattribute__(self, name)


def _setattr(self, name: str, value) -> None:
    if name in _qt_properties(type(self)):
        _set_property(self, name, value)
    else:
        QtCore.QObject.__setattr__(self, name, value)


def _set_property(obj, name: str, value) -> None:
    setter = getattr(type(obj), "set" + name[0].upper() + name[1:], None)
    if setter is not None:
        setter(obj, value)  # the C++ setter: emits the same signals as a user edit would
    elif not QtCore.QObject.setProperty(obj, name, value):
        raise AttributeError(f"{type(obj).__name__}.{name} is read-only")


def pythonqt_class(base: type) -> type:
    """``base`` with PythonQt's attribute behaviour (cached: one class per Qt class)."""
    if base.__dict__.get("_pythonqt"):
        return base
    cached = _WRAPPED.get(base)
    if cached is None:
        cached = type(base.__name__, (base,), {"_pythonqt": True, "__module__": base.__module__,
                                               "__bool__": lambda self: not sip.isdeleted(self),
                                               "__getattribute__": _getattribute, "__setattr__": _setattr})
        _WRAPPED[base] = cached
    return cached


_WRAPPED: dict[type, type] = {}


def as_pythonqt(obj):
    """Give an object made by the UI loader the PythonQt class of its own class. The private parts of a stand-in
    widget (its "C++" internals, marked ``_internal``) keep their PyQt behaviour."""
    if not getattr(obj, "_internal", False) and not type(obj).__dict__.get("_pythonqt"):
        obj.__class__ = pythonqt_class(type(obj))
    return obj


def internal(obj):
    """Mark a stand-in's own child object as an implementation detail (see :func:`as_pythonqt`)."""
    obj._internal = True
    return obj


# Every class of QtCore / QtGui / QtWidgets, the QObject ones with PythonQt's attributes.
for _module in (QtCore, QtGui, QtWidgets):
    for _name in dir(_module):
        _value = getattr(_module, _name)
        if _name.startswith("Q") and isinstance(_value, type) and issubclass(_value, QtCore.QObject):
            globals()[_name] = pythonqt_class(_value)
        elif not _name.startswith("_"):
            globals().setdefault(_name, _value)
Qt = QtCore.Qt
Signal = QtCore.pyqtSignal
Property = QtCore.pyqtProperty


def register_custom_widget(cls: type) -> type:
    """Make a stand-in of a designer-plugin widget (CTK, qMRML), written on PyQt5's classes, known to
    :class:`QUiLoader` by its class name; returns it unchanged (its PythonQt face is ``pythonqt_class(cls)``)."""
    _CUSTOM_WIDGETS[cls.__name__] = cls
    return cls


class _CreatorPolicy(uic.Loader.qobjectcreator.LoaderCreatorPolicy):
    """PyQt's UI-loader policy, with custom widgets found among the registered stand-ins."""

    def createCustomWidgetLoader(self):
        class Registered:
            @staticmethod
            def addCustomWidget(widgetClass, baseClass, module):
                if widgetClass not in _CUSTOM_WIDGETS:
                    raise RuntimeError(f"the .ui uses {widgetClass}, for which no designer plugin is loaded")

            @staticmethod
            def search(name):
                return _CUSTOM_WIDGETS.get(name)
        return Registered()


class _Loader(DynamicUILoader):
    def __init__(self):
        UIParser.__init__(self, QtCore, QtGui, QtWidgets, _CreatorPolicy(""))

    def createConnections(self, elem):
        """Connections by C++ signature, as Qt's own loader makes them (e.g. mrmlSceneChanged(vtkMRMLScene*))."""
        for connection in iter(elem):
            sender = self._object(connection.findtext("sender"))
            receiver = self._object(connection.findtext("receiver"))
            _connect(sender, connection.findtext("signal"), receiver, connection.findtext("slot"))

    def _object(self, name):
        return self.toplevelWidget if name == self.uiname else getattr(self.toplevelWidget, name)


class QUiLoader(pythonqt_class(QtCore.QObject)):
    """``qt.QUiLoader().load(qfile)``: the widget tree of a .ui file, every object PythonQt-like."""

    def load(self, device, parent=None):
        path = device.fileName() if hasattr(device, "fileName") else str(device)
        ET.parse(path)  # a malformed file fails here with the parser's message
        widget = _Loader().loadUi(path, None, "_rc")
        for child in [widget, *widget.findChildren(QtCore.QObject)]:
            as_pythonqt(child)
        if parent is not None:
            widget.setParent(parent)
        return widget
