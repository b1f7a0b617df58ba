"""Slicer's application around a scripted module, outside Slicer: a real Qt event loop (PyQt5, offscreen), the
PythonQt-flavoured ``qt`` and ``ctk`` modules and the qMRML widgets of ``Testing/pythonqt/``, the real MRML scene
and Slicer's own ``slicer.util`` from the slicer-core wheel, and stand-ins for the few application objects a module
touches. The module file itself (``ContrastSeg/ContrastSeg.py``) is loaded as Slicer's scripted-module factory does
(``qSlicerScriptedLoadableModule`` / ``qSlicerScriptedLoadableModuleWidget``, Slicer 5.8.1 ``Base/QTGUI``): module
object -> ``ContrastSeg(parent)``; panel -> ``ContrastSegWidget(panel)`` -> ``setup()``; ``enter()`` on selection.

Emulated here (each piece names the Slicer source it follows): ``slicer.app`` (``qSlicerApplication``: temporary
path, user settings file, testing mode off, module manager, top-level widgets, event processing), the main window
(named ``qSlicerMainWindow`` so ``slicer.util.errorDisplay`` shows its dialogs), three slice composite nodes (the
Red / Yellow / Green views ``setSliceViewerLayers`` sets), and a dialog watcher that answers modal message boxes as
a user would (recording their text). Not emulated: views and rendering, the Segment Editor, the Extensions Manager,
and PythonQt's own C++ wrappers beyond what ``qt.py`` describes. Jobs run under this Python, or, with
``python_slicer_launcher.install`` on PATH, under a stand-in for ``PythonSlicer`` (CTK's launcher: python-real as its
child, no signal forwarded).
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
PYTHONQT = Path(__file__).resolve().parent / "pythonqt"
MODULE_DIR = Path(__file__).resolve().parent.parent / "ContrastSeg"
for folder in (PYTHONQT, MODULE_DIR):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import qt  # noqa: E402  (the stand-in, after sys.path)
import ctk  # noqa: E402,F401
import mrml_widgets  # noqa: E402
import scripted_loadable_module  # noqa: E402
import slicer  # noqa: E402
import slicer.util  # noqa: E402

from ContrastSegLogic.headless import new_scene  # noqa: E402

_APPLICATION = None


class ModuleManager(qt.QObject):
    """``qSlicerModuleManager``: ``module(name)`` and the ``moduleAboutToBeUnloaded(QString)`` signal."""

    moduleAboutToBeUnloaded = qt.Signal(str)

    def __init__(self):
        super().__init__()
        self.modules: dict[str, object] = {}

    def module(self, name: str):
        return self.modules.get(name)


class Application:
    """``slicer.app`` (``qSlicerApplication``), the parts a module uses."""

    applicationName = "Slicer"

    def __init__(self, qt_app, home: Path):
        self._qt = qt_app
        self.temporaryPath = str(home / "temp")
        self.slicerUserSettingsFilePath = str(home / "settings" / "Slicer.ini")
        self.cachePath = str(home / "cache")
        for path in (self.temporaryPath, self.cachePath, os.path.dirname(self.slicerUserSettingsFilePath)):
            os.makedirs(path, exist_ok=True)
        self._modules = ModuleManager()

    def testingEnabled(self) -> bool:
        return False

    def processEvents(self, *args) -> None:
        self._qt.processEvents(*args)

    def topLevelWidgets(self):
        return self._qt.topLevelWidgets()

    def moduleManager(self):
        return self._modules

    def layoutManager(self):
        return None

    def setOverrideCursor(self, cursor) -> None:
        self._qt.setOverrideCursor(qt.QCursor(cursor))

    def restoreOverrideCursor(self) -> None:
        self._qt.restoreOverrideCursor()

    def userSettings(self):
        return qt.QSettings()


class ModulePanel(mrml_widgets.PYTHONQT_CLASSES["qMRMLWidget"]):
    """``qSlicerScriptedLoadableModuleWidget``: the panel a module widget fills (``layout()``, ``isEntered``,
    ``self()`` the Python widget)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setLayout(qt.QVBoxLayout())
        self.isEntered = False
        self.python_widget = None

    def self(self):
        return self.python_widget


class LoadedModule(qt.QObject):
    """``qSlicerScriptedLoadableModule``: the module object (title, categories, path, icon, ...) and its panel."""

    def __init__(self, name: str, path: Path):
        super().__init__()
        self.name, self.path = name, str(path)
        self.title = self.helpText = self.acknowledgementText = ""
        self.categories, self.dependencies, self.contributors = [], [], []
        self.icon = None
        self.panel: ModulePanel | None = None

    def widgetRepresentation(self):
        return self.panel


class Session:
    """One Slicer run: the scene, the main window, the module and its panel."""

    def __init__(self, home: Path):
        self.home = home
        self.scene = start_scene()
        self.window = qt.QMainWindow()
        self.window.setObjectName("qSlicerMainWindow")
        self.window.resize(620, 1000)
        self.module = self.widget = self.panel = None

    def load_module(self, name: str = "ContrastSeg"):
        """Import the module file and create its module object, panel and widget (``setup()`` runs)."""
        for loaded in [m for m in sys.modules if m == name or m.startswith(("ContrastSegGui", "ContrastSeg."))]:
            del sys.modules[loaded]
        python_module = importlib.import_module(name)
        loaded = LoadedModule(name, MODULE_DIR / f"{name}.py")
        slicer.app.moduleManager().modules[name] = loaded
        setattr(slicer.modules, name.lower(), loaded)
        self.module = getattr(python_module, name)(loaded)
        self.panel = loaded.panel = ModulePanel()
        self.panel.setMRMLScene(slicer.mrmlScene)
        self.widget = getattr(python_module, name + "Widget")(self.panel)
        self.panel.python_widget = self.widget
        self.widget.setup()
        scroll = qt.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.panel)
        self.window.setCentralWidget(scroll)
        self.window.show()
        return python_module

    def enter(self) -> None:
        """The module is selected: ``isEntered``, then the Python ``enter()`` if the widget has one (as the C++
        ``qSlicerScriptedLoadableModuleWidget::enter`` calls it)."""
        self.panel.isEntered = True
        if hasattr(self.widget, "enter"):
            self.widget.enter()

    def exit(self) -> None:
        if hasattr(self.widget, "exit"):
            self.widget.exit()
        self.panel.isEntered = False

    def close_scene(self) -> None:
        """File > Close Scene: ``vtkMRMLScene::Clear`` (StartClose / EndClose events), views kept."""
        slicer.mrmlScene.Clear(0)
        add_slice_views(slicer.mrmlScene)

    def screenshot(self, path: Path) -> None:
        """The whole module panel as rendered (every section, whatever the scroll position), as a PNG."""
        qt.QApplication.processEvents()
        if not self.panel.grab().save(str(path)):
            raise RuntimeError(f"could not write {path}")

    def save_scene(self, path: Path) -> None:
        """File > Save Scene (the .mrml file; the volumes' voxels are not needed to check the settings)."""
        slicer.mrmlScene.SetURL(str(path))
        slicer.mrmlScene.SetRootDirectory(str(path.parent))
        if not slicer.mrmlScene.Commit():
            raise RuntimeError(f"could not write {path}")

    def load_scene(self, path: Path) -> None:
        """File > Load Scene with "clear scene" (``qSlicerSceneReader``: Clear, then Import of the file)."""
        self.close_scene()
        slicer.mrmlScene.SetURL(str(path))
        if not slicer.mrmlScene.Import():
            raise RuntimeError(f"could not load {path}")

    def quit(self) -> None:
        """Slicer exits: the module manager unloads the module (``cleanup()``)."""
        slicer.app.moduleManager().moduleAboutToBeUnloaded.emit(self.widget.moduleName)
        self.window.close()
        self.window.deleteLater()
        user(lambda: qt.QApplication.sendPostedEvents(None, qt.QEvent.DeferredDelete))


def start_scene():
    """A new scene as Slicer's application sets it up (logics registered, three slice views)."""
    scene = new_scene()
    add_slice_views(scene)
    return scene


def slice_views(scene) -> dict:
    """Layout name -> slice composite node."""
    nodes = (scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
             for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")))
    return {node.GetLayoutName(): node for node in nodes}


def add_slice_views(scene) -> None:
    for name in ("Red", "Yellow", "Green"):
        if name not in slice_views(scene):
            scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode", f"vtkMRMLSliceCompositeNode{name}").SetLayoutName(name)


def shown_background(scene):
    """The volume the Red slice view shows."""
    node_id = slice_views(scene)["Red"].GetBackgroundVolumeID()
    return scene.GetNodeByID(node_id) if node_id else None


SLOT_ERRORS: list[str] = []


def _print_and_continue(kind, error, trace) -> None:
    """An exception escaping a Qt slot: printed and the application goes on, as PythonQt does (PyQt5 would abort);
    collected in ``SLOT_ERRORS`` for the tests to check."""
    import traceback
    text = "".join(traceback.format_exception(kind, error, trace))
    SLOT_ERRORS.append(text)
    sys.stderr.write(text)


def start(home: Path) -> Session:
    """A fresh Slicer session in ``home`` (settings, temporary folder); Qt's application is made once."""
    global _APPLICATION
    sys.excepthook = _print_and_continue
    SLOT_ERRORS.clear()
    qt_app = qt.QApplication.instance() or qt.QApplication(["Slicer"])
    _APPLICATION = qt_app
    qt.QSettings.setDefaultFormat(qt.QSettings.IniFormat)
    qt.QSettings.setPath(qt.QSettings.IniFormat, qt.QSettings.UserScope, str(home / "settings"))
    qt_app.setOrganizationName("NA-MIC")
    qt_app.setApplicationName("Slicer")
    slicer.app = Application(qt_app, home)
    slicer.ScriptedLoadableModule = scripted_loadable_module
    sys.modules["slicer.ScriptedLoadableModule"] = scripted_loadable_module
    for widget in ("qMRMLWidget", "qMRMLNodeComboBox", "qMRMLCheckableNodeComboBox"):
        setattr(slicer, widget, mrml_widgets.PYTHONQT_CLASSES[widget])
    slicer.qSlicerScriptedLoadableModuleWidget = ModulePanel
    session = Session(home)
    if not isinstance(slicer.modules, types.SimpleNamespace):
        slicer.modules = types.SimpleNamespace(**vars(slicer.modules))
    return session


class DialogWatcher:
    """Answers modal message boxes as a user would, recording each one's text. ``answers`` is a queue of
    standard buttons for confirmation dialogs (default: the dialog's default button, else OK)."""

    def __init__(self, interval_ms: int = 30):
        self.seen: list[str] = []
        self.errors: list[str] = []  # the texts of the critical (error) boxes among them
        self.answers: list[int] = []
        self.timer = qt.QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.connect("timeout()", self._check)
        self.timer.start()

    def _check(self) -> None:
        box = qt.QApplication.activeModalWidget()
        if box is None or not isinstance(box, qt.QtWidgets.QMessageBox):
            return
        text = box.text if isinstance(box.text, str) else box.text()
        self.seen.append(text)
        if qt.QtWidgets.QMessageBox.icon(box) == qt.QMessageBox.Critical:
            self.errors.append(text)
        answer = self.answers.pop(0) if self.answers else None
        if answer is None:
            button = box.defaultButton() or box.button(qt.QMessageBox.Ok) or box.buttons()[0]
        else:
            button = box.button(answer)
        button.click()

    def stop(self) -> None:
        self.timer.stop()


def user(action):
    """Do ``action`` (e.g. ``button.click``) as a user's event is handled in Slicer: from inside the running event
    loop, so that a modal dialog it opens runs a nested loop (and Qt's deferred deletes behave as they do there)."""
    loop, outcome = qt.QEventLoop(), {}

    def run():
        try:
            outcome["value"] = action()
        except BaseException as error:  # noqa: BLE001 - re-raised below, outside the loop
            outcome["error"] = error
        finally:
            loop.quit()
    qt.QTimer.singleShot(0, run)
    loop.exec_()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def click(button) -> None:
    user(button.click)


def wait_until(condition, timeout_s: float = 120.0, what: str = "condition") -> None:
    """Run the event loop until ``condition()`` holds (the GUI's timers and jobs keep running meanwhile)."""
    import time
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        qt.QApplication.processEvents(qt.QEventLoop.AllEvents, 50)
        time.sleep(0.02)
