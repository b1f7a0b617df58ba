"""``slicer.ScriptedLoadableModule`` as in Slicer 5.8.1 (``Base/Python/slicer/ScriptedLoadableModule.py``), for a
module file to run outside Slicer: the four base classes with Slicer's constructors — each calls
``super().__init__()`` (cooperative, as since 2022), so a subclass with another base sees exactly what it sees in
Slicer — ``resourcePath``, the widget's ``layout`` from its parent, and the logic's singleton parameter node
(a ``vtkMRMLScriptedModuleNode`` of ``slicer.mrmlScene`` with the module's name, created on first use).

The developer section (Reload / Reload and Test buttons) and the documentation links are not reproduced.
"""

from __future__ import annotations

import importlib
import os
import unittest

import qt
import slicer


class ScriptedLoadableModule:
    """``ScriptedLoadableModule(parent)``: ``parent`` is the C++ module object (title, categories, path, ...)."""

    def __init__(self, parent):
        super().__init__()
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = ["Andras Lasso (PerkLab, Queen's University), Steve Pieper (Isomics)"]
        parent.helpText = ""
        parent.acknowledgementText = ""
        for extension in (".svg", ".png"):
            icon = os.path.join(os.path.dirname(parent.path), "Resources/Icons", self.moduleName + extension)
            if os.path.isfile(icon):
                parent.icon = qt.QIcon(icon)
                break
        if not hasattr(slicer, "selfTests"):
            slicer.selfTests = {}
        slicer.selfTests[self.moduleName] = self.runTest

    def resourcePath(self, filename: str) -> str:
        return os.path.join(os.path.dirname(self.parent.path), "Resources", filename)

    def runTest(self, msec=100, **kwargs):
        """Runs ``<ModuleName>Test().runTest()`` from the module's own file, as Slicer's self-test does."""
        module = importlib.import_module(self.__module__)
        test_case = getattr(module, self.moduleName + "Test")()
        test_case.messageDelay = msec
        test_case.runTest(**kwargs)


class ScriptedLoadableModuleWidget:
    """``ScriptedLoadableModuleWidget(parent=None)``: ``parent`` is the module panel (a qMRMLWidget with a
    QVBoxLayout, ``isEntered``); without one a stand-alone panel is made and ``setup()`` called, as in Slicer."""

    def __init__(self, parent=None):
        super().__init__()
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Widget"):
            self.moduleName = self.moduleName[:-6]
        self.developerMode = slicer.util.settingsValue("Developer/DeveloperMode", False,
                                                       converter=slicer.util.toBool)
        if not parent:
            self.parent = slicer.qMRMLWidget()
            self.parent.setLayout(qt.QVBoxLayout())
            self.parent.setMRMLScene(slicer.mrmlScene)
        else:
            self.parent = parent
        self.layout = self.parent.layout()
        if not parent:
            self.setup()
            self.parent.show()
        slicer.app.moduleManager().connect("moduleAboutToBeUnloaded(QString)", self._onModuleAboutToBeUnloaded)

    def resourcePath(self, filename: str) -> str:
        return os.path.join(os.path.dirname(slicer.util.modulePath(self.moduleName)), "Resources", filename)

    def cleanup(self):
        pass

    def _onModuleAboutToBeUnloaded(self, moduleName):
        if moduleName == self.moduleName:
            self.cleanup()
            slicer.app.moduleManager().disconnect("moduleAboutToBeUnloaded(QString)", self._onModuleAboutToBeUnloaded)

    def setup(self):
        pass


class ScriptedLoadableModuleLogic:
    """``ScriptedLoadableModuleLogic(parent=None)``: ``getParameterNode()`` finds or creates the singleton
    parameter node of ``slicer.mrmlScene``."""

    def __init__(self, parent=None):
        super().__init__()
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Logic"):
            self.moduleName = self.moduleName[:-5]
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        scene = slicer.mrmlScene
        if self.isSingletonParameterNode:
            node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
            if node:
                if node.GetAttribute("ModuleName") != self.moduleName:
                    node.SetAttribute("ModuleName", self.moduleName)  # lost after a scene close
                return node
        else:
            for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScriptedModuleNode")):
                node = scene.GetNthNodeByClass(index, "vtkMRMLScriptedModuleNode")
                if node.GetAttribute("ModuleName") == self.moduleName:
                    return node
        return scene.AddNode(self.createParameterNode())

    def createParameterNode(self):
        scene = slicer.mrmlScene
        if scene is None:
            return None
        node = scene.CreateNodeByClass("vtkMRMLScriptedModuleNode")
        node.UnRegister(None)
        if self.isSingletonParameterNode:
            node.SetSingletonTag(self.moduleName)
        node.SetAttribute("ModuleName", self.moduleName)
        node.SetName(scene.GenerateUniqueName(self.moduleName))
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    """``ScriptedLoadableModuleTest``: a ``unittest.TestCase``; ``runTest()`` runs every method with "test" in its
    name between ``setUp``/``tearDown``; ``delayDisplay`` goes through ``slicer.util.delayDisplay``."""

    def __init__(self, *args, **kwargs):
        self.moduleTestNames = []
        super().__init__(*args, **kwargs)
        self.enableScreenshots, self.screenshotScaleFactor = False, 1.0
        if not self.moduleTestNames:
            self.moduleTestNames = [m for m in dir(self) if "test" in m and callable(getattr(self, m))]

    def delayDisplay(self, message, requestedDelay=None, msec=None):
        msec = getattr(self, "messageDelay", None) or msec or requestedDelay or 100
        slicer.util.delayDisplay(message, msec)

    def setUp(self):
        pass

    def tearDown(self):
        pass

    def runTest(self):
        for name in self.moduleTestNames:
            self.setUp()
            getattr(self, name)()
            self.tearDown()
